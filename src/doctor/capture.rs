//! What arrived on one response and when: the head, then the body piece
//! by piece with arrival times. The decoder is fed bytes as they come off
//! the wire (or out of curl) so that every body byte keeps the time its
//! piece arrived; that time is what the doctor judges.

use std::time::Duration;

use super::head::Head;

/// One response as observed.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// The final head (informational `1xx` heads skipped unless asked for).
    pub head: Option<Head>,
    /// When the head was complete, since the request was sent.
    pub head_at: Option<Duration>,
    /// Body pieces (transfer coding removed) with their arrival times.
    pub body: Vec<(Duration, Vec<u8>)>,
    /// When the server ended the response (connection closed, last chunk,
    /// or the declared length reached); `None` if it was still open.
    pub ended: Option<Duration>,
    /// How long the response was watched.
    pub watched: Duration,
    /// Why the request failed, if it did (connect error, curl's message).
    pub error: Option<String>,
}

impl Capture {
    /// The whole body so far.
    pub fn body_bytes(&self) -> Vec<u8> {
        self.body
            .iter()
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }

    /// When the first body byte arrived.
    pub fn first_body_at(&self) -> Option<Duration> {
        self.body
            .iter()
            .find(|(_, b)| !b.is_empty())
            .map(|(t, _)| *t)
    }
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Until the connection closes (or curl already decoded it).
    Close,
    Length(u64),
    Chunked,
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    /// Reading a size line.
    Size(Vec<u8>),
    /// This many data bytes to go.
    Data(u64),
    /// Skipping the CRLF after the data (bytes left).
    DataEnd(u8),
    /// After the last chunk: trailers until a blank line.
    Trailer(Vec<u8>),
    Done,
}

/// Incremental decoder of one response into a [`Capture`].
pub struct Decoder {
    /// curl hands over bodies already decoded: no de-chunking then.
    decoded: bool,
    /// Stop at an informational head (the WebSocket check wants the 101).
    keep_informational: bool,
    head_buf: Vec<u8>,
    framing: Option<Framing>,
    chunk: Chunk,
    received: u64,
    /// Body bytes kept so far (bounded by [`MAX_BODY`]).
    kept: usize,
    pub capture: Capture,
}

/// A response is read up to this much; a stream never needs more to be
/// judged, and a server that floods cannot exhaust memory.
pub const MAX_BODY: usize = 32 << 20;
/// A head longer than this is not an HTTP head.
const MAX_HEAD: usize = 64 << 10;

impl Decoder {
    pub fn new(decoded: bool, keep_informational: bool) -> Decoder {
        Decoder {
            decoded,
            keep_informational,
            head_buf: Vec::new(),
            framing: None,
            chunk: Chunk::Size(Vec::new()),
            received: 0,
            kept: 0,
            capture: Capture::default(),
        }
    }

    /// Whether the response is complete by its own framing.
    pub fn done(&self) -> bool {
        self.capture.ended.is_some() || self.kept >= MAX_BODY
    }

    /// Feeds bytes that arrived at `at`.
    pub fn feed(&mut self, at: Duration, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.done() {
            if self.framing.is_none() {
                bytes = self.feed_head(at, bytes);
                continue;
            }
            bytes = self.feed_body(at, bytes);
        }
    }

    /// The connection (or curl's output) ended at `at`.
    pub fn eof(&mut self, at: Duration) {
        if self.capture.ended.is_none() {
            self.capture.ended = Some(at);
        }
    }

    fn feed_head<'a>(&mut self, at: Duration, bytes: &'a [u8]) -> &'a [u8] {
        // Heads are small: look for the blank line byte by byte.
        for (i, b) in bytes.iter().enumerate() {
            self.head_buf.push(*b);
            if self.head_buf.len() > MAX_HEAD {
                self.fail(at, "the response head is longer than 64 KiB");
                return &[];
            }
            if !(self.head_buf.ends_with(b"\n\n") || self.head_buf.ends_with(b"\r\n\r\n")) {
                continue;
            }
            let head = Head::parse(&self.head_buf);
            self.head_buf.clear();
            let rest = &bytes[i + 1..];
            let Some(head) = head else {
                self.capture.error = Some("the answer is not HTTP (no status line)".into());
                self.capture.ended = Some(at);
                return &[];
            };
            if (100..200).contains(&head.status) && !self.keep_informational {
                continue;
            }
            self.framing = Some(self.framing_of(&head));
            self.capture.head = Some(head);
            self.capture.head_at = Some(at);
            if self.framing == Some(Framing::Length(0)) || self.keep_informational {
                self.capture.ended = Some(at);
            }
            return rest;
        }
        &[]
    }

    fn framing_of(&self, head: &Head) -> Framing {
        if self.decoded {
            return Framing::Close;
        }
        if head.has_token("transfer-encoding", "chunked") {
            return Framing::Chunked;
        }
        match head.get("content-length").and_then(|v| v.parse().ok()) {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    }

    fn push_body(&mut self, at: Duration, data: &[u8]) {
        let data = &data[..data.len().min(MAX_BODY.saturating_sub(self.kept))];
        if data.is_empty() {
            return;
        }
        self.kept += data.len();
        match self.capture.body.last_mut() {
            Some((t, piece)) if *t == at => piece.extend_from_slice(data),
            _ => self.capture.body.push((at, data.to_vec())),
        }
    }

    fn feed_body<'a>(&mut self, at: Duration, bytes: &'a [u8]) -> &'a [u8] {
        match self.framing {
            Some(Framing::Length(n)) => {
                let take = (n - self.received).min(bytes.len() as u64) as usize;
                self.push_body(at, &bytes[..take]);
                self.received += take as u64;
                if self.received >= n {
                    self.capture.ended = Some(at);
                }
                &bytes[take..]
            }
            Some(Framing::Chunked) => self.feed_chunked(at, bytes),
            _ => {
                self.push_body(at, bytes);
                &[]
            }
        }
    }

    fn feed_chunked<'a>(&mut self, at: Duration, bytes: &'a [u8]) -> &'a [u8] {
        let chunk = std::mem::replace(&mut self.chunk, Chunk::Done);
        let (next, used) = match chunk {
            Chunk::Size(mut line) => {
                let b = bytes[0];
                if b != b'\n' {
                    line.push(b);
                    if line.len() > 1024 {
                        self.fail(at, "a chunk size line is too long");
                        return &[];
                    }
                    (Chunk::Size(line), 1)
                } else {
                    let text = String::from_utf8_lossy(&line);
                    let hex = text.trim().split(';').next().unwrap_or("").trim();
                    match u64::from_str_radix(hex, 16) {
                        Ok(0) => (Chunk::Trailer(Vec::new()), 1),
                        Ok(n) => (Chunk::Data(n), 1),
                        Err(_) => {
                            self.fail(at, "a chunk size is not hexadecimal");
                            return &[];
                        }
                    }
                }
            }
            Chunk::Data(n) => {
                let take = n.min(bytes.len() as u64) as usize;
                self.push_body(at, &bytes[..take]);
                let left = n - take as u64;
                let next = if left == 0 {
                    Chunk::DataEnd(2)
                } else {
                    Chunk::Data(left)
                };
                (next, take)
            }
            Chunk::DataEnd(left) => {
                // CRLF (or a bare LF) after the data.
                let next = match (bytes[0], left) {
                    (b'\n', _) | (_, 1) => Chunk::Size(Vec::new()),
                    _ => Chunk::DataEnd(left - 1),
                };
                (next, 1)
            }
            Chunk::Trailer(mut line) => {
                let b = bytes[0];
                if b == b'\n' {
                    if line.iter().all(|c| *c == b'\r') {
                        self.capture.ended = Some(at);
                        (Chunk::Done, 1)
                    } else {
                        (Chunk::Trailer(Vec::new()), 1)
                    }
                } else {
                    line.push(b);
                    (Chunk::Trailer(line), 1)
                }
            }
            Chunk::Done => (Chunk::Done, bytes.len()),
        };
        self.chunk = next;
        &bytes[used..]
    }

    fn fail(&mut self, at: Duration, why: &str) {
        self.capture.error = Some(why.to_owned());
        self.capture.ended = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn chunked_body_keeps_arrival_times_across_split_reads() {
        let mut d = Decoder::new(false, false);
        d.feed(
            ms(1),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        );
        d.feed(ms(2), b"lo\r\n3\r\n");
        d.feed(ms(9), b"abc\r\n0\r\n\r\n");
        let c = &d.capture;
        assert_eq!(c.head_at, Some(ms(1)));
        assert_eq!(
            c.body,
            vec![
                (ms(1), b"hel".to_vec()),
                (ms(2), b"lo".to_vec()),
                (ms(9), b"abc".to_vec())
            ]
        );
        assert_eq!(c.ended, Some(ms(9)));
    }

    #[test]
    fn informational_heads_are_skipped_and_length_ends_the_body() {
        let mut d = Decoder::new(false, false);
        d.feed(
            ms(1),
            b"HTTP/1.1 101 Switching\r\n\r\nHTTP/2 200\r\nContent-Length: 2\r\n\r\nokEXTRA",
        );
        assert_eq!(d.capture.head.as_ref().unwrap().status, 200);
        assert_eq!(d.capture.body_bytes(), b"ok");
        assert!(d.done());
    }

    #[test]
    fn curl_output_is_taken_as_decoded_and_garbage_is_an_error() {
        let mut d = Decoder::new(true, false);
        d.feed(
            ms(1),
            b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n: hi\n",
        );
        assert_eq!(d.capture.body_bytes(), b": hi\n");
        assert!(!d.done());
        let mut d = Decoder::new(false, false);
        d.feed(ms(1), &vec![b'x'; 70_000]);
        assert!(d.done() && d.capture.error.is_some());
        let mut d = Decoder::new(true, false);
        d.feed(ms(1), b"HTTP/1.1 200 OK\r\n\r\n");
        d.feed(ms(2), &vec![b'x'; MAX_BODY + 10]);
        assert!(d.done() && d.capture.body_bytes().len() == MAX_BODY);
        let mut d = Decoder::new(false, false);
        d.feed(ms(1), b"SSH-2.0-OpenSSH\r\n\r\n");
        assert!(d.done() && d.capture.error.is_some());
        let mut d = Decoder::new(false, false);
        d.feed(
            ms(1),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        );
        assert!(d.done() && d.capture.error.is_some());
    }
}
