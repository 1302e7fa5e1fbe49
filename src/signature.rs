//! Signed subscribe URLs: the site's own code grants one subscriber the
//! right to read a channel (or a list, or a prefix) until a time, with a
//! secret nph-events is configured with (`subscribe_secret`). A browser's
//! `EventSource` cannot send an `Authorization` header; a URL it can use.
//!
//! The URL carries `expires` (Unix seconds), optionally `grant` (what may
//! be read: comma-separated channel names, a name ending in `*` for every
//! channel with that prefix; without it, the URL's `channel` alone) and
//! `sig`: HMAC-SHA-256, keyed with the secret's bytes, over
//!
//! ```text
//! nph-events-subscribe-v1 LF grant LF expires
//! ```
//!
//! (no trailing LF; `grant` is the `grant` parameter's value, or the
//! `channel` parameter's when there is no `grant`; both values exactly as
//! they arrive after percent-decoding), written in unpadded base64url
//! (43 characters). docs/private-channels.md has it byte for byte, with
//! snippets for PHP, Perl, Python and Node.
//!
//! The check is made when a stream starts: a stream that started with a
//! valid URL runs until it ends (`max_duration`, or the client leaves),
//! however short the URL's lifetime. A reconnect with an expired URL is
//! refused (403), which ends an `EventSource`; the page then fetches a
//! fresh URL from its site and resumes with `lastEventId`.

use std::fmt;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::spool;

/// The first line of the signed string: names the scheme and its version.
pub const CONTEXT: &str = "nph-events-subscribe-v1";
/// Seconds a URL is still accepted after its `expires`: the signing
/// machine's clock and this one's may differ.
pub const SKEW_SECS: u64 = 30;
/// Most items in a grant.
pub const MAX_GRANT_ITEMS: usize = 32;
/// The shortest secret accepted: HMAC keys shorter than the hash are
/// guessable sooner than the hash is broken.
pub const MIN_SECRET_BYTES: usize = 16;
/// Characters of a signature: 32 bytes in unpadded base64url.
const SIG_CHARS: usize = 43;

/// The key signatures are made with. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret as configured (its UTF-8 bytes); empty is none.
    pub fn parse(text: &str) -> Result<Option<Secret>, String> {
        match text.len() {
            0 => Ok(None),
            n if n < MIN_SECRET_BYTES => Err(format!(
                "a subscribe secret needs {MIN_SECRET_BYTES} bytes or more (this one has {n}); \
                 e.g. head -c 32 /dev/urandom | base64"
            )),
            _ => Ok(Some(Secret(text.as_bytes().to_vec()))),
        }
    }

    /// A key given as text, or as `base64:…` for arbitrary bytes (the form
    /// GRIP proxies' configurations use); 16 bytes or more.
    pub fn parse_key(text: &str) -> Result<Option<Secret>, String> {
        let Some(b64) = text.trim().strip_prefix("base64:") else {
            return Secret::parse(text);
        };
        let bytes = data_encoding::BASE64
            .decode(b64.as_bytes())
            .map_err(|e| format!("base64: key: {e}"))?;
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "a key needs {MIN_SECRET_BYTES} bytes or more (this one has {})",
                bytes.len()
            ));
        }
        Ok(Some(Secret(bytes)))
    }

    /// Its bytes: the HMAC key.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What a signed URL may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant(Vec<Item>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Channel(String),
    Prefix(String),
}

impl Grant {
    /// Parses a grant: `a,b,news-*`, or `*` for every channel.
    pub fn parse(text: &str) -> Result<Grant, Invalid> {
        let bad = |why: String| Invalid::Malformed(format!("grant {text:?}: {why}"));
        let items: Vec<&str> = text.split(',').collect();
        if items.len() > MAX_GRANT_ITEMS {
            return Err(bad(format!("more than {MAX_GRANT_ITEMS} items")));
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item.strip_suffix('*') {
                Some("") => out.push(Item::Prefix(String::new())),
                Some(prefix) => {
                    spool::check_channel(prefix).map_err(|e| bad(e.to_string()))?;
                    out.push(Item::Prefix(prefix.to_owned()));
                }
                None => {
                    spool::check_channel(item).map_err(|e| bad(e.to_string()))?;
                    out.push(Item::Channel(item.to_owned()));
                }
            }
        }
        Ok(Grant(out))
    }

    /// Whether `channel` is in it.
    pub fn covers(&self, channel: &str) -> bool {
        self.0.iter().any(|item| match item {
            Item::Channel(c) => c == channel,
            Item::Prefix(p) => channel.starts_with(p.as_str()),
        })
    }
}

/// Why a signed URL is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// A parameter is missing or not in its form.
    Malformed(String),
    /// The signature is not the secret's for these parameters.
    Mismatch,
    /// Past its `expires` (and the skew allowance).
    Expired {
        /// The URL's `expires`.
        expires: u64,
        /// This server's clock.
        now: u64,
    },
    /// Valid, but for other channels.
    OtherChannel(String),
    /// The server has no secret to check with.
    NoSecret,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Malformed(what) => write!(f, "malformed signed URL: {what}"),
            Invalid::Mismatch => write!(
                f,
                "the URL's signature does not match: signed with another secret, or a \
                 parameter (channel, grant, expires) changed after signing"
            ),
            Invalid::Expired { expires, now } => write!(
                f,
                "the signed URL expired {} s ago (expires={expires}); fetch a fresh one from \
                 the site and resume with lastEventId",
                now.saturating_sub(*expires)
            ),
            Invalid::OtherChannel(c) => {
                write!(f, "the signed URL does not grant channel {c:?}")
            }
            Invalid::NoSecret => write!(
                f,
                "signed URLs are not accepted here: no NPH_EVENTS_SUBSCRIBE_SECRET is configured"
            ),
        }
    }
}

/// The string the signature covers.
pub fn canonical(grant: &str, expires: &str) -> String {
    format!("{CONTEXT}\n{grant}\n{expires}")
}

/// The signature of `grant` until `expires`, as the URL carries it.
pub fn sign(secret: &[u8], grant: &str, expires: &str) -> String {
    data_encoding::BASE64URL_NOPAD.encode(&sign_bytes(secret, grant, expires))
}

fn sign_bytes(secret: &[u8], grant: &str, expires: &str) -> Vec<u8> {
    match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(canonical(grant, expires).as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length; should that ever change, nothing
        // verifies rather than everything.
        Err(_) => Vec::new(),
    }
}

/// A signed URL's parameters, as they arrived (percent-decoded).
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// `channel`: what the stream reads.
    pub channel: &'a str,
    /// `grant`, if given.
    pub grant: Option<&'a str>,
    /// `expires`.
    pub expires: Option<&'a str>,
    /// `sig`.
    pub sig: &'a str,
}

/// Checks a signed URL for reading `channel` at `now` (Unix seconds).
/// The signature is compared in constant time and checked before anything
/// it covers is believed.
pub fn verify(secret: Option<&[u8]>, url: Signed<'_>, now: u64) -> Result<(), Invalid> {
    let secret = secret.ok_or(Invalid::NoSecret)?;
    let expires_text = url
        .expires
        .ok_or_else(|| Invalid::Malformed("no expires parameter (Unix seconds)".into()))?;
    let expires = parse_expires(expires_text)?;
    let sig = data_encoding::BASE64URL_NOPAD
        .decode(url.sig.as_bytes())
        .ok()
        .filter(|s| url.sig.len() == SIG_CHARS && s.len() == 32)
        .ok_or_else(|| {
            Invalid::Malformed(format!(
                "sig is not {SIG_CHARS} characters of unpadded base64url"
            ))
        })?;
    let grant_text = url.grant.unwrap_or(url.channel);
    let expected = sign_bytes(secret, grant_text, expires_text);
    if !constant_time_eq(&expected, &sig) {
        return Err(Invalid::Mismatch);
    }
    if now > expires.saturating_add(SKEW_SECS) {
        return Err(Invalid::Expired { expires, now });
    }
    let grant = Grant::parse(grant_text)?;
    if !grant.covers(url.channel) {
        return Err(Invalid::OtherChannel(url.channel.to_owned()));
    }
    Ok(())
}

/// Whether `a` and `b` are equal, taking the same time wherever they
/// differ (every byte is looked at), so that the time a refusal takes
/// tells nothing about how much of a guessed hash or signature was right.
/// Lengths are not secret: a different length is refused at once.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn parse_expires(text: &str) -> Result<u64, Invalid> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::Malformed(format!(
            "expires {text:?}: expected Unix seconds (digits)"
        )));
    }
    text.parse()
        .map_err(|_| Invalid::Malformed(format!("expires {text:?} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn url<'a>(
        channel: &'a str,
        grant: Option<&'a str>,
        expires: &'a str,
        sig: &'a str,
    ) -> Signed<'a> {
        Signed {
            channel,
            grant,
            expires: Some(expires),
            sig,
        }
    }

    /// The canonical string and a signature, fixed: the snippets in the
    /// docs and other languages' libraries must produce these bytes.
    #[test]
    fn canonical_string_and_a_known_signature() {
        assert_eq!(
            canonical("user-42", "1800000300"),
            "nph-events-subscribe-v1\nuser-42\n1800000300"
        );
        let sig = sign(SECRET, "user-42", "1800000300");
        assert_eq!(sig.len(), 43);
        // Computed independently: printf 'nph-events-subscribe-v1\nuser-42\n1800000300' |
        // openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef -binary | basenc --base64url
        assert_eq!(sig, KNOWN_SIG);
        assert_eq!(
            verify(Some(SECRET), url("user-42", None, "1800000300", &sig), NOW),
            Ok(())
        );
    }

    const KNOWN_SIG: &str = "fRTQiBPTR-BwNevflHScuDO-CegcnubXI4G_F5bPa5s";

    /// The comparison looks at every byte: inputs differing in their first
    /// byte take as long as inputs differing in their last. Measured on 64
    /// KiB so that an early exit (what `==` does) would be hundreds of
    /// times faster; the fastest of many runs of each, so that other work
    /// on the machine does not decide.
    #[test]
    fn comparison_takes_the_same_time_wherever_the_inputs_differ() {
        let a = vec![7u8; 64 * 1024];
        let (mut first, mut last) = (a.clone(), a.clone());
        first[0] ^= 1;
        last[64 * 1024 - 1] ^= 1;
        assert!(constant_time_eq(&a, &a.clone()));
        assert!(!constant_time_eq(&a, &first) && !constant_time_eq(&a, &last));
        assert!(!constant_time_eq(&a, &a[1..]));
        let fastest = |b: &[u8]| {
            (0..200)
                .map(|_| {
                    let t = std::time::Instant::now();
                    std::hint::black_box(constant_time_eq(std::hint::black_box(&a), b));
                    t.elapsed()
                })
                .min()
                .unwrap()
        };
        let (f, l) = (fastest(&first), fastest(&last));
        let ratio = f.as_secs_f64() / l.as_secs_f64();
        assert!(
            (0.5..2.0).contains(&ratio),
            "differing first byte {f:?}, last byte {l:?}"
        );
    }

    #[test]
    fn expiry_with_the_skew_allowance() {
        let sig = sign(SECRET, "a", "1800000000");
        let check = |now| verify(Some(SECRET), url("a", None, "1800000000", &sig), now);
        assert_eq!(check(NOW), Ok(()));
        assert_eq!(check(NOW + SKEW_SECS), Ok(()), "a clock a little ahead");
        assert_eq!(
            check(NOW + SKEW_SECS + 1),
            Err(Invalid::Expired {
                expires: NOW,
                now: NOW + SKEW_SECS + 1
            })
        );
    }

    #[test]
    fn a_changed_parameter_or_another_secret_does_not_match() {
        let sig = sign(SECRET, "a", "1800000100");
        let ok = verify(Some(SECRET), url("a", None, "1800000100", &sig), NOW);
        assert_eq!(ok, Ok(()));
        for (channel, grant, expires) in [
            ("b", None, "1800000100"),        // another channel
            ("a", None, "1800000101"),        // a later expiry
            ("a", None, "01800000100"),       // the same number, other bytes
            ("a", Some("a,b"), "1800000100"), // a wider grant
            ("a", Some("*"), "1800000100"),   // every channel
        ] {
            let got = verify(Some(SECRET), url(channel, grant, expires, &sig), NOW);
            assert_eq!(got, Err(Invalid::Mismatch), "{channel} {grant:?} {expires}");
        }
        let other = verify(
            Some(b"another secret, also long"),
            url("a", None, "1800000100", &sig),
            NOW,
        );
        assert_eq!(other, Err(Invalid::Mismatch));
    }

    #[test]
    fn grants_of_lists_and_prefixes() {
        let sig = sign(SECRET, "news,user-42-*", "1800000100");
        let check = |channel| {
            verify(
                Some(SECRET),
                url(channel, Some("news,user-42-*"), "1800000100", &sig),
                NOW,
            )
        };
        assert_eq!(check("news"), Ok(()));
        assert_eq!(check("user-42-orders"), Ok(()));
        assert_eq!(check("user-42-x"), Ok(()));
        assert_eq!(check("user-4"), Err(Invalid::OtherChannel("user-4".into())));
        assert_eq!(
            check("newsroom"),
            Err(Invalid::OtherChannel("newsroom".into()))
        );
        let all = sign(SECRET, "*", "1800000100");
        assert_eq!(
            verify(
                Some(SECRET),
                url("anything", Some("*"), "1800000100", &all),
                NOW
            ),
            Ok(())
        );
        assert!(Grant::parse(&vec!["a"; MAX_GRANT_ITEMS + 1].join(",")).is_err());
        assert!(Grant::parse("a,,b").is_err(), "an empty item");
        assert!(Grant::parse("a/b").is_err(), "not a channel name");
    }

    #[test]
    fn malformed_and_truncated_signatures() {
        let sig = sign(SECRET, "a", "1800000100");
        let check = |expires: Option<&str>, sig: &str| {
            verify(
                Some(SECRET),
                Signed {
                    channel: "a",
                    grant: None,
                    expires,
                    sig,
                },
                NOW,
            )
        };
        assert!(
            matches!(
                check(Some("1800000100"), &sig[..42]),
                Err(Invalid::Malformed(_))
            ),
            "truncated"
        );
        assert!(
            matches!(
                check(Some("1800000100"), &format!("{sig}=")),
                Err(Invalid::Malformed(_))
            ),
            "padded"
        );
        let plus = sig.replace(|c: char| c.is_ascii_alphanumeric(), "+");
        assert!(
            matches!(check(Some("1800000100"), &plus), Err(Invalid::Malformed(_))),
            "not base64url"
        );
        assert!(
            matches!(check(None, &sig), Err(Invalid::Malformed(_))),
            "no expires"
        );
        assert!(matches!(
            check(Some("-1"), &sig),
            Err(Invalid::Malformed(_))
        ));
        assert!(matches!(
            check(Some("99999999999999999999"), &sig),
            Err(Invalid::Malformed(_))
        ));
        assert!(matches!(check(Some(""), &sig), Err(Invalid::Malformed(_))));
        assert_eq!(
            verify(None, url("a", None, "1800000100", &sig), NOW),
            Err(Invalid::NoSecret)
        );
        // The last character carries 2 unused bits: another character
        // that decodes to the same bytes is refused, not accepted.
        let mut flipped = sig.clone().into_bytes();
        flipped[42] = if flipped[42] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(check(Some("1800000100"), &flipped).is_err());
    }
}
