//! The CGI front door: one request per process, the request in the
//! environment and on stdin, the response on stdout.
//!
//! It builds the typed request from the CGI variables, asks the handler,
//! and does the framing (NPH or parsed header) and the I/O: a reply is
//! written whole; a stream follows its channel through a [`Subscription`]
//! (a spool reader and a wake-up socket) in the blocking loop; a WebSocket
//! runs its session over stdin and stdout.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use crate::clock::{Clock, Waiter};
use crate::config::{Config, ConfigError, Output};
use crate::grip;
use crate::handler::{self, Answer, Subscribe, Upgrade};
use crate::http::{self, Framing, Reply};
use crate::message;
use crate::request::{Protocol, Request};
use crate::stream::blocking::{self, Outcome};
use crate::stream::subscription::Subscription;
use crate::stream::{self, send, Source};
use crate::ws::session;

/// One CGI run: what it reads from the outside world.
pub struct Cgi<'a> {
    /// The request, from the CGI variables (or a terminal's plain GET).
    pub request: Request,
    /// The program's file name: an `nph-` prefix selects NPH output.
    pub program: &'a str,
    /// Time source.
    pub clock: &'a dyn Clock,
    /// How the stream sleeps between events.
    pub waiter: &'a mut dyn Waiter,
    /// The request body.
    pub stdin: &'a mut dyn Read,
    /// Run by a web server (`GATEWAY_INTERFACE` set), not from a terminal:
    /// the process that started it going away means the server is
    /// reloading or stopping.
    pub under_server: bool,
}

impl std::fmt::Debug for Cgi<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgi")
            .field("request", &self.request)
            .finish()
    }
}

/// The request a CGI run answers: from the variables under a web server,
/// a plain GET at a terminal.
pub fn request(vars: &HashMap<String, String>, under_cgi: bool) -> Request {
    if under_cgi {
        Request::from_cgi(vars)
    } else {
        Request::terminal()
    }
}

impl Cgi<'_> {
    /// Answers the request; returns the exit status. `loaded` is the
    /// configuration or why it could not be loaded (answered with a 500
    /// that names the setting).
    pub fn respond(
        mut self,
        loaded: Result<Config, ConfigError>,
        under_cgi: bool,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> i32 {
        let output = loaded.as_ref().map_or(Output::Auto, |c| c.output);
        let framing = self.framing(output);
        let config = match loaded {
            Ok(c) => c,
            Err(e) => return self.config_failed(&e, under_cgi, &framing, out, err),
        };
        if matches!(framing, Framing::Nph { .. }) && self.request.protocol == Protocol::Http2OrLater
        {
            let _ = writeln!(
                err,
                "nph-events: warning: NPH output over HTTP/2 is held back by the server \
                 until the script exits; install the binary under a name without the \
                 nph- prefix (e.g. events.cgi) or set NPH_EVENTS_OUTPUT=cgi"
            );
        }
        let clock = self.clock;
        let mut append = |channel: &str, m: &message::Message| {
            let who = stream::rate::Publisher::Credentialed; // a POST
            stream::publish_from_client(&config, channel, m, who, clock)
        };
        let answer = handler::handle(
            &config,
            &self.request,
            self.stdin,
            &mut append,
            clock.wall(),
        );
        match grip::complete(&config, None, answer) {
            Answer::Reply(reply) => self.reply(&config, &framing, &reply, out, err),
            Answer::Stream(s) => self.stream(&config, &framing, &s, out, err),
            Answer::Upgrade(u) => self.websocket(&config, &framing, u, out, err),
            // `grip::complete` answered it; kept for completeness.
            Answer::GripWs(_) => {
                let reply = Reply::server_failure("answer the GRIP proxy", &"events not completed");
                self.reply(&config, &framing, &reply, out, err)
            }
        }
    }

    fn framing(&self, output: Output) -> Framing {
        let nph = match output {
            Output::Nph => true,
            Output::Cgi => false,
            Output::Auto => self.program.starts_with("nph-"),
        };
        if nph {
            Framing::Nph {
                protocol: self.request.protocol,
                date: httpdate::fmt_http_date(self.clock.wall()),
            }
        } else {
            Framing::Cgi
        }
    }

    /// Writes a whole reply. A request body not read yet is read first:
    /// under Apache mod_cgid stdin and stdout are one Unix socket, and a
    /// CGI that exits with request bytes unread makes the kernel reset the
    /// connection, so Apache loses the answer.
    fn reply(
        &mut self,
        config: &Config,
        framing: &Framing,
        reply: &Reply,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> i32 {
        if !self.request.method.reads_only() {
            let length = self.request.headers.content_length.as_deref();
            message::drain(self.stdin, length, config.max_body);
        }
        if let Some(line) = &reply.log {
            let _ = writeln!(err, "nph-events: {line}");
        }
        let mut buf = Vec::with_capacity(256);
        http::write_reply(&mut buf, framing, reply);
        // A client that left before reading an answer is not an error.
        let _ = send(out, &buf);
        0
    }

    /// GET: the head, the opening lines and the backlog in one write, then
    /// the blocking loop. HEAD: the head alone, and exit.
    fn stream(
        &mut self,
        config: &Config,
        framing: &Framing,
        s: &Subscribe,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> i32 {
        let mut buf = Vec::with_capacity(512);
        // The stream's body ends when the connection closes.
        http::write_stream_head(&mut buf, &framing.closing(), &s.headers);
        if s.head_only {
            let _ = send(out, &buf);
            return 0;
        }
        let mut source = match self.subscribe(config, s) {
            Ok(pair) => pair,
            Err(reply) => return self.reply(config, framing, &reply, out, err),
        };
        stream::opening_lines(config, &mut buf);
        stream::starting_position(s.start, source.inner.last_id(), &mut buf);
        buf.append(&mut source.backlog);
        if let Err(e) = send(out, &buf) {
            return write_failed(&e, err);
        }
        drop(buf);
        crate::sys::batch_scheduling();
        let host = super::host::prepare(self.under_server, err);
        match blocking::run(out, config, self.clock, self.waiter, &mut source) {
            Ok(Outcome::MaxDuration | Outcome::ClientGone) => 0,
            Ok(Outcome::Shutdown) => {
                if let Some(signal) = crate::sys::take_notice() {
                    let _ = writeln!(err, "{}", host.explain(signal, crate::sys::cpu_used()));
                }
                0
            }
            Err(e) => write_failed(&e, err),
        }
    }

    /// Opens the spool and the channel; what the client gets first is in
    /// the source's backlog.
    fn subscribe(&self, config: &Config, s: &Subscribe) -> Result<Backlogged, Reply> {
        let spool =
            stream::open_spool(config).map_err(|e| Reply::server_failure("open the spool", &e))?;
        let mut backlog = Vec::new();
        let inner = Subscription::open(&spool, &s.channel, s.start, &mut backlog)
            .map_err(|e| Reply::server_failure("subscribe", &e))?;
        // A termination signal ends the process at once: it removes the
        // wake-up socket on its way out.
        crate::sys::unlink_on_signal(inner.wake_path());
        Ok(Backlogged { backlog, inner })
    }

    /// A WebSocket through lighttpd `cgi.upgrade`: the 101, then the
    /// session over stdin and stdout.
    fn websocket(
        &mut self,
        config: &Config,
        framing: &Framing,
        upgrade: Upgrade,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> i32 {
        let mut source = match self.subscribe(config, &upgrade.subscribe) {
            Ok(s) => s,
            Err(reply) => return self.reply(config, framing, &reply, out, err),
        };
        let mut stdio = match Stdio::from_process() {
            Ok(s) => s,
            Err(e) => {
                let reply = Reply::server_failure("use stdin", &e);
                return self.reply(config, framing, &reply, out, err);
            }
        };
        // SIGTERM (the web server stopping) now means: close with 1001.
        // Before the 101 goes out, so a stop right after it is not missed.
        let stop = crate::sys::stop_signals().ok();
        let mut head = Vec::new();
        http::write_switching_protocols(&mut head, framing, &upgrade.accept);
        if let Err(e) = send(out, &head) {
            return write_failed(&e, err);
        }
        let channel = upgrade.subscribe.channel;
        let clock = self.clock;
        let who = stream::rate::Publisher::from_anonymous(upgrade.settings.anonymous);
        let mut relay = |text: &str| {
            let m = message::Message {
                event: None,
                data: text.to_owned(),
                sender: None,
            };
            stream::publish_from_client(config, &channel, &m, who, clock)
        };
        let stop_fd = stop.as_ref().map(AsFd::as_fd);
        let settings = &upgrade.settings;
        match session::run(&mut stdio, stop_fd, settings, &mut source, &mut relay) {
            Ok(_) => 0,
            Err(e) => write_failed(&e, err),
        }
    }

    /// One log line naming the setting; under CGI also a short 500 that
    /// names it without revealing its value.
    fn config_failed(
        &mut self,
        e: &ConfigError,
        under_cgi: bool,
        framing: &Framing,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> i32 {
        let _ = writeln!(err, "nph-events: {e}");
        if !under_cgi {
            return 2;
        }
        let setting = e.setting.split(['=', ' ']).next().unwrap_or("");
        let msg = format!("server configuration error in {setting} (see the server error log)");
        let head_only = self.request.method == crate::request::Method::Head;
        let reply = Reply::error(http::INTERNAL_ERROR, &msg).head_only(head_only);
        let mut buf = Vec::new();
        http::write_reply(&mut buf, framing, &reply);
        let _ = send(out, &buf);
        1
    }
}

/// A subscription that first hands out what was read when subscribing.
struct Backlogged {
    backlog: Vec<u8>,
    inner: Subscription,
}

impl Source for Backlogged {
    fn poll(&mut self, out: &mut Vec<u8>, full_check: bool) -> io::Result<()> {
        out.append(&mut self.backlog);
        self.inner
            .poll(out, full_check)
            .map_err(|e| io::Error::new(e.kind(), SpoolTrouble(e)))
    }
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.wake_fd()
    }
    fn woken(&mut self) {
        self.inner.woken();
    }
}

/// A stream that ended because the spool could not be read, not because
/// its output failed: the log line must point at the spool (a directory
/// another user made, say), not at the client.
#[derive(Debug)]
struct SpoolTrouble(io::Error);

impl std::fmt::Display for SpoolTrouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot read the channel from the spool: {}", self.0)
    }
}

impl std::error::Error for SpoolTrouble {}

/// Exit status after a failed stream: 0 when the client left; else one
/// log line saying whether the spool or the response failed.
fn write_failed(e: &io::Error, err: &mut impl Write) -> i32 {
    let spool = e.get_ref().is_some_and(|i| i.is::<SpoolTrouble>());
    if !spool && stream::is_disconnect(e) {
        return 0;
    }
    let _ = match spool {
        true => writeln!(err, "nph-events: the stream stopped: {e}"),
        false => writeln!(err, "nph-events: cannot write the response: {e}"),
    };
    1
}

/// Standard input and output as one connection (the WebSocket's).
#[derive(Debug)]
struct Stdio {
    /// The request side (stdin, non-blocking).
    input: File,
    /// The response side (stdout).
    output: File,
}

impl Stdio {
    /// The process's stdin (made non-blocking) and stdout.
    fn from_process() -> io::Result<Stdio> {
        let input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        crate::sys::set_nonblocking(&input)?;
        let output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        Ok(Stdio { input, output })
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

/// Polled for client bytes: the input side.
impl AsFd for Stdio {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.input.as_fd()
    }
}
