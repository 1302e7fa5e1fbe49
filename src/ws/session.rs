//! One WebSocket connection after the handshake, as a state machine that
//! a driver feeds: the CGI's loop over stdin and stdout, or the listener's
//! reactor over thousands of sockets. Published events go out as text
//! frames; client text messages are published to the channel (or echoed,
//! in echo mode). Framing, masking, fragmentation, UTF-8 and control frames
//! are tungstenite's (RFC 6455); this file decides what to send and when.
//!
//! * All output goes through one queue (`out`), in order: tungstenite's
//!   replies (pong, close, echo) and broadcast frames alike. The socket
//!   takes what it can; the rest waits for it to become writable, so a
//!   slow client never blocks a driver serving others.
//! * Fair and bounded: one turn reads at most [`TURN_MESSAGES`] messages
//!   and [`TURN_BYTES`] bytes (the driver gives the session another turn
//!   after the others had theirs); the turn's replies (pongs, notices,
//!   echoes) leave together in one write after it. A session whose output
//!   is not draining is not read at all: a client that floods pings or
//!   messages but does not read holds one turn's replies, and its input
//!   waits in the kernel, which then stops the client by TCP flow control.
//! * An idle connection holds no buffers: when everything read so far
//!   formed whole frames ([`Inbound::at_rest`]) and nothing waits to be
//!   written, tungstenite's context (its 4 KiB read buffer) is dropped and
//!   made anew when the client next sends something.
//! * Server frames are not masked, so an event's frame is encoded once and
//!   the same bytes go to every client ([`event_frame`]).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error, Message};

use super::inbound::Inbound;
use super::{encode, event_frame};
use crate::config::WsMode as Mode;
use crate::spool;
use crate::stream::{queue_or_write, write_queued, End, Source, MAX_QUEUED};

/// Settings of one session.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Relay or echo.
    pub mode: Mode,
    /// Whether this client may publish (relay policy and credentials were
    /// checked at the handshake).
    pub may_publish: bool,
    /// It may only because the relay is open (no credentials): its
    /// messages draw on the anonymous share of the site's publish rate.
    pub anonymous: bool,
    /// Largest message accepted; larger closes with 1009.
    pub max_message: usize,
    /// Messages per second a client may publish (burst: the same number).
    pub rate: u32,
    /// Ping interval; a peer silent for two intervals is dropped.
    pub heartbeat: Duration,
    /// End with 1000 after this long.
    pub max_duration: Option<Duration>,
}

/// Publishes a client's text message on its channel (the chat relay);
/// returns the event id.
pub type Relay<'a> = &'a mut dyn FnMut(&str) -> io::Result<u64>;

/// How long to wait for the peer's close frame after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Most client messages (pings included) handled in one turn.
pub const TURN_MESSAGES: usize = 32;
/// Most bytes read from a client in one turn.
pub const TURN_BYTES: usize = 64 * 1024;

/// tungstenite's settings: a small read buffer (most sessions are idle; a
/// larger message grows it as needed), no write buffering (our queue is
/// the buffer).
fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// What one client may do per second: publish (`ws_rate`), ping, and have
/// messages refused. A client over the last two is not a chat client but a
/// flood, and is closed with 1008: answering it would cost the server more
/// than the client (a pong or a notice per frame).
#[derive(Debug)]
struct Limits {
    publish: Bucket,
    pings: Bucket,
    refusals: Bucket,
}

/// Pings per second a client may send (burst twice that): far above any
/// keep-alive or latency probe.
const PING_RATE: f64 = 20.0;

/// A simple token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    /// Full, refilling at `rate` per second up to `burst`.
    fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        self.tokens =
            (self.tokens + (now - self.last).as_secs_f64() * self.rate).min(self.burst.max(1.0));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The socket as tungstenite sees it: reads pass through the [`Inbound`]
/// tracker, up to the turn's byte budget; a write goes to the socket when
/// nothing is queued, and the part the socket does not take is queued, so
/// tungstenite's frame is never split. While bytes are queued, a write
/// reports `WouldBlock` and tungstenite keeps its frame (a pong is then
/// replaced by the next one, never piled up): our queue holds broadcast
/// frames and at most one of tungstenite's at a time.
struct Conn<'a, S> {
    socket: &'a mut S,
    out: &'a mut Vec<u8>,
    inbound: &'a mut Inbound,
    /// tungstenite holds output the queue did not take.
    blocked: &'a mut bool,
    /// Bytes this turn may still read.
    budget: &'a mut usize,
    /// During a turn: replies are gathered and written together after it.
    corked: bool,
}

impl<S: Read> Read for Conn<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if *self.budget == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let want = buf.len().min(*self.budget);
        let n = self.socket.read(&mut buf[..want])?;
        *self.budget -= n;
        self.inbound.feed(&buf[..n]);
        Ok(n)
    }
}

impl<S: Write> Write for Conn<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.corked {
            self.out.extend_from_slice(buf);
            return Ok(buf.len());
        }
        if !self.out.is_empty() {
            *self.blocked = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        queue_or_write(self.socket, self.out, buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The protocol side of a session: tungstenite's context (`None` while
/// the connection is idle), the tracker of client frames, and the bytes
/// the socket has not taken yet.
#[derive(Debug)]
struct Codec {
    ctx: Option<Box<WebSocketContext>>,
    inbound: Inbound,
    out: Vec<u8>,
    max_message: usize,
    /// tungstenite holds a frame it could not write yet.
    blocked: bool,
    /// Bytes the current turn may still read.
    budget: usize,
    /// A turn is running: its replies (pongs, close, echoes) are gathered
    /// and leave in one write when it ends, not one system call each.
    corked: bool,
}

impl Codec {
    /// tungstenite's context, made anew if the session was idle, and the
    /// socket as tungstenite sees it.
    fn open<'a, S>(&'a mut self, socket: &'a mut S) -> (&'a mut WebSocketContext, Conn<'a, S>) {
        let max = self.max_message;
        let ctx = self.ctx.get_or_insert_with(|| {
            Box::new(WebSocketContext::new(Role::Server, Some(ws_config(max))))
        });
        let conn = Conn {
            socket,
            out: &mut self.out,
            inbound: &mut self.inbound,
            blocked: &mut self.blocked,
            budget: &mut self.budget,
            corked: self.corked,
        };
        (ctx, conn)
    }

    /// Whether the client may be read: only while everything owed to it
    /// is taken by the socket, so its requests cannot pile up replies.
    fn may_read(&self) -> bool {
        !self.blocked && self.out.is_empty()
    }
}

/// Whether an error is only "the socket takes no more now".
fn would_block(e: &Error) -> bool {
    matches!(e, Error::Io(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// One connection's state between the driver's calls.
#[derive(Debug)]
pub struct Session {
    settings: Settings,
    wire: Codec,
    limits: Limits,
    /// Ids of this client's own recent messages (not sent back to it).
    own: VecDeque<u64>,
    /// Newest event id sent; events at or below it are not sent again
    /// (a backlog and the live broadcast may overlap).
    pub last_id: Option<u64>,
    started: Instant,
    last_heard: Instant,
    next_ping: Instant,
    /// Our close frame is out: the peer's is awaited until then.
    closing: Option<(Instant, End)>,
    ended: Option<End>,
    /// The last turn stopped at its budget with input left: read again
    /// once the others had their turn.
    more: bool,
}

impl Session {
    /// A session starting `now`.
    pub fn new(settings: Settings, now: Instant) -> Session {
        let rate = f64::from(settings.rate);
        Session {
            next_ping: now + settings.heartbeat,
            wire: Codec {
                ctx: None,
                inbound: Inbound::default(),
                out: Vec::new(),
                max_message: settings.max_message,
                blocked: false,
                budget: 0,
                corked: false,
            },
            settings,
            limits: Limits {
                publish: Bucket::new(rate, rate, now),
                pings: Bucket::new(PING_RATE, 2.0 * PING_RATE, now),
                refusals: Bucket::new(rate.max(10.0), 2.0 * rate.max(10.0), now),
            },
            own: VecDeque::new(),
            last_id: None,
            started: now,
            last_heard: now,
            closing: None,
            ended: None,
            more: false,
        }
    }

    /// Why the session ended, once it has: the driver then drops it.
    pub fn ended(&self) -> Option<End> {
        self.ended
    }

    /// Output is queued: wait for the socket to become writable.
    pub fn wants_write(&self) -> bool {
        !self.wire.out.is_empty() || self.wire.blocked
    }

    /// Whether the client should be read: not while output waits for it.
    pub fn wants_read(&self) -> bool {
        self.ended.is_none() && self.wire.may_read()
    }

    /// The last turn ended at its budget with input possibly left (in the
    /// socket or in tungstenite's buffer): the driver should call
    /// [`Session::on_readable`] again after serving the others.
    pub fn has_more(&self) -> bool {
        self.more && self.wants_read()
    }

    /// Memory its output queue holds (for the server's output budget):
    /// the allocation, not only the bytes in it.
    pub fn queued(&self) -> usize {
        self.wire.out.capacity()
    }

    /// Ends the session at once, dropping its output (the server's
    /// output budget is spent and it holds part of it, or it hung up).
    pub fn abandon(&mut self, end: End) {
        self.wire.out = Vec::new();
        self.wire.ctx = None;
        self.wire.blocked = false;
        self.ended = Some(end);
    }

    /// Which share of the site's publish rate its messages draw on.
    pub fn publisher(&self) -> crate::stream::rate::Publisher {
        crate::stream::rate::Publisher::from_anonymous(self.settings.anonymous)
    }

    /// Whether published events are sent to this client (not in echo mode,
    /// not once closing).
    pub fn takes_events(&self) -> bool {
        self.settings.mode == Mode::Relay && self.closing.is_none() && self.ended.is_none()
    }

    /// The client sent something, or hung up: handle every whole message.
    pub fn on_readable<S: Read + Write>(
        &mut self,
        socket: &mut S,
        publish: Relay<'_>,
        now: Instant,
    ) {
        self.more = false;
        if self.ended.is_some() || !self.wire.may_read() {
            return;
        }
        self.wire.budget = TURN_BYTES;
        self.wire.corked = true;
        let mut close_with = self.read_all(socket, publish, now);
        if close_with.is_none() && self.wire.inbound.invalid_utf8() {
            // Invalid UTF-8 inside a frame still arriving: fail now.
            close_with = Some(CloseCode::Invalid);
        }
        if let Some(code) = close_with {
            self.close(socket, code, End::Refused(code.into()), now);
        }
        self.wire.corked = false;
        if write_queued(socket, &mut self.wire.out).is_err() && self.ended.is_none() {
            self.ended = Some(End::ClientClosed);
        }
        if close_with == Some(CloseCode::Policy) && self.ended.is_none() {
            // A flood: waiting for its close reply would mean reading the
            // flood. The close frame is out (or its last chance is when
            // the driver drops the connection).
            self.ended = Some(End::Refused(CloseCode::Policy.into()));
        }
        self.rest(socket);
        self.check_queue();
    }

    /// Reads messages until the socket has no more, the turn's budget is
    /// spent or the output stops draining; returns the close code to fail
    /// the connection with, if the client broke the protocol.
    fn read_all<S: Read + Write>(
        &mut self,
        socket: &mut S,
        publish: Relay<'_>,
        now: Instant,
    ) -> Option<CloseCode> {
        let mut handled = 0;
        loop {
            if handled == TURN_MESSAGES {
                self.more = true;
                let (ctx, mut conn) = self.wire.open(socket);
                let _ = ctx.flush(&mut conn); // the last pong (kept if it must wait)
                return None;
            }
            handled += 1;
            let (ctx, mut conn) = self.wire.open(socket);
            let message = match ctx.read(&mut conn) {
                Ok(m) => m,
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Input may be left behind a spent byte budget.
                    self.more = self.wire.budget == 0;
                    return None;
                }
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    match (self.closing, refusal(&e)) {
                        (Some((_, end)), _) => self.ended = Some(end),
                        (None, Some(code)) => return Some(code),
                        (None, None) => self.ended = Some(End::ClientClosed),
                    }
                    return None;
                }
            };
            if let Message::Close(_) = message {
                let _ = ctx.flush(&mut conn); // our reply (queued if it must wait)
                self.ended = Some(self.closing.map_or(End::ClientClosed, |(_, end)| end));
                return None;
            }
            if self.closing.is_some() {
                continue; // only the peer's close matters now
            }
            self.last_heard = now;
            let reply = respond(
                message,
                &self.settings,
                &mut self.limits,
                &mut self.own,
                publish,
                now,
            );
            match reply {
                Ok(Some(m)) => {
                    let (ctx, mut conn) = self.wire.open(socket);
                    match ctx.write(&mut conn, m).and_then(|()| ctx.flush(&mut conn)) {
                        Ok(()) => {}
                        Err(e) if would_block(&e) => {} // kept by tungstenite
                        Err(_) => {
                            self.ended = Some(End::ClientClosed);
                            return None;
                        }
                    }
                }
                Ok(None) => {}
                Err(code) => return Some(code),
            }
        }
    }

    /// Sends one published event (its pre-encoded frame) unless the
    /// client has it already or sent it itself; returns whether it did.
    pub fn send_event(&mut self, socket: &mut impl Write, id: Option<u64>, frame: &[u8]) -> bool {
        if !self.takes_events() {
            return false;
        }
        if let Some(id) = id {
            if self.last_id.is_some_and(|last| id <= last) {
                return false;
            }
            self.last_id = Some(id);
            if let Some(at) = self.own.iter().position(|&own| own == id) {
                self.own.remove(at);
                return false;
            }
        }
        self.write(socket, frame);
        true
    }

    /// Timers: the close wait, max-duration, pings and dead peers.
    pub fn on_timer<S: Read + Write>(&mut self, socket: &mut S, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        if let Some((deadline, end)) = self.closing {
            if now >= deadline {
                self.ended = Some(end);
            }
            return;
        }
        let heartbeat = self.settings.heartbeat;
        if self
            .settings
            .max_duration
            .is_some_and(|d| now - self.started >= d)
        {
            self.close(socket, CloseCode::Normal, End::Finished, now);
        } else if now - self.last_heard >= 2 * heartbeat + Duration::from_secs(1) {
            self.close(socket, CloseCode::Away, End::TimedOut, now);
        } else if now >= self.next_ping {
            self.next_ping = now + heartbeat;
            self.write(socket, &encode(Frame::ping(Vec::new())));
        }
    }

    /// When the driver should call [`Session::on_timer`] next.
    pub fn next_timer(&self) -> Instant {
        if let Some((deadline, _)) = self.closing {
            return deadline;
        }
        let mut at = self.next_ping;
        if let Some(d) = self.settings.max_duration {
            at = at.min(self.started + d);
        }
        at
    }

    /// The server is stopping: close with 1001.
    pub fn shutdown<S: Read + Write>(&mut self, socket: &mut S, now: Instant) {
        self.close(socket, CloseCode::Away, End::Shutdown, now);
    }

    /// The socket became writable: send what is queued, then what
    /// tungstenite kept.
    pub fn on_writable<S: Read + Write>(&mut self, socket: &mut S) {
        if write_queued(socket, &mut self.wire.out).is_err() {
            self.ended = Some(End::ClientClosed);
            return;
        }
        if self.wire.blocked && self.wire.out.is_empty() {
            self.wire.blocked = false;
            if self.wire.ctx.is_some() {
                let (ctx, mut conn) = self.wire.open(socket);
                match ctx.flush(&mut conn) {
                    Ok(()) => {}
                    Err(e) if would_block(&e) => {}
                    Err(_) => self.ended = Some(End::ClientClosed),
                }
            }
        }
    }

    /// Sends our close frame and starts waiting for the peer's.
    fn close<S: Read + Write>(&mut self, socket: &mut S, code: CloseCode, end: End, now: Instant) {
        if self.closing.is_some() || self.ended.is_some() {
            return;
        }
        let (ctx, mut conn) = self.wire.open(socket);
        let frame = CloseFrame {
            code,
            reason: "".into(),
        };
        match ctx
            .close(&mut conn, Some(frame))
            .and_then(|()| ctx.flush(&mut conn))
        {
            Ok(()) => self.closing = Some((now + CLOSE_WAIT, end)),
            Err(e) if would_block(&e) => self.closing = Some((now + CLOSE_WAIT, end)),
            Err(_) => self.ended = Some(end),
        }
    }

    /// Queues or writes raw bytes (a frame encoded elsewhere).
    fn write(&mut self, socket: &mut impl Write, bytes: &[u8]) {
        if queue_or_write(socket, &mut self.wire.out, bytes).is_err() {
            self.ended = Some(End::ClientClosed);
        }
        self.check_queue();
    }

    /// Drops tungstenite's context when it holds nothing: no partial input
    /// (everything read formed whole messages) and no reply unsent.
    fn rest<S: Read + Write>(&mut self, socket: &mut S) {
        if self.closing.is_some()
            || self.ended.is_some()
            || self.more
            || !self.wire.may_read()
            || !self.wire.inbound.at_rest()
        {
            return; // tungstenite may hold input or output
        }
        if self.wire.ctx.is_some() {
            let (ctx, mut conn) = self.wire.open(socket);
            if ctx.flush(&mut conn).is_ok() {
                self.wire.ctx = None;
            }
        }
    }

    /// A client that stopped reading is dropped before its queue grows
    /// without bound (twice the largest message, at least 4 MiB).
    fn check_queue(&mut self) {
        if self.wire.out.len() > MAX_QUEUED.max(2 * self.settings.max_message) {
            self.wire.out = Vec::new();
            self.ended = Some(End::TooSlow);
        }
    }
}

/// The close code for a protocol failure tungstenite reported, or `None`
/// when the connection is simply gone.
fn refusal(e: &Error) -> Option<CloseCode> {
    use tungstenite::error::ProtocolError;
    match e {
        Error::Capacity(_) => Some(CloseCode::Size),
        Error::Utf8(_) => Some(CloseCode::Invalid),
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        Error::Protocol(_) => Some(CloseCode::Protocol),
        _ => None,
    }
}

/// What a client's message calls for: a reply, nothing, or failing the
/// connection with a close code.
fn respond(
    message: Message,
    settings: &Settings,
    limits: &mut Limits,
    own: &mut VecDeque<u64>,
    publish: Relay<'_>,
    now: Instant,
) -> Result<Option<Message>, CloseCode> {
    match (message, settings.mode) {
        // tungstenite answers a ping; too many close the connection.
        (Message::Ping(_), _) if !limits.pings.take(now) => Err(CloseCode::Policy),
        (m @ (Message::Text(_) | Message::Binary(_)), Mode::Echo) => Ok(Some(m)),
        (Message::Text(text), Mode::Relay) => {
            let notice = relay(
                text.as_str(),
                settings,
                &mut limits.publish,
                own,
                publish,
                now,
            );
            if notice.is_some() && !limits.refusals.take(now) {
                return Err(CloseCode::Policy);
            }
            Ok(notice)
        }
        (Message::Binary(_), Mode::Relay) => Err(CloseCode::Unsupported),
        _ => Ok(None), // ping within the limit, pong, raw frame
    }
}

/// A client's text message in relay mode: publish it, or say why not.
fn relay(
    text: &str,
    settings: &Settings,
    bucket: &mut Bucket,
    own: &mut VecDeque<u64>,
    publish: Relay<'_>,
    now: Instant,
) -> Option<Message> {
    let notice = |reason: &str| {
        let json = serde_json::json!({ "id": null, "event": "error", "data": reason });
        Some(Message::text(json.to_string()))
    };
    if !settings.may_publish {
        return notice("this connection may not publish (see NPH_EVENTS_WS_RELAY)");
    }
    if !bucket.take(now) {
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
        Err(e) if crate::stream::rate::is_rate_limited(&e) => {
            notice("too many messages on this site right now; slow down")
        }
        Err(_) => notice("the message could not be published"),
    }
}

/// Drives one session over the CGI's connection: client bytes readable
/// from `stream` (non-blocking; its descriptor is polled), output written
/// through (stdout blocks, so nothing queues), events from `source`, woken
/// by its descriptor. `stop` becomes
/// readable when the web server asks the program to end: the session then
/// closes with 1001 and ends when the client answers (or after 2 s, within
/// the 3 s a web server waits before SIGKILL).
pub fn run<S: Read + Write + AsFd>(
    stream: &mut S,
    stop: Option<BorrowedFd<'_>>,
    settings: &Settings,
    source: &mut dyn Source,
    publish: Relay<'_>,
) -> io::Result<End> {
    let mut session = Session::new(settings.clone(), Instant::now());
    let mut buf = Vec::new();
    let mut next_full = Instant::now();
    let mut trimmed = false;
    loop {
        if session.takes_events() {
            let now = Instant::now();
            let full = now >= next_full;
            if full {
                next_full = now + settings.heartbeat;
            }
            buf.clear();
            source.poll(&mut buf, full)?;
            for record in spool::records(&buf) {
                if let Some(frame) = event_frame(record) {
                    session.send_event(stream, spool::record_id(record), &frame);
                }
            }
        }
        if session.wants_write() {
            session.on_writable(stream);
        }
        if let Some(end) = session.ended() {
            return Ok(end);
        }
        if !trimmed {
            // The handshake and the first deliveries ran deepest; an idle
            // session needs only its live frames resident.
            trimmed = true;
            crate::sys::release_unused_stack();
        }
        let mut wait = session
            .next_timer()
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        if session.has_more() {
            wait = Duration::ZERO;
        } else if !session.wants_read() {
            // Output is not draining: the client's input waits (a short
            // sleep, then the queue is tried again).
            wait = wait.min(Duration::from_millis(20));
        }
        let reading = session.wants_read();
        let ready = {
            let input = reading.then(|| stream.as_fd());
            let fds: Vec<BorrowedFd<'_>> = [input, stop, source.wake_fd()]
                .into_iter()
                .flatten()
                .collect();
            let mut ready = crate::sys::wait_readable(&fds, wait);
            if !reading {
                ready.insert(0, false);
            }
            ready
        };
        let woken = source.wake_fd().is_some();
        let (stop_at, wake_at) = (1, 1 + usize::from(stop.is_some()));
        let now = Instant::now();
        if stop.is_some() && ready[stop_at] {
            session.shutdown(stream, now);
        }
        if woken && ready[wake_at] {
            source.woken();
        }
        if ready[0] || session.has_more() {
            session.on_readable(stream, publish, now);
        }
        session.on_timer(stream, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::testing::MockSocket as Mock;

    #[test]
    fn bucket_limits_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(2.0, 2.0, t0);
        assert!(b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(600)));
    }

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let key = [9u8, 8, 7, 6];
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        f
    }

    fn settings(mode: Mode) -> Settings {
        Settings {
            mode,
            may_publish: true,
            anonymous: false,
            max_message: 1024,
            rate: 10,
            heartbeat: Duration::from_secs(10),
            max_duration: None,
        }
    }

    fn no_publish() -> impl FnMut(&str) -> io::Result<u64> {
        |_: &str| Err(io::Error::other("not here"))
    }

    #[test]
    fn an_idle_session_holds_no_buffers() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(Mode::Echo), t0);
        let mut sock = Mock::new();
        let frame = masked(1, b"hello");
        sock.input.extend_from_slice(&frame[..4]);
        s.on_readable(&mut sock, &mut no_publish(), t0);
        assert!(s.wire.ctx.is_some(), "half a frame: tungstenite keeps it");
        sock.input.extend_from_slice(&frame[4..]);
        s.on_readable(&mut sock, &mut no_publish(), t0);
        assert_eq!(sock.take_output(), b"\x81\x05hello", "echoed");
        assert!(
            s.wire.ctx.is_none() && s.wire.out.capacity() == 0,
            "idle again"
        );
        assert_eq!(s.ended(), None);
    }

    #[test]
    fn the_clients_own_messages_and_repeats_are_not_sent() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(Mode::Relay), t0);
        let mut sock = Mock::new();
        sock.input = masked(1, b"mine");
        let mut published = Vec::new();
        let mut publish = |text: &str| {
            published.push(text.to_owned());
            Ok(42)
        };
        s.on_readable(&mut sock, &mut publish, t0);
        assert_eq!(published, ["mine"]);
        s.send_event(&mut sock, Some(41), b"A");
        s.send_event(&mut sock, Some(42), b"own");
        s.send_event(&mut sock, Some(41), b"again");
        s.send_event(&mut sock, Some(43), b"B");
        assert_eq!(sock.take_output(), b"AB");
    }

    #[test]
    fn pings_then_a_silent_peer_is_closed_with_1001_and_dropped() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(Mode::Relay), t0);
        let mut sock = Mock::new();
        s.on_timer(&mut sock, t0 + Duration::from_secs(5));
        assert!(sock.take_output().is_empty(), "nothing due yet");
        assert_eq!(s.next_timer(), t0 + Duration::from_secs(10));
        s.on_timer(&mut sock, t0 + Duration::from_secs(10));
        assert_eq!(sock.take_output(), [0x89, 0x00], "a ping");
        let late = t0 + Duration::from_secs(21);
        s.on_timer(&mut sock, late);
        assert_eq!(sock.take_output(), [0x88, 0x02, 0x03, 0xe9], "close 1001");
        s.send_event(&mut sock, Some(1), b"late");
        assert!(sock.take_output().is_empty(), "nothing after our close");
        assert_eq!(s.ended(), None, "waits for the close reply");
        s.on_timer(&mut sock, late + CLOSE_WAIT);
        assert_eq!(s.ended(), Some(End::TimedOut));
    }

    #[test]
    fn max_duration_closes_with_1000_and_the_reply_ends_it() {
        let t0 = Instant::now();
        let mut set = settings(Mode::Relay);
        set.max_duration = Some(Duration::from_secs(3));
        let mut s = Session::new(set, t0);
        let mut sock = Mock::new();
        assert_eq!(s.next_timer(), t0 + Duration::from_secs(3));
        s.on_timer(&mut sock, t0 + Duration::from_secs(3));
        assert_eq!(sock.take_output(), [0x88, 0x02, 0x03, 0xe8]);
        sock.input = masked(8, &[0x03, 0xe8]);
        s.on_readable(&mut sock, &mut no_publish(), t0 + Duration::from_secs(3));
        assert_eq!(s.ended(), Some(End::Finished));
    }

    #[test]
    fn a_client_that_stops_reading_gets_a_queue_then_is_dropped() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(Mode::Relay), t0);
        let mut sock = Mock::new();
        sock.room = 3;
        s.send_event(&mut sock, Some(1), b"12345");
        assert_eq!(sock.take_output(), b"123");
        assert!(s.wants_write());
        s.send_event(&mut sock, Some(2), b"67");
        sock.room = 100;
        s.on_writable(&mut sock);
        assert_eq!(sock.take_output(), b"4567", "in order");
        assert!(!s.wants_write());
        sock.room = 0;
        let big = vec![b'x'; 1 << 20];
        for id in 3..8 {
            s.send_event(&mut sock, Some(id), &big);
        }
        assert_eq!(s.ended(), Some(End::TooSlow));
    }

    /// Frames in the output whose first byte is `first` (server frames are
    /// not masked).
    fn count(out: &[u8], first: u8) -> usize {
        crate::stream::testing::frames(out)
            .iter()
            .filter(|f| f[0] == first)
            .count()
    }

    /// A client that floods messages and reads what it gets: each turn
    /// answers a bounded number, and the driver is told to come back after
    /// serving the others (regression: one flooding client froze every
    /// other session on the reactor thread).
    #[test]
    fn a_flood_is_served_a_turn_at_a_time() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(Mode::Echo), t0);
        let mut sock = Mock::new();
        for _ in 0..1000 {
            sock.input.extend_from_slice(&masked(1, b"e"));
        }
        s.on_readable(&mut sock, &mut no_publish(), t0);
        assert_eq!(count(&sock.take_output(), 0x81), TURN_MESSAGES);
        assert!(s.has_more(), "input is left: another turn is due");
        let mut turns = 1;
        while s.has_more() {
            s.on_readable(&mut sock, &mut no_publish(), t0);
            assert!(count(&sock.take_output(), 0x81) <= TURN_MESSAGES);
            turns += 1;
        }
        assert_eq!(turns, 1000_usize.div_ceil(TURN_MESSAGES));
        assert!(sock.input.is_empty() && s.ended().is_none());
    }

    /// A client that floods and never reads: one turn's replies wait, and
    /// the rest of its input stays unread in the socket (regression: a
    /// reply per message was queued, up to 4 MiB per session).
    #[test]
    fn a_client_that_sends_but_never_reads_holds_almost_nothing() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(Mode::Echo), t0);
        let mut sock = Mock::new();
        sock.room = 0;
        let message = masked(1, &[b'p'; 100]);
        for _ in 0..10_000 {
            sock.input.extend_from_slice(&message);
        }
        let sent = sock.input.len();
        for _ in 0..100 {
            s.on_readable(&mut sock, &mut no_publish(), t0);
        }
        assert!(!s.wants_read() && s.wants_write(), "paused until it reads");
        assert!(
            s.queued() <= 2 * TURN_MESSAGES * message.len(),
            "queued {}",
            s.queued()
        );
        assert!(sent - sock.input.len() <= TURN_BYTES, "input left unread");
        sock.room = usize::MAX;
        s.on_writable(&mut sock);
        assert_eq!(
            count(&sock.take_output(), 0x81),
            TURN_MESSAGES,
            "the turn's"
        );
        s.on_readable(&mut sock, &mut no_publish(), t0);
        assert_eq!(count(&sock.take_output(), 0x81), TURN_MESSAGES, "the next");
        assert!(s.wants_read() && s.queued() == 0, "reading resumes");
        assert_eq!(s.ended(), None);
    }

    /// Pings beyond 20 a second (40 at once), or messages refused beyond
    /// the client's own rate, are a flood, not a chat: closed with 1008
    /// rather than answered frame by frame.
    #[test]
    fn floods_of_pings_or_refused_messages_are_closed_with_1008() {
        let t0 = Instant::now();
        let policy = [0x88, 0x02, 0x03, 0xf0];
        let mut s = Session::new(settings(Mode::Relay), t0);
        let mut sock = Mock::new();
        for _ in 0..30 {
            sock.input.extend_from_slice(&masked(9, b""));
        }
        s.on_readable(&mut sock, &mut no_publish(), t0);
        assert_eq!(count(&sock.take_output(), 0x8a), 30, "a burst is answered");
        let later = t0 + Duration::from_secs(1);
        for _ in 0..100 {
            sock.input.extend_from_slice(&masked(9, b""));
        }
        while s.has_more() || !sock.input.is_empty() && s.wants_read() {
            s.on_readable(&mut sock, &mut no_publish(), later);
        }
        let out = sock.take_output();
        assert!(out.windows(4).any(|w| w == policy), "closed with 1008");
        assert!(count(&out, 0x8a) < 40, "{} pongs", count(&out, 0x8a));

        let mut set = settings(Mode::Relay);
        set.may_publish = false;
        let mut s = Session::new(set, t0);
        for _ in 0..100 {
            sock.input.extend_from_slice(&masked(1, b"hi"));
        }
        while s.has_more() || !sock.input.is_empty() && s.wants_read() {
            s.on_readable(&mut sock, &mut no_publish(), t0);
        }
        let out = sock.take_output();
        assert!(out.windows(4).any(|w| w == policy), "closed with 1008");
        assert_eq!(
            count(&out, 0x81),
            20,
            "a notice for each refused within the limit"
        );
    }

    /// Messages refused by the rate limit each get an error notice; a
    /// client that does not read gets reading paused instead of a queue of
    /// notices (regression: about 14 bytes queued per byte sent).
    #[test]
    fn refusal_notices_do_not_pile_up_for_a_client_that_does_not_read() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(Mode::Relay), t0);
        let mut sock = Mock::new();
        sock.room = 0;
        for _ in 0..50_000 {
            sock.input.extend_from_slice(&masked(1, b"x"));
        }
        let mut publish = |_: &str| Ok(1);
        for _ in 0..1000 {
            s.on_readable(&mut sock, &mut publish, t0);
        }
        assert!(s.queued() < TURN_MESSAGES * 128, "queued {}", s.queued());
        assert!(!s.wants_read());
    }

    #[test]
    fn invalid_utf8_fails_before_the_frame_is_complete() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(Mode::Echo), t0);
        let mut sock = Mock::new();
        let frame = masked(1, &[b'o', b'k', 0xff, b'x', b'y']);
        sock.input = frame[..9].to_vec(); // header, mask, "ok", 0xff
        s.on_readable(&mut sock, &mut no_publish(), t0);
        assert_eq!(sock.take_output(), [0x88, 0x02, 0x03, 0xef], "close 1007");
    }

    #[test]
    fn random_bytes_never_panic_and_the_session_always_ends() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let t0 = Instant::now();
        for round in 0..2000 {
            let mode = if round % 2 == 0 {
                Mode::Echo
            } else {
                Mode::Relay
            };
            let mut s = Session::new(settings(mode), t0);
            let mut sock = Mock::new();
            // Half the rounds start with a valid frame header, to reach
            // deeper states; the rest is noise, fed in random pieces.
            let mut bytes: Vec<u8> = (0..(next() % 300)).map(|_| next() as u8).collect();
            if round % 4 < 2 {
                bytes.splice(0..0, masked(1 + (next() % 2) as u8, b"ok"));
            }
            let mut publish = |_: &str| Ok(1);
            while !bytes.is_empty() && s.ended().is_none() {
                let n = (1 + next() % 40).min(bytes.len() as u64) as usize;
                sock.input.extend(bytes.drain(..n));
                s.on_readable(&mut sock, &mut publish, t0);
            }
            s.on_timer(&mut sock, t0 + Duration::from_secs(60));
            s.on_timer(&mut sock, t0 + Duration::from_secs(120));
            // Whatever happened, a silent peer is gone two minutes later.
            assert!(s.ended().is_some(), "round {round}: {:?}", s.closing);
        }
    }
}
