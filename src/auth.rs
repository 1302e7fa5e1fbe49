//! Who may publish by POST.
//!
//! Either the web server authenticated the user (`REMOTE_USER`, e.g. Apache
//! `AuthType Basic`) and the name is in `publish_users`, or the request
//! carries `Authorization: Bearer TOKEN` whose SHA-256 equals
//! `token_sha256`. Only the hash is configured, so a leaked configuration
//! does not leak the token; the comparison takes the same time wherever the
//! hashes differ. Apache passes `Authorization` to CGIs only with
//! `CGIPassAuth On` (set in the shipped snippet).

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::http::{self, Refusal, Status};
use crate::signature;

/// Why a publish was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No credentials at all: 401, with `WWW-Authenticate: Bearer`.
    Missing,
    /// Credentials that do not grant publishing: 403.
    Forbidden,
    /// Publishing is not configured (no users, no token): 403.
    Disabled,
}

impl Refusal for Denied {
    fn status(&self) -> Status {
        match self {
            Denied::Missing => http::UNAUTHORIZED,
            Denied::Forbidden | Denied::Disabled => http::FORBIDDEN,
        }
    }

    fn reason(&self) -> String {
        match self {
            Denied::Missing => "publishing needs credentials (Authorization: Bearer TOKEN)",
            Denied::Forbidden => "these credentials may not publish",
            Denied::Disabled => {
                "publishing by POST is disabled (set NPH_EVENTS_TOKEN_SHA256 or NPH_EVENTS_PUBLISH_USERS)"
            }
        }
        .to_owned()
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Denied::Missing => vec![("WWW-Authenticate", "Bearer realm=\"nph-events\"".into())],
            _ => Vec::new(),
        }
    }
}

/// Decides whether a request may publish.
pub fn authorize(
    config: &Config,
    remote_user: Option<&str>,
    authorization: Option<&str>,
) -> Result<(), Denied> {
    let remote_user = remote_user.filter(|u| !u.is_empty());
    let authorization = authorization.filter(|a| !a.trim().is_empty());
    if let Some(user) = remote_user {
        if config.publish_users.iter().any(|u| u == user) {
            return Ok(());
        }
    }
    if let (Some(expected), Some(token)) = (config.token_sha256, authorization.and_then(bearer)) {
        if signature::constant_time_eq(Sha256::digest(token.as_bytes()).as_slice(), &expected) {
            return Ok(());
        }
    }
    if config.publish_users.is_empty() && config.token_sha256.is_none() {
        return Err(Denied::Disabled);
    }
    if remote_user.is_none() && authorization.is_none() {
        return Err(Denied::Missing);
    }
    Err(Denied::Forbidden)
}

/// The token of a `Bearer` credential (scheme case-insensitive).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Lower-case hex SHA-256 of `token`, as `NPH_EVENTS_TOKEN_SHA256` wants it.
pub fn token_hash_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KEYS;

    fn config(users: &str, token: Option<&str>) -> Config {
        let mut c = Config::default();
        let key = |j: &str| KEYS.iter().find(|k| k.json == j).unwrap();
        c.set(key("publish_users"), users, "x").unwrap();
        if let Some(t) = token {
            c.set(key("token_sha256"), &token_hash_hex(t), "x").unwrap();
        }
        c
    }

    #[test]
    fn known_sha256() {
        assert_eq!(
            token_hash_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn decisions() {
        let c = config("alice", Some("s3cret"));
        assert_eq!(authorize(&c, Some("alice"), None), Ok(()));
        assert_eq!(authorize(&c, None, Some("Bearer s3cret")), Ok(()));
        assert_eq!(authorize(&c, None, Some("bearer  s3cret ")), Ok(()));
        assert_eq!(authorize(&c, None, None), Err(Denied::Missing));
        assert_eq!(authorize(&c, Some(""), Some("")), Err(Denied::Missing));
        assert_eq!(authorize(&c, Some("bob"), None), Err(Denied::Forbidden));
        assert_eq!(
            authorize(&c, None, Some("Bearer nope")),
            Err(Denied::Forbidden)
        );
        assert_eq!(
            authorize(&c, None, Some("Basic s3cret")),
            Err(Denied::Forbidden)
        );
        assert_eq!(authorize(&c, None, Some("s3cret")), Err(Denied::Forbidden));
        let off = config("", None);
        assert_eq!(
            authorize(&off, Some("alice"), Some("Bearer x")),
            Err(Denied::Disabled)
        );
    }
}
