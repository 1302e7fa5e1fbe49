//! Follows the client's byte stream frame by frame as it is read, ahead of
//! tungstenite, for two things tungstenite cannot tell its caller:
//!
//! * **Fail fast on invalid UTF-8.** tungstenite checks a text frame once
//!   the whole frame is in; RFC 6455 §8.1 wants the connection failed as
//!   soon as invalid bytes arrive, even inside a frame still arriving in
//!   pieces. The tracker unmasks text payload as it passes and checks it.
//! * **Idle means empty.** When the bytes read so far end on a frame
//!   boundary outside a fragmented message, tungstenite holds no partial
//!   input, so an idle connection can drop its buffers (see
//!   [`super::session`]).
//!
//! Headers are parsed by tungstenite's own [`FrameHeader::parse`]; the
//! tracker only counts payload bytes. Whatever it cannot parse, tungstenite
//! rejects (protocol error), so the tracker just stops following.

use std::io::Cursor;

use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Longest frame header (2 + 8 length + 4 mask).
const MAX_HEADER: usize = 14;

/// The tracker's view of the client's stream.
#[derive(Debug, Default)]
pub struct Inbound {
    /// Header bytes collected so far (a header may arrive in pieces).
    head: [u8; MAX_HEADER],
    head_len: usize,
    /// Payload bytes of the current frame not yet seen; `None` between
    /// frames.
    left: Option<u64>,
    /// The current frame's mask and how far into its payload we are.
    mask: Option<[u8; 4]>,
    offset: u64,
    /// The current frame carries text.
    text_frame: bool,
    /// The current frame ends its message.
    final_frame: bool,
    /// A text or binary message started and is not finished.
    in_message: bool,
    in_text: bool,
    /// The end of a UTF-8 sequence cut by a frame or read boundary.
    partial: Vec<u8>,
    /// Invalid UTF-8 was seen in a text message.
    invalid: bool,
    /// Something unparseable arrived: tungstenite fails the connection.
    lost: bool,
}

impl Inbound {
    /// Feeds bytes as they were read from the client.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.lost && !self.invalid {
            match self.left {
                None => bytes = self.header(bytes),
                Some(left) => {
                    let n = left.min(bytes.len() as u64) as usize;
                    self.payload(&bytes[..n]);
                    bytes = &bytes[n..];
                    self.advance(n as u64);
                }
            }
        }
    }

    /// Invalid UTF-8 arrived in a text message: fail with 1007 now.
    pub fn invalid_utf8(&self) -> bool {
        self.invalid
    }

    /// Everything read so far formed whole frames and no message is half
    /// received: the reader holds no partial input.
    pub fn at_rest(&self) -> bool {
        !self.lost && self.left.is_none() && self.head_len == 0 && !self.in_message
    }

    /// Collects header bytes; starts the frame once the header is whole.
    fn header<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let take = (MAX_HEADER - self.head_len).min(bytes.len());
        self.head[self.head_len..self.head_len + take].copy_from_slice(&bytes[..take]);
        let have = self.head_len + take;
        let mut cursor = Cursor::new(&self.head[..have]);
        match FrameHeader::parse(&mut cursor) {
            Ok(Some((header, len))) => {
                let used = cursor.position() as usize;
                let consumed_now = used - self.head_len;
                self.head_len = 0;
                self.start(&header, len);
                &bytes[consumed_now..]
            }
            Ok(None) => {
                self.head_len = have;
                &bytes[take..]
            }
            Err(_) => {
                self.lost = true;
                &[]
            }
        }
    }

    fn start(&mut self, header: &FrameHeader, len: u64) {
        self.mask = header.mask;
        self.offset = 0;
        self.final_frame = header.is_final;
        self.text_frame = false;
        match header.opcode {
            OpCode::Data(Data::Text) => {
                self.in_message = !header.is_final;
                self.in_text = true;
                self.text_frame = true;
                self.partial.clear();
            }
            OpCode::Data(Data::Binary) => {
                self.in_message = !header.is_final;
                self.in_text = false;
            }
            OpCode::Data(Data::Continue) => {
                self.text_frame = self.in_text && self.in_message;
                if header.is_final {
                    self.in_message = false;
                }
            }
            OpCode::Control(_) => self.final_frame = false,
            OpCode::Data(Data::Reserved(_)) => self.lost = true,
        }
        self.left = Some(len);
        self.advance(0);
    }

    /// Moves past `n` payload bytes; a finished frame ends its message's
    /// UTF-8 check if it was the last frame.
    fn advance(&mut self, n: u64) {
        let Some(left) = self.left else { return };
        let left = left - n;
        self.offset += n;
        if left > 0 {
            self.left = Some(left);
            return;
        }
        self.left = None;
        if self.text_frame && self.final_frame && !self.partial.is_empty() {
            self.invalid = true; // the message ends inside a character
        }
    }

    /// Checks text payload bytes (unmasked here, on a copy).
    fn payload(&mut self, masked: &[u8]) {
        if !self.text_frame || masked.is_empty() {
            return;
        }
        let mut text = std::mem::take(&mut self.partial);
        let at = text.len();
        text.extend_from_slice(masked);
        if let Some(key) = self.mask {
            for (i, b) in text[at..].iter_mut().enumerate() {
                *b ^= key[((self.offset + i as u64) % 4) as usize];
            }
        }
        match std::str::from_utf8(&text) {
            Ok(_) => text.clear(),
            Err(e) if e.error_len().is_none() => {
                text.drain(..e.valid_up_to());
            }
            Err(_) => self.invalid = true,
        }
        self.partial = text;
        if self.partial.capacity() > 64 {
            self.partial.shrink_to(8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    /// Feeds `bytes` in pieces of `size`; returns the state after each.
    fn feed_in(bytes: &[u8], size: usize) -> (Inbound, Vec<bool>) {
        let mut t = Inbound::default();
        let mut seen = Vec::new();
        for piece in bytes.chunks(size) {
            t.feed(piece);
            seen.push(t.invalid_utf8());
        }
        (t, seen)
    }

    #[test]
    fn valid_text_in_any_pieces_stays_valid_and_ends_at_rest() {
        let text = "κόσμε — ok ✓ 𝄞".repeat(20);
        let mut bytes = frame(true, 1, text.as_bytes());
        bytes.extend(frame(true, 9, b"ping"));
        bytes.extend(frame(true, 2, &[0xff, 0xfe]));
        bytes.extend(frame(true, 1, &vec![b'a'; 70_000]));
        for size in [1, 2, 3, 5, 7, 64, 4096, bytes.len()] {
            let (t, seen) = feed_in(&bytes, size);
            assert!(!seen.iter().any(|&b| b), "piece size {size}");
            assert!(t.at_rest(), "piece size {size}");
        }
    }

    #[test]
    fn invalid_utf8_inside_a_chopped_frame_is_seen_before_the_frame_ends() {
        // Autobahn 6.4.3: valid start, then an out-of-range code point,
        // then more; the frame is cut into three chops.
        let mut payload = "κόσμε".as_bytes().to_vec();
        payload.extend_from_slice(&[0xf4, 0x90, 0x80, 0x80]);
        payload.extend_from_slice(b"edited");
        let bytes = frame(true, 1, &payload);
        let first = 2 + 4 + "κόσμε".len();
        let mut t = Inbound::default();
        t.feed(&bytes[..first]);
        assert!(!t.invalid_utf8());
        t.feed(&bytes[first..first + 4]);
        assert!(t.invalid_utf8(), "fails as soon as the bad bytes arrive");
    }

    #[test]
    fn utf8_is_checked_across_fragments_and_control_frames() {
        let euro = "€".as_bytes(); // three bytes, split across frames
        let mut bytes = frame(false, 1, &euro[..1]);
        bytes.extend(frame(true, 9, b"")); // a ping between fragments
        bytes.extend(frame(false, 0, &euro[1..2]));
        bytes.extend(frame(true, 0, &euro[2..]));
        let (t, seen) = feed_in(&bytes, 1);
        assert!(!seen.iter().any(|&b| b));
        assert!(t.at_rest());

        let mut cut = frame(false, 1, &euro[..2]);
        assert!(!feed_in(&cut, 1).0.at_rest(), "a message is under way");
        cut.extend(frame(true, 0, b"x")); // not a continuation byte
        assert!(feed_in(&cut, 3).0.invalid_utf8());

        let truncated = frame(true, 1, &euro[..2]);
        assert!(feed_in(&truncated, 100).0.invalid_utf8());
    }

    #[test]
    fn binary_and_control_payloads_are_not_checked() {
        let mut bytes = frame(false, 2, &[0xc0]);
        bytes.extend(frame(true, 0, &[0xff]));
        bytes.extend(frame(true, 10, &[0xfe]));
        let (t, seen) = feed_in(&bytes, 2);
        assert!(!seen.iter().any(|&b| b) && t.at_rest());
    }

    #[test]
    fn a_partial_header_is_not_at_rest_and_garbage_stops_tracking() {
        let bytes = frame(true, 1, &[b'a'; 300]);
        let mut t = Inbound::default();
        t.feed(&bytes[..3]);
        assert!(!t.at_rest());
        t.feed(&bytes[3..]);
        assert!(t.at_rest());
        let mut t = Inbound::default();
        t.feed(&[0x83, 0x80, 1, 2, 3, 4]); // reserved opcode
        assert!(!t.at_rest() && !t.invalid_utf8());
    }
}
