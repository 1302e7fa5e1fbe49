//! `nph-events serve`: a small HTTP/1.1 server on a loopback port, a
//! second front door to the same handler as the CGI.
//!
//! * A connection thread (small stack) reads one request head at a time
//!   with `httparse`, builds the typed request, asks the handler and writes
//!   a reply; keep-alive for replies with a length. A stream or a WebSocket
//!   goes to the [`Reactor`] and the thread ends: every long-lived client
//!   is one descriptor in one epoll thread.
//! * Limits: a connection cap (503 + `Retry-After`, without a thread), a
//!   request-head size cap (431), a time limit for the head to arrive
//!   (408), read and write timeouts. SIGTERM/SIGINT/SIGHUP stop gracefully:
//!   stop accepting, end every stream at an event boundary (WebSocket:
//!   1001), exit 0 within a bounded time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::reactor::{Joined, Kind, Reactor};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::handler::{self, Answer, Subscribe, EVENTS_PATH};
use crate::http::{self, Framing, Reply, Status};
use crate::message::Message;
use crate::request::{Method, Protocol, Request};
use crate::spool::tail::Tailer;
use crate::spool::Spool;
use crate::sse;
use crate::stream;

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

/// Everything the connection threads share.
struct Server {
    config: Config,
    spool: Spool,
    /// Open connections, the reactor's clients included.
    active: Arc<AtomicUsize>,
    clock: SystemClock,
    reactor: Reactor,
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
    let active = Arc::new(AtomicUsize::new(0));
    // One reactor thread per core (at most 4): a broadcast's writes are
    // mostly kernel work, which then runs on every core.
    let threads = thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let reactor = match Reactor::start(&config, &spool, &active, threads) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "nph-events serve: cannot start the stream thread: {e}");
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
        spool,
        active,
        clock: SystemClock::new(),
        reactor,
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
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let reply = Reply::error(http::UNAVAILABLE, "too many connections; try again shortly")
        .header("Retry-After", "5");
    write_reply(
        &mut stream,
        &framing(clock, Protocol::Http11, false),
        &reply,
    );
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
struct Head {
    request: Request,
    keep_alive: bool,
    chunked: bool,
    content_length: u64,
}

/// Why no request head could be read.
enum HeadError {
    /// The connection ended (or the server is stopping) between requests.
    Closed,
    /// Answer with this status, then close.
    Reply(Status, &'static str),
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
            Err(HeadError::Reply(status, msg)) => {
                let framing = framing(&server.clock, Protocol::Http11, false);
                write_reply(&mut stream, &framing, &Reply::error(status, msg));
                eprintln!("nph-events serve: {peer} {} {msg}", status.0);
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
        let query = if request.query.is_empty() { "" } else { "?" };
        let path = request.path.as_deref().unwrap_or("");
        eprintln!(
            "nph-events serve: {peer} {} {path}{query}{} {status}{what}",
            request.method.as_str(),
            request.query
        );
    };
    if head.chunked {
        let msg = "chunked request bodies are not supported; send Content-Length";
        write_reply(
            &mut stream,
            &framing,
            &Reply::error(Status(411, "Length Required"), msg),
        );
        log(411, "");
        return (Next::Close, None);
    }
    let mut body = Body {
        pending: &mut pending,
        stream: &stream,
        left: head.content_length,
    };
    let (config, clock) = (&server.config, &server.clock);
    let mut append =
        |channel: &str, m: &Message| stream::publish_from_client(config, channel, m, clock);
    let answer = handler::handle(config, request, &mut body, &mut append);
    let left = body.left;
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
            write_reply(&mut stream, &framing, &reply);
            if keep_alive && left == 0 {
                return (Next::KeepAlive, Some((stream, pending)));
            }
            (Next::Close, None)
        }
        Answer::Stream(s) => {
            let mut opening = Vec::with_capacity(512);
            http::write_head(
                &mut opening,
                &framing.closing(),
                http::OK,
                http::SSE_HEADERS,
            );
            if s.head_only {
                let _ = stream.write_all(&opening);
                return (Next::Close, None);
            }
            stream::opening_lines(config, &mut opening);
            hand_over(server, stream, peer, &s, &framing, Kind::Sse { opening })
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
        if server.reactor.stopping() && pending.is_empty() {
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
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return Err(HeadError::Closed),
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Parses a complete head into the typed request.
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
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let protocol = match req.version {
        Some(0) => Protocol::Http10,
        _ => Protocol::Http11,
    };
    let method = Method::parse(req.method.unwrap_or("GET"));
    let mut request = Request::new(method, protocol, Some(path.to_owned()), query.to_owned());
    let mut chunked = false;
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
        request.headers.set(h.name, &value);
    }
    let content_length = match request.headers.content_length.as_deref() {
        None => 0,
        Some(v) => sse::parse_id(v).ok_or(HeadError::Reply(
            http::BAD_REQUEST,
            "malformed Content-Length",
        ))?,
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
    Ok(Head {
        request,
        keep_alive,
        chunked,
        content_length,
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
