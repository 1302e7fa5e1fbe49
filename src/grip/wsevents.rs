//! WebSocket-over-HTTP (`application/websocket-events`): a GRIP proxy holds
//! the client's WebSocket and turns what happens on it into short HTTP
//! POSTs to the origin; the answer carries events back. An event is a type,
//! then, for the types with content, its length in hexadecimal and the
//! content:
//!
//! ```text
//! OPEN\r\n
//! TEXT 5\r\nhello\r\n
//! CLOSE 2\r\n<code, 2 bytes>\r\n
//! ```

use std::fmt;

/// One event on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// The connection opened (the first event).
    Open,
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// A close frame, with its code if it had one.
    Close(Option<u16>),
    /// The connection is gone without a close.
    Disconnect,
}

/// Why a body is not a list of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed websocket-events body: {}", self.0)
    }
}

/// Most events in one request: a proxy batches a few; more is not a
/// proxy.
const MAX_EVENTS: usize = 256;

/// Parses a request body.
pub fn parse(mut body: &[u8]) -> Result<Vec<WsEvent>, Malformed> {
    let bad = |why: &str| Malformed(why.to_owned());
    let mut events = Vec::new();
    while !body.is_empty() {
        if events.len() == MAX_EVENTS {
            return Err(bad("too many events"));
        }
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("an event line without CRLF"))?;
        let line = std::str::from_utf8(&body[..eol]).map_err(|_| bad("not ASCII"))?;
        body = &body[eol + 2..];
        let (kind, len) = match line.split_once(' ') {
            Some((k, l)) => {
                let n = usize::from_str_radix(l, 16)
                    .ok()
                    .filter(|_| {
                        !l.is_empty() && l.len() <= 8 && l.bytes().all(|b| b.is_ascii_hexdigit())
                    })
                    .ok_or_else(|| bad("a length that is not hexadecimal"))?;
                (k, Some(n))
            }
            None => (line, None),
        };
        let content = match len {
            Some(n) => {
                if body.len() < n + 2 || &body[n..n + 2] != b"\r\n" {
                    return Err(bad("content shorter than its length, or no CRLF after it"));
                }
                let c = body[..n].to_vec();
                body = &body[n + 2..];
                c
            }
            None => Vec::new(),
        };
        events.push(match kind {
            "OPEN" => WsEvent::Open,
            "TEXT" => WsEvent::Text(
                String::from_utf8(content).map_err(|_| bad("a TEXT event that is not UTF-8"))?,
            ),
            "BINARY" => WsEvent::Binary(content),
            "PING" => WsEvent::Ping(content),
            "PONG" => WsEvent::Pong(content),
            "CLOSE" => WsEvent::Close(match content.as_slice() {
                [] => None,
                [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
                [_] => return Err(bad("a CLOSE code of one byte")),
            }),
            "DISCONNECT" => WsEvent::Disconnect,
            other => return Err(Malformed(format!("unknown event type {other:?}"))),
        });
    }
    Ok(events)
}

/// Appends `event` in the wire form.
pub fn encode(event: &WsEvent, out: &mut Vec<u8>) {
    let with = |out: &mut Vec<u8>, kind: &str, content: &[u8]| {
        out.extend_from_slice(format!("{kind} {:x}\r\n", content.len()).as_bytes());
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    };
    match event {
        WsEvent::Open => out.extend_from_slice(b"OPEN\r\n"),
        WsEvent::Text(t) => with(out, "TEXT", t.as_bytes()),
        WsEvent::Binary(b) => with(out, "BINARY", b),
        WsEvent::Ping(b) => with(out, "PING", b),
        WsEvent::Pong(b) => with(out, "PONG", b),
        WsEvent::Close(None) => out.extend_from_slice(b"CLOSE\r\n"),
        WsEvent::Close(Some(code)) => with(out, "CLOSE", &code.to_be_bytes()),
        WsEvent::Disconnect => out.extend_from_slice(b"DISCONNECT\r\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let all = vec![
            WsEvent::Open,
            WsEvent::Text("héllo\r\nworld".into()),
            WsEvent::Binary(vec![0, 255, 13, 10]),
            WsEvent::Ping(Vec::new()),
            WsEvent::Pong(b"x".to_vec()),
            WsEvent::Close(Some(1000)),
            WsEvent::Close(None),
            WsEvent::Disconnect,
        ];
        let mut wire = Vec::new();
        for e in &all {
            encode(e, &mut wire);
        }
        assert!(wire.starts_with(b"OPEN\r\nTEXT d\r\nh\xc3\xa9llo\r\nworld\r\n"));
        assert_eq!(parse(&wire).unwrap(), all);
        assert_eq!(parse(b"").unwrap(), vec![]);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for bad in [
            &b"OPEN"[..],
            b"TEXT 5\r\nhi\r\n",
            b"TEXT zz\r\nhi\r\n",
            b"TEXT 2\r\nhiXX",
            b"TEXT -1\r\n\r\n",
            b"TEXT ffffffffff\r\n",
            b"TEXT 2\r\n\xff\xfe\r\n",
            b"CLOSE 1\r\nx\r\n",
            b"SHOUT\r\n",
            b"TEXT \r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let many = b"PING 0\r\n\r\n".repeat(MAX_EVENTS + 1);
        assert!(parse(&many).is_err());
    }
}
