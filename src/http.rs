//! Response heads for the two CGI output modes.
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

use crate::cgi::Protocol;

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

/// Headers of every event stream. `no-transform` keeps proxies and Apache
/// mod_deflate from compressing (and so buffering) the stream;
/// `X-Accel-Buffering: no` does the same for nginx.
pub const SSE_HEADERS: &[(&str, &str)] = &[
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache, no-transform"),
    ("X-Accel-Buffering", "no"),
];

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
        header(
            out,
            "Server",
            concat!("nph-events/", env!("CARGO_PKG_VERSION")),
        );
    }
    for (name, value) in headers {
        header(out, name, value);
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

/// Appends a short plain-text error response. The body is omitted for HEAD
/// (`with_body == false`) but `Content-Length` still tells its size.
pub fn write_error(
    out: &mut Vec<u8>,
    framing: &Framing,
    status: Status,
    extra: &[(&str, &str)],
    message: &str,
    with_body: bool,
) {
    let body = format!("{} {}: {}\n", status.0, status.1, message);
    let length = body.len().to_string();
    let mut headers = vec![
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", length.as_str()),
        ("Cache-Control", "no-store"),
    ];
    headers.extend_from_slice(extra);
    write_head(out, framing, status, &headers);
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
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
        let allow = [("Allow", "GET, HEAD")];
        write_error(
            &mut out,
            &Framing::Cgi,
            METHOD_NOT_ALLOWED,
            &allow,
            "use GET",
            true,
        );
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
        write_error(
            &mut head_only,
            &Framing::Cgi,
            METHOD_NOT_ALLOWED,
            &allow,
            "use GET",
            false,
        );
        assert_eq!(head_only, out[..out.len() - body.len()]);
    }
}
