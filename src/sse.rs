//! Strict Server-Sent Events encoder (WHATWG HTML, "Server-sent events").
//!
//! Every function renders into a caller-owned `Vec<u8>` so that one event
//! becomes exactly one `write_all` on the wire: a client never sees half an
//! event from us unless the process is killed mid-write, and an SSE parser
//! drops an unterminated trailing event anyway.
//!
//! The body uses bare LF line ends (allowed by the spec and the cheapest to
//! parse); only the HTTP head needs CRLF.

use std::fmt;

/// Why a field value cannot be written: the SSE wire format has no escaping,
/// so a value containing one of these bytes would end or corrupt the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// The value contains a carriage return.
    Cr,
    /// The value contains a line feed.
    Lf,
    /// The value contains a NUL byte (browsers ignore an `id` with NUL).
    Nul,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            FieldError::Cr => "a carriage return (CR)",
            FieldError::Lf => "a line feed (LF)",
            FieldError::Nul => "a NUL byte",
        };
        write!(f, "contains {what}, which SSE cannot carry in this field")
    }
}

impl std::error::Error for FieldError {}

/// Checks that `value` can stand on one `event:` or `id:` line.
pub fn check_field(value: &str) -> Result<(), FieldError> {
    match value.bytes().find(|b| matches!(b, b'\r' | b'\n' | 0)) {
        Some(b'\r') => Err(FieldError::Cr),
        Some(b'\n') => Err(FieldError::Lf),
        Some(_) => Err(FieldError::Nul),
        None => Ok(()),
    }
}

/// One event as it goes on the wire. Borrowed, so rendering copies nothing
/// but into the output buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Event<'a> {
    /// `id:` field; `None` leaves the client's last event id unchanged.
    pub id: Option<&'a str>,
    /// `event:` field; `None` means the default type `message`.
    pub event: Option<&'a str>,
    /// The payload. Split on CRLF, CR and LF into one `data:` line each, so
    /// the client's `MessageEvent.data` equals this string exactly.
    pub data: &'a str,
}

/// Name of the event that announces a discontinuity in a channel's ids
/// (reserved: nobody may publish it).
pub const RESET_EVENT: &str = "reset";

/// Whether a record (one encoded event) is a `reset` event.
pub fn is_reset(record: &[u8]) -> bool {
    record
        .split(|b| *b == b'\n')
        .any(|line| line.strip_prefix(b"event: ") == Some(RESET_EVENT.as_bytes()))
}

/// Parses an event id as this program hands them out (and as
/// `Last-Event-ID` brings them back): 1 to 20 ASCII digits fitting in u64.
pub fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Appends `event` to `out`, ending with the blank line that dispatches it.
///
/// Refuses (and appends nothing) when `id` or `event` holds CR, LF or NUL.
pub fn encode(event: &Event<'_>, out: &mut Vec<u8>) -> Result<(), FieldError> {
    if let Some(id) = event.id {
        check_field(id)?;
    }
    if let Some(name) = event.event {
        check_field(name)?;
    }
    // `id` first: a spool record then starts with its id, which makes
    // resume scans cheap. Field order has no meaning to SSE clients.
    if let Some(id) = event.id {
        field(out, "id", id);
    }
    if let Some(name) = event.event {
        field(out, "event", name);
    }
    for line in split_lines(event.data) {
        field(out, "data", line);
    }
    out.push(b'\n');
    Ok(())
}

/// Appends a comment line. Comments keep the connection busy (heartbeats,
/// the opening line) without dispatching anything. Line breaks inside
/// `text` start new comment lines, so a comment can never become a field.
pub fn comment(text: &str, out: &mut Vec<u8>) {
    for line in split_lines(text) {
        out.push(b':');
        if !line.is_empty() {
            out.push(b' ');
            out.extend_from_slice(line.as_bytes());
        }
        out.push(b'\n');
    }
}

/// Appends `id: <id>` followed by a blank line: a record with no data,
/// which dispatches no event but sets the client's last event id (the
/// WHATWG parser sets it before it looks at the data). A fresh stream sends
/// it so that a client that has seen no event yet still resumes from here.
pub fn position(id: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("id: {id}\n\n").as_bytes());
}

/// Appends `retry: <ms>` followed by a blank line. The value is an integer,
/// so it is digits only by construction.
pub fn retry(ms: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("retry: {ms}\n\n").as_bytes());
}

/// Writes `name: value\n`. The space after the colon is always written, so a
/// value that itself starts with a space survives (the parser strips one).
fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// Splits on CRLF, lone CR and lone LF, as the SSE parser does. An empty
/// string is one empty line (one `data:` line yields the empty string).
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(e: Event<'_>) -> String {
        let mut out = Vec::new();
        encode(&e, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn golden_full_event() {
        let e = Event {
            id: Some("42"),
            event: Some("tick"),
            data: "{\"seq\":1}",
        };
        assert_eq!(render(e), "id: 42\nevent: tick\ndata: {\"seq\":1}\n\n");
    }

    #[test]
    fn golden_data_only() {
        let e = Event {
            data: "hello",
            ..Event::default()
        };
        assert_eq!(render(e), "data: hello\n\n");
    }

    #[test]
    fn data_split_on_every_line_break_kind() {
        let e = Event {
            data: "a\r\nb\rc\nd",
            ..Event::default()
        };
        assert_eq!(render(e), "data: a\ndata: b\ndata: c\ndata: d\n\n");
    }

    #[test]
    fn trailing_and_empty_lines_are_kept() {
        let e = Event {
            data: "\n",
            ..Event::default()
        };
        assert_eq!(render(e), "data: \ndata: \n\n");
        let e = Event {
            data: "",
            ..Event::default()
        };
        assert_eq!(render(e), "data: \n\n");
    }

    #[test]
    fn leading_space_in_data_survives() {
        let e = Event {
            data: " x",
            ..Event::default()
        };
        assert_eq!(render(e), "data:  x\n\n");
    }

    #[test]
    fn bad_id_and_event_are_refused_and_nothing_written() {
        for (bad, err) in [
            ("a\rb", FieldError::Cr),
            ("a\nb", FieldError::Lf),
            ("a\0b", FieldError::Nul),
        ] {
            let mut out = b"keep".to_vec();
            let e = Event {
                id: Some(bad),
                data: "x",
                ..Event::default()
            };
            assert_eq!(encode(&e, &mut out), Err(err));
            let e = Event {
                event: Some(bad),
                data: "x",
                ..Event::default()
            };
            assert_eq!(encode(&e, &mut out), Err(err));
            assert_eq!(out, b"keep");
        }
    }

    #[test]
    fn comment_cannot_become_a_field() {
        let mut out = Vec::new();
        comment("hi\ndata: evil", &mut out);
        comment("", &mut out);
        assert_eq!(out, b": hi\n: data: evil\n:\n");
    }

    #[test]
    fn retry_golden() {
        let mut out = Vec::new();
        retry(3000, &mut out);
        assert_eq!(out, b"retry: 3000\n\n");
    }
}
