//! WebSocket (RFC 6455): the handshake, the session, and events as the
//! frames every client of a channel gets.
//!
//! Framing, masking, fragmentation and control frames are tungstenite's;
//! this program decides what to send and when.

pub mod handshake;
pub mod inbound;
pub mod session;

use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;

/// Converts one spool record (an SSE event) to the JSON text
/// `{"id": "…" | null, "event": "…", "data": "…"}`.
pub fn record_to_json(record: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(record).ok()?;
    let (mut id, mut event, mut data) = (None, "message", Vec::new());
    for line in text.lines() {
        let (name, value) = line.split_once(": ").unwrap_or((line, ""));
        match name {
            "id" => id = Some(value),
            "event" => event = value,
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() {
        return None;
    }
    Some(serde_json::json!({ "id": id, "event": event, "data": data.join("\n") }).to_string())
}

/// One spool record as a server text frame, encoded by tungstenite.
pub fn event_frame(record: &[u8]) -> Option<Vec<u8>> {
    let json = record_to_json(record)?;
    Some(encode(Frame::message(json, OpCode::Data(Data::Text), true)))
}

pub(crate) fn encode(frame: Frame) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len());
    // Formatting into a Vec cannot fail.
    let _ = frame.format(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_json_frames() {
        let f = event_frame(b"id: 7\ndata: x\n\n").unwrap();
        assert_eq!(f[0], 0x81, "final text frame");
        assert_eq!(&f[2..], br#"{"data":"x","event":"message","id":"7"}"#);
        let j = record_to_json(b"id: 7\nevent: chat\ndata: a\ndata: b\n\n").unwrap();
        assert_eq!(j, r#"{"data":"a\nb","event":"chat","id":"7"}"#);
        let j = record_to_json(b"data: x\n\n").unwrap();
        assert_eq!(j, r#"{"data":"x","event":"message","id":null}"#);
        assert_eq!(record_to_json(b": comment\n\n"), None);
    }
}
