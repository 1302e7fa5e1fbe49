//! `nph-events serve`: a small HTTP/1.1 server on a loopback port, a
//! second front door to the same handler as the CGI.
//!
//! * A connection thread (small stack) reads one request head at a time
//!   with `httparse`, builds the typed request, asks the handler and writes
//!   a reply; keep-alive for replies with a length. A stream or a WebSocket
//!   goes to the [`Reactor`] and the thread ends: every long-lived client
//!   is one descriptor in one epoll thread.
//! * Limits: a connection cap (503 + `Retry-After`, without a thread) that
//!   must fit the open-file limit (else it is lowered, with a warning); a
//!   cap per client address (429, without a thread); a request-head size
//!   cap (431); time limits for the head (408) and for the whole body
//!   (408); read and write timeouts. Accept errors (out of descriptors or
//!   memory) pause the accept loop with a growing back-off instead of
//!   spinning.
//! * Framing is strict: the head ends where `httparse` says it does (bare
//!   LF line ends included, so pipelined bytes are never dropped or
//!   mis-split); a repeated `Content-Length`, `Transfer-Encoding` or
//!   `Host`, both framing headers together, a length that is not plain
//!   digits, and header names that spell a framing header with `_` are
//!   400; other names with `_` are ignored (never taken for their `-`
//!   spelling). A refused request's body is never read: the answer goes
//!   out, the sending side is shut, and what the client still sends is
//!   dropped for at most a second (so the answer is not lost to a reset)
//!   before the connection closes.
//! * SIGTERM/SIGINT/SIGHUP stop gracefully: stop accepting, end every
//!   stream at an event boundary (WebSocket: 1001), exit 0 within a
//!   bounded time.
//! * The operator's pages exist only here, so they are answered here,
//!   before the handler: `/metrics` (Prometheus text, [`super::metrics`];
//!   by default to loopback clients not through a proxy: setting
//!   `metrics`) and `/healthz` (to anyone; 503 and why).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::metrics::{self, Gauges, Metrics, Proto, Refused, Via};
use super::reactor::{Joined, Kind, Reactor};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, MetricsAccess};
use crate::handler::{self, Answer, Subscribe, EVENTS_PATH};
use crate::http::{self, Framing, Reply, Status};
use crate::message::Message;
use crate::request::{Method, Protocol, Request};
use crate::spool::tail::Tailer;
use crate::spool::Spool;
use crate::sse;
use crate::stream;

/// A POST publishes only with credentials.
const CREDENTIALED: stream::rate::Publisher = stream::rate::Publisher::Credentialed;
/// Largest request head accepted (431 beyond).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines accepted (431 beyond).
const MAX_HEADERS: usize = 48;
/// Stack of a connection thread: the request path needs far less.
const STACK: usize = 128 * 1024;
/// How long a stopping server waits for its connections to end.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Longest a write to a client may block in a connection thread.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most descriptors one connection holds: its socket and, when it is the
/// only client of its channel on its reactor thread, that channel's
/// follower (a wake-up socket and the open spool segment). While its
/// stream is being set up, its own spool reader takes the follower's place.
pub const FDS_PER_CONNECTION: u64 = 3;
/// Descriptors kept free beyond the connections' for spool work: a
/// publish holds the channel's lock, a segment and a directory listing,
/// then a wake-up sender.
pub const FD_RESERVE: u64 = 32;
/// First pause of the accept loop after a resource error (descriptors,
/// memory, buffers); doubled per failure up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// Longest pause of the accept loop.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// After answering a request whose body was not read (or a broken head),
/// the sending side is shut and what the client still sends is dropped
/// for at most this long before the connection is closed: closing with
/// unread input makes the kernel send a reset, which can destroy the
/// answer before the client has read it.
const LINGER: Duration = Duration::from_secs(1);
/// ... and at most this many bytes.
const LINGER_BYTES: usize = 1 << 20;
/// How much nicer connection threads are than the reactor: the streams
/// already served come first when the cores are busy (see
/// `sys::lower_thread_priority`). Five steps give a thread about a third of
/// the CPU share of one at the reactor's niceness.
const CONNECTION_NICENESS: i32 = 5;
/// 429: a per-client connection limit.
const TOO_MANY_REQUESTS: Status = Status(429, "Too Many Requests");
/// 411: a chunked (or otherwise encoded) request body.
const LENGTH_REQUIRED: Status = Status(411, "Length Required");

/// Everything the connection threads share.
struct Server {
    config: Config,
    spool: Spool,
    /// Open connections, the reactor's clients included.
    active: Arc<AtomicUsize>,
    clock: SystemClock,
    reactor: Reactor,
    /// Publishes refused by the site's rate (429): one log line a second
    /// with the count, so that a flood does not fill the log.
    rate_refusals: Mutex<Throttle>,
    /// The numbers `/metrics` shows.
    metrics: Arc<Metrics>,
}

/// When a throttled kind of log line was last written, and how many went
/// unwritten since.
#[derive(Debug, Default)]
struct Throttle {
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl Throttle {
    /// Whether to write a line now (at most one a second); the count of
    /// the ones not written before it.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        let recent = |t: Instant| now.duration_since(t) < Duration::from_secs(1);
        if self.logged_at.is_some_and(recent) {
            self.unlogged += 1;
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// Decrements the connection count when a connection thread ends.
struct Active<'a>(&'a AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Connections the kernel completes while the accept loop catches up.
/// std listens with 128: a burst of reconnects (clients whose streams
/// ended together, a restart) overflows that, and each dropped SYN costs
/// its client a 1 s retransmission, so 500 reconnects spread over seconds
/// (measured: 500 connects took 2.1 s). The kernel caps it at
/// `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: i32 = 4096;

/// Runs the server until a stop signal; returns the exit status.
pub fn serve(mut config: Config, spool: Spool, err: &mut dyn Write) -> i32 {
    let addr = config.listen;
    if !addr.ip().is_loopback() {
        if !config.allow_remote {
            let _ = writeln!(
                err,
                "nph-events serve: refusing to listen on {addr}, which is not a loopback \
                 address; pass --allow-remote (NPH_EVENTS_ALLOW_REMOTE=1) to do it anyway"
            );
            return 2;
        }
        let _ = writeln!(
            err,
            "nph-events serve: warning: listening on {addr}: reachable from other hosts"
        );
    }
    crate::sys::raise_open_files_limit();
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(err, "nph-events serve: cannot listen on {addr}: {e}");
            return 1;
        }
    };
    crate::sys::deepen_listen_queue(&listener, LISTEN_BACKLOG);
    let stop = match crate::sys::stop_signals() {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "nph-events serve: cannot install signal handlers: {e}");
            return 1;
        }
    };
    let active = Arc::new(AtomicUsize::new(0));
    // One reactor thread per core (at most 4): a broadcast's writes are
    // mostly kernel work, which then runs on every core.
    let threads = thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let metrics = Arc::new(Metrics::new(threads));
    let reactor = match Reactor::start(&config, &spool, &active, threads, &metrics) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "nph-events serve: cannot start the stream thread: {e}");
            return 1;
        }
    };
    let warning = fit_connections(&mut config);
    let local = listener.local_addr().unwrap_or(addr);
    let _ = writeln!(
        err,
        "nph-events serve: listening on http://{local}/ (demo page), stream at http://{local}{EVENTS_PATH}"
    );
    if let Some(line) = warning {
        let _ = writeln!(err, "nph-events serve: warning: {line}");
    }
    let server = Arc::new(Server {
        config,
        spool,
        active,
        clock: SystemClock::new(),
        reactor,
        rate_refusals: Mutex::new(Throttle::default()),
        metrics,
    });
    accept_loop(&listener, &server, &stop);
    drop(listener);
    let open = server.active.load(Ordering::SeqCst);
    let _ = writeln!(err, "nph-events serve: stopping; {open} connection(s) open");
    server.reactor.stop();
    let start = Instant::now();
    while server.active.load(Ordering::SeqCst) > 0 && start.elapsed() < STOP_GRACE {
        thread::sleep(Duration::from_millis(10));
    }
    let left = server.active.load(Ordering::SeqCst);
    let _ = writeln!(err, "nph-events serve: stopped ({left} connection(s) cut)");
    0
}

/// Lowers `max_connections` to what the open-file limit allows; returns
/// a warning naming both numbers, or saying that descriptors cannot be
/// counted (then neither this check nor `max_per_client` works).
fn fit_connections(config: &mut Config) -> Option<String> {
    let (Some(open), Some(limit)) = (open_descriptors(), open_files_limit()) else {
        return Some(
            "/proc/self is not readable: max_connections is not checked against the \
             open-file limit and max_per_client is not enforced"
                .to_owned(),
        );
    };
    let limit = limit?; // unlimited
    let fit = connections_that_fit(limit, open);
    if config.max_connections <= fit {
        return None;
    }
    let line = format!(
        "max_connections {} does not fit the open-file limit {limit} ({open} descriptors \
         in use, up to {FDS_PER_CONNECTION} per connection, {FD_RESERVE} kept for spool \
         work): lowered to {fit}; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) \
         to serve more",
        config.max_connections
    );
    config.max_connections = fit;
    Some(line)
}

/// Connections that fit `limit` descriptors with `open` in use already
/// (at least one).
pub fn connections_that_fit(limit: u64, open: u64) -> usize {
    let spare = limit.saturating_sub(open).saturating_sub(FD_RESERVE);
    (spare / FDS_PER_CONNECTION).clamp(1, usize::MAX as u64) as usize
}

/// Descriptors this process has open.
fn open_descriptors() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    // (The listing's own descriptor is among them.)
    Some((entries.count() as u64).saturating_sub(1))
}

/// The open-file limit in force: `Some(None)` when unlimited.
fn open_files_limit() -> Option<Option<u64>> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    soft.parse().ok().map(Some)
}

fn accept_loop(listener: &TcpListener, server: &Arc<Server>, stop: &UnixDatagram) {
    let fds = [listener.as_fd(), stop.as_fd()];
    let mut clients = PerClient::new(server.config.max_per_client, server.config.connect_rate);
    let mut backoff = Backoff::default();
    loop {
        let ready = crate::sys::wait_readable(&fds, Duration::from_secs(1));
        if ready[1] {
            return;
        }
        if !ready[0] {
            continue;
        }
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                if let Some(pause) = backoff.failed(&e) {
                    // A pause, still listening for the stop signal.
                    if crate::sys::wait_readable(&fds[1..], pause)[0] {
                        return;
                    }
                }
                continue;
            }
        };
        backoff.succeeded();
        server.metrics.accepted();
        admit(stream, peer, server, &mut clients);
    }
}

/// Starts a connection thread for a new connection, or refuses it without
/// one: past `max_connections` (503), past `max_per_client` for its
/// address (429).
fn admit(stream: TcpStream, peer: SocketAddr, server: &Arc<Server>, clients: &mut PerClient) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let config = &server.config;
    if server.active.fetch_add(1, Ordering::SeqCst) >= config.max_connections {
        server.active.fetch_sub(1, Ordering::SeqCst);
        server.metrics.refused(Refused::MaxConnections);
        let reply = Reply::error(http::UNAVAILABLE, "too many connections; try again shortly");
        refuse(stream, &server.clock, reply);
        eprintln!("nph-events serve: {peer} refused: connection limit reached");
        return;
    }
    // A peer that connects from the very address it reached is a process
    // on this host: the reverse proxy in front, which carries every
    // client. It is not limited by address (the proxy limits its clients).
    // `X-Forwarded-For` is not used instead: the head arrives after the
    // connection is taken, a proxy keeps upstream connections alive and
    // sends many clients' requests over each, and the header is only as
    // trustworthy as the proxy's configuration.
    let from_here = stream.local_addr().is_ok_and(|l| l.ip() == peer.ip());
    let verdict = if from_here {
        Admit::Yes
    } else {
        clients.admit(peer.ip(), &stream, Instant::now())
    };
    let (msg, why) = match verdict {
        Admit::Yes => ("", String::new()),
        Admit::TooMany => (
            "too many connections from your address; try again shortly",
            format!("more than {} connections", config.max_per_client),
        ),
        Admit::TooFast => (
            "too many new connections from your address; try again shortly",
            format!("more than {} new connections a second", config.connect_rate),
        ),
    };
    if verdict != Admit::Yes {
        server.active.fetch_sub(1, Ordering::SeqCst);
        server.metrics.refused(if verdict == Admit::TooMany {
            Refused::MaxPerClient
        } else {
            Refused::ConnectRate
        });
        let reply = Reply::error(TOO_MANY_REQUESTS, msg);
        refuse(stream, &server.clock, reply);
        clients.log_refusal(peer, &why);
        return;
    }
    let shared = Arc::clone(server);
    let spawned = thread::Builder::new()
        .name("connection".into())
        .stack_size(STACK)
        .spawn(move || connection(stream, peer, &shared));
    if spawned.is_err() {
        server.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The accept loop's answer to failing `accept` calls: resource errors
/// pause it, with a pause that grows from [`BACKOFF_FIRST`] to
/// [`BACKOFF_MAX`], and are logged once per run of failures.
#[derive(Debug, Default)]
struct Backoff {
    /// The next pause; `None` while accepting works.
    pause: Option<Duration>,
    /// Failures in the current run, and when it started.
    failures: u64,
    since: Option<Instant>,
}

impl Backoff {
    /// One failed `accept`; returns how long to pause (none for an error
    /// that concerned only the connection being accepted).
    fn failed(&mut self, e: &io::Error) -> Option<Duration> {
        if connection_error(e) {
            return None;
        }
        self.failures += 1;
        let pause = match self.pause {
            None => {
                self.since = Some(Instant::now());
                let (open, limit) = (open_descriptors(), open_files_limit().flatten());
                let fds = match (open, limit) {
                    (Some(o), Some(l)) => format!(" ({o} of {l} descriptors in use)"),
                    _ => String::new(),
                };
                eprintln!(
                    "nph-events serve: cannot accept connections: {e}{fds}; pausing between \
                     attempts ({} ms, growing to {} ms) until they succeed",
                    BACKOFF_FIRST.as_millis(),
                    BACKOFF_MAX.as_millis()
                );
                BACKOFF_FIRST
            }
            Some(p) => (p * 2).min(BACKOFF_MAX),
        };
        self.pause = Some(pause);
        Some(pause)
    }

    /// A connection was accepted: the end of a run of failures, if any.
    fn succeeded(&mut self) {
        if self.pause.take().is_some() {
            let took = self.since.take().map_or(0.0, |t| t.elapsed().as_secs_f64());
            eprintln!(
                "nph-events serve: accepting again after {} failed attempt(s) in {took:.1} s",
                self.failures
            );
        }
        self.failures = 0;
    }
}

/// Errors `accept` reports for the connection it was taking (which is
/// gone), not for the server: retried at once (see accept(2), "Error
/// handling").
fn connection_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EAGAIN
                | libc::EINTR
                | libc::ECONNABORTED
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// Open connections per client address, for `max_per_client`; only the
/// accept loop uses it. A connection is remembered by its descriptor and
/// its socket's inode (`/proc/self/fd/N` reads `socket:[inode]`), so
/// nobody has to report its end: once the descriptor is closed (by a
/// connection thread or by the reactor) or reused for another socket, the
/// connection is gone. An address's connections are checked when it
/// reaches its limit; everyone's when more are remembered than could be
/// open.
#[derive(Debug)]
struct PerClient {
    max: usize,
    by_address: HashMap<IpAddr, Vec<Conn>>,
    remembered: usize,
    sweep_at: usize,
    /// New connections per second per address (`connect_rate`).
    rate: f64,
    /// Each recent address's allowance of new connections, and when it was
    /// last refilled; forgotten once full again.
    allowance: HashMap<IpAddr, (f64, Instant)>,
    /// Refusals not logged yet, and when the last line was written: one
    /// line a second at most, so a flood does not become a log flood.
    unlogged: u64,
    logged_at: Option<Instant>,
}

/// Whether a new connection gets a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    Yes,
    /// Past `max_per_client`.
    TooMany,
    /// Past `connect_rate`.
    TooFast,
}

/// One remembered connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Conn {
    fd: RawFd,
    inode: u64,
}

impl Conn {
    fn open(self) -> bool {
        socket_inode(self.fd) == Some(self.inode)
    }
}

/// The inode of the socket open as `fd` in this process, if any.
fn socket_inode(fd: RawFd) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

impl PerClient {
    fn new(max: usize, rate: u32) -> PerClient {
        PerClient {
            max,
            by_address: HashMap::new(),
            remembered: 0,
            sweep_at: 1024,
            rate: f64::from(rate.max(1)),
            allowance: HashMap::new(),
            unlogged: 0,
            logged_at: None,
        }
    }

    /// Whether `ip` may open one more connection now; if so, `stream`
    /// counts for it from now on.
    fn admit(&mut self, ip: IpAddr, stream: &TcpStream, now: Instant) -> Admit {
        if !self.take_allowance(ip, now) {
            return Admit::TooFast;
        }
        if self.count_open(ip, stream) {
            Admit::Yes
        } else {
            Admit::TooMany
        }
    }

    /// A token of `ip`'s allowance (a bucket of twice the rate). Full
    /// buckets are forgotten at sweeps, so the map holds only addresses
    /// seen within the last two seconds or so.
    fn take_allowance(&mut self, ip: IpAddr, now: Instant) -> bool {
        let burst = 2.0 * self.rate;
        if self.allowance.len() > 4096 {
            let rate = self.rate;
            self.allowance
                .retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = self.allowance.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// One log line a second at most for refusals, with the count.
    fn log_refusal(&mut self, peer: SocketAddr, why: &str) {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .logged_at
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        eprintln!(
            "nph-events serve: {peer} refused: {why} from {} ({} refusal(s) since the last line)",
            peer.ip(),
            self.unlogged
        );
        self.unlogged = 0;
        self.logged_at = Some(now);
    }

    /// Whether `ip` has fewer than `max` connections open; if so, `stream`
    /// counts for it from now on. A socket that cannot be identified (no
    /// /proc) is let in uncounted.
    fn count_open(&mut self, ip: IpAddr, stream: &TcpStream) -> bool {
        let fd = stream.as_raw_fd();
        let Some(inode) = socket_inode(fd) else {
            return true;
        };
        let list = self.by_address.entry(ip).or_default();
        if list.len() >= self.max {
            let before = list.len();
            list.retain(|c| c.open());
            self.remembered -= before - list.len();
        }
        if list.len() >= self.max {
            return false;
        }
        list.push(Conn { fd, inode });
        self.remembered += 1;
        if self.remembered >= self.sweep_at {
            self.sweep();
        }
        true
    }

    /// Forgets every connection that ended (amortised: the next sweep
    /// waits until twice as many are remembered).
    fn sweep(&mut self) {
        self.by_address.retain(|_, list| {
            list.retain(|c| c.open());
            !list.is_empty()
        });
        self.remembered = self.by_address.values().map(Vec::len).sum();
        self.sweep_at = (self.remembered * 2).max(1024);
    }

    /// Connections remembered for `ip` (tests).
    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> usize {
        self.by_address.get(&ip).map_or(0, Vec::len)
    }
}

/// Answers a connection that gets no thread (503, 429). What the client
/// sent already is read and dropped first, without waiting, so that
/// closing does not reset the connection under the answer.
fn refuse(mut stream: TcpStream, clock: &SystemClock, reply: Reply) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let reply = reply.header("Retry-After", "5");
    write_reply(
        &mut stream,
        &framing(clock, Protocol::Http11, false),
        &reply,
    );
    let _ = stream.shutdown(Shutdown::Write);
    if stream.set_nonblocking(true).is_ok() {
        let mut buf = [0u8; 4096];
        for _ in 0..4 {
            if !matches!((&stream).read(&mut buf), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

/// Closes a connection whose input may hold unread bytes (a body that was
/// not needed, the rest of a refused head): the answer is written; the
/// sending side is shut, so the client sees the answer end; what it still
/// sends is dropped for at most [`LINGER`] and [`LINGER_BYTES`].
#[inline(never)]
fn linger_close(stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let end = Instant::now() + LINGER;
    let mut dropped = 0;
    let mut buf = [0u8; 4096];
    while dropped < LINGER_BYTES {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match (&stream).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => dropped += n,
            Err(e) if retry(&e) => {}
            Err(_) => break,
        }
    }
}

/// Closes a connection after its last answer: with [`linger_close`] when
/// the client sent more than was read (`unread`, or bytes waiting in the
/// socket), since closing with unread input makes the kernel answer with a
/// reset, which can destroy the answer before the client reads it.
fn close(stream: TcpStream, unread: bool) {
    let waiting = || {
        let mut b = [0u8; 1];
        stream.set_nonblocking(true).is_ok() && stream.peek(&mut b).is_ok_and(|n| n > 0)
    };
    if unread || waiting() {
        let _ = stream.set_nonblocking(false);
        linger_close(stream);
    }
}

/// Whether a refused head still parses as a HEAD request (its answer
/// then has no body; a head that does not parse has no method to go by).
#[inline(never)]
fn parses_as_head(bytes: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    matches!(req.parse(bytes), Ok(httparse::Status::Complete(_))) && req.method == Some("HEAD")
}

/// A read that timed out or was interrupted (try again, time permitting).
fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn framing(clock: &SystemClock, protocol: Protocol, keep_alive: bool) -> Framing {
    Framing::Listener {
        protocol,
        date: httpdate::fmt_http_date(clock.wall()),
        keep_alive,
    }
}

fn write_reply(stream: &mut TcpStream, framing: &Framing, reply: &Reply) {
    let mut buf = Vec::with_capacity(256);
    http::write_reply(&mut buf, framing, reply);
    let _ = stream.write_all(&buf);
}

/// A parsed request head.
#[derive(Debug)]
struct Head {
    request: Request,
    keep_alive: bool,
    /// A `Transfer-Encoding` was sent (answered with 411).
    encoded: bool,
    content_length: u64,
    /// A header a proxy adds (`Forwarded`, `X-Forwarded-For`,
    /// `X-Real-IP`, `Via`) was sent: the request came through one.
    forwarded: bool,
}

/// Why no request head could be read.
#[derive(Debug)]
enum HeadError {
    /// The connection ended (or the server is stopping) between requests.
    Closed,
    /// Answer with this, then close.
    Reply(Reply),
}

fn refused(status: Status, msg: &str) -> HeadError {
    HeadError::Reply(Reply::error(status, msg))
}

/// What became of one request on a connection.
enum Next {
    /// Read the next request on this connection.
    KeepAlive,
    /// Close it.
    Close,
    /// The reactor has it now.
    HandedOver,
}

fn connection(stream: TcpStream, peer: SocketAddr, server: &Server) {
    crate::sys::lower_thread_priority(CONNECTION_NICENESS);
    serve_connection(stream, peer, server);
    // An ended thread's stack is kept by the C library for the next
    // thread, with every page it touched: give those back first.
    crate::sys::release_unused_stack();
}

#[inline(never)]
fn serve_connection(mut stream: TcpStream, peer: SocketAddr, server: &Server) {
    let _active = Active(&server.active);
    let _ = stream.set_nodelay(true);
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let head = match read_head(&mut stream, &mut pending, server) {
            Ok(h) => h,
            Err(HeadError::Closed) => return,
            Err(HeadError::Reply(reply)) => {
                let framing = framing(&server.clock, Protocol::Http11, false);
                // The answer to a HEAD has no body, even a refusal.
                let reply = reply.head_only(parses_as_head(&pending));
                write_reply(&mut stream, &framing, &reply);
                eprintln!(
                    "nph-events serve: {peer} {} {}",
                    reply.status.0,
                    reply.text().trim_end()
                );
                linger_close(stream);
                return;
            }
        };
        if pending.is_empty() {
            // Streams live long: do not keep the head buffer's capacity.
            pending = Vec::new();
        }
        match request(head, stream, peer, server, pending) {
            (Next::KeepAlive, Some((s, p))) => (stream, pending) = (s, p),
            (Next::HandedOver, _) => {
                server.active.fetch_add(1, Ordering::SeqCst); // the reactor's now
                return;
            }
            _ => return,
        }
    }
}

/// Answers one request. Returns the connection back while it stays open.
fn request(
    head: Head,
    mut stream: TcpStream,
    peer: SocketAddr,
    server: &Server,
    mut pending: Vec<u8>,
) -> (Next, Option<(TcpStream, Vec<u8>)>) {
    let request = &head.request;
    let keep_alive = head.keep_alive && !server.reactor.stopping();
    let framing = framing(&server.clock, request.protocol, keep_alive);
    let log = |status: u16, what: &str| {
        let mut more = String::new();
        if status == http::TOO_MANY_REQUESTS.0 {
            let mut throttle = server
                .rate_refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match throttle.admit(Instant::now()) {
                None => return,
                Some(0) => {}
                Some(n) => {
                    more = format!(" ({n} more refused by the publish rate since the last line)")
                }
            }
        }
        let query = if request.query.is_empty() { "" } else { "?" };
        let path = request.path.as_deref().unwrap_or("");
        eprintln!(
            "nph-events serve: {peer} {} {path}{query}{} {status}{what}{more}",
            request.method.as_str(),
            request.query
        );
    };
    let early = if head.encoded {
        let msg = "chunked request bodies are not supported; send Content-Length";
        Some(Reply::error(LENGTH_REQUIRED, msg))
    } else if request.method.reads_only() && head.content_length > 0 {
        let msg = "a GET or HEAD request has no body";
        Some(Reply::error(http::BAD_REQUEST, msg))
    } else {
        None
    };
    if let Some(reply) = early {
        let reply = reply.head_only(request.method == Method::Head);
        write_reply(&mut stream, &framing.closing(), &reply);
        log(reply.status.0, "");
        linger_close(stream);
        return (Next::Close, None);
    }
    if let Some(reply) = operator_page(&head, peer, server) {
        let reply = reply.head_only(request.method == Method::Head);
        log(reply.status.0, "");
        // A body (a POST, refused) is not read: close after the answer.
        let unread = head.content_length > 0;
        if keep_alive && !unread {
            write_reply(&mut stream, &framing, &reply);
            return (Next::KeepAlive, Some((stream, pending)));
        }
        write_reply(&mut stream, &framing.closing(), &reply);
        close(stream, unread || !pending.is_empty());
        return (Next::Close, None);
    }
    let mut body = Body {
        pending: &mut pending,
        stream: &stream,
        left: head.content_length,
        deadline: Instant::now() + server.config.body_timeout,
        timed_out: false,
    };
    let (config, clock) = (&server.config, &server.clock);
    let mut append = |channel: &str, m: &Message| {
        let result = stream::publish_from_client(config, channel, m, CREDENTIALED, clock);
        match &result {
            Ok(_) => server.metrics.published(Via::Post),
            Err(e) if stream::rate::is_rate_limited(e) => server.metrics.publish_rate_refused(),
            Err(_) => server.metrics.publish_failed(),
        }
        result
    };
    let mut answer = handler::handle(config, request, &mut body, &mut append, clock.wall());
    // Through a GRIP proxy: a hold, or WebSocket events, with the backlog.
    answer = crate::grip::complete(config, Some(&server.spool), answer);
    let (left, timed_out) = (body.left, body.timed_out);
    if timed_out {
        let reply = Reply::error(http::REQUEST_TIMEOUT, "request body too slow");
        answer = Answer::Reply(reply);
    }
    log(
        handler::status(&answer).0,
        match &answer {
            Answer::Stream(s) if !s.head_only => " stream",
            Answer::Upgrade(_) => " websocket",
            _ => "",
        },
    );
    match answer {
        Answer::Reply(reply) => {
            if let Some(line) = &reply.log {
                eprintln!("nph-events serve: {line}");
            }
            if keep_alive && left == 0 {
                write_reply(&mut stream, &framing, &reply);
                return (Next::KeepAlive, Some((stream, pending)));
            }
            write_reply(&mut stream, &framing.closing(), &reply);
            close(stream, left > 0 || !pending.is_empty());
            (Next::Close, None)
        }
        Answer::Stream(s) => {
            let mut opening = Vec::with_capacity(512);
            http::write_stream_head(&mut opening, &framing.closing(), &s.headers);
            if s.head_only {
                let _ = stream.write_all(&opening);
                close(stream, !pending.is_empty());
                return (Next::Close, None);
            }
            stream::opening_lines(config, &mut opening);
            hand_over(server, stream, peer, &s, &framing, Kind::Sse { opening })
        }
        // `grip::complete` answered it; kept for completeness.
        Answer::GripWs(_) => {
            let reply = Reply::server_failure("answer the GRIP proxy", &"events not completed");
            write_reply(&mut stream, &framing.closing(), &reply);
            close(stream, true);
            (Next::Close, None)
        }
        Answer::Upgrade(u) => {
            let mut head = Vec::new();
            http::write_switching_protocols(&mut head, &framing, &u.accept);
            let kind = Kind::Ws {
                settings: u.settings,
                early: std::mem::take(&mut pending),
            };
            hand_over_after(server, stream, peer, &u.subscribe, &framing, kind, &head)
        }
    }
}

fn hand_over(
    server: &Server,
    stream: TcpStream,
    peer: SocketAddr,
    s: &Subscribe,
    framing: &Framing,
    kind: Kind,
) -> (Next, Option<(TcpStream, Vec<u8>)>) {
    hand_over_after(server, stream, peer, s, framing, kind, &[])
}

/// Reads the client's backlog from the spool here (the reactor thread
/// does no long reads), writes `first` (the 101), then hands the client to
/// the reactor.
fn hand_over_after(
    server: &Server,
    mut stream: TcpStream,
    peer: SocketAddr,
    s: &Subscribe,
    framing: &Framing,
    kind: Kind,
    first: &[u8],
) -> (Next, Option<(TcpStream, Vec<u8>)>) {
    let mut backlog = Vec::new();
    let reader = match Tailer::open(&server.spool, &s.channel, s.start, &mut backlog)
        .and_then(|mut r| r.poll(&mut backlog, false).map(|()| r))
    {
        Ok(r) => r,
        Err(e) => {
            let reply = Reply::server_failure("subscribe", &e);
            eprintln!(
                "nph-events serve: {peer} {}",
                reply.log.as_deref().unwrap_or("")
            );
            write_reply(&mut stream, &framing.closing(), &reply);
            return (Next::Close, None);
        }
    };
    if stream.write_all(first).is_err() {
        return (Next::Close, None);
    }
    let bytes = server.metrics.bytes(match kind {
        Kind::Sse { .. } => Proto::Sse,
        Kind::Ws { .. } => Proto::Ws,
    });
    bytes.fetch_add(first.len() as u64, Ordering::Relaxed);
    server.reactor.join(Joined {
        stream,
        peer,
        channel: s.channel.clone(),
        start: s.start,
        backlog,
        reader,
        kind,
    });
    (Next::HandedOver, None)
}

/// The operator's pages, answered here and not by the handler (they
/// exist only in the listener): `/metrics` (Prometheus text format, to
/// the clients `metrics` allows: by default loopback peers whose request
/// came through no proxy) and `/healthz` (to anyone: 200 `ok`, or 503 and
/// why, naming no path). `None` for every other path.
fn operator_page(head: &Head, peer: SocketAddr, server: &Server) -> Option<Reply> {
    let request = &head.request;
    let path = request.path.as_deref()?;
    if path != "/metrics" && path != "/healthz" {
        return None;
    }
    let config = &server.config;
    if path == "/metrics" && config.metrics == MetricsAccess::Off {
        return None; // the handler's 404
    }
    if !request.method.reads_only() {
        let reply = Reply::error(http::METHOD_NOT_ALLOWED, "GET or HEAD only");
        return Some(reply.header("Allow", "GET, HEAD"));
    }
    let reply = if path == "/healthz" {
        match server
            .metrics
            .unhealthy(&server.spool, server.reactor.stopping())
        {
            None => Reply::body(http::OK, "text/plain; charset=utf-8", "ok\n".to_owned()),
            Some(why) => Reply::error(http::UNAVAILABLE, &why),
        }
    } else if config.metrics == MetricsAccess::Local && (!is_loopback(peer.ip()) || head.forwarded)
    {
        Reply::error(
            http::FORBIDDEN,
            "metrics are served to clients on this host only, not through a proxy (setting: metrics)",
        )
    } else {
        let gauges = Gauges {
            active: server.active.load(Ordering::SeqCst),
            max_connections: config.max_connections,
            queue_budget: config.queue_budget,
        };
        let text = server
            .metrics
            .render(&gauges, &server.spool, config.metrics_channels);
        Reply::body(http::OK, metrics::CONTENT_TYPE, text)
    };
    Some(reply.header("Cache-Control", "no-store"))
}

/// A loopback address, an IPv4 one mapped into IPv6 included.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
    }
}

/// Reads one request head (bytes after it stay in `pending`). Never
/// inlined: its parser's header array must not sit in a frame that stays
/// live.
#[inline(never)]
fn read_head(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    server: &Server,
) -> Result<Head, HeadError> {
    let deadline = Instant::now() + server.config.header_timeout;
    // Bytes of `pending` known not to end a head yet.
    let mut scanned = 0;
    loop {
        if blank_line_after(pending, scanned) {
            if let Some((head, end)) = parse_head(pending)? {
                pending.drain(..end);
                return Ok(head);
            }
        }
        scanned = pending.len();
        if pending.len() > MAX_HEAD {
            return Err(refused(http::HEADERS_TOO_LARGE, "request head too large"));
        }
        if server.reactor.stopping() && pending.is_empty() {
            return Err(HeadError::Closed);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if pending.is_empty() {
                return Err(HeadError::Closed); // an idle keep-alive connection
            }
            return Err(refused(http::REQUEST_TIMEOUT, "request head too slow"));
        }
        // Wake at least once a second to notice a stopping server.
        let _ = stream.set_read_timeout(Some(left.min(Duration::from_secs(1))));
        let start = pending.len();
        pending.resize(start + 1024, 0);
        let read = stream.read(&mut pending[start..]);
        pending.truncate(start + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => return Err(HeadError::Closed),
            Ok(_) => {}
            Err(e) if retry(&e) => {}
            Err(_) => return Err(HeadError::Closed),
        }
    }
}

/// Whether `buf` holds an empty line (LF LF, or LF CR LF) that ends
/// after byte `from`: only then can a head be complete, so a head that
/// arrives a byte at a time is not parsed again at every byte.
fn blank_line_after(buf: &[u8], from: usize) -> bool {
    let tail = &buf[from.saturating_sub(2).min(buf.len())..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

/// Parses the request head at the start of `bytes` into the typed
/// request; returns it with the head's length, or `None` while the head
/// is incomplete. The head ends where `httparse` says (it takes bare LF
/// line ends too); nothing after it is looked at.
#[inline(never)]
fn parse_head(bytes: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let end = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refused(http::HEADERS_TOO_LARGE, "too many header fields"))
        }
        Err(_) => return Err(refused(http::BAD_REQUEST, "malformed request head")),
    };
    if end > MAX_HEAD {
        return Err(refused(http::HEADERS_TOO_LARGE, "request head too large"));
    }
    let method = req.method.unwrap_or("GET");
    let target = req.path.unwrap_or("/");
    if method == "CONNECT" || target == "*" {
        let reply = Reply::error(
            http::METHOD_NOT_ALLOWED,
            "this server is not a proxy; it serves / and /events",
        );
        return Err(HeadError::Reply(reply.header("Allow", "GET, HEAD, POST")));
    }
    let (authority, path, query) = split_target(target)?;
    let protocol = match req.version {
        Some(0) => Protocol::Http10,
        _ => Protocol::Http11,
    };
    let mut request = Request::new(
        Method::parse(method),
        protocol,
        Some(path.to_owned()),
        query.to_owned(),
    );
    let (mut lengths, mut encodings, mut hosts) = (0, 0, 0);
    let mut forwarded = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.contains('_') {
            // Never an alias of the `-` spelling (CGI variables cannot
            // tell them apart; nginx drops such names by default).
            // Framing names spelt so are refused: a proxy in front might
            // take them for the real thing.
            let dashed = name.replace('_', "-");
            if is_framing(&dashed) {
                return Err(refused(
                    http::BAD_REQUEST,
                    "header name with '_' standing for Content-Length or Transfer-Encoding",
                ));
            }
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            encodings += 1;
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if PROXY_HEADERS.iter().any(|p| name.eq_ignore_ascii_case(p)) {
            forwarded = true;
        }
        request.headers.set(name, &String::from_utf8_lossy(h.value));
    }
    let framing_error = if lengths > 1 {
        Some("more than one Content-Length")
    } else if encodings > 1 {
        Some("more than one Transfer-Encoding")
    } else if lengths > 0 && encodings > 0 {
        Some("both Content-Length and Transfer-Encoding")
    } else if hosts > 1 {
        Some("more than one Host")
    } else {
        None
    };
    if let Some(msg) = framing_error {
        return Err(refused(http::BAD_REQUEST, msg));
    }
    if let Some(authority) = authority {
        // An absolute-form target names the host (RFC 9112, 3.2.2).
        request.headers.host = Some(authority.to_owned());
    }
    let content_length = match request.headers.content_length.as_deref() {
        None => 0,
        Some(v) => sse::parse_id(v)
            .ok_or_else(|| refused(http::BAD_REQUEST, "malformed Content-Length"))?,
    };
    let connection = request
        .headers
        .connection
        .as_deref()
        .unwrap_or("")
        .to_ascii_lowercase();
    let keep_alive = match protocol {
        Protocol::Http10 => connection.contains("keep-alive"),
        _ => !connection.contains("close"),
    };
    let head = Head {
        request,
        keep_alive,
        encoded: encodings > 0,
        content_length,
        forwarded,
    };
    Ok(Some((head, end)))
}

/// Headers a reverse proxy adds: a request with one came through a
/// proxy, whatever address it arrived from.
const PROXY_HEADERS: [&str; 4] = ["forwarded", "x-forwarded-for", "x-real-ip", "via"];

fn is_framing(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
}

/// Splits a request target into its authority (absolute form only), path
/// and query. The origin form (`/path?query`) and the absolute form
/// (`http://host/path?query`, which servers must accept) are served;
/// anything else is 400.
fn split_target(target: &str) -> Result<(Option<&str>, &str, &str), HeadError> {
    let bad = || refused(http::BAD_REQUEST, "the request target must be a path");
    let (authority, rest) = if target.starts_with('/') {
        (None, target)
    } else {
        let scheme = target.find("://").map(|i| &target[..i]).ok_or_else(bad)?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(bad());
        }
        let after = &target[scheme.len() + 3..];
        let cut = after.find(['/', '?']).unwrap_or(after.len());
        let authority = &after[..cut];
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        (Some(authority), &after[cut..])
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = if path.is_empty() { "/" } else { path };
    Ok((authority, path, query))
}

/// A request body: what arrived with the head, then the socket, up to its
/// Content-Length, within the body deadline.
struct Body<'a> {
    pending: &'a mut Vec<u8>,
    stream: &'a TcpStream,
    left: u64,
    /// When the whole body must have arrived (`body_timeout` after the
    /// head).
    deadline: Instant,
    /// The deadline passed (answered with 408).
    timed_out: bool,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = if !self.pending.is_empty() {
            let n = want.min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            n
        } else {
            loop {
                let time = self.deadline.saturating_duration_since(Instant::now());
                if time.is_zero() {
                    self.timed_out = true;
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request body too slow",
                    ));
                }
                let _ = self.stream.set_read_timeout(Some(time));
                match (&*self.stream).read(&mut buf[..want]) {
                    Ok(n) => break n,
                    Err(e) if retry(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        };
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
        parse_head(bytes)
    }

    fn status(bytes: &[u8]) -> u16 {
        match parse(bytes) {
            Err(HeadError::Reply(r)) => r.status.0,
            Err(HeadError::Closed) => panic!("closed"),
            Ok(None) => 0,
            Ok(Some(_)) => 200,
        }
    }

    #[test]
    fn the_head_ends_where_httparse_says_with_bare_lf_too() {
        let two = b"GET /a HTTP/1.1\nHost: x\n\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        let (head, end) = parse(two).unwrap().unwrap();
        assert_eq!(head.request.path.as_deref(), Some("/a"));
        assert_eq!(&two[end..end + 6], b"GET /b");
        let (head, rest) = parse(&two[end..]).unwrap().unwrap();
        assert_eq!(head.request.path.as_deref(), Some("/b"));
        assert_eq!(end + rest, two.len());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        assert_eq!(status(b"GET / HTTP/1.1\rHost: x\r\n\r\n"), 400, "bare CR");
    }

    #[test]
    fn a_blank_line_is_looked_for_only_in_new_bytes() {
        assert!(blank_line_after(b"GET / HTTP/1.1\r\n\r\n", 0));
        assert!(
            blank_line_after(b"GET / HTTP/1.1\r\n\r\n", 16),
            "spans the boundary"
        );
        assert!(blank_line_after(b"GET / HTTP/1.1\n\n", 15));
        assert!(!blank_line_after(b"GET / HTTP/1.1\r\nHost: x\r\n", 0));
        assert!(!blank_line_after(b"", 5));
    }

    #[test]
    fn framing_headers_are_strict() {
        let cases: &[(&[u8], u16)] = &[
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent_Length: 5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\ntransfer_encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nContent-Length:  7 \r\n\r\n", 200),
        ];
        for (bytes, want) in cases {
            assert_eq!(status(bytes), *want, "{}", String::from_utf8_lossy(bytes));
        }
        let (head, _) = parse(b"POST / HTTP/1.1\r\nContent-Length:  7 \r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.content_length, 7);
        let (head, _) = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.encoded && head.content_length == 0);
    }

    #[test]
    fn underscore_names_never_alias_dash_names() {
        let (head, _) =
            parse(b"GET / HTTP/1.1\r\nLast_Event_ID: 5\r\nX_Any: 1\r\nAuthorization_: x\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(head.request.headers.last_event_id, None);
        assert_eq!(head.request.headers.authorization, None);
    }

    #[test]
    fn targets() {
        assert_eq!(
            split_target("/events?a=1").unwrap(),
            (None, "/events", "a=1")
        );
        assert_eq!(
            split_target("http://example.org/events?x").unwrap(),
            (Some("example.org"), "/events", "x")
        );
        assert_eq!(
            split_target("HTTPS://h:8080?q").unwrap(),
            (Some("h:8080"), "/", "q")
        );
        for bad in [
            "events",
            "ftp://h/",
            "http://",
            "http:///x",
            "http://u@h/",
            "h:443",
        ] {
            assert!(split_target(bad).is_err(), "{bad}");
        }
        let (head, _) = parse(b"GET http://other/events HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.request.headers.host.as_deref(), Some("other"));
        assert_eq!(status(b"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 405);
        assert_eq!(status(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), 405);
        assert_eq!(status(b"GET h:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn a_head_over_the_limit_is_431_even_when_complete() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(status(big.as_bytes()), 431);
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert_eq!(
            status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            431
        );
    }

    #[test]
    fn the_connection_cap_fits_the_descriptor_limit() {
        assert_eq!(connections_that_fit(1024, 20), (1024 - 20 - 32) / 3);
        assert_eq!(connections_that_fit(64, 14), 6);
        assert_eq!(connections_that_fit(40, 14), 1, "at least one");
        assert_eq!(
            connections_that_fit(u64::MAX, 0) as u64,
            (u64::MAX - 32) / 3
        );
    }

    #[test]
    fn accept_errors_back_off_only_for_the_server() {
        let mut b = Backoff::default();
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(b.failed(&aborted), None);
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<_> = (0..8).map(|_| b.failed(&emfile).unwrap()).collect();
        assert_eq!(pauses[0], BACKOFF_FIRST);
        assert_eq!(pauses[1], BACKOFF_FIRST * 2);
        assert_eq!(*pauses.last().unwrap(), BACKOFF_MAX);
        b.succeeded();
        assert_eq!(
            b.failed(&emfile),
            Some(BACKOFF_FIRST),
            "a new run starts short"
        );
    }

    #[test]
    fn per_client_counts_open_sockets_only() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let ip: IpAddr = [127, 0, 0, 9].into();
        let mut clients = PerClient::new(2, 1000);
        let mut accepted = Vec::new();
        let connect = || {
            let c = TcpStream::connect(addr).unwrap();
            let (s, _) = server.accept().unwrap();
            (c, s)
        };
        for _ in 0..2 {
            let pair = connect();
            assert_eq!(clients.admit(ip, &pair.1, Instant::now()), Admit::Yes);
            accepted.push(pair);
        }
        let third = connect();
        assert_eq!(
            clients.admit(ip, &third.1, Instant::now()),
            Admit::TooMany,
            "at the limit"
        );
        let other = [127, 0, 0, 8].into();
        assert_eq!(
            clients.admit(other, &third.1, Instant::now()),
            Admit::Yes,
            "another address"
        );
        drop(accepted.pop());
        let fourth = connect();
        let again = clients.admit(ip, &fourth.1, Instant::now());
        assert_eq!(again, Admit::Yes, "a closed one no longer counts");
        assert_eq!(clients.count(ip), 2);
        drop(accepted);
        drop(fourth);
        drop(third);
        clients.sweep();
        assert_eq!((clients.remembered, clients.by_address.len()), (0, 0));
    }

    /// New connections from one address: a burst of twice the rate, then
    /// the rate; other addresses are not affected.
    #[test]
    fn per_client_connection_rate() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let c = TcpStream::connect(addr).unwrap();
        let (s, _) = server.accept().unwrap();
        let mut clients = PerClient::new(1000, 5);
        let (ip, t0) = ([127, 0, 0, 9].into(), Instant::now());
        let admitted = (0..30)
            .filter(|_| clients.admit(ip, &s, t0) == Admit::Yes)
            .count();
        assert_eq!(admitted, 10, "a burst of twice the rate");
        assert_eq!(clients.admit(ip, &s, t0), Admit::TooFast);
        assert_eq!(clients.admit([127, 0, 0, 8].into(), &s, t0), Admit::Yes);
        let later = t0 + Duration::from_millis(400);
        assert_eq!(
            clients.admit(ip, &s, later),
            Admit::Yes,
            "refilled: 2 tokens"
        );
        drop(c);
    }
}
