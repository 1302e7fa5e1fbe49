//! `nph-events serve`: a small HTTP/1.1 server on a loopback port.
//!
//! A second front door to the same request handling as the CGI
//! ([`crate::app::serve_request`]): the request head is parsed with
//! `httparse` into CGI-style variables, and streams, publishes and errors
//! are the CGI's, byte for byte apart from framing.
//!
//! * One thread per connection with a small stack: an idle stream costs a
//!   few KiB, where a CGI client costs a process.
//! * One spool watcher per process ([`Hub`]): a thread that holds one
//!   wake-up socket and one spool reader per channel in use. On a publish it
//!   reads the new records once, appends them to the channel's shared chunk
//!   log and unparks the channel's stream threads, which copy from there.
//! * Limits: a connection cap (503 + `Retry-After`), a request-head size cap
//!   (431), a time limit for the head to arrive (408), read and write
//!   timeouts. SIGTERM/SIGINT/SIGHUP stop gracefully: stop accepting, end
//!   every stream at an event boundary, exit 0 within a bounded time.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::app::{self, Handled, Subscriber};
use crate::cgi::Protocol;
use crate::clock::{Clock, SystemClock, Waiter, Wake};
use crate::config::Config;
use crate::http::{self, Framing};
use crate::pump::Source;
use crate::spool::tail::{Start, Tailer};
use crate::spool::wake::WakeSocket;
use crate::spool::Spool;

/// Largest request head accepted (431 beyond).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines accepted (431 beyond).
const MAX_HEADERS: usize = 48;
/// Stack of a connection thread: the request path needs far less.
const STACK: usize = 128 * 1024;
/// How long a stopping server waits for its connections to end.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Longest a write to a client may block (a client that stopped reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The stream's URL; the demo page is at `/`.
pub const EVENTS_PATH: &str = "/events";

/// A channel in use by at least one stream of this process.
///
/// Streams sleep with `thread::park_timeout`, and a publish unparks each of
/// them: one futex wake per thread, no shared lock to fight over. (With a
/// condition variable, a publish woke every stream at once only for them to
/// queue on its mutex one by one: p99 35 ms at 1,000 clients.)
#[derive(Debug, Default)]
struct Channel {
    /// Index of the next chunk the watcher will add (bumped per chunk).
    seq: AtomicU64,
    /// Who streams this channel, by a per-stream key.
    streams: Mutex<HashMap<u64, Waker>>,
    /// What the watcher read from the spool, shared by every stream.
    log: RwLock<ChunkLog>,
}

/// The recent records of a channel as the watcher read them, in chunks
/// (one per read). Streams copy from here: one spool read per publish for
/// the whole process instead of one per stream.
#[derive(Debug, Default)]
struct ChunkLog {
    /// Index of `chunks[0]`.
    first: u64,
    chunks: VecDeque<Arc<[u8]>>,
}

/// Chunks kept; a stream further behind than this is closed (its client
/// reconnects and resumes from the spool with Last-Event-ID).
const RING: usize = 1024;

impl ChunkLog {
    fn next(&self) -> u64 {
        self.first + self.chunks.len() as u64
    }

    fn push(&mut self, chunk: Arc<[u8]>) {
        self.chunks.push_back(chunk);
        if self.chunks.len() > RING {
            self.chunks.pop_front();
            self.first += 1;
        }
    }
}

/// How to wake one stream: an SSE stream's thread sleeps in
/// `park_timeout`; a WebSocket session sleeps in `poll` (it also waits for
/// client frames), so it gets a datagram.
#[derive(Debug)]
enum Waker {
    Thread(Thread),
    Socket(UnixDatagram),
}

impl Channel {
    fn wake_all(&self) {
        for waker in lock(&self.streams).values() {
            match waker {
                Waker::Thread(t) => t.unpark(),
                Waker::Socket(s) => {
                    let _ = s.send(b"!");
                }
            }
        }
    }

    fn register(&self, waker: Waker) -> u64 {
        let key = STREAM_KEYS.fetch_add(1, Ordering::SeqCst);
        lock(&self.streams).insert(key, waker);
        key
    }
}

static STREAM_KEYS: AtomicU64 = AtomicU64::new(0);

/// What the watcher keeps per channel: where to send, what to wait on,
/// and its own reader of the channel.
type Watched = (Arc<Channel>, WakeSocket, Tailer);

/// The process's one spool watcher and its channels.
#[derive(Debug)]
pub struct Hub {
    spool: Spool,
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    /// New channels for the watcher thread.
    adds: Mutex<Sender<Watched>>,
    /// Pokes the watcher's `poll` so it picks up new sockets or stops.
    poke: UnixDatagram,
    stopping: AtomicBool,
}

impl Hub {
    /// Starts the watcher thread.
    pub fn start(spool: Spool) -> io::Result<Arc<Hub>> {
        let (poke, poked) = UnixDatagram::pair()?;
        poke.set_nonblocking(true)?;
        poked.set_nonblocking(true)?;
        let (tx, rx) = mpsc::channel();
        let hub = Arc::new(Hub {
            spool,
            channels: Mutex::new(HashMap::new()),
            adds: Mutex::new(tx),
            poke,
            stopping: AtomicBool::new(false),
        });
        let watcher = Arc::clone(&hub);
        thread::Builder::new()
            .name("spool-watcher".into())
            .stack_size(STACK)
            .spawn(move || watcher.watch(poked, rx))?;
        Ok(hub)
    }

    /// The channel's shared state, creating it (and its wake-up socket,
    /// bound before anyone reads the log) on first use.
    fn channel(&self, name: &str) -> io::Result<Arc<Channel>> {
        let mut channels = lock(&self.channels);
        if let Some(c) = channels.get(name) {
            return Ok(Arc::clone(c));
        }
        let socket = WakeSocket::bind(&self.spool, name)?;
        let tailer = Tailer::open(&self.spool, name, Start::Now, &mut Vec::new())?;
        let channel = Arc::new(Channel::default());
        let _ = lock(&self.adds).send((Arc::clone(&channel), socket, tailer));
        let _ = self.poke.send(b"+");
        channels.insert(name.to_owned(), Arc::clone(&channel));
        Ok(channel)
    }

    /// The watcher loop: sleeps in `poll` on every channel's socket.
    fn watch(&self, poked: UnixDatagram, adds: Receiver<Watched>) {
        let mut watched: Vec<Watched> = Vec::new();
        let mut last_full = Instant::now();
        let mut buf = Vec::new();
        while !self.stopping.load(Ordering::SeqCst) {
            while let Ok(w) = adds.try_recv() {
                watched.push(w);
            }
            let ready = {
                let mut fds: Vec<BorrowedFd<'_>> = vec![poked.as_fd()];
                fds.extend(watched.iter().map(|(_, s, _)| s.socket().as_fd()));
                crate::sys::wait_readable(&fds, Duration::from_secs(1))
            };
            if ready.first() == Some(&true) {
                while poked.recv(&mut [0u8; 16]).is_ok() {}
            }
            // Now and then every channel is read with the slow checks
            // (gaps), as a stream does at its heartbeat.
            let full = last_full.elapsed() >= Duration::from_secs(5);
            if full {
                last_full = Instant::now();
            }
            for (i, (channel, socket, tailer)) in watched.iter_mut().enumerate() {
                let woken = ready.get(i + 1) == Some(&true);
                if woken {
                    while socket.socket().recv(&mut [0u8; 16]).is_ok() {}
                }
                if !woken && !full {
                    continue;
                }
                buf.clear();
                if let Err(e) = tailer.poll(&mut buf, full) {
                    eprintln!("nph-events serve: cannot read the spool: {e}");
                    continue;
                }
                if buf.is_empty() {
                    continue;
                }
                let next = {
                    let mut log = channel.log.write().unwrap_or_else(|e| e.into_inner());
                    log.push(Arc::from(buf.as_slice()));
                    log.next()
                };
                channel.seq.store(next, Ordering::SeqCst);
                channel.wake_all();
            }
        }
    }

    /// Stops the watcher and ends every stream's wait.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.poke.send(b"x");
        for channel in lock(&self.channels).values() {
            channel.wake_all();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits for news on one channel, a timeout, or the server stopping.
struct HubWaiter {
    hub: Arc<Hub>,
    channel: Arc<Channel>,
    key: u64,
    seen: u64,
    /// The thread's unused stack was released (done at the first wait).
    trimmed: bool,
}

impl HubWaiter {
    /// Registers the current thread with `channel`. `seen` is read after
    /// registering, so a publish from then on is never missed.
    fn new(hub: Arc<Hub>, channel: Arc<Channel>) -> HubWaiter {
        let key = channel.register(Waker::Thread(thread::current()));
        let seen = channel.seq.load(Ordering::SeqCst);
        HubWaiter {
            hub,
            channel,
            key,
            seen,
            trimmed: false,
        }
    }
}

impl Drop for HubWaiter {
    fn drop(&mut self) {
        lock(&self.channel.streams).remove(&self.key);
    }
}

impl Waiter for HubWaiter {
    fn wait(&mut self, timeout: Duration, _wake: Option<BorrowedFd<'_>>) -> Wake {
        if !self.trimmed {
            self.trimmed = true;
            crate::sys::release_unused_stack();
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.hub.stopping.load(Ordering::SeqCst) {
                return Wake::Shutdown;
            }
            let seq = self.channel.seq.load(Ordering::SeqCst);
            if seq != self.seen {
                self.seen = seq;
                return Wake::Data;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wake::Elapsed;
            }
            // An unpark between the check above and this call makes it
            // return at once: no wake-up is lost.
            thread::park_timeout(left);
        }
    }
}

/// A stream's source: the channel's shared chunks from its position on,
/// minus records it already had from its own backlog read.
struct HubSource {
    channel: Arc<Channel>,
    next: u64,
    last_id: Option<u64>,
}

impl Source for HubSource {
    fn poll(&mut self, out: &mut Vec<u8>, _full_check: bool) -> io::Result<()> {
        let log = self.channel.log.read().unwrap_or_else(|e| e.into_inner());
        if self.next < log.first {
            return Err(io::Error::other(
                "stream fell behind the broadcast; the client reconnects and resumes",
            ));
        }
        for chunk in log.chunks.iter().skip((self.next - log.first) as usize) {
            for record in crate::spool::records(chunk) {
                let id = crate::spool::record_id(record);
                if id.is_some_and(|id| self.last_id.is_some_and(|last| id <= last)) {
                    continue; // already sent from the backlog
                }
                out.extend_from_slice(record);
                self.last_id = id.or(self.last_id);
            }
        }
        self.next = log.next();
        Ok(())
    }
}

/// Takes a position in the channel's broadcast, then reads the backlog
/// from the spool. The caller registered for wake-ups before: whatever is
/// published from then on is in the backlog or in a chunk from the
/// position on (records in both are sent once, by id).
fn join(
    shared: Arc<Channel>,
    spool: &Spool,
    channel: &str,
    start: Start,
    backlog: &mut Vec<u8>,
) -> io::Result<HubSource> {
    let next = shared.log.read().unwrap_or_else(|e| e.into_inner()).next();
    let mut reader = Tailer::open(spool, channel, start, backlog)?;
    reader.poll(backlog, false)?;
    let last_id = crate::spool::records(backlog)
        .filter_map(crate::spool::record_id)
        .max()
        .or(match start {
            Start::After(n) => Some(n),
            Start::Now => None,
        });
    Ok(HubSource {
        channel: shared,
        next,
        last_id,
    })
}

/// A WebSocket session's source: the broadcast, woken by a datagram.
struct WsSource {
    inner: HubSource,
    rx: UnixDatagram,
    key: u64,
    backlog: Vec<u8>,
}

impl Source for WsSource {
    fn poll(&mut self, out: &mut Vec<u8>, full_check: bool) -> io::Result<()> {
        out.append(&mut self.backlog);
        self.inner.poll(out, full_check)
    }
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.rx.as_fd())
    }
    fn woken(&mut self) {
        while self.rx.recv(&mut [0u8; 16]).is_ok() {}
    }
}

impl Drop for WsSource {
    fn drop(&mut self) {
        lock(&self.inner.channel.streams).remove(&self.key);
    }
}

struct HubSubscriber {
    hub: Arc<Hub>,
}

impl Subscriber for HubSubscriber {
    fn subscribe<'a>(
        &'a mut self,
        spool: &Spool,
        channel: &str,
        start: Start,
        backlog: &mut Vec<u8>,
    ) -> io::Result<app::Subscribed<'a>> {
        let shared = self.hub.channel(channel)?;
        // Register before taking a position (see `join`).
        let waiter = HubWaiter::new(Arc::clone(&self.hub), Arc::clone(&shared));
        let source = join(shared, spool, channel, start, backlog)?;
        Ok((Box::new(source), Box::new(waiter)))
    }
}

/// Everything the connection threads share.
struct Server {
    config: Config,
    hub: Arc<Hub>,
    active: AtomicUsize,
    clock: SystemClock,
}

/// Decrements the connection count when a connection thread ends.
struct Active<'a>(&'a AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs the server until a stop signal; returns the exit status.
pub fn serve(config: Config, spool: Spool, err: &mut dyn Write) -> i32 {
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
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(err, "nph-events serve: cannot listen on {addr}: {e}");
            return 1;
        }
    };
    let stop = match crate::sys::stop_signals() {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "nph-events serve: cannot install signal handlers: {e}");
            return 1;
        }
    };
    let hub = match Hub::start(spool) {
        Ok(h) => h,
        Err(e) => {
            let _ = writeln!(err, "nph-events serve: cannot start the spool watcher: {e}");
            return 1;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let _ = writeln!(
        err,
        "nph-events serve: listening on http://{local}/ (demo page), stream at http://{local}{EVENTS_PATH}"
    );
    let server = Arc::new(Server {
        config,
        hub,
        active: AtomicUsize::new(0),
        clock: SystemClock::new(),
    });
    accept_loop(&listener, &server, &stop);
    drop(listener);
    let open = server.active.load(Ordering::SeqCst);
    let _ = writeln!(err, "nph-events serve: stopping; {open} connection(s) open");
    server.hub.stop();
    let start = Instant::now();
    while server.active.load(Ordering::SeqCst) > 0 && start.elapsed() < STOP_GRACE {
        thread::sleep(Duration::from_millis(10));
    }
    let left = server.active.load(Ordering::SeqCst);
    let _ = writeln!(err, "nph-events serve: stopped ({left} connection(s) cut)");
    0
}

fn accept_loop(listener: &TcpListener, server: &Arc<Server>, stop: &UnixDatagram) {
    let fds = [listener.as_fd(), stop.as_fd()];
    loop {
        let ready = crate::sys::wait_readable(&fds, Duration::from_secs(1));
        if ready[1] {
            return;
        }
        if !ready[0] {
            continue;
        }
        let Ok((stream, peer)) = listener.accept() else {
            continue;
        };
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        if server.active.fetch_add(1, Ordering::SeqCst) >= server.config.max_connections {
            server.active.fetch_sub(1, Ordering::SeqCst);
            refuse(stream, &server.clock);
            eprintln!("nph-events serve: {peer} refused: connection limit reached");
            continue;
        }
        let shared = Arc::clone(server);
        let spawned = thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || connection(stream, peer, &shared));
        if spawned.is_err() {
            server.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Answers 503 on a connection over the limit, without a thread.
fn refuse(mut stream: TcpStream, clock: &SystemClock) {
    let framing = Framing::Listener {
        protocol: Protocol::Http11,
        date: httpdate::fmt_http_date(clock.wall()),
        keep_alive: false,
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    app::serve_error(
        &mut stream,
        &framing,
        http::UNAVAILABLE,
        &[("Retry-After", "5")],
        "too many connections; try again shortly",
    );
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    query: String,
    protocol: Protocol,
    keep_alive: bool,
    vars: HashMap<String, String>,
    content_length: u64,
    chunked: bool,
}

/// Why no request head could be read.
enum HeadError {
    /// The connection ended (or the server is stopping) between requests.
    Closed,
    /// Answer with this status, then close.
    Reply(http::Status, &'static str),
}

fn connection(mut stream: TcpStream, peer: SocketAddr, server: &Server) {
    let _active = Active(&server.active);
    let _ = stream.set_nodelay(true);
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let mut head = match read_head(&mut stream, &mut pending, server) {
            Ok(h) => h,
            Err(HeadError::Closed) => return,
            Err(HeadError::Reply(status, msg)) => {
                let framing = listener_framing(server, Protocol::Http11, false);
                app::serve_error(&mut stream, &framing, status, &[], msg);
                eprintln!("nph-events serve: {peer} {} {msg}", status.0);
                return;
            }
        };
        let keep_alive = head.keep_alive && !server.hub.stopping.load(Ordering::SeqCst);
        if pending.is_empty() {
            // Streams live long: do not keep the head buffer's capacity.
            pending = Vec::new();
        }
        let framing = listener_framing(server, head.protocol, keep_alive);
        let mut body = Body {
            pending: &mut pending,
            stream: &stream,
            left: head.content_length,
        };
        let mut out = Sniff {
            inner: &stream,
            status: None,
        };
        let handled = route(&mut head, &framing, server, peer, &mut body, &mut out);
        let left = body.left;
        eprintln!(
            "nph-events serve: {peer} {} {}{}{} {}{}",
            head.method,
            head.path,
            if head.query.is_empty() { "" } else { "?" },
            head.query,
            out.status.map_or("-".to_owned(), |s| s.to_string()),
            if handled.streamed {
                " stream ended"
            } else {
                ""
            }
        );
        if handled.streamed || !keep_alive || head.chunked || left > 0 {
            return;
        }
    }
}

fn listener_framing(server: &Server, protocol: Protocol, keep_alive: bool) -> Framing {
    Framing::Listener {
        protocol,
        date: httpdate::fmt_http_date(server.clock.wall()),
        keep_alive,
    }
}

/// Dispatches by path: `/` the demo page, `/events` the shared logic.
fn route(
    head: &mut Head,
    framing: &Framing,
    server: &Server,
    peer: SocketAddr,
    body: &mut Body<'_>,
    out: &mut Sniff<'_>,
) -> Handled {
    let answered = Handled {
        code: 0,
        streamed: false,
    };
    if head.chunked {
        let msg = "chunked request bodies are not supported; send Content-Length";
        app::serve_error(out, framing, http::Status(411, "Length Required"), &[], msg);
        return answered;
    }
    match head.path.as_str() {
        "/" | "/index.html" if matches!(head.method.as_str(), "GET" | "HEAD") => {
            // Relative, so the page also works behind a proxy prefix.
            app::serve_page(out, framing, "events", head.method == "HEAD");
            answered
        }
        "/" | "/index.html" => {
            let allow = [("Allow", "GET, HEAD")];
            app::serve_error(
                out,
                framing,
                http::METHOD_NOT_ALLOWED,
                &allow,
                "the demo page is read-only",
            );
            answered
        }
        EVENTS_PATH if crate::ws::handshake::wants_websocket(&head.vars) => {
            let mut vars = std::mem::take(&mut head.vars);
            vars.insert("REMOTE_ADDR".into(), peer.ip().to_string());
            websocket(&vars, framing, server, out);
            Handled {
                code: 0,
                streamed: true,
            }
        }
        EVENTS_PATH => {
            let mut vars = std::mem::take(&mut head.vars);
            vars.insert("REMOTE_ADDR".into(), peer.ip().to_string());
            let mut subscriber = HubSubscriber {
                hub: Arc::clone(&server.hub),
            };
            app::serve_request(
                &vars,
                &server.config,
                framing,
                "events",
                &server.clock,
                &mut subscriber,
                body,
                out,
                &mut io::stderr(),
            )
        }
        _ => {
            app::serve_error(out, framing, http::NOT_FOUND, &[], "try / or /events");
            answered
        }
    }
}

/// A WebSocket upgrade on `/events`: the shared validator, then a session
/// on the broadcast of the requested channel.
fn websocket(
    vars: &HashMap<String, String>,
    framing: &Framing,
    server: &Server,
    out: &mut Sniff<'_>,
) {
    use crate::ws;
    let config = &server.config;
    let accept = match ws::answer(vars, config) {
        Ok(accept) => accept,
        Err(reply) => {
            app::serve_error(out, framing, reply.0, reply.1, reply.2);
            return;
        }
    };
    let Ok(params) = crate::cgi::Request::from_vars(vars).query_pairs() else {
        app::serve_error(
            out,
            framing,
            http::BAD_REQUEST,
            &[],
            "malformed query string",
        );
        return;
    };
    let channel = ws::channel_and_start(&params);
    let Some((channel, start)) = channel else {
        app::serve_error(
            out,
            framing,
            http::BAD_REQUEST,
            &[],
            "bad channel or lastEventId",
        );
        return;
    };
    let joined = (|| -> io::Result<WsSource> {
        let shared = server.hub.channel(&channel)?;
        let (tx, rx) = UnixDatagram::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        let key = shared.register(Waker::Socket(tx));
        let mut backlog = Vec::new();
        let inner = join(shared, &server.hub.spool, &channel, start, &mut backlog)?;
        Ok(WsSource {
            inner,
            rx,
            key,
            backlog,
        })
    })();
    let mut source = match joined {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nph-events serve: cannot subscribe: {e}");
            app::serve_error(out, framing, http::INTERNAL_ERROR, &[], "cannot subscribe");
            return;
        }
    };
    let head = ws::switching_protocols(&accept, false);
    if out.write_all(&head).is_err() {
        return;
    }
    let stream = out.inner;
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let settings = ws::settings(config, vars);
    let mut publish = |text: &str| ws::publish(config, &channel, text, &server.clock);
    let stopping = || server.hub.stopping.load(Ordering::SeqCst);
    let end = ws::session::run(
        stream,
        stream.as_fd(),
        &settings,
        &mut source,
        &mut publish,
        &stopping,
    );
    if let Err(e) = end {
        eprintln!("nph-events serve: websocket ended: {e}");
    }
}

/// Reads one request head (bytes after it stay in `pending`). Never
/// inlined: its parser's header array must not sit in the frame that stays
/// live while a stream waits.
#[inline(never)]
fn read_head(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    server: &Server,
) -> Result<Head, HeadError> {
    let deadline = Instant::now() + server.config.header_timeout;
    loop {
        if let Some(end) = find_head_end(pending) {
            let head = parse_head(&pending[..end])?;
            pending.drain(..end);
            return Ok(head);
        }
        if pending.len() > MAX_HEAD {
            return Err(HeadError::Reply(
                http::HEADERS_TOO_LARGE,
                "request head too large",
            ));
        }
        if server.hub.stopping.load(Ordering::SeqCst) && pending.is_empty() {
            return Err(HeadError::Closed);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if pending.is_empty() {
                return Err(HeadError::Closed); // an idle keep-alive connection
            }
            return Err(HeadError::Reply(
                http::REQUEST_TIMEOUT,
                "request head too slow",
            ));
        }
        // Wake at least once a second to notice a stopping server.
        let _ = stream.set_read_timeout(Some(left.min(Duration::from_secs(1))));
        // Read straight into the buffer: a connection thread's stack stays
        // shallow (every stack page it touches stays resident).
        let start = pending.len();
        pending.resize(start + 1024, 0);
        let read = stream.read(&mut pending[start..]);
        pending.truncate(start + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => return Err(HeadError::Closed),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(HeadError::Closed),
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses a complete head into CGI-style variables.
#[inline(never)]
fn parse_head(bytes: &[u8]) -> Result<Head, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HeadError::Reply(
                http::BAD_REQUEST,
                "incomplete request head",
            ))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Reply(
                http::HEADERS_TOO_LARGE,
                "too many header fields",
            ))
        }
        Err(_) => {
            return Err(HeadError::Reply(
                http::BAD_REQUEST,
                "malformed request head",
            ))
        }
    }
    let method = req.method.unwrap_or("GET").to_owned();
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let protocol = if req.version == Some(0) {
        Protocol::Http10
    } else {
        Protocol::Http11
    };
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut connection = String::new();
    let mut content_length = 0u64;
    let mut chunked = false;
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).trim().to_owned();
        let name = h.name.to_ascii_uppercase().replace('-', "_");
        match name.as_str() {
            "CONTENT_LENGTH" => {
                content_length = crate::spool::parse_id(&value).ok_or(HeadError::Reply(
                    http::BAD_REQUEST,
                    "malformed Content-Length",
                ))?;
                vars.insert(name, value);
                continue;
            }
            "CONTENT_TYPE" => {
                vars.insert(name, value);
                continue;
            }
            "CONNECTION" => connection = value.to_ascii_lowercase(),
            "TRANSFER_ENCODING" => chunked = true,
            _ => {}
        }
        vars.entry(format!("HTTP_{name}"))
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let keep_alive = match protocol {
        Protocol::Http10 => connection.contains("keep-alive"),
        _ => !connection.contains("close"),
    };
    vars.insert("GATEWAY_INTERFACE".into(), "CGI/1.1".into());
    vars.insert("REQUEST_METHOD".into(), method.clone());
    vars.insert("QUERY_STRING".into(), query.to_owned());
    vars.insert("SCRIPT_NAME".into(), EVENTS_PATH.into());
    vars.insert(
        "SERVER_PROTOCOL".into(),
        if protocol == Protocol::Http10 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }
        .into(),
    );
    Ok(Head {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        protocol,
        keep_alive,
        vars,
        content_length,
        chunked,
    })
}

/// A request body: what arrived with the head, then the socket, up to its
/// Content-Length.
struct Body<'a> {
    pending: &'a mut Vec<u8>,
    stream: &'a TcpStream,
    left: u64,
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
            let _ = self.stream.set_read_timeout(Some(Duration::from_secs(30)));
            (&*self.stream).read(&mut buf[..want])?
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that remembers the status code of the response (for the log).
struct Sniff<'a> {
    inner: &'a TcpStream,
    status: Option<u16>,
}

impl Write for Sniff<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.status.is_none() {
            self.status = std::str::from_utf8(buf.get(9..12).unwrap_or_default())
                .ok()
                .and_then(|s| s.parse().ok());
        }
        (&*self.inner).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&*self.inner).flush()
    }
}

impl AsRawFd for Sniff<'_> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.as_raw_fd()
    }
}
