//! `Grip-Sig`: how a GRIP proxy (Pushpin, or a hosted service speaking
//! the same protocol) proves a request came through it. The proxy signs
//! every request it forwards with a JSON Web Token, HS256 over a key the
//! origin shares (`grip_key`), with an issuer (`iss`) and an expiry
//! (`exp`). Only a request with a valid signature is answered with GRIP
//! instructions; any other gets the direct stream, so the same URL works
//! with and without the proxy, and a client cannot make the origin hold
//! nothing by forging the header.

use std::fmt;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::signature::constant_time_eq;

/// Why a `Grip-Sig` is not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Not three base64url parts, or parts that are not JSON objects.
    Malformed(&'static str),
    /// A header algorithm other than HS256 (never trusted to choose).
    Algorithm,
    /// The signature is not the key's.
    Mismatch,
    /// Past `exp`, or no `exp`.
    Expired,
    /// `iss` is not the configured issuer.
    Issuer,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Malformed(what) => write!(f, "malformed Grip-Sig: {what}"),
            Invalid::Algorithm => write!(f, "Grip-Sig is not HS256"),
            Invalid::Mismatch => write!(f, "Grip-Sig signature does not match the grip_key"),
            Invalid::Expired => write!(f, "Grip-Sig expired or has no exp"),
            Invalid::Issuer => write!(f, "Grip-Sig issuer is not grip_iss"),
        }
    }
}

/// Checks `token` (the `Grip-Sig` value) against `key`, the expected
/// issuer `iss` (none: any) and `now` (Unix seconds). The signature is
/// checked, in constant time, before any claim is believed.
pub fn verify(token: &str, key: &[u8], iss: Option<&str>, now: u64) -> Result<(), Invalid> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid::Malformed("expected header.payload.signature"));
    };
    let decode = |part: &str, what| {
        data_encoding::BASE64URL_NOPAD
            .decode(part.trim_end_matches('=').as_bytes())
            .map_err(|_| Invalid::Malformed(what))
    };
    let header: serde_json::Value = serde_json::from_slice(&decode(header, "header")?)
        .map_err(|_| Invalid::Malformed("header is not JSON"))?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(Invalid::Algorithm);
    }
    let sig = decode(sig, "signature")?;
    let signed_len = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
    let expected = hs256(key, &token.as_bytes()[..signed_len]);
    if !constant_time_eq(&expected, &sig) {
        return Err(Invalid::Mismatch);
    }
    let claims: serde_json::Value = serde_json::from_slice(&decode(payload, "payload")?)
        .map_err(|_| Invalid::Malformed("payload is not JSON"))?;
    match claims.get("exp").and_then(|e| e.as_f64()) {
        Some(exp) if exp > now as f64 => {}
        _ => return Err(Invalid::Expired),
    }
    if let Some(iss) = iss {
        if claims.get("iss").and_then(|i| i.as_str()) != Some(iss) {
            return Err(Invalid::Issuer);
        }
    }
    Ok(())
}

/// HMAC-SHA-256 of `data` under `key`.
pub fn hs256(key: &[u8], data: &[u8]) -> Vec<u8> {
    match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// A token as a proxy makes one: for tests and for `nph-events` acting as
/// a proxy's client in benchmarks.
pub fn sign(key: &[u8], iss: &str, exp: u64) -> String {
    let b64 = |b: &[u8]| data_encoding::BASE64URL_NOPAD.encode(b);
    let header = b64(br#"{"typ":"JWT","alg":"HS256"}"#);
    let payload = b64(serde_json::json!({ "iss": iss, "exp": exp })
        .to_string()
        .as_bytes());
    let signed = format!("{header}.{payload}");
    let sig = b64(&hs256(key, signed.as_bytes()));
    format!("{signed}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"changeme";
    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_proxy_token_is_taken() {
        let t = sign(KEY, "pushpin", NOW + 60);
        assert_eq!(verify(&t, KEY, Some("pushpin"), NOW), Ok(()));
        assert_eq!(verify(&t, KEY, None, NOW), Ok(()));
    }

    #[test]
    fn anything_else_is_not() {
        let t = sign(KEY, "pushpin", NOW + 60);
        assert_eq!(
            verify(&t, b"another key", Some("pushpin"), NOW),
            Err(Invalid::Mismatch)
        );
        assert_eq!(verify(&t, KEY, Some("someone"), NOW), Err(Invalid::Issuer));
        assert_eq!(verify(&t, KEY, None, NOW + 60), Err(Invalid::Expired));
        let old = sign(KEY, "pushpin", NOW - 1);
        assert_eq!(verify(&old, KEY, None, NOW), Err(Invalid::Expired));
        // A changed claim breaks the signature.
        let (head, rest) = t.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged_claims = data_encoding::BASE64URL_NOPAD
            .encode(format!(r#"{{"iss":"pushpin","exp":{}}}"#, NOW + 999_999).as_bytes());
        let forged = format!("{head}.{forged_claims}.{sig}");
        assert_eq!(verify(&forged, KEY, None, NOW), Err(Invalid::Mismatch));
        // "alg: none" and other algorithms are never taken.
        let none = data_encoding::BASE64URL_NOPAD.encode(br#"{"alg":"none"}"#);
        let unsigned = format!("{none}.{}.", rest.split_once('.').unwrap().0);
        assert_eq!(verify(&unsigned, KEY, None, NOW), Err(Invalid::Algorithm));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.AAAA"] {
            assert!(verify(bad, KEY, None, NOW).is_err(), "{bad}");
        }
        // No exp at all.
        let b64 = |b: &[u8]| data_encoding::BASE64URL_NOPAD.encode(b);
        let h = b64(br#"{"alg":"HS256"}"#);
        let p = b64(br#"{"iss":"pushpin"}"#);
        let s = b64(&hs256(KEY, format!("{h}.{p}").as_bytes()));
        assert_eq!(
            verify(&format!("{h}.{p}.{s}"), KEY, None, NOW),
            Err(Invalid::Expired)
        );
    }
}
