//! The WebSocket opening handshake (RFC 6455 §4.2), checked from CGI-style
//! variables: the CGI gets them from the server, the listener builds them
//! from the parsed request head. One validator for both front doors.

use std::collections::HashMap;

use crate::http::Status;

/// The GUID every accept key is derived with (RFC 6455 §1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request is refused; each maps to one HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not GET: 405.
    Method,
    /// Older than HTTP/1.1: 400.
    Protocol,
    /// `Upgrade` does not name websocket: 400.
    Upgrade,
    /// `Connection` lacks the `upgrade` token: 400.
    Connection,
    /// `Sec-WebSocket-Key` missing or not 16 bytes in base64: 400.
    Key,
    /// `Sec-WebSocket-Version` is not 13: 426 with the supported version.
    Version,
    /// `Origin` not allowed: 403.
    Origin,
}

impl Refusal {
    /// The HTTP status.
    pub fn status(self) -> Status {
        match self {
            Refusal::Method => crate::http::METHOD_NOT_ALLOWED,
            Refusal::Version => Status(426, "Upgrade Required"),
            Refusal::Origin => crate::http::FORBIDDEN,
            _ => crate::http::BAD_REQUEST,
        }
    }

    /// Short reason for the body.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Method => "a WebSocket handshake must be a GET",
            Refusal::Protocol => "a WebSocket handshake needs HTTP/1.1",
            Refusal::Upgrade => "Upgrade must be websocket",
            Refusal::Connection => "Connection must include upgrade",
            Refusal::Key => "Sec-WebSocket-Key must be 16 bytes in base64",
            Refusal::Version => "only WebSocket version 13 is supported",
            Refusal::Origin => "this Origin may not connect (see NPH_EVENTS_WS_ORIGINS)",
        }
    }

    /// Headers the answer must carry.
    pub fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Refusal::Version => &[("Sec-WebSocket-Version", "13")],
            Refusal::Method => &[("Allow", "GET")],
            _ => &[],
        }
    }
}

/// True when the request asks to upgrade to WebSocket at all.
pub fn wants_websocket(vars: &HashMap<String, String>) -> bool {
    vars.get("HTTP_UPGRADE")
        .is_some_and(|u| has_token(u, "websocket"))
}

fn has_token(list: &str, token: &str) -> bool {
    list.split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Validates the handshake; returns the `Sec-WebSocket-Accept` value.
///
/// `origins`: empty = same origin only (an `Origin` whose host is the
/// request's `Host`) or no `Origin` (non-browser clients); `*` = any;
/// otherwise the exact origins listed (`https://example.org`).
pub fn accept(vars: &HashMap<String, String>, origins: &[String]) -> Result<String, Refusal> {
    let var = |k: &str| vars.get(k).map(String::as_str);
    if var("REQUEST_METHOD") != Some("GET") {
        return Err(Refusal::Method);
    }
    if matches!(var("SERVER_PROTOCOL"), Some("HTTP/1.0") | Some("HTTP/0.9")) {
        return Err(Refusal::Protocol);
    }
    if !var("HTTP_UPGRADE").is_some_and(|u| has_token(u, "websocket")) {
        return Err(Refusal::Upgrade);
    }
    if !var("HTTP_CONNECTION").is_some_and(|c| has_token(c, "upgrade")) {
        return Err(Refusal::Connection);
    }
    let key = var("HTTP_SEC_WEBSOCKET_KEY").unwrap_or("").trim();
    let decoded = data_encoding::BASE64.decode(key.as_bytes());
    if !decoded.is_ok_and(|k| k.len() == 16) {
        return Err(Refusal::Key);
    }
    if var("HTTP_SEC_WEBSOCKET_VERSION").map(str::trim) != Some("13") {
        return Err(Refusal::Version);
    }
    if !origin_allowed(var("HTTP_ORIGIN"), var("HTTP_HOST"), origins) {
        return Err(Refusal::Origin);
    }
    Ok(accept_key(key))
}

fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin.map(str::trim).filter(|o| !o.is_empty()) else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    if !allowed.is_empty() {
        return false;
    }
    let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
    host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
}

/// `base64(sha1(key + GUID))`.
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    data_encoding::BASE64.encode(&sha.digest().bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut v: HashMap<String, String> = [
            ("REQUEST_METHOD", "GET"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("HTTP_HOST", "example.org"),
            ("HTTP_UPGRADE", "websocket"),
            ("HTTP_CONNECTION", "keep-alive, Upgrade"),
            ("HTTP_SEC_WEBSOCKET_KEY", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("HTTP_SEC_WEBSOCKET_VERSION", "13"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, val) in pairs {
            if val.is_empty() {
                v.remove(*k);
            } else {
                v.insert(k.to_string(), val.to_string());
            }
        }
        v
    }

    #[test]
    fn rfc_example_accept_key() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept(&vars(&[]), &[]).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn each_failure_has_its_own_answer() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Refusal, u16);
        let cases: &[Case] = &[
            (&[("REQUEST_METHOD", "POST")], Refusal::Method, 405),
            (&[("SERVER_PROTOCOL", "HTTP/1.0")], Refusal::Protocol, 400),
            (&[("HTTP_UPGRADE", "h2c")], Refusal::Upgrade, 400),
            (&[("HTTP_CONNECTION", "close")], Refusal::Connection, 400),
            (&[("HTTP_SEC_WEBSOCKET_KEY", "")], Refusal::Key, 400),
            (&[("HTTP_SEC_WEBSOCKET_KEY", "c2hvcnQ=")], Refusal::Key, 400),
            (
                &[("HTTP_SEC_WEBSOCKET_KEY", "!!not base64!!")],
                Refusal::Key,
                400,
            ),
            (
                &[("HTTP_SEC_WEBSOCKET_VERSION", "8")],
                Refusal::Version,
                426,
            ),
            (&[("HTTP_SEC_WEBSOCKET_VERSION", "")], Refusal::Version, 426),
            (
                &[("HTTP_ORIGIN", "https://evil.example")],
                Refusal::Origin,
                403,
            ),
        ];
        for (change, want, status) in cases {
            let got = accept(&vars(change), &[]).unwrap_err();
            assert_eq!((got, got.status().0), (*want, *status), "{change:?}");
        }
        assert_eq!(
            Refusal::Version.headers(),
            &[("Sec-WebSocket-Version", "13")]
        );
    }

    #[test]
    fn origins() {
        let same = vars(&[("HTTP_ORIGIN", "http://example.org")]);
        assert!(accept(&same, &[]).is_ok(), "same origin by default");
        let other = vars(&[("HTTP_ORIGIN", "https://app.example")]);
        assert!(accept(&other, &["https://app.example".into()]).is_ok());
        assert!(
            accept(&same, &["https://app.example".into()]).is_err(),
            "a list replaces the default"
        );
        assert!(accept(&other, &["*".into()]).is_ok());
        assert!(
            accept(&vars(&[]), &["https://app.example".into()]).is_ok(),
            "no Origin: not a browser"
        );
    }

    #[test]
    fn detection() {
        assert!(wants_websocket(&vars(&[("HTTP_UPGRADE", "WebSocket")])));
        assert!(!wants_websocket(&vars(&[("HTTP_UPGRADE", "")])));
    }
}
