//! The WebSocket opening handshake (RFC 6455 §4.2), checked on the typed
//! request whichever front door built it. One validator for all of them.

use crate::http::{Refusal, Status};
use crate::request::{has_token, Method, Protocol, Request};

/// The GUID every accept key is derived with (RFC 6455 §1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request is refused; each maps to one HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
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
}

impl Refusal for HandshakeError {
    fn status(&self) -> Status {
        match self {
            HandshakeError::Method => crate::http::METHOD_NOT_ALLOWED,
            HandshakeError::Version => Status(426, "Upgrade Required"),
            _ => crate::http::BAD_REQUEST,
        }
    }

    fn reason(&self) -> String {
        match self {
            HandshakeError::Method => "a WebSocket handshake must be a GET",
            HandshakeError::Protocol => "a WebSocket handshake needs HTTP/1.1",
            HandshakeError::Upgrade => "Upgrade must be websocket",
            HandshakeError::Connection => "Connection must include upgrade",
            HandshakeError::Key => "Sec-WebSocket-Key must be 16 bytes in base64",
            HandshakeError::Version => "only WebSocket version 13 is supported",
        }
        .to_owned()
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            HandshakeError::Version => vec![("Sec-WebSocket-Version", "13".to_owned())],
            HandshakeError::Method => vec![("Allow", "GET".to_owned())],
            _ => Vec::new(),
        }
    }
}

/// Validates the handshake; returns the `Sec-WebSocket-Accept` value.
/// (Which pages may connect is [`crate::origin`]'s rule.)
pub fn accept(request: &Request) -> Result<String, HandshakeError> {
    let h = &request.headers;
    if request.method != Method::Get {
        return Err(HandshakeError::Method);
    }
    if request.protocol == Protocol::Http10 {
        return Err(HandshakeError::Protocol);
    }
    if !request.wants_websocket() {
        return Err(HandshakeError::Upgrade);
    }
    if !h
        .connection
        .as_deref()
        .is_some_and(|c| has_token(c, "upgrade"))
    {
        return Err(HandshakeError::Connection);
    }
    let key = h.ws_key.as_deref().unwrap_or("").trim();
    let decoded = data_encoding::BASE64.decode(key.as_bytes());
    if !decoded.is_ok_and(|k| k.len() == 16) {
        return Err(HandshakeError::Key);
    }
    if h.ws_version.as_deref().map(str::trim) != Some("13") {
        return Err(HandshakeError::Version);
    }
    Ok(accept_key(key))
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

    fn vars(pairs: &[(&str, &str)]) -> Request {
        let mut v: std::collections::HashMap<String, String> = [
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
        Request::from_cgi(&v)
    }

    #[test]
    fn rfc_example_accept_key() {
        // RFC 6455 §1.3.
        assert_eq!(accept(&vars(&[])).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn each_failure_has_its_own_answer() {
        type Case<'a> = (&'a [(&'a str, &'a str)], HandshakeError, u16);
        let cases: &[Case] = &[
            (&[("REQUEST_METHOD", "POST")], HandshakeError::Method, 405),
            (
                &[("SERVER_PROTOCOL", "HTTP/1.0")],
                HandshakeError::Protocol,
                400,
            ),
            (&[("HTTP_UPGRADE", "h2c")], HandshakeError::Upgrade, 400),
            (
                &[("HTTP_CONNECTION", "close")],
                HandshakeError::Connection,
                400,
            ),
            (&[("HTTP_SEC_WEBSOCKET_KEY", "")], HandshakeError::Key, 400),
            (
                &[("HTTP_SEC_WEBSOCKET_KEY", "c2hvcnQ=")],
                HandshakeError::Key,
                400,
            ),
            (
                &[("HTTP_SEC_WEBSOCKET_KEY", "!!not base64!!")],
                HandshakeError::Key,
                400,
            ),
            (
                &[("HTTP_SEC_WEBSOCKET_VERSION", "8")],
                HandshakeError::Version,
                426,
            ),
            (
                &[("HTTP_SEC_WEBSOCKET_VERSION", "")],
                HandshakeError::Version,
                426,
            ),
        ];
        for (change, want, status) in cases {
            let got = accept(&vars(change)).unwrap_err();
            assert_eq!((got, got.status().0), (*want, *status), "{change:?}");
        }
        assert_eq!(
            HandshakeError::Version.headers(),
            [("Sec-WebSocket-Version", "13".to_owned())]
        );
    }

    #[test]
    fn detection() {
        assert!(vars(&[("HTTP_UPGRADE", "WebSocket")]).wants_websocket());
        assert!(!vars(&[("HTTP_UPGRADE", "")]).wants_websocket());
    }
}
