//! The WebSocket check: the opening handshake on the stream's URL, and
//! what its answer says about the server and the proxies in between.

use std::time::Duration;

use super::report::{Check, Verdict};
use super::target::Target;
use super::transport::{exchange, Request, Transport};

/// The GUID of RFC 6455, section 1.3.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for `key`.
pub fn accept_for(key: &str) -> String {
    let digest = sha1_smol::Sha1::from(format!("{key}{GUID}"))
        .digest()
        .bytes();
    data_encoding::BASE64.encode(&digest)
}

/// Tries the handshake (HTTP/1.1: WebSocket over HTTP/2 is another
/// protocol, RFC 8441, that servers here do not offer).
/// `live`: whether the stream arrived live (if not, a handshake that the
/// program answered with the stream is held back the same way).
pub fn check(transport: &Transport, target: &Target, origin: Option<&str>, live: bool) -> Check {
    let key = data_encoding::BASE64.encode(
        super::probe::nonce()
            .as_bytes()
            .get(..16)
            .unwrap_or(b"nph-events-probe"),
    );
    let mut headers = vec![
        ("Connection".to_owned(), "Upgrade".to_owned()),
        ("Upgrade".to_owned(), "websocket".to_owned()),
        ("Sec-WebSocket-Key".to_owned(), key.clone()),
        ("Sec-WebSocket-Version".to_owned(), "13".to_owned()),
    ];
    if let Some(o) = origin {
        headers.push(("Origin".to_owned(), o.to_owned()));
    }
    let request = Request {
        method: "GET",
        target,
        headers,
        body: Vec::new(),
    };
    let got = exchange(
        &transport.http11(),
        &request,
        Duration::from_secs(5),
        true,
        &|c| c.head.is_some(),
    );
    let Some(head) = got.head else {
        let why = got.error.unwrap_or_else(|| "no answer within 5 s".into());
        if !live {
            let detail = format!(
                "no answer to the handshake ({why}): an Upgrade dropped on the way gets the \
                 event stream, held back like the one above"
            );
            return Check::new("websocket", Verdict::Info, None, detail);
        }
        let detail = format!("no answer to the handshake: {why}");
        return Check::new("websocket", Verdict::Warn, None, detail);
    };
    judge(
        head.status,
        head.get("sec-websocket-accept"),
        head.get("content-type"),
        &accept_for(&key),
    )
}

/// The verdict on a handshake answer.
pub fn judge(
    status: u16,
    accept: Option<&str>,
    content_type: Option<&str>,
    expected: &str,
) -> Check {
    let c = |v, d: String| Check::new("websocket", v, Some(f64::from(status)), d);
    match status {
        101 if accept == Some(expected) => c(Verdict::Ok, "101: the upgrade reaches the program".into()),
        101 => c(Verdict::Fail, "101 with a wrong Sec-WebSocket-Accept".into()),
        501 => c(
            Verdict::Info,
            "501: WebSocket not enabled on this server (NPH_EVENTS_WS; the event stream does not need it)".into(),
        ),
        200 if content_type.is_some_and(|t| t.starts_with("text/event-stream")) => c(
            Verdict::Info,
            "200 event stream: the Upgrade header did not reach the program (lighttpd: \
             cgi.upgrade = \"enable\"; nginx: proxy_set_header Upgrade $http_upgrade and \
             Connection \"upgrade\"; Apache CGI cannot pass it)"
                .into(),
        ),
        s => c(Verdict::Warn, format!("answered {s} to the handshake")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc_6455_and_answers_are_judged() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(judge(101, Some("a"), None, "a").verdict, Verdict::Ok);
        assert_eq!(judge(101, Some("b"), None, "a").verdict, Verdict::Fail);
        assert_eq!(judge(501, None, None, "a").verdict, Verdict::Info);
        assert_eq!(
            judge(200, None, Some("text/event-stream"), "a").verdict,
            Verdict::Info
        );
        assert_eq!(judge(403, None, None, "a").verdict, Verdict::Warn);
    }
}
