//! Who may read a channel: the site's channel policies (`channels`) and
//! what opens a protected channel (a signed URL, or the user the web
//! server authenticated).
//!
//! `channels` is a comma-separated list of `pattern=policy` rules; the
//! first rule whose pattern matches a channel decides, and a channel no
//! rule matches is public (so a site without rules is public, as it
//! always was). Patterns: a channel name, a prefix ending in `*` (`*`
//! alone matches every channel), or a name with `{REMOTE_USER}` in it
//! (`user-{REMOTE_USER}`). Policies:
//!
//! * `public`: anyone who can reach the URL reads it;
//! * `signed`: a signed URL that grants the channel is needed
//!   ([`crate::signature`]);
//! * `user` (patterns with `{REMOTE_USER}` only): the user the web server
//!   authenticated, whose name fills the placeholder, reads it (Apache
//!   `AuthType Basic`, no signing needed); a signed URL also opens it, so
//!   a site's own code can hand one out.
//!
//! The same check runs before every stream, SSE or WebSocket, fresh or
//! resumed, in the CGI and in the listener, and before any spool reader
//! is opened: a refused subscription costs nothing.

use std::fmt;

use crate::http::{self, Refusal, Status};
use crate::signature::{self, Invalid, Signed};
use crate::spool;

/// The placeholder a `user` pattern holds.
pub const USER_PLACEHOLDER: &str = "{REMOTE_USER}";

/// What a rule requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Anyone.
    Public,
    /// A signed URL.
    Signed,
    /// The authenticated user the pattern names, or a signed URL.
    User,
}

/// One `pattern=policy` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pattern: Pattern,
    policy: Policy,
}

impl Rule {
    /// What the rule asks of a reader.
    pub fn policy(&self) -> Policy {
        self.policy
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
    /// `prefix{REMOTE_USER}suffix`.
    User(String, String),
}

impl Pattern {
    /// Whether `channel` matches; for a user pattern, the name in the
    /// placeholder's place.
    fn matches<'c>(&self, channel: &'c str) -> Option<Option<&'c str>> {
        match self {
            Pattern::Exact(name) => (name == channel).then_some(None),
            Pattern::Prefix(prefix) => channel.starts_with(prefix.as_str()).then_some(None),
            Pattern::User(prefix, suffix) => channel
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                .filter(|user| !user.is_empty())
                .map(Some),
        }
    }
}

/// Parses the `channels` setting.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (pattern, policy) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected pattern=policy, e.g. private-*=signed"))?;
        let policy = match policy.trim() {
            "public" => Policy::Public,
            "signed" => Policy::Signed,
            "user" => Policy::User,
            other => {
                return Err(format!(
                    "{item:?}: unknown policy {other:?}; expected public, signed or user"
                ))
            }
        };
        let pattern = parse_pattern(pattern.trim()).map_err(|why| format!("{item:?}: {why}"))?;
        match (&pattern, policy) {
            (Pattern::User(..), Policy::User) => {}
            (Pattern::User(..), _) => {
                return Err(format!(
                    "{item:?}: a pattern with {USER_PLACEHOLDER} takes the policy user"
                ))
            }
            (_, Policy::User) => {
                return Err(format!(
                    "{item:?}: the policy user needs {USER_PLACEHOLDER} in the pattern, \
                     e.g. user-{USER_PLACEHOLDER}=user"
                ))
            }
            _ => {}
        }
        rules.push(Rule { pattern, policy });
    }
    Ok(rules)
}

fn parse_pattern(text: &str) -> Result<Pattern, String> {
    let name_part = |part: &str| part.is_empty() || spool::check_channel(part).is_ok();
    let bad =
        || format!("{text:?} is not a channel name, prefix* or a name with {USER_PLACEHOLDER}");
    if let Some((prefix, suffix)) = text.split_once(USER_PLACEHOLDER) {
        if !name_part(prefix) || !name_part(suffix) || suffix.contains(USER_PLACEHOLDER) {
            return Err(bad());
        }
        return Ok(Pattern::User(prefix.to_owned(), suffix.to_owned()));
    }
    if let Some(prefix) = text.strip_suffix('*') {
        return if name_part(prefix) {
            Ok(Pattern::Prefix(prefix.to_owned()))
        } else {
            Err(bad())
        };
    }
    spool::check_channel(text).map_err(|_| bad())?;
    Ok(Pattern::Exact(text.to_owned()))
}

/// What a reader brings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The user the web server authenticated (`REMOTE_USER`).
    pub remote_user: Option<&'a str>,
    /// A signed URL's parameters, when the URL has a `sig`.
    pub signed: Option<Signed<'a>>,
}

/// Why a read was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granted {
    /// A public channel.
    Public,
    /// A valid signed URL.
    Signed,
    /// The channel's own authenticated user.
    User,
}

/// Why a read is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// A `signed` channel, no signature: 401.
    NeedsSignature(String),
    /// A `user` channel, no authenticated user and no signature: 401.
    NeedsUser(String),
    /// A `user` channel of another user: 403.
    OtherUser {
        /// The channel.
        channel: String,
        /// Who asked.
        user: String,
    },
    /// A signed URL that does not hold: 403.
    Signature(Invalid),
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason())
    }
}

impl Refusal for Denied {
    fn status(&self) -> Status {
        match self {
            Denied::NeedsSignature(_) | Denied::NeedsUser(_) => http::UNAUTHORIZED,
            Denied::OtherUser { .. } | Denied::Signature(_) => http::FORBIDDEN,
        }
    }

    fn reason(&self) -> String {
        match self {
            Denied::NeedsSignature(c) => {
                format!("channel {c:?} needs a signed URL (expires, sig; see `nph-events sign`)")
            }
            Denied::NeedsUser(c) => format!(
                "channel {c:?} belongs to a user: the web server must authenticate the request \
                 (e.g. Apache AuthType Basic), or the URL must be signed"
            ),
            Denied::OtherUser { channel, user } => {
                format!("channel {channel:?} is not user {user:?}'s")
            }
            Denied::Signature(invalid) => invalid.to_string(),
        }
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            // 401 must name a scheme; this one is the signed URL (browsers
            // show no password prompt for a scheme they do not know).
            Denied::NeedsSignature(_) | Denied::NeedsUser(_) => vec![(
                "WWW-Authenticate",
                "NPH-Signed-URL realm=\"nph-events\"".into(),
            )],
            _ => Vec::new(),
        }
    }
}

/// Decides whether `who` may read `channel` at `now` (Unix seconds).
pub fn check_read(
    rules: &[Rule],
    secret: Option<&[u8]>,
    channel: &str,
    who: Credentials<'_>,
    now: u64,
) -> Result<Granted, Denied> {
    let Some((rule, named)) = rules
        .iter()
        .find_map(|r| r.pattern.matches(channel).map(|named| (r, named)))
    else {
        return Ok(Granted::Public);
    };
    let user = who.remote_user.filter(|u| !u.is_empty());
    let signed = || -> Result<Granted, Denied> {
        let url = who.signed.ok_or_else(|| match rule.policy {
            Policy::User => Denied::NeedsUser(channel.to_owned()),
            _ => Denied::NeedsSignature(channel.to_owned()),
        })?;
        signature::verify(secret, url, now).map_err(Denied::Signature)?;
        Ok(Granted::Signed)
    };
    match rule.policy {
        Policy::Public => Ok(Granted::Public),
        Policy::Signed => signed(),
        Policy::User => match (user, named) {
            (Some(u), Some(n)) if u == n => Ok(Granted::User),
            (Some(u), _) if who.signed.is_none() => Err(Denied::OtherUser {
                channel: channel.to_owned(),
                user: u.to_owned(),
            }),
            _ => signed(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a secret of enough bytes";
    const NOW: u64 = 1_800_000_000;

    fn read(
        rules: &str,
        channel: &str,
        user: Option<&str>,
        sig: Option<(&str, &str)>,
    ) -> Result<Granted, Denied> {
        let rules = parse_rules(rules).unwrap();
        let signed = sig.map(|(expires, sig)| Signed {
            channel,
            grant: None,
            expires: Some(expires),
            sig,
        });
        let who = Credentials {
            remote_user: user,
            signed,
        };
        check_read(&rules, Some(SECRET), channel, who, NOW)
    }

    #[test]
    fn without_rules_everything_is_public() {
        assert_eq!(read("", "anything", None, None), Ok(Granted::Public));
    }

    #[test]
    fn first_matching_rule_decides() {
        let rules = "news=public,private-*=signed,user-{REMOTE_USER}=user,*=signed";
        assert_eq!(read(rules, "news", None, None), Ok(Granted::Public));
        assert!(matches!(
            read(rules, "private-x", None, None),
            Err(Denied::NeedsSignature(_))
        ));
        assert!(matches!(
            read(rules, "other", None, None),
            Err(Denied::NeedsSignature(_))
        ));
        assert_eq!(
            read(rules, "user-alice", Some("alice"), None),
            Ok(Granted::User)
        );
        let bob = read(rules, "user-alice", Some("bob"), None).unwrap_err();
        assert_eq!(bob.status(), http::FORBIDDEN, "{bob}");
        let nobody = read(rules, "user-alice", None, None).unwrap_err();
        assert_eq!(nobody.status(), http::UNAUTHORIZED, "{nobody}");
        assert!(nobody
            .headers()
            .iter()
            .any(|(k, _)| *k == "WWW-Authenticate"));
        // "user-" alone names no user: the next rule decides.
        assert!(matches!(
            read(rules, "user-", Some("x"), None),
            Err(Denied::NeedsSignature(_))
        ));
    }

    #[test]
    fn a_signed_url_opens_signed_and_user_channels() {
        let exp = "1800000100";
        let sig = signature::sign(SECRET, "user-alice", exp);
        let rules = "user-{REMOTE_USER}=user,*=signed";
        assert_eq!(
            read(rules, "user-alice", None, Some((exp, &sig))),
            Ok(Granted::Signed)
        );
        assert_eq!(
            read(rules, "user-alice", Some("bob"), Some((exp, &sig))),
            Ok(Granted::Signed)
        );
        let sig = signature::sign(SECRET, "room", exp);
        assert_eq!(
            read(rules, "room", None, Some((exp, &sig))),
            Ok(Granted::Signed)
        );
        let wrong = read(rules, "room", None, Some((exp, &sig[..40]))).unwrap_err();
        assert_eq!(wrong.status(), http::FORBIDDEN);
        let old = signature::sign(SECRET, "room", "1700000000");
        let expired = read(rules, "room", None, Some(("1700000000", &old))).unwrap_err();
        assert!(expired.reason().contains("expired"), "{expired}");
    }

    #[test]
    fn rules_that_cannot_work_are_refused_at_configuration() {
        for bad in [
            "private",                   // no policy
            "a=secret",                  // unknown policy
            "user-{REMOTE_USER}=signed", // placeholder without user
            "users-*=user",              // user without placeholder
            "a/b=public",                // not a channel name
            "*x=public",                 // star inside
            "{REMOTE_USER}{REMOTE_USER}=user",
        ] {
            assert!(parse_rules(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rules(" a=public , b-*=signed ,").unwrap().len(), 2);
    }
}
