//! Feeding clients from a channel: what both protocols and both drivers
//! share. A stream does not know which front door it came through.

pub mod blocking;
pub mod rate;
pub mod schedule;
pub mod sse_client;
pub mod subscription;
#[cfg(test)]
pub(crate) mod testing;

use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::time::UNIX_EPOCH;

use crate::clock::Clock;
use crate::config::Config;
use crate::message::Message;
use crate::spool::append::NewEvent;
use crate::spool::tail::Start;
use crate::spool::{self, Spool};

/// True for the write errors that mean "the client left".
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    )
}

/// Where published events come from. The driver polls it before every
/// decision and sleeps on its wake-up descriptor.
pub trait Source {
    /// Appends complete events published since the last poll to `out`.
    /// `full_check` asks for the slower checks (gaps), done at heartbeats.
    fn poll(&mut self, out: &mut Vec<u8>, full_check: bool) -> io::Result<()>;
    /// A descriptor that becomes readable when there is news.
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// Called after a wake-up, to consume it.
    fn woken(&mut self) {}
}

/// A source with nothing in it: the ticker-only stream.
#[derive(Debug, Default)]
pub struct NoSource;

impl Source for NoSource {
    fn poll(&mut self, _out: &mut Vec<u8>, _full_check: bool) -> io::Result<()> {
        Ok(())
    }
}

/// Appends what every event stream starts with, after its head: a comment
/// naming the program, and the client's reconnection delay.
pub fn opening_lines(config: &Config, out: &mut Vec<u8>) {
    crate::sse::comment(crate::http::PRODUCT, out);
    crate::sse::retry(config.retry_ms, out);
}

/// For a stream that starts fresh (no `Last-Event-ID`): its position, so
/// that a client whose stream ends before any event (recycled, a reload)
/// resumes from here instead of from "now" and misses nothing published in
/// between. `last` is the channel's last id when the stream began.
pub fn starting_position(start: Start, last: Option<u64>, out: &mut Vec<u8>) {
    if start == Start::Now {
        crate::sse::position(last.unwrap_or(crate::spool::BEFORE_FIRST), out);
    }
}

/// One rendered piece, one `write_all`, then flush.
pub fn send(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

/// Why a listener stream ended (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed, or went away.
    ClientClosed,
    /// `max_duration` reached (WebSocket: 1000 sent).
    Finished,
    /// The server is stopping (WebSocket: 1001 sent).
    Shutdown,
    /// A protocol error, too large or invalid message (close code sent).
    Refused(u16),
    /// The peer stopped answering pings.
    TimedOut,
    /// The client stopped reading: more than [`MAX_QUEUED`] bytes queued.
    /// It reconnects and resumes from its last id.
    TooSlow,
}

impl End {
    /// A few words for the log.
    pub fn describe(&self) -> String {
        match self {
            End::ClientClosed => "closed by the client".into(),
            End::Finished => "max-duration reached".into(),
            End::Shutdown => "server stopping".into(),
            End::Refused(code) => format!("refused ({code})"),
            End::TimedOut => "peer stopped answering pings".into(),
            End::TooSlow => "client stopped reading".into(),
        }
    }
}

/// Output queued for a listener client that stopped reading before it is
/// dropped (it reconnects and resumes with its last id).
pub const MAX_QUEUED: usize = 4 << 20;

/// Writes `buf` after whatever is queued in `out`: straight to the socket
/// while nothing is queued, and queues the part the (non-blocking) socket
/// did not take. Bytes always leave in order, so a client gets whole
/// events and frames, never interleaved ones.
pub fn queue_or_write(
    socket: &mut impl Write,
    out: &mut Vec<u8>,
    mut buf: &[u8],
) -> io::Result<()> {
    while out.is_empty() && !buf.is_empty() {
        match socket.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    out.extend_from_slice(buf);
    Ok(())
}

/// Writes what is queued in `out` as far as the socket takes it. An
/// emptied queue gives its memory back (an idle client keeps no buffer),
/// and so does one that drained most of what it held.
pub fn write_queued(socket: &mut impl Write, out: &mut Vec<u8>) -> io::Result<()> {
    let mut sent = 0;
    let result = loop {
        if sent == out.len() {
            break Ok(());
        }
        match socket.write(&out[sent..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    out.drain(..sent);
    if out.is_empty() {
        *out = Vec::new();
    } else if out.capacity() > 64 * 1024 && out.capacity() > 4 * out.len() {
        // A queue that drained most of a burst gives the memory back.
        out.shrink_to(2 * out.len());
    }
    result
}

/// The spool this configuration names, or the default one. Either must be
/// a private directory of this user ([`Spool::open`]).
pub fn open_spool(config: &Config) -> io::Result<Spool> {
    match &config.spool {
        Some(path) => Spool::open(path),
        None => Spool::open(&spool::default_root()),
    }
}

/// Publishes a client's `message` (a POST, a WebSocket message) on
/// `channel`, within the site-wide rate ([`rate`]): refused with
/// [`rate::RateLimited`] when the site's bucket is empty.
pub fn publish_from_client(
    config: &Config,
    channel: &str,
    message: &Message,
    who: rate::Publisher,
    clock: &dyn Clock,
) -> io::Result<u64> {
    let spool = open_spool(config)?;
    rate::take(spool.root(), who, config.publish_rate, wall_micros(clock))?;
    publish(config, channel, message, clock)
}

fn wall_micros(clock: &dyn Clock) -> u64 {
    clock
        .wall()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

/// Publishes `message` on `channel`: appends it to the channel's log and
/// wakes the channel's readers. Returns the event's id.
pub fn publish(
    config: &Config,
    channel: &str,
    message: &Message,
    clock: &dyn Clock,
) -> io::Result<u64> {
    publish_appended(config, channel, message, clock).map(|a| a.id)
}

/// [`publish`], returning what was appended and how many readers were
/// woken (the command line reports them).
pub fn publish_appended(
    config: &Config,
    channel: &str,
    message: &Message,
    clock: &dyn Clock,
) -> io::Result<spool::append::Appended> {
    let spool = open_spool(config)?;
    let now_micros = clock
        .wall()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64);
    let event = NewEvent {
        event: message.event.as_deref(),
        data: &message.data,
    };
    let appended = spool::append::append_and_wake_record(
        &spool,
        channel,
        event,
        &config.retention,
        now_micros,
    )?;
    to_grip_proxies(config, channel, &appended, message.sender.as_deref());
    Ok(appended)
}

/// Sends an appended event to every GRIP proxy (`grip_publish`), after the
/// append: a proxy that is down costs at most its timeout and a log line,
/// never the event (its clients resume from the spool).
fn to_grip_proxies(
    config: &Config,
    channel: &str,
    appended: &spool::append::Appended,
    sender: Option<&str>,
) {
    if config.grip_publish.is_empty() {
        return;
    }
    let ws_text = crate::ws::record_to_json(&appended.record).unwrap_or_default();
    let item = crate::grip::publish::Item {
        channel,
        id: appended.id,
        // A first event follows "nothing yet", as holds of an empty
        // channel say (`grip::publish::EMPTY`).
        prev_id: Some(appended.prev.unwrap_or(crate::grip::publish::EMPTY)),
        sse: &appended.record,
        ws_text: &ws_text,
        sender,
    };
    crate::grip::publish::dispatch(&config.grip_publish, &item);
}
