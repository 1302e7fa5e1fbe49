//! `nph-events serve`: a small HTTP/1.1 server on a loopback port.
//!
//! A second front door to the same request handling as the CGI
//! ([`crate::app::serve_request`]): the request head is parsed with
//! `httparse` into CGI-style variables, and streams, publishes and errors
//! are the CGI's, byte for byte apart from framing.
//!
//! * One thread per connection with a small stack: an idle stream costs a
//!   few KiB, where a CGI client costs a process.
//! * One spool watcher per process ([`Hub`]): on a publish it reads the new
//!   records once and wakes the channel's stream threads, which copy from
//!   its shared chunk log.
//! * WebSocket sessions (`--ws`) leave their connection thread after the
//!   handshake for one reactor thread ([`crate::ws::reactor`]).
//! * Limits: a connection cap (503 + `Retry-After`), a request-head size cap
//!   (431), a time limit for the head to arrive (408), read and write
//!   timeouts. SIGTERM/SIGINT/SIGHUP stop gracefully: stop accepting, end
//!   every stream at an event boundary, exit 0 within a bounded time.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::app::{self, Handled};
use crate::cgi::Protocol;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::http::{self, Framing};
use crate::hub::{Hub, HubSubscriber};
use crate::spool::tail::Tailer;
use crate::spool::Spool;
use crate::ws::reactor::Reactor;

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

/// Everything the connection threads share.
struct Server {
    config: Config,
    hub: Arc<Hub>,
    /// Open connections, WebSocket sessions in the reactor included.
    active: Arc<AtomicUsize>,
    clock: SystemClock,
    /// The WebSocket sessions' thread, with `--ws`.
    reactor: Option<Arc<Reactor>>,
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
    let active = Arc::new(AtomicUsize::new(0));
    let reactor = if config.ws {
        match Reactor::start(Arc::clone(&hub), config.clone(), Arc::clone(&active)) {
            Ok(r) => Some(r),
            Err(e) => {
                let _ = writeln!(
                    err,
                    "nph-events serve: cannot start the WebSocket thread: {e}"
                );
                return 1;
            }
        }
    } else {
        None
    };
    let server = Arc::new(Server {
        config,
        hub,
        active,
        clock: SystemClock::new(),
        reactor,
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
        let keep_alive = head.keep_alive && !server.hub.stopping();
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
            match (handled.streamed, out.status) {
                (true, Some(101)) => " websocket",
                (true, _) => " stream ended",
                _ => "",
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
            websocket(&vars, framing, server, body, out, peer);
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

/// A WebSocket upgrade on `/events`: the shared validator, the start of
/// the backlog, the 101, then the session goes to the reactor and this
/// thread ends.
fn websocket(
    vars: &HashMap<String, String>,
    framing: &Framing,
    server: &Server,
    body: &mut Body<'_>,
    out: &mut Sniff<'_>,
    peer: SocketAddr,
) {
    use crate::ws;
    let config = &server.config;
    let (accept, reactor) = match (ws::answer(vars, config), &server.reactor) {
        (Ok(accept), Some(reactor)) => (accept, reactor),
        (Err(reply), _) => {
            app::serve_error(out, framing, reply.0, reply.1, reply.2);
            return;
        }
        (Ok(_), None) => {
            let msg = "WebSocket is not enabled here";
            app::serve_error(out, framing, http::Status(501, "Not Implemented"), &[], msg);
            return;
        }
    };
    let params = crate::cgi::Request::from_vars(vars).query_pairs();
    let Some((channel, start)) = params.ok().and_then(|p| ws::channel_and_start(&p)) else {
        let msg = "malformed query string, bad channel or bad lastEventId";
        app::serve_error(out, framing, http::BAD_REQUEST, &[], msg);
        return;
    };
    let mut backlog = Vec::new();
    let opened = server
        .hub
        .channel(&channel)
        .and_then(|_| Tailer::open(&server.hub.spool, &channel, start, &mut backlog));
    let (reader, stream) = match opened.and_then(|r| Ok((r, out.inner.try_clone()?))) {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("nph-events serve: cannot subscribe: {e}");
            app::serve_error(out, framing, http::INTERNAL_ERROR, &[], "cannot subscribe");
            return;
        }
    };
    if out
        .write_all(&ws::switching_protocols(&accept, false))
        .is_err()
    {
        return;
    }
    server.active.fetch_add(1, Ordering::SeqCst); // the reactor's now
    reactor.join(ws::reactor::Joined {
        stream,
        peer,
        settings: ws::settings(config, vars),
        channel,
        backlog,
        reader,
        start,
        early: std::mem::take(body.pending),
    });
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
        if server.hub.stopping() && pending.is_empty() {
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
