//! One WebSocket connection after the handshake: published events go out
//! as text frames, client text messages are published to the channel (or
//! echoed, in echo mode). Framing, masking, fragmentation, UTF-8 and
//! control frames are tungstenite's (RFC 6455); this file decides what to
//! send and when.
//!
//! Single-threaded: one `poll` on the client's input and the event
//! source's wake-up descriptor. The input is non-blocking; tungstenite
//! keeps partial frames across `WouldBlock`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};
use tungstenite::{Error, Message};

use crate::pump::Source;
use crate::spool;

/// What a client's text message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Publish it to the channel (chat relay); events go to the client.
    Relay,
    /// Send it back (conformance testing); no events.
    Echo,
}

/// Settings of one session.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Relay or echo.
    pub mode: Mode,
    /// Whether this client may publish (relay policy and credentials were
    /// checked at the handshake).
    pub may_publish: bool,
    /// Largest message accepted; larger closes with 1009.
    pub max_message: usize,
    /// Messages per second a client may publish (burst: the same number).
    pub rate: u32,
    /// Ping interval; a peer silent for two intervals is dropped.
    pub heartbeat: Duration,
    /// End with 1000 after this long.
    pub max_duration: Option<Duration>,
}

/// Publishes a client's message; returns the event id.
pub type Publish<'a> = &'a mut dyn FnMut(&str) -> io::Result<u64>;

/// Why a session ended (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed, or went away.
    ClientClosed,
    /// `max_duration` reached (1000 sent).
    Finished,
    /// The server is stopping (1001 sent).
    Shutdown,
    /// A protocol error, too large or invalid message (close code sent).
    Refused(u16),
    /// The peer stopped answering pings.
    TimedOut,
}

/// tungstenite's buffers, small: most sessions are idle (a larger message
/// grows the buffer as needed).
fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Converts one spool record (an SSE event) to the JSON text frame
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

/// A simple token bucket.
struct Bucket {
    tokens: f64,
    rate: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        self.tokens =
            (self.tokens + (now - self.last).as_secs_f64() * self.rate).min(self.rate.max(1.0));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Runs the session until it ends. `input` is the descriptor to poll for
/// client bytes (the socket, or stdin under CGI); it must be non-blocking.
pub fn run<S: Read + Write>(
    stream: S,
    input: BorrowedFd<'_>,
    settings: &Settings,
    source: &mut dyn Source,
    publish: Publish<'_>,
    stopping: &dyn Fn() -> bool,
) -> io::Result<End> {
    let mut ws =
        WebSocket::from_raw_socket(stream, Role::Server, Some(ws_config(settings.max_message)));
    let start = Instant::now();
    let mut own: VecDeque<u64> = VecDeque::new();
    let mut last_heard = start;
    let mut next_ping = start + settings.heartbeat;
    let mut bucket = Bucket {
        tokens: f64::from(settings.rate),
        rate: f64::from(settings.rate),
        last: start,
    };
    let mut buf = Vec::new();
    let mut full_check = true;
    let mut trimmed = false;
    loop {
        if stopping() {
            return Ok(close(&mut ws, CloseCode::Away, End::Shutdown));
        }
        let now = Instant::now();
        if settings.max_duration.is_some_and(|d| now - start >= d) {
            return Ok(close(&mut ws, CloseCode::Normal, End::Finished));
        }
        // Published events out (not in echo mode, not the client's own).
        if settings.mode == Mode::Relay {
            buf.clear();
            source.poll(&mut buf, full_check)?;
            full_check = false;
            for record in spool::records(&buf) {
                if spool::record_id(record).is_some_and(|id| own.contains(&id)) {
                    continue;
                }
                if let Some(json) = record_to_json(record) {
                    if let Err(e) = send(&mut ws, Message::text(json), input) {
                        return gone(e);
                    }
                }
            }
        }
        // Client frames in.
        loop {
            match ws.read() {
                Ok(Message::Text(text)) => {
                    last_heard = Instant::now();
                    let reply = match settings.mode {
                        Mode::Echo => Some(Message::Text(text)),
                        Mode::Relay => {
                            on_text(text.as_str(), settings, &mut bucket, publish, &mut own)
                        }
                    };
                    if let Some(m) = reply {
                        if let Err(e) = send(&mut ws, m, input) {
                            return gone(e);
                        }
                    }
                }
                Ok(Message::Binary(data)) => {
                    last_heard = Instant::now();
                    if settings.mode == Mode::Echo {
                        if let Err(e) = send(&mut ws, Message::Binary(data), input) {
                            return gone(e);
                        }
                    } else {
                        return Ok(close(&mut ws, CloseCode::Unsupported, End::Refused(1003)));
                    }
                }
                Ok(Message::Close(_)) => {
                    // tungstenite queued the reply: flush it, then the peer
                    // closes the connection.
                    finish_close(&mut ws, input);
                    return Ok(End::ClientClosed);
                }
                Ok(_) => last_heard = Instant::now(), // ping (answered), pong, frame
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(Error::ConnectionClosed | Error::AlreadyClosed) => {
                    return Ok(End::ClientClosed)
                }
                Err(Error::Capacity(_)) => {
                    return Ok(close(&mut ws, CloseCode::Size, End::Refused(1009)));
                }
                Err(Error::Utf8(_)) => {
                    return Ok(close(&mut ws, CloseCode::Invalid, End::Refused(1007)));
                }
                Err(Error::Protocol(_)) => {
                    return Ok(close(&mut ws, CloseCode::Protocol, End::Refused(1002)));
                }
                Err(e) => return gone(e),
            }
        }
        // Keep-alive: ping every heartbeat; drop a peer silent for two.
        let now = Instant::now();
        if now - last_heard >= 2 * settings.heartbeat + Duration::from_secs(1) {
            return Ok(close(&mut ws, CloseCode::Away, End::TimedOut));
        }
        if now >= next_ping {
            next_ping = now + settings.heartbeat;
            full_check = true;
            if let Err(e) = send(&mut ws, Message::Ping(Vec::new().into()), input) {
                return gone(e);
            }
        }
        let mut until = next_ping;
        if let Some(d) = settings.max_duration {
            until = until.min(start + d);
        }
        let wait = until
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        let mut fds = vec![input];
        if let Some(w) = source.wake_fd() {
            fds.push(w);
        }
        if !trimmed {
            // The handshake and the first deliveries ran deepest; an idle
            // session needs only its live frames resident.
            trimmed = true;
            crate::sys::release_unused_stack();
        }
        let ready = crate::sys::wait_readable(&fds, wait);
        if ready.get(1) == Some(&true) {
            source.woken();
        }
    }
}

/// A client's text message in relay mode: publish it, or say why not.
fn on_text(
    text: &str,
    settings: &Settings,
    bucket: &mut Bucket,
    publish: Publish<'_>,
    own: &mut VecDeque<u64>,
) -> Option<Message> {
    let notice = |reason: &str| {
        let json = serde_json::json!({ "id": null, "event": "error", "data": reason });
        Some(Message::text(json.to_string()))
    };
    if !settings.may_publish {
        return notice("this connection may not publish (see NPH_EVENTS_WS_RELAY)");
    }
    if !bucket.take(Instant::now()) {
        return notice("too many messages; slow down");
    }
    match publish(text) {
        Ok(id) => {
            own.push_back(id);
            if own.len() > 256 {
                own.pop_front();
            }
            None
        }
        Err(_) => notice("the message could not be published"),
    }
}

/// Sends a message; a full socket buffer is waited out (up to 30 s).
fn send<S: Read + Write>(
    ws: &mut WebSocket<S>,
    message: Message,
    input: BorrowedFd<'_>,
) -> Result<(), Error> {
    match ws.send(message) {
        Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => flush(ws, input),
        other => other,
    }
}

fn flush<S: Read + Write>(ws: &mut WebSocket<S>, _input: BorrowedFd<'_>) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ws.flush() {
            Err(Error::Io(e))
                if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Sends a close frame with `code` and waits briefly for the peer's.
fn close<S: Read + Write>(ws: &mut WebSocket<S>, code: CloseCode, end: End) -> End {
    let frame = CloseFrame {
        code,
        reason: "".into(),
    };
    let _ = ws.close(Some(frame));
    drain_close(ws);
    end
}

/// After the client's close: flush the reply and read until the end.
fn finish_close<S: Read + Write>(ws: &mut WebSocket<S>, _input: BorrowedFd<'_>) {
    drain_close(ws);
}

/// Flushes the queued close frame and reads until the connection ends,
/// for at most 2 s (tungstenite completes the close handshake in `read`).
fn drain_close<S: Read + Write>(ws: &mut WebSocket<S>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match ws.read() {
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = ws.flush();
                if Instant::now() >= deadline {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn gone(e: Error) -> io::Result<End> {
    match e {
        Error::ConnectionClosed | Error::AlreadyClosed => Ok(End::ClientClosed),
        Error::Io(e) if crate::pump::is_disconnect(&e) => Ok(End::ClientClosed),
        Error::Io(e) => Err(e),
        other => Err(io::Error::other(other.to_string())),
    }
}

/// Standard input and output as one stream (the CGI's connection).
#[derive(Debug)]
pub struct Stdio {
    /// The request side (stdin, non-blocking).
    pub input: std::fs::File,
    /// The response side (stdout).
    pub output: std::fs::File,
}

impl Stdio {
    /// The process's stdin (made non-blocking) and stdout.
    pub fn from_process() -> io::Result<Stdio> {
        let input = std::fs::File::from(io::stdin().as_fd().try_clone_to_owned()?);
        crate::sys::set_nonblocking(&input)?;
        let output = std::fs::File::from(io::stdout().as_fd().try_clone_to_owned()?);
        Ok(Stdio { input, output })
    }

    /// The descriptor to poll for client bytes. Duplicated descriptors
    /// share the open file, so this one stays valid while the session runs.
    pub fn input_fd(&self) -> BorrowedFd<'static> {
        // SAFETY: fd 0 stays open for the life of the process (the
        // session's own copy shares its open file description).
        unsafe { BorrowedFd::borrow_raw(0) }
    }
}

impl Read for Stdio {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Stdio {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.output.flush()
    }
}

impl AsFd for Stdio {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.input.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_json_frames() {
        let j = record_to_json(b"id: 7\nevent: chat\ndata: a\ndata: b\n\n").unwrap();
        assert_eq!(j, r#"{"data":"a\nb","event":"chat","id":"7"}"#);
        let j = record_to_json(b"data: x\n\n").unwrap();
        assert_eq!(j, r#"{"data":"x","event":"message","id":null}"#);
        assert_eq!(record_to_json(b": comment\n\n"), None);
    }

    #[test]
    fn bucket_limits_rate() {
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: 2.0,
            rate: 2.0,
            last: t0,
        };
        assert!(b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(600)));
    }
}
