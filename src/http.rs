//! Response heads and whole replies, for every front door.
//!
//! * NPH: the program owns the wire. It writes the status line, `Date`, and
//!   `Connection: close` (the body is delimited by closing the connection;
//!   Apache never reuses an NPH connection anyway).
//! * Parsed-header: a `Status:` line plus headers; the server adds `Date`,
//!   framing (chunked) and keep-alive.
//!
//! Every line ends in CRLF in both modes: strict clients (Node's llhttp,
//! Python `websockets`) reject an LF-only NPH head, and servers accept CRLF
//! in CGI headers. Only fixed strings and numbers reach a header here; no
//! request data is ever copied into a response header.

use crate::request::Protocol;

/// How the head is framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// Non-parsed header: full HTTP/1.x head with this version and date.
    Nph {
        /// From the request's `SERVER_PROTOCOL` (1.0 or 1.1).
        protocol: Protocol,
        /// Pre-formatted HTTP date (`httpdate`), from the injected clock.
        date: String,
    },
    /// Parsed header (`Status:` line).
    Cgi,
    /// The built-in listener: like NPH, plus `Server`, and the connection
    /// stays open after a response with a length when `keep_alive`.
    Listener {
        /// The request's HTTP version (1.0 or 1.1).
        protocol: Protocol,
        /// Pre-formatted HTTP date.
        date: String,
        /// Keep the connection open after this response.
        keep_alive: bool,
    },
}

impl Framing {
    /// The same framing for a response whose body ends with the connection
    /// (an event stream): the listener must not offer keep-alive for it.
    pub fn closing(&self) -> Framing {
        match self {
            Framing::Listener { protocol, date, .. } => Framing::Listener {
                protocol: *protocol,
                date: date.clone(),
                keep_alive: false,
            },
            other => other.clone(),
        }
    }
}

/// The program and its version, as the `Server` header and a stream's
/// opening comment name it.
pub const PRODUCT: &str = concat!("nph-events/", env!("CARGO_PKG_VERSION"));

/// A status code with its reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16, pub &'static str);

/// 200 OK.
pub const OK: Status = Status(200, "OK");
/// 201 Created.
pub const CREATED: Status = Status(201, "Created");
/// 401 Unauthorized.
pub const UNAUTHORIZED: Status = Status(401, "Unauthorized");
/// 403 Forbidden.
pub const FORBIDDEN: Status = Status(403, "Forbidden");
/// 429: the site-wide publish rate is spent.
pub const TOO_MANY_REQUESTS: Status = Status(429, "Too Many Requests");
/// 413 Content Too Large.
pub const TOO_LARGE: Status = Status(413, "Content Too Large");
/// 415 Unsupported Media Type.
pub const UNSUPPORTED_MEDIA_TYPE: Status = Status(415, "Unsupported Media Type");
/// 404 Not Found.
pub const NOT_FOUND: Status = Status(404, "Not Found");
/// 408 Request Timeout.
pub const REQUEST_TIMEOUT: Status = Status(408, "Request Timeout");
/// 431 Request Header Fields Too Large.
pub const HEADERS_TOO_LARGE: Status = Status(431, "Request Header Fields Too Large");
/// 503 Service Unavailable.
pub const UNAVAILABLE: Status = Status(503, "Service Unavailable");
/// 400 Bad Request.
pub const BAD_REQUEST: Status = Status(400, "Bad Request");
/// 405 Method Not Allowed.
pub const METHOD_NOT_ALLOWED: Status = Status(405, "Method Not Allowed");
/// 500 Internal Server Error.
pub const INTERNAL_ERROR: Status = Status(500, "Internal Server Error");
/// 501 Not Implemented.
pub const NOT_IMPLEMENTED: Status = Status(501, "Not Implemented");
/// 101 Switching Protocols.
pub const SWITCHING_PROTOCOLS: Status = Status(101, "Switching Protocols");

/// An error of some domain (auth, a publish body, a handshake, the query)
/// that knows how it is answered.
pub trait Refusal {
    /// The HTTP status.
    fn status(&self) -> Status;
    /// A short reason for the body.
    fn reason(&self) -> String;
    /// Headers the answer must carry.
    fn headers(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// A complete response with a length: a page, a 201, an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status.
    pub status: Status,
    /// Extra headers (`Allow`, `WWW-Authenticate`, …).
    pub headers: Vec<(&'static str, String)>,
    /// `Content-Type` of `body`.
    pub content_type: &'static str,
    /// The body.
    /// The body's bytes (text for everything but WebSocket-over-HTTP
    /// events, whose close codes are binary).
    pub body: Vec<u8>,
    /// Write the head only (the answer to HEAD); `Content-Length` still
    /// tells the body's size.
    pub head_only: bool,
    /// A line for the server's log, never shown to the client (details of
    /// a server-side failure).
    pub log: Option<String>,
}

impl Reply {
    /// A body of `content_type`.
    pub fn body(status: Status, content_type: &'static str, body: String) -> Reply {
        Reply::bytes(status, content_type, body.into_bytes())
    }

    /// A body of `content_type` that may not be text.
    pub fn bytes(status: Status, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            content_type,
            body,
            head_only: false,
            log: None,
        }
    }

    /// The body as text (lossy), for logs and tests.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// No body (`Content-Length: 0`).
    pub fn empty(status: Status) -> Reply {
        Reply::body(status, "text/plain; charset=utf-8", String::new())
    }

    /// A short plain-text error: `"<code> <reason>: <message>"`.
    pub fn error(status: Status, message: &str) -> Reply {
        let text = format!("{} {}: {}\n", status.0, status.1, message);
        Reply::body(status, "text/plain; charset=utf-8", text)
    }

    /// The answer to a domain error.
    pub fn refused(refusal: &impl Refusal) -> Reply {
        let mut reply = Reply::error(refusal.status(), &refusal.reason());
        reply.headers = refusal.headers();
        reply
    }

    /// A 500 that names what failed; the details go to the log only.
    pub fn server_failure(what: &str, detail: &dyn std::fmt::Display) -> Reply {
        let mut reply = Reply::error(
            INTERNAL_ERROR,
            &format!("cannot {what} (see the server error log)"),
        );
        reply.log = Some(format!("cannot {what}: {detail}"));
        reply
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// The same reply as the answer to HEAD.
    pub fn head_only(mut self, head_only: bool) -> Reply {
        self.head_only = head_only;
        self
    }
}

/// Appends a whole reply: head with `Content-Length`, then the body
/// unless it answers HEAD.
pub fn write_reply(out: &mut Vec<u8>, framing: &Framing, reply: &Reply) {
    let length = reply.body.len().to_string();
    let mut headers: Vec<(&str, &str)> = vec![
        ("Content-Type", reply.content_type),
        ("Content-Length", &length),
        ("Cache-Control", "no-store"),
    ];
    headers.extend(reply.headers.iter().map(|(k, v)| (*k, v.as_str())));
    write_head(out, framing, reply.status, &headers);
    if !reply.head_only {
        out.extend_from_slice(&reply.body);
    }
}

/// Appends the 101 that accepts a WebSocket handshake.
pub fn write_switching_protocols(out: &mut Vec<u8>, framing: &Framing, accept: &str) {
    let headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept),
    ];
    write_head(out, framing, SWITCHING_PROTOCOLS, &headers);
}

/// Headers of every event stream. `no-transform` keeps proxies and Apache
/// mod_deflate from compressing (and so buffering) the stream;
/// `X-Accel-Buffering: no` does the same for nginx.
pub const SSE_HEADERS: &[(&str, &str)] = &[
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache, no-transform"),
    ("X-Accel-Buffering", "no"),
];

/// Appends an event stream's head: [`SSE_HEADERS`], then `extra`.
pub fn write_stream_head(out: &mut Vec<u8>, framing: &Framing, extra: &[(&'static str, String)]) {
    let mut headers: Vec<(&str, &str)> = SSE_HEADERS.to_vec();
    headers.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    write_head(out, framing, OK, &headers);
}

/// Appends a complete head (ending with the blank line) to `out`.
pub fn write_head(out: &mut Vec<u8>, framing: &Framing, status: Status, headers: &[(&str, &str)]) {
    match framing {
        Framing::Nph { protocol, date } | Framing::Listener { protocol, date, .. } => {
            let version = protocol.status_line_version();
            line(out, &format!("{version} {} {}", status.0, status.1));
            header(out, "Date", date);
        }
        Framing::Cgi => line(out, &format!("Status: {} {}", status.0, status.1)),
    }
    if matches!(framing, Framing::Listener { .. }) {
        header(out, "Server", PRODUCT);
    }
    for (name, value) in headers {
        header(out, name, value);
    }
    if headers.iter().any(|(name, _)| *name == "Connection") {
        out.extend_from_slice(b"\r\n");
        return;
    }
    match framing {
        Framing::Nph { .. }
        | Framing::Listener {
            keep_alive: false, ..
        } => header(out, "Connection", "close"),
        Framing::Listener {
            keep_alive: true,
            protocol: Protocol::Http10,
            ..
        } => header(out, "Connection", "keep-alive"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

fn header(out: &mut Vec<u8>, name: &str, value: &str) {
    line(out, &format!("{name}: {value}"));
}

fn line(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Wed, 25 Nov 2026 08:00:00 GMT";

    fn nph(protocol: Protocol) -> Framing {
        Framing::Nph {
            protocol,
            date: DATE.to_owned(),
        }
    }

    #[test]
    fn golden_nph_sse_head() {
        let mut out = Vec::new();
        write_head(&mut out, &nph(Protocol::Http11), OK, SSE_HEADERS);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\n\
             Date: Wed, 25 Nov 2026 08:00:00 GMT\r\n\
             Content-Type: text/event-stream; charset=utf-8\r\n\
             Cache-Control: no-cache, no-transform\r\n\
             X-Accel-Buffering: no\r\n\
             Connection: close\r\n\
             \r\n"
        );
    }

    #[test]
    fn nph_http10_and_http2_status_lines() {
        let mut out = Vec::new();
        write_head(&mut out, &nph(Protocol::Http10), OK, &[]);
        assert!(out.starts_with(b"HTTP/1.0 200 OK\r\n"));
        out.clear();
        write_head(&mut out, &nph(Protocol::Http2OrLater), OK, &[]);
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn golden_cgi_sse_head() {
        let mut out = Vec::new();
        write_head(&mut out, &Framing::Cgi, OK, SSE_HEADERS);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Status: 200 OK\r\n\
             Content-Type: text/event-stream; charset=utf-8\r\n\
             Cache-Control: no-cache, no-transform\r\n\
             X-Accel-Buffering: no\r\n\
             \r\n"
        );
    }

    #[test]
    fn golden_405_and_head_variant() {
        let mut out = Vec::new();
        let reply = Reply::error(METHOD_NOT_ALLOWED, "use GET").header("Allow", "GET, HEAD");
        write_reply(&mut out, &Framing::Cgi, &reply);
        let body = "405 Method Not Allowed: use GET\n";
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            format!(
                "Status: 405 Method Not Allowed\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\n\
                 Cache-Control: no-store\r\n\
                 Allow: GET, HEAD\r\n\
                 \r\n{body}",
                body.len()
            )
        );
        let mut head_only = Vec::new();
        write_reply(&mut head_only, &Framing::Cgi, &reply.head_only(true));
        assert_eq!(head_only, out[..out.len() - body.len()]);
    }

    #[test]
    fn golden_101_in_both_forms() {
        let mut out = Vec::new();
        write_switching_protocols(&mut out, &Framing::Cgi, "abc=");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Status: 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: abc=\r\n\
             \r\n"
        );
        let mut out = Vec::new();
        write_switching_protocols(&mut out, &nph(Protocol::Http11), "abc=");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\nDate: "));
        assert!(!text.contains("close"), "{text}");
    }
}
