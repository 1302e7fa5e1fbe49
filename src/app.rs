//! One run of the program: decide what the request asks for, answer it.
//!
//! Exit status: 0 after a served request (including error answers), a
//! finished stream, a departed client or a termination signal; 1 when the
//! program could not do its job (bad configuration under CGI, spool
//! failure, a write error other than a disconnect); 2 for command-line
//! usage or configuration errors.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::auth::{self, Denied};
use crate::cgi::{Protocol, Request};
use crate::cli::{self, Command, Data, Overrides, PublishArgs};
use crate::clock::{Clock, Waiter};
use crate::config::{Config, ConfigError, Output, CONFIG_VAR};
use crate::demo;
use crate::http::{self, Framing, Status};
use crate::publish::{self, Message, Rejected};
use crate::pump::Source;
use crate::pump::{self, Outcome};
use crate::spool::append::NewEvent;
use crate::spool::tail::Start;
use crate::spool::{self, Spool};
use crate::sse;
use crate::subscription::Subscription;
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// Everything a run reads from the outside world.
pub struct Inputs<'a> {
    /// argv, program name first.
    pub args: Vec<OsString>,
    /// The process environment.
    pub vars: Vec<(OsString, OsString)>,
    /// Time source.
    pub clock: &'a dyn Clock,
    /// How to sleep between events.
    pub waiter: &'a mut dyn Waiter,
    /// The request body (CGI) or data to publish (CLI).
    pub stdin: &'a mut dyn Read,
}

impl std::fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs").field("args", &self.args).finish()
    }
}

/// Runs the program; returns the exit status. `out` is the response (the
/// CGI's stdout), `err` the log (stderr, i.e. the server's error log).
pub fn run(inputs: Inputs<'_>, out: &mut impl Write, err: &mut impl Write) -> i32 {
    let vars: HashMap<String, String> = inputs
        .vars
        .iter()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let under_cgi = vars.contains_key("GATEWAY_INTERFACE");
    let program = inputs
        .args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let command = if under_cgi {
        // argv is visitor-controlled under CGI: never look at it.
        Command::Stream(Overrides::default())
    } else {
        let args: Vec<String> = inputs.args[1.min(inputs.args.len())..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        match cli::parse(&args) {
            Ok(c) => c,
            Err(msg) => {
                let _ = writeln!(err, "nph-events: {msg} (try --help)");
                return 2;
            }
        }
    };
    match command {
        Command::Help => finish_plain(out, &cli::help()),
        Command::Version => finish_plain(out, &format!("nph-events {}\n", crate::VERSION)),
        Command::Publish(args) => publish_cli(&vars, &args, inputs.clock, inputs.stdin, out, err),
        Command::Serve(overrides) => serve_cli(&vars, &overrides, err),
        Command::Stream(overrides) => {
            let page_url = vars
                .get("SCRIPT_NAME")
                .map(String::as_str)
                .unwrap_or_default();
            let ctx = Context {
                under_cgi,
                program: &program,
                clock: inputs.clock,
                vars: &vars,
                page_url,
            };
            ctx.respond(&overrides, inputs.waiter, inputs.stdin, out, err)
        }
    }
}

fn finish_plain(out: &mut impl Write, text: &str) -> i32 {
    let _ = pump::send(out, text.as_bytes());
    0
}

/// The facts of this run that shape the response.
struct Context<'a> {
    under_cgi: bool,
    program: &'a str,
    clock: &'a dyn Clock,
    vars: &'a HashMap<String, String>,
    /// Where the demo page points its `EventSource` ("" = its own URL).
    page_url: &'a str,
}

/// A response decided before any streaming.
struct Reply {
    status: Status,
    headers: Vec<(&'static str, String)>,
    message: String,
    /// `Some(content type)`: `message` is the body as is; `None`: a short
    /// plain-text error made from the status and `message`.
    content_type: Option<&'static str>,
}

impl Reply {
    fn new(status: Status, message: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            message: message.into(),
            content_type: None,
        }
    }

    fn body(status: Status, content_type: &'static str, body: String) -> Reply {
        Reply {
            content_type: Some(content_type),
            ..Reply::new(status, body)
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

impl Context<'_> {
    fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    fn respond(
        &self,
        overrides: &Overrides,
        waiter: &mut dyn Waiter,
        stdin: &mut dyn Read,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> i32 {
        let request = if self.under_cgi {
            Request::from_vars(self.vars)
        } else {
            Request::terminal()
        };
        let loaded = load_config(self.vars, overrides);
        let output = loaded.as_ref().map(|c| c.output).unwrap_or(Output::Auto);
        let framing = self.framing(output, request.protocol);
        let head_only = request.method == "HEAD";
        let config = match loaded {
            Ok(c) => c,
            Err(e) => return self.config_failed(&e, &framing, head_only, out, err),
        };
        if matches!(framing, Framing::Nph { .. }) && request.protocol == Protocol::Http2OrLater {
            let _ = writeln!(
                err,
                "nph-events: warning: NPH output over HTTP/2 is held back by the server \
                 until the script exits; install the binary under a name without the \
                 nph- prefix (e.g. events.cgi) or set NPH_EVENTS_OUTPUT=cgi"
            );
        }
        let mut subscriber = CgiSubscriber { waiter };
        self.handle(
            &request,
            &config,
            &framing,
            &mut subscriber,
            stdin,
            out,
            err,
        )
        .code
    }

    /// Answers one request with a loaded configuration: the part both front
    /// doors (CGI and listener) share.
    #[allow(clippy::too_many_arguments)]
    fn handle(
        &self,
        request: &Request,
        config: &Config,
        framing: &Framing,
        subscriber: &mut dyn Subscriber,
        stdin: &mut dyn Read,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> Handled {
        let head_only = request.method == "HEAD";
        let result = match request.method.as_str() {
            "GET" if crate::ws::handshake::wants_websocket(self.vars) => {
                self.websocket(config, framing, out, err)
            }
            "GET" | "HEAD" if demo::wants_page(self.var("HTTP_ACCEPT")) => Err(Reply::body(
                http::OK,
                "text/html; charset=utf-8",
                demo::page(self.page_url),
            )),
            "GET" | "HEAD" => self.stream(request, config, framing, subscriber, out, err),
            "POST" => Err(self.post(request, config, stdin, err)),
            _ => Err(Reply::new(
                http::METHOD_NOT_ALLOWED,
                "this URL serves an event stream (GET) and takes publishes (POST)",
            )
            .header("Allow", "GET, HEAD, POST")),
        };
        match result {
            Ok(code) => Handled {
                code,
                streamed: true,
            },
            Err(reply) => {
                if !matches!(request.method.as_str(), "GET" | "HEAD") {
                    publish::drain(stdin, self.var("CONTENT_LENGTH"), config.max_body);
                }
                Handled {
                    code: finish_reply(out, framing, &reply, head_only),
                    streamed: false,
                }
            }
        }
    }

    /// GET and HEAD. `Err` is an answer that is not a stream.
    fn stream(
        &self,
        request: &Request,
        config: &Config,
        framing: &Framing,
        subscriber: &mut dyn Subscriber,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> Result<i32, Reply> {
        let params = request
            .query_pairs()
            .map_err(|e| Reply::new(http::BAD_REQUEST, e.reason()))?;
        let channel = channel_param(&params)?;
        let start = self.start(&params)?;
        let mut buf = Vec::with_capacity(512);
        // The stream's body ends when the connection closes.
        http::write_head(&mut buf, &framing.closing(), http::OK, http::SSE_HEADERS);
        if request.method == "HEAD" {
            return Ok(finish_response(out, &buf));
        }
        let spool = open_spool(config).map_err(|e| spool_failed(err, "open the spool", &e))?;
        let mut backlog = Vec::new();
        let (mut source, mut waiter) = subscriber
            .subscribe(&spool, channel, start, &mut backlog)
            .map_err(|e| spool_failed(err, "subscribe", &e))?;
        sse::comment(&format!("nph-events/{}", crate::VERSION), &mut buf);
        sse::retry(config.retry_ms, &mut buf);
        buf.extend_from_slice(&backlog);
        if let Err(e) = pump::send(out, &buf) {
            return Ok(write_failed(&e, err));
        }
        // A stream lives long (in the listener, thousands at once): keep
        // no buffer it no longer needs.
        drop((buf, backlog));
        crate::sys::batch_scheduling();
        Ok(
            match pump::stream(out, config, self.clock, waiter.as_mut(), source.as_mut()) {
                Ok(Outcome::MaxDuration | Outcome::ClientGone | Outcome::Shutdown) => 0,
                Err(e) => write_failed(&e, err),
            },
        )
    }

    /// A WebSocket upgrade reaching the CGI (lighttpd `cgi.upgrade`): the
    /// shared validator, a 101, then the session over stdin and stdout.
    /// Under Apache the CGI's stdin ends right after the handshake, so
    /// client frames could never arrive: refused, pointing to the proxy.
    fn websocket(
        &self,
        config: &Config,
        framing: &Framing,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> Result<i32, Reply> {
        use crate::ws;
        let accept = ws::answer(self.vars, config).map_err(|(status, headers, reason)| {
            let mut reply = Reply::new(status, reason);
            for (k, v) in headers {
                reply = reply.header(k, *v);
            }
            reply
        })?;
        if self
            .var("SERVER_SOFTWARE")
            .is_some_and(|s| s.starts_with("Apache"))
        {
            return Err(Reply::new(
                Status(501, "Not Implemented"),
                "Apache cannot pass WebSocket frames to a CGI (its stdin ends after the \
                 handshake); run `nph-events serve --ws` behind mod_proxy_wstunnel or \
                 ProxyPass upgrade=websocket (apache-conf/nph-events-proxy.conf)",
            ));
        }
        let params = Request::from_vars(self.vars)
            .query_pairs()
            .map_err(|e| Reply::new(http::BAD_REQUEST, e.reason()))?;
        let (channel, start) = ws::channel_and_start(&params)
            .ok_or_else(|| Reply::new(http::BAD_REQUEST, "bad channel or lastEventId"))?;
        let spool = open_spool(config).map_err(|e| spool_failed(err, "open the spool", &e))?;
        let mut backlog = Vec::new();
        let mut source = Subscription::open(&spool, &channel, start, &mut backlog)
            .map_err(|e| spool_failed(err, "subscribe", &e))?;
        let stdio =
            ws::session::Stdio::from_process().map_err(|e| spool_failed(err, "use stdin", &e))?;
        let head = ws::switching_protocols(&accept, matches!(framing, Framing::Cgi));
        if let Err(e) = pump::send(out, &head) {
            return Ok(write_failed(&e, err));
        }
        let settings = ws::settings(config, self.vars);
        let mut publish = |text: &str| ws::publish(config, &channel, text, self.clock);
        let input = stdio.input_fd();
        let mut source = Backlogged {
            backlog,
            inner: &mut source,
        };
        // SIGTERM (the web server stopping) now means: close with 1001.
        let stop = crate::sys::stop_signals().ok();
        let stop_fd = stop.as_ref().map(std::os::fd::AsFd::as_fd);
        match ws::session::run(stdio, input, stop_fd, &settings, &mut source, &mut publish) {
            Ok(_) => Ok(0),
            Err(e) => Ok(write_failed(&e, err)),
        }
    }

    /// Where the stream starts: after `Last-Event-ID` (the header an
    /// `EventSource` sends on reconnect wins over the `lastEventId` query
    /// parameter of the first connection), else at the end.
    fn start(&self, params: &[(String, String)]) -> Result<Start, Reply> {
        let header = self.var("HTTP_LAST_EVENT_ID").filter(|v| !v.is_empty());
        let query = param(params, "lastEventId").filter(|v| !v.is_empty());
        match header.or(query) {
            None => Ok(Start::Now),
            Some(id) => spool::parse_id(id).map(Start::After).ok_or_else(|| {
                Reply::new(
                    http::BAD_REQUEST,
                    "malformed Last-Event-ID: expected digits",
                )
            }),
        }
    }

    /// POST: authorise, validate, then append. Always a non-stream answer.
    fn post(
        &self,
        request: &Request,
        config: &Config,
        stdin: &mut dyn Read,
        err: &mut impl Write,
    ) -> Reply {
        let authorization = self
            .var("HTTP_AUTHORIZATION")
            .or(self.var("REDIRECT_HTTP_AUTHORIZATION"));
        if let Err(denied) = auth::authorize(config, self.var("REMOTE_USER"), authorization) {
            let status = match denied {
                Denied::Missing => http::UNAUTHORIZED,
                Denied::Forbidden | Denied::Disabled => http::FORBIDDEN,
            };
            let reply = Reply::new(status, denied.reason());
            return match denied {
                Denied::Missing => reply.header("WWW-Authenticate", "Bearer realm=\"nph-events\""),
                _ => reply,
            };
        }
        let channel = match request
            .query_pairs()
            .map_err(|e| Reply::new(http::BAD_REQUEST, e.reason()))
            .and_then(|p| channel_param(&p).map(str::to_owned))
        {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let content_type = self.var("CONTENT_TYPE");
        let message = publish::check_content_type(content_type)
            .and_then(|()| publish::read_body(stdin, self.var("CONTENT_LENGTH"), config.max_body))
            .and_then(|body| publish::parse_body(content_type, &body));
        let message = match message {
            Ok(m) => m,
            Err(rejected) => return rejected_reply(&rejected),
        };
        match append(config, &channel, &message, self.clock) {
            Ok(id) => {
                let body = serde_json::json!({ "id": id.to_string(), "channel": channel });
                Reply::body(http::CREATED, "application/json", format!("{body}\n"))
            }
            Err(e) => spool_failed(err, "publish", &e),
        }
    }

    fn framing(&self, output: Output, protocol: Protocol) -> Framing {
        let nph = match output {
            Output::Nph => true,
            Output::Cgi => false,
            Output::Auto => self.program.starts_with("nph-"),
        };
        if nph {
            Framing::Nph {
                protocol,
                date: httpdate::fmt_http_date(self.clock.wall()),
            }
        } else {
            Framing::Cgi
        }
    }

    /// One log line naming the setting; under CGI also a short 500 that
    /// names it without revealing its value.
    fn config_failed(
        &self,
        e: &ConfigError,
        framing: &Framing,
        head_only: bool,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> i32 {
        let _ = writeln!(err, "nph-events: {e}");
        if !self.under_cgi {
            return 2;
        }
        let setting = e.setting.split(['=', ' ']).next().unwrap_or("");
        let msg = format!("server configuration error in {setting} (see the server error log)");
        finish_reply(
            out,
            framing,
            &Reply::new(http::INTERNAL_ERROR, msg),
            head_only,
        );
        1
    }
}

/// A source that first hands out what was read when subscribing.
struct Backlogged<'s> {
    backlog: Vec<u8>,
    inner: &'s mut dyn Source,
}

impl Source for Backlogged<'_> {
    fn poll(&mut self, out: &mut Vec<u8>, full_check: bool) -> std::io::Result<()> {
        out.append(&mut self.backlog);
        self.inner.poll(out, full_check)
    }
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.wake_fd()
    }
    fn woken(&mut self) {
        self.inner.woken();
    }
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    /// Exit status a CGI would return.
    pub code: i32,
    /// The answer was an event stream (its body ends with the connection).
    pub streamed: bool,
}

/// An event source and how to wait for it.
pub type Subscribed<'a> = (Box<dyn Source + 'a>, Box<dyn Waiter + 'a>);

/// How a front door attaches a stream to a channel: the CGI with a wake-up
/// socket of its own, the listener through its one watcher per process.
pub trait Subscriber {
    /// Opens `channel` at `start` (anything to send first goes to
    /// `backlog`) and returns the event source and how to wait for it.
    fn subscribe<'a>(
        &'a mut self,
        spool: &Spool,
        channel: &str,
        start: Start,
        backlog: &mut Vec<u8>,
    ) -> std::io::Result<Subscribed<'a>>;
}

/// The CGI's subscriber: a [`Subscription`] and the process's waiter.
struct CgiSubscriber<'w> {
    waiter: &'w mut dyn Waiter,
}

struct Forward<'w>(&'w mut dyn Waiter);

impl Waiter for Forward<'_> {
    fn wait(&mut self, timeout: Duration, wake: Option<BorrowedFd<'_>>) -> crate::clock::Wake {
        self.0.wait(timeout, wake)
    }
}

impl Subscriber for CgiSubscriber<'_> {
    fn subscribe<'a>(
        &'a mut self,
        spool: &Spool,
        channel: &str,
        start: Start,
        backlog: &mut Vec<u8>,
    ) -> std::io::Result<Subscribed<'a>> {
        let subscription = Subscription::open(spool, channel, start, backlog)?;
        Ok((Box::new(subscription), Box::new(Forward(&mut *self.waiter))))
    }
}

/// One request through the shared logic, for the built-in listener: the
/// request as CGI-style variables, its body on `stdin`, answers framed by
/// `framing`. Streams, publishes and errors are exactly the CGI's.
#[allow(clippy::too_many_arguments)]
pub fn serve_request(
    vars: &HashMap<String, String>,
    config: &Config,
    framing: &Framing,
    page_url: &str,
    clock: &dyn Clock,
    subscriber: &mut dyn Subscriber,
    stdin: &mut dyn Read,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Handled {
    let ctx = Context {
        under_cgi: true,
        program: "",
        clock,
        vars,
        page_url,
    };
    let request = Request::from_vars(vars);
    ctx.handle(&request, config, framing, subscriber, stdin, out, err)
}

/// Writes the demo page (for the listener's `/`).
pub fn serve_page(out: &mut impl Write, framing: &Framing, stream_url: &str, head_only: bool) {
    let reply = Reply::body(http::OK, "text/html; charset=utf-8", demo::page(stream_url));
    finish_reply(out, framing, &reply, head_only);
}

/// Writes a plain-text error (for the listener's own errors: 404, 431, 503…).
pub fn serve_error(
    out: &mut impl Write,
    framing: &Framing,
    status: Status,
    headers: &[(&'static str, &str)],
    message: &str,
) {
    let mut reply = Reply::new(status, message);
    for (k, v) in headers {
        reply = reply.header(k, *v);
    }
    finish_reply(out, framing, &reply, false);
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The `channel` query parameter, validated; the default when absent.
fn channel_param(params: &[(String, String)]) -> Result<&str, Reply> {
    let channel = param(params, "channel").unwrap_or(spool::DEFAULT_CHANNEL);
    spool::check_channel(channel)
        .map(|()| channel)
        .map_err(|e| Reply::new(http::BAD_REQUEST, e.to_string()))
}

fn rejected_reply(rejected: &Rejected) -> Reply {
    let status = match rejected {
        Rejected::Malformed(_) => http::BAD_REQUEST,
        Rejected::TooLarge => http::TOO_LARGE,
        Rejected::Unsupported => http::UNSUPPORTED_MEDIA_TYPE,
    };
    Reply::new(status, rejected.reason())
}

/// The spool of this configuration; the default one must be private.
fn open_spool(config: &Config) -> std::io::Result<Spool> {
    match &config.spool {
        Some(path) => Spool::open(path, false),
        None => Spool::open(&spool::default_root(), true),
    }
}

pub(crate) fn append(
    config: &Config,
    channel: &str,
    message: &Message,
    clock: &dyn Clock,
) -> std::io::Result<u64> {
    let spool = open_spool(config)?;
    let now_micros = clock
        .wall()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64);
    let event = NewEvent {
        event: message.event.as_deref(),
        data: &message.data,
    };
    spool::append::publish(&spool, channel, event, &config.retention, now_micros)
}

/// Logs a spool failure and answers 500 without details for the visitor.
fn spool_failed(err: &mut impl Write, what: &str, e: &std::io::Error) -> Reply {
    let _ = writeln!(err, "nph-events: cannot {what}: {e}");
    Reply::new(
        http::INTERNAL_ERROR,
        format!("cannot {what} (see the server error log)"),
    )
}

/// Writes an answer with a length; no body for HEAD.
fn finish_reply(out: &mut impl Write, framing: &Framing, reply: &Reply, head_only: bool) -> i32 {
    let mut buf = Vec::with_capacity(256);
    let extra: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    match reply.content_type {
        Some(content_type) => {
            let len = reply.message.len().to_string();
            let mut headers = vec![
                ("Content-Type", content_type),
                ("Content-Length", len.as_str()),
                ("Cache-Control", "no-store"),
            ];
            headers.extend_from_slice(&extra);
            http::write_head(&mut buf, framing, reply.status, &headers);
            if !head_only {
                buf.extend_from_slice(reply.message.as_bytes());
            }
        }
        None => {
            http::write_error(
                &mut buf,
                framing,
                reply.status,
                &extra,
                &reply.message,
                !head_only,
            );
        }
    }
    finish_response(out, &buf)
}

/// `nph-events serve`: the built-in HTTP server.
fn serve_cli(vars: &HashMap<String, String>, overrides: &Overrides, err: &mut impl Write) -> i32 {
    let config = match load_config(vars, overrides) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "nph-events serve: {e}");
            return 2;
        }
    };
    let spool = match open_spool(&config) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "nph-events serve: cannot open the spool: {e}");
            return 1;
        }
    };
    crate::sys::limit_malloc_arenas();
    crate::sys::raise_open_files_limit();
    crate::listen::serve(config, spool, err)
}

/// `nph-events publish`: prints the new id.
fn publish_cli(
    vars: &HashMap<String, String>,
    args: &PublishArgs,
    clock: &dyn Clock,
    stdin: &mut dyn Read,
    out: &mut impl Write,
    err: &mut impl Write,
) -> i32 {
    let fail = |err: &mut dyn Write, code: i32, msg: &str| {
        let _ = writeln!(err, "nph-events publish: {msg}");
        code
    };
    let config = match load_config(vars, &args.overrides) {
        Ok(c) => c,
        Err(e) => return fail(err, 2, &e.to_string()),
    };
    if let Err(e) = spool::check_channel(&args.channel) {
        return fail(err, 2, &format!("bad --channel {:?}: {e}", args.channel));
    }
    let message = cli_message(args, &config, stdin);
    let message = match message {
        Ok(m) => m,
        Err(msg) => return fail(err, 2, &msg),
    };
    match append(&config, &args.channel, &message, clock) {
        Ok(id) => finish_plain(out, &format!("{id}\n")),
        Err(e) => fail(err, 1, &format!("cannot publish: {e}")),
    }
}

fn cli_message(
    args: &PublishArgs,
    config: &Config,
    stdin: &mut dyn Read,
) -> Result<Message, String> {
    let event = publish::event_name(args.event.as_deref()).map_err(|e| e.reason())?;
    let data = match &args.data {
        Data::Text(t) => t.clone(),
        Data::Json(j) => serde_json::from_str::<serde_json::Value>(j)
            .map_err(|e| format!("--json is not valid JSON: {e}"))?
            .to_string(),
        Data::Stdin => {
            let body = publish::read_body(stdin, None, config.max_body).map_err(|e| e.reason())?;
            let mut text =
                String::from_utf8(body).map_err(|_| "standard input is not UTF-8".to_owned())?;
            // `echo hi | nph-events publish` publishes "hi", as `$(…)` would.
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            text
        }
    };
    if data.len() as u64 > config.max_body {
        return Err(format!(
            "data is larger than max_body ({} bytes)",
            config.max_body
        ));
    }
    Ok(Message { event, data })
}

/// Builds the configuration in precedence order: defaults, file, env, flags.
fn load_config(
    vars: &HashMap<String, String>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    let file = overrides
        .config_file
        .as_deref()
        .or(vars.get(CONFIG_VAR).map(String::as_str))
        .filter(|p| !p.is_empty());
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            setting: format!("{CONFIG_VAR}={path:?}"),
            reason: format!("cannot read the file: {e}"),
        })?;
        config.apply_json(&text, path)?;
    }
    let mut env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.sort_unstable();
    config.apply_env(env)?;
    for (key, raw, flag) in &overrides.values {
        config.set(key, raw, flag)?;
    }
    Ok(config)
}

fn finish_response(out: &mut impl Write, bytes: &[u8]) -> i32 {
    // A client that left before reading an answer is not an error.
    let _ = pump::send(out, bytes);
    0
}

fn write_failed(e: &std::io::Error, err: &mut impl Write) -> i32 {
    if pump::is_disconnect(e) {
        return 0;
    }
    let _ = writeln!(err, "nph-events: cannot write the response: {e}");
    1
}
