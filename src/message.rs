//! What a publish says: a POST body or the command line's data, validated
//! into a [`Message`].
//!
//! Pure functions over bytes; the caller does authorisation first and the
//! spool append last, so a rejected publish appends nothing.

use std::io::Read;

use crate::http::{self, Refusal, Status};
use crate::request::form_pairs;
use crate::sse;

/// A validated event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Event name; `None` is the default type `message`.
    pub event: Option<String>,
    /// Payload text.
    pub data: String,
    /// The GRIP connection that sent it (WebSocket-over-HTTP), so that the
    /// proxies do not echo it back to it. Not stored in the spool.
    pub sender: Option<String>,
}

/// Why a body was refused, with the HTTP status it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// 400: malformed, not UTF-8, missing fields, bad event name.
    Malformed(String),
    /// 413: larger than `max_body`.
    TooLarge,
    /// 415: a content type this endpoint does not read.
    Unsupported,
}

impl Rejected {
    fn malformed(reason: impl Into<String>) -> Rejected {
        Rejected::Malformed(reason.into())
    }
}

impl Refusal for Rejected {
    fn status(&self) -> Status {
        match self {
            Rejected::Malformed(_) => http::BAD_REQUEST,
            Rejected::TooLarge => http::TOO_LARGE,
            Rejected::Unsupported => http::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    fn reason(&self) -> String {
        match self {
            Rejected::Malformed(r) => r.clone(),
            Rejected::TooLarge => "body too large (see NPH_EVENTS_MAX_BODY)".to_owned(),
            Rejected::Unsupported => "Content-Type must be application/json, \
                 application/x-www-form-urlencoded or text/plain"
                .to_owned(),
        }
    }
}

/// Longest event name.
pub const MAX_EVENT_NAME: usize = 64;

/// Validates an event name; empty means none. `reset` is reserved for the
/// discontinuity notice readers send.
pub fn event_name(name: Option<&str>) -> Result<Option<String>, Rejected> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.len() > MAX_EVENT_NAME {
        return Err(Rejected::malformed(format!(
            "event name longer than {MAX_EVENT_NAME} bytes"
        )));
    }
    sse::check_field(name).map_err(|e| Rejected::malformed(format!("event name {e}")))?;
    if name == sse::RESET_EVENT {
        return Err(Rejected::malformed("event name \"reset\" is reserved"));
    }
    Ok(Some(name.to_owned()))
}

/// Reads a request body of at most `max` bytes. A declared length over the
/// limit is refused before anything is read.
pub fn read_body(
    input: &mut dyn Read,
    content_length: Option<&str>,
    max: u64,
) -> Result<Vec<u8>, Rejected> {
    let declared = match content_length.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Some(
            crate::sse::parse_id(s)
                .ok_or_else(|| Rejected::malformed("malformed CONTENT_LENGTH"))?,
        ),
        None => None,
    };
    if declared.is_some_and(|n| n > max) {
        return Err(Rejected::TooLarge);
    }
    let limit = declared.unwrap_or(max + 1);
    let mut body = Vec::new();
    input
        .take(limit)
        .read_to_end(&mut body)
        .map_err(|e| Rejected::malformed(format!("cannot read the body: {e}")))?;
    if body.len() as u64 > max {
        return Err(Rejected::TooLarge);
    }
    if declared.is_some_and(|n| body.len() as u64 != n) {
        return Err(Rejected::malformed("body shorter than its Content-Length"));
    }
    Ok(body)
}

/// The media types a POST body may have.
const MEDIA: [&str; 3] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
];

fn media_type(content_type: Option<&str>) -> Result<String, Rejected> {
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .ok_or(Rejected::Unsupported)?;
    if MEDIA.contains(&media.as_str()) {
        Ok(media)
    } else {
        Err(Rejected::Unsupported)
    }
}

/// Checks the content type before the body is read (415 comes first).
pub fn check_content_type(content_type: Option<&str>) -> Result<(), Rejected> {
    media_type(content_type).map(|_| ())
}

/// Reads and discards what is left of a request body (at most
/// `max_body` + 1 MiB) before an answer is written.
///
/// Under Apache mod_cgid stdin and stdout are one Unix socket: a CGI that
/// exits with request bytes unread makes the kernel reset the connection,
/// and Apache loses the answer (the client gets an empty reply).
pub fn drain(input: &mut dyn Read, content_length: Option<&str>, max_body: u64) {
    let cap = max_body.saturating_add(1 << 20);
    let declared = content_length.and_then(|s| crate::sse::parse_id(s.trim()));
    let limit = declared.map_or(cap, |n| n.min(cap));
    let _ = std::io::copy(&mut input.take(limit), &mut std::io::sink());
}

/// Parses a POST body by its content type.
///
/// * `application/json`: `{"event": "name", "data": ...}`; a `data` that
///   is not a string is published as its compact JSON text.
/// * `application/x-www-form-urlencoded`: fields `event` and `data`.
/// * `text/plain`: the whole body is the data.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Message, Rejected> {
    let media = media_type(content_type)?;
    let text = std::str::from_utf8(body).map_err(|_| Rejected::malformed("body is not UTF-8"))?;
    match media.as_str() {
        "application/json" => json_message(text),
        "application/x-www-form-urlencoded" => form_message(text),
        "text/plain" => Ok(Message {
            event: None,
            data: text.to_owned(),
            sender: None,
        }),
        _ => Err(Rejected::Unsupported),
    }
}

fn json_message(text: &str) -> Result<Message, Rejected> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Rejected::malformed(format!("invalid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| Rejected::malformed("JSON body must be an object"))?;
    let event = match obj.get("event") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Rejected::malformed("\"event\" must be a string")),
    };
    let data = match obj.get("data") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => return Err(Rejected::malformed("\"data\" is required")),
    };
    Ok(Message {
        event: event_name(event)?,
        data,
        sender: None,
    })
}

fn form_message(text: &str) -> Result<Message, Rejected> {
    let pairs = form_pairs(text)
        .map_err(|e| Rejected::malformed(e.as_str().replace("query string", "form body")))?;
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let data =
        field("data").ok_or_else(|| Rejected::malformed("form field \"data\" is required"))?;
    Ok(Message {
        event: event_name(field("event"))?,
        data: data.to_owned(),
        sender: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(event: Option<&str>, data: &str) -> Message {
        Message {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            sender: None,
        }
    }

    #[test]
    fn json_bodies() {
        let ct = Some("application/json; charset=utf-8");
        assert_eq!(
            parse_body(ct, br#"{"event":"news","data":"hi"}"#),
            Ok(msg(Some("news"), "hi"))
        );
        assert_eq!(
            parse_body(ct, br#"{"data":{"a":[1,2]}}"#),
            Ok(msg(None, r#"{"a":[1,2]}"#))
        );
        assert_eq!(
            parse_body(ct, br#"{"event":null,"data":"x\ny"}"#),
            Ok(msg(None, "x\ny"))
        );
        for bad in [
            &b"{"[..],
            b"[1]",
            br#"{"event":"e"}"#,
            br#"{"event":3,"data":"x"}"#,
            br#"{"event":"a\nb","data":"x"}"#,
            br#"{"event":"reset","data":"x"}"#,
            b"\xff",
        ] {
            assert!(
                matches!(parse_body(ct, bad), Err(Rejected::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn form_and_text_bodies() {
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(
            parse_body(form, b"event=e&data=a+b%0Ac"),
            Ok(msg(Some("e"), "a b\nc"))
        );
        assert!(matches!(
            parse_body(form, b"event=e"),
            Err(Rejected::Malformed(_))
        ));
        assert!(matches!(
            parse_body(form, b"data=%zz"),
            Err(Rejected::Malformed(_))
        ));
        assert_eq!(
            parse_body(Some("text/plain"), b"raw\r\ntext"),
            Ok(msg(None, "raw\r\ntext"))
        );
        assert_eq!(
            parse_body(Some("image/png"), b"x"),
            Err(Rejected::Unsupported)
        );
        assert_eq!(parse_body(None, b"x"), Err(Rejected::Unsupported));
    }

    #[test]
    fn body_limits() {
        let read = |body: &[u8], len: Option<&str>, max| read_body(&mut &body[..], len, max);
        assert_eq!(read(b"abc", Some("3"), 3), Ok(b"abc".to_vec()));
        assert_eq!(read(b"abc", None, 3), Ok(b"abc".to_vec()));
        assert_eq!(read(b"abcd", None, 3), Err(Rejected::TooLarge));
        assert_eq!(read(b"", Some("4"), 3), Err(Rejected::TooLarge));
        assert!(matches!(
            read(b"ab", Some("3"), 3),
            Err(Rejected::Malformed(_))
        ));
        assert!(matches!(
            read(b"ab", Some("x"), 3),
            Err(Rejected::Malformed(_))
        ));
        assert_eq!(read(b"abcdef", Some("2"), 10), Ok(b"ab".to_vec()));
    }
}
