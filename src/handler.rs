//! The one request handler: a typed [`Request`] in, an [`Answer`] out,
//! for every front door (the CGI, the listener, whatever comes next).
//!
//! Everything that decides happens here, once: the route, the method, the
//! channel and where a stream starts, who may publish, which page, which
//! error. The doors only frame and move bytes. The handler does no I/O of
//! its own: a POST's body comes as a reader and its append as a function,
//! so tests run it on byte slices.

use std::io::{self, Read};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::access::{self, Credentials};

use crate::auth;
use crate::config::{Config, Relay, WsMode};
use crate::demo;
use crate::grip::wsevents::{self, WsEvent};
use crate::http::{self, Reply, Status};
use crate::message::{self, Message};
use crate::origin;
use crate::request::{param, Method, Request};
use crate::signature::Signed;
use crate::spool::tail::Start;
use crate::spool::{self, DEFAULT_CHANNEL};
use crate::sse;
use crate::stream::rate;
use crate::ws::handshake;
use crate::ws::session::Settings;

/// The listener's stream URL; its demo page is at `/`.
pub const EVENTS_PATH: &str = "/events";

/// What a request gets.
#[derive(Debug)]
pub enum Answer {
    /// A complete response with a length: a page, a 201, an error.
    Reply(Reply),
    /// An event stream (GET), or its head alone (HEAD).
    Stream(Subscribe),
    /// A WebSocket session after a 101.
    Upgrade(Upgrade),
    /// Events for a WebSocket a GRIP proxy holds (WebSocket-over-HTTP),
    /// completed with the backlog by [`crate::grip::complete`].
    GripWs(Batch),
}

/// Where a stream starts, and what it follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The channel (validated, and readable by this client).
    pub channel: String,
    /// After the client's last id, or from now.
    pub start: Start,
    /// HEAD: the head, no stream.
    pub head_only: bool,
    /// Headers the stream's head adds (CORS for a page on another origin).
    pub headers: Vec<(&'static str, String)>,
    /// The request came through a GRIP proxy (a valid `Grip-Sig`): answer
    /// with a hold ([`crate::grip::hold`]) instead of streaming.
    pub grip: Option<GripHold>,
}

/// How a stream request through a GRIP proxy is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GripHold {
    /// The URL the proxy asks for what it missed (`Grip-Link: rel=next`):
    /// this request's own path and query.
    pub link: String,
    /// The proxy asks for what follows an id it has (`Grip-Last`): the
    /// answer continues a stream, without the opening lines.
    pub continues: bool,
}

/// What a batch of WebSocket-over-HTTP events gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The events to send back, in order.
    pub events: Vec<WsEvent>,
    /// On `OPEN`: the channel and start the connection follows.
    pub open: Option<Subscribe>,
    /// Headers of the answer (`Set-Meta-*`: state the proxy keeps).
    pub headers: Vec<(&'static str, String)>,
    /// The proxy's name for the connection (`Connection-Id`).
    pub connection: String,
}

/// An accepted WebSocket handshake.
#[derive(Debug, Clone)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value for the 101.
    pub accept: String,
    /// What the session follows.
    pub subscribe: Subscribe,
    /// The session's settings (whether this client may publish included).
    pub settings: Settings,
}

/// Appends a message to a channel; returns its id.
pub type Append<'a> = &'a mut dyn FnMut(&str, &Message) -> io::Result<u64>;

/// Answers one request at wall-clock time `now` (signed URLs expire).
/// `body` is the request body (read only for a POST that passed its
/// checks); `append` publishes.
pub fn handle(
    config: &Config,
    request: &Request,
    body: &mut dyn Read,
    append: Append<'_>,
    now: SystemTime,
) -> Answer {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let head_only = request.method == Method::Head;
    match request.path.as_deref() {
        None | Some(EVENTS_PATH) => {}
        Some("/" | "/index.html") if request.method.reads_only() => {
            // Relative, so the page also works behind a proxy prefix.
            return Answer::Reply(page(config, request, now, "events").head_only(head_only));
        }
        Some("/" | "/index.html") => {
            let reply = Reply::error(http::METHOD_NOT_ALLOWED, "the demo page is read-only");
            return Answer::Reply(reply.header("Allow", "GET, HEAD"));
        }
        Some(_) => {
            let reply = Reply::error(http::NOT_FOUND, "try / or /events");
            return Answer::Reply(reply.head_only(head_only));
        }
    }
    let result = match &request.method {
        Method::Get if request.wants_websocket() => {
            upgrade(config, request, now).map(Answer::Upgrade)
        }
        Method::Get | Method::Head if demo::wants_page(request.headers.accept.as_deref()) => {
            let url = match request.path {
                Some(_) => "events",
                None => request.script_name.as_str(),
            };
            Ok(Answer::Reply(
                page(config, request, now, url).head_only(head_only),
            ))
        }
        Method::Get | Method::Head => stream(config, request, now).map(Answer::Stream),
        Method::Post if is_ws_events(request) => ws_over_http(config, request, body, append, now),
        Method::Post => Ok(Answer::Reply(post(config, request, body, append))),
        Method::Other(m) if m == "OPTIONS" => Ok(Answer::Reply(options(config, request))),
        Method::Other(_) => Err(Reply::error(
            http::METHOD_NOT_ALLOWED,
            "this URL serves an event stream (GET) and takes publishes (POST)",
        )
        .header("Allow", ALLOW)),
    };
    result.unwrap_or_else(|reply| Answer::Reply(reply.head_only(head_only)))
}

/// The demo page, told whether its WebSocket panel can connect here (as
/// [`upgrade`] decides: enabled, and not Apache's CGI unless a GRIP proxy
/// holds the socket).
fn page(config: &Config, request: &Request, now: u64, stream_url: &str) -> Reply {
    let apache = request
        .server_software
        .as_deref()
        .is_some_and(|s| s.starts_with("Apache"));
    let grip = apache && through_grip_proxy(config, request, now);
    let ws = demo::Ws::of(config.ws, apache, grip);
    Reply::body(
        http::OK,
        "text/html; charset=utf-8",
        demo::page(stream_url, ws),
    )
}

/// The methods the stream URL answers.
const ALLOW: &str = "GET, HEAD, POST, OPTIONS";

/// `OPTIONS`: a CORS preflight gets its answer (or 403); a plain one the
/// list of methods.
fn options(config: &Config, request: &Request) -> Reply {
    if request.headers.preflight_method.is_none() {
        return Reply::empty(http::OK).header("Allow", ALLOW);
    }
    match origin::preflight(request, config) {
        Ok(headers) => headers
            .into_iter()
            .fold(Reply::empty(http::OK), |r, (k, v)| r.header(k, v)),
        Err(e) => Reply::refused(&e),
    }
}

/// An event stream: its channel and start, if the page it comes from may
/// read it (CORS) and the client may read the channel (its policy).
fn stream(config: &Config, request: &Request, now: u64) -> Result<Subscribe, Reply> {
    let cors = origin::check_read(request, config).map_err(|e| Reply::refused(&e))?;
    let headers = cors.headers(config);
    let grip = !request.method.eq(&Method::Head) && through_grip_proxy(config, request, now);
    if grip {
        if let Some(s) = grip_continuation(request)? {
            return Ok(s);
        }
    }
    match readable(config, request, now) {
        Ok(mut s) => {
            s.headers = headers;
            s.grip = grip.then(|| GripHold {
                link: own_url(request),
                continues: false,
            });
            Ok(s)
        }
        // A listed page's script can read why (log in, or not yours).
        Err(reply) => Err(headers.into_iter().fold(reply, |r, (k, v)| r.header(k, v))),
    }
}

/// The proxy, holding a stream, asks for what follows the last id it has
/// (`Grip-Last: <channel>; last-id=<id>`, which only the proxy can send:
/// it replaces a client's). The subscription was admitted when the proxy
/// first asked for it, so no policy applies here; the channel must be the
/// URL's.
fn grip_continuation(request: &Request) -> Result<Option<Subscribe>, Reply> {
    let Some(last) = request.headers.grip_last.as_deref() else {
        return Ok(None);
    };
    let bad = || Reply::error(http::BAD_REQUEST, "malformed Grip-Last");
    let mut target = subscribe(request)?;
    let (channel, params) = last.split_once(';').ok_or_else(bad)?;
    let id = params
        .split(';')
        .find_map(|p| p.trim().strip_prefix("last-id="))
        .and_then(sse::parse_id)
        .ok_or_else(bad)?;
    if channel.trim() != target.channel {
        return Err(Reply::error(
            http::BAD_REQUEST,
            "Grip-Last names another channel",
        ));
    }
    target.start = Start::After(id);
    target.grip = Some(GripHold {
        link: own_url(request),
        continues: true,
    });
    Ok(Some(target))
}

/// This request's path and query, for the proxy to come back to.
fn own_url(request: &Request) -> String {
    let path = request
        .path
        .as_deref()
        .unwrap_or(request.script_name.as_str());
    if request.query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", request.query)
    }
}

/// Whether a GRIP proxy signed this request (`Grip-Sig` valid under
/// `grip_key`). Without a key, or with any other header, the answer is the
/// direct stream: a client cannot get a hold by forging the header.
pub(crate) fn through_grip_proxy(config: &Config, request: &Request, now: u64) -> bool {
    let (Some(key), Some(token)) = (&config.grip_key, request.headers.grip_sig.as_deref()) else {
        return false;
    };
    crate::grip::sig::verify(token, key.bytes(), Some(&config.grip_iss), now).is_ok()
}

/// The channel and start of a stream (SSE or WebSocket), once the
/// channel's policy lets this client read it (before any reader opens).
pub(crate) fn readable(config: &Config, request: &Request, now: u64) -> Result<Subscribe, Reply> {
    let s = subscribe(request)?;
    let params = request
        .query_pairs()
        .map_err(|e| Reply::error(http::BAD_REQUEST, e.as_str()))?;
    let signed = param(&params, "sig").map(|sig| Signed {
        channel: &s.channel,
        grant: param(&params, "grant"),
        expires: param(&params, "expires"),
        sig,
    });
    let who = Credentials {
        remote_user: request.remote_user.as_deref(),
        signed,
    };
    let secret = config.subscribe_secret.as_ref().map(|k| k.bytes());
    access::check_read(&config.channels, secret, &s.channel, who, now)
        .map_err(|e| Reply::refused(&e))?;
    Ok(s)
}

/// The channel and start of a stream (SSE or WebSocket).
pub(crate) fn subscribe(request: &Request) -> Result<Subscribe, Reply> {
    let params = request
        .query_pairs()
        .map_err(|e| Reply::error(http::BAD_REQUEST, e.as_str()))?;
    let channel = param(&params, "channel").unwrap_or(DEFAULT_CHANNEL);
    spool::check_channel(channel).map_err(|e| Reply::error(http::BAD_REQUEST, &e.to_string()))?;
    Ok(Subscribe {
        channel: channel.to_owned(),
        start: start(request, &params)?,
        head_only: request.method == Method::Head,
        headers: Vec::new(),
        grip: None,
    })
}

/// Where the stream starts: after `Last-Event-ID` (the header an
/// `EventSource` sends on reconnect wins over the `lastEventId` query
/// parameter of the first connection, which is also how a WebSocket, which
/// cannot set headers, resumes), else at the end.
fn start(request: &Request, params: &[(String, String)]) -> Result<Start, Reply> {
    let header = request.headers.last_event_id.as_deref();
    let query = param(params, "lastEventId");
    match header
        .filter(|v| !v.is_empty())
        .or(query.filter(|v| !v.is_empty()))
    {
        None => Ok(Start::Now),
        Some(id) => sse::parse_id(id).map(Start::After).ok_or_else(|| {
            Reply::error(
                http::BAD_REQUEST,
                "malformed Last-Event-ID: expected digits",
            )
        }),
    }
}

/// A WebSocket handshake: enabled here, valid, possible under this server,
/// on a valid channel.
fn upgrade(config: &Config, request: &Request, now: u64) -> Result<Upgrade, Reply> {
    if !config.ws {
        return Err(Reply::error(
            http::NOT_IMPLEMENTED,
            "WebSocket is not enabled here (NPH_EVENTS_WS=1, or serve --ws)",
        ));
    }
    let accept = handshake::accept(request).map_err(|e| Reply::refused(&e))?;
    origin::check_handshake(request, config).map_err(|e| Reply::refused(&e))?;
    if request
        .server_software
        .as_deref()
        .is_some_and(|s| s.starts_with("Apache"))
    {
        return Err(Reply::error(
            http::NOT_IMPLEMENTED,
            "Apache cannot pass WebSocket frames to a CGI (its stdin ends after the \
             handshake); run `nph-events serve --ws` behind mod_proxy_wstunnel or \
             ProxyPass upgrade=websocket (apache-conf/nph-events-proxy.conf)",
        ));
    }
    let credentials = authorize(config, request).is_ok();
    let may_publish = match config.ws_relay {
        Relay::Off => false,
        Relay::Open => true,
        Relay::Auth => credentials,
    };
    Ok(Upgrade {
        accept,
        subscribe: readable(config, request, now)?,
        settings: Settings {
            mode: config.ws_mode,
            may_publish,
            anonymous: may_publish && !credentials,
            max_message: config.max_body as usize,
            rate: config.ws_rate,
            heartbeat: config.heartbeat,
            max_duration: crate::stream::schedule::lifetime(config),
        },
    })
}

/// The media type of WebSocket-over-HTTP requests.
const WS_EVENTS: &str = "application/websocket-events";

fn is_ws_events(request: &Request) -> bool {
    request.headers.content_type.as_deref().is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case(WS_EVENTS))
    })
}

/// A batch of events of a WebSocket a GRIP proxy holds. Only the proxy
/// may send these (a valid `Grip-Sig`). `OPEN` is the handshake: the
/// channel's policy and the origin rule apply as for a direct WebSocket,
/// and a refusal is answered with its status, which the proxy gives the
/// client. A `TEXT` is the chat relay: the same relay policy, size and
/// rate limits as a direct WebSocket; the connection's allowance is kept
/// by the proxy (`Set-Meta-Nph-Rate`) between requests.
fn ws_over_http(
    config: &Config,
    request: &Request,
    body: &mut dyn Read,
    append: Append<'_>,
    now: u64,
) -> Result<Answer, Reply> {
    if !through_grip_proxy(config, request, now) {
        return Err(Reply::error(
            http::FORBIDDEN,
            "websocket-events come only from a GRIP proxy (a valid Grip-Sig; see NPH_EVENTS_GRIP_KEY)",
        ));
    }
    if !config.ws {
        return Err(Reply::error(
            http::NOT_IMPLEMENTED,
            "WebSocket is not enabled here (NPH_EVENTS_WS=1, or serve --ws)",
        ));
    }
    let cid = request
        .headers
        .connection_id
        .clone()
        .filter(|c| !c.is_empty() && c.len() <= 256)
        .ok_or_else(|| Reply::error(http::BAD_REQUEST, "websocket-events need a Connection-Id"))?;
    let length = request.headers.content_length.as_deref();
    // A batch holds a few messages of at most max_body each.
    let limit = config.max_body.saturating_mul(4).saturating_add(4096);
    let bytes = message::read_body(body, length, limit).map_err(|e| Reply::refused(&e))?;
    let events =
        wsevents::parse(&bytes).map_err(|e| Reply::error(http::BAD_REQUEST, &e.to_string()))?;
    let target = subscribe(request)?;
    let mut batch = Batch {
        events: Vec::new(),
        open: None,
        headers: Vec::new(),
        connection: cid.clone(),
    };
    let mut allowance =
        Allowance::from_meta(request.headers.meta_rate.as_deref(), config.ws_rate, now);
    for event in events {
        match event {
            WsEvent::Open => {
                origin::check_handshake(request, config).map_err(|e| Reply::refused(&e))?;
                batch.open = Some(readable(config, request, now)?);
                batch.events.push(WsEvent::Open);
            }
            WsEvent::Text(text) if config.ws_mode == WsMode::Echo => {
                batch.events.push(WsEvent::Text(text))
            }
            WsEvent::Text(text) => {
                if text.len() as u64 > config.max_body {
                    batch.events.push(WsEvent::Close(Some(1009)));
                    break;
                }
                if let Some(notice) = relay_text(
                    config,
                    request,
                    &target.channel,
                    text,
                    &cid,
                    &mut allowance,
                    append,
                ) {
                    batch.events.push(WsEvent::Text(notice));
                }
            }
            WsEvent::Binary(b) if config.ws_mode == WsMode::Echo => {
                batch.events.push(WsEvent::Binary(b))
            }
            WsEvent::Binary(_) => {
                batch.events.push(WsEvent::Close(Some(1003)));
                break;
            }
            WsEvent::Ping(p) => batch.events.push(WsEvent::Pong(p)),
            WsEvent::Pong(_) => {}
            WsEvent::Close(code) => {
                batch.events.push(WsEvent::Close(code.or(Some(1000))));
                break;
            }
            WsEvent::Disconnect => {
                batch.events.push(WsEvent::Disconnect);
                break;
            }
        }
    }
    if allowance.changed {
        batch
            .headers
            .push(("Set-Meta-Nph-Rate", allowance.to_meta()));
    }
    Ok(Answer::GripWs(batch))
}

/// A client's message in relay mode: published, or the error notice the
/// client gets instead (the same words a direct WebSocket gets).
fn relay_text(
    config: &Config,
    request: &Request,
    channel: &str,
    text: String,
    cid: &str,
    allowance: &mut Allowance,
    append: Append<'_>,
) -> Option<String> {
    let notice = |reason: &str| {
        Some(serde_json::json!({ "id": null, "event": "error", "data": reason }).to_string())
    };
    let may = match config.ws_relay {
        Relay::Off => false,
        Relay::Open => true,
        Relay::Auth => authorize(config, request).is_ok(),
    };
    if !may {
        return notice("this connection may not publish (see NPH_EVENTS_WS_RELAY)");
    }
    if !allowance.take() {
        return notice("too many messages; slow down");
    }
    let message = Message {
        event: None,
        data: text,
        sender: Some(cid.to_owned()),
    };
    match append(channel, &message) {
        Ok(_) => None,
        Err(e) if rate::is_rate_limited(&e) => {
            notice("too many messages on this site right now; slow down")
        }
        Err(_) => notice("the message could not be published"),
    }
}

/// A WebSocket-over-HTTP connection's publish allowance: `ws_rate` a
/// second, burst the same, kept by the proxy as connection meta between
/// requests (`tokens:unix-seconds`); the proxy alone can set it (requests
/// need its signature).
struct Allowance {
    tokens: f64,
    rate: f64,
    at: u64,
    changed: bool,
}

impl Allowance {
    fn from_meta(meta: Option<&str>, rate: u32, now: u64) -> Allowance {
        let rate = f64::from(rate.max(1));
        let (tokens, at) = meta
            .and_then(|m| m.split_once(':'))
            .and_then(|(t, a)| Some((t.parse::<f64>().ok()?, a.parse::<u64>().ok()?)))
            .filter(|(t, _)| t.is_finite() && *t >= 0.0)
            .unwrap_or((rate, now));
        let refill = now.saturating_sub(at) as f64 * rate;
        Allowance {
            tokens: (tokens + refill).min(rate),
            rate,
            at: now.max(at),
            changed: false,
        }
    }

    fn take(&mut self) -> bool {
        self.changed = true;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn to_meta(&self) -> String {
        format!("{:.3}:{}", self.tokens.min(self.rate), self.at)
    }
}

/// Whether this request may publish (POST, or WebSocket messages).
pub(crate) fn authorize(config: &Config, request: &Request) -> Result<(), auth::Denied> {
    auth::authorize(
        config,
        request.remote_user.as_deref(),
        request.headers.authorization.as_deref(),
    )
}

/// POST: the answer of [`publish`], readable by the page that sent it when
/// that page may publish here (CORS: a listed origin reads its 201 or its
/// error).
fn post(config: &Config, request: &Request, body: &mut dyn Read, append: Append<'_>) -> Reply {
    let reply = publish(config, request, body, append);
    match origin::check_publish(request, config).and_then(|()| origin::check_read(request, config))
    {
        Ok(cors) => cors
            .headers(config)
            .into_iter()
            .fold(reply, |r, (k, v)| r.header(k, v)),
        Err(_) => reply,
    }
}

/// Authorise, check the channel and the content type, read and parse the
/// body, then append. Whatever fails appends nothing.
fn publish(config: &Config, request: &Request, body: &mut dyn Read, append: Append<'_>) -> Reply {
    let checked = origin::check_publish(request, config)
        .map_err(|e| Reply::refused(&e))
        .and_then(|()| authorize(config, request).map_err(|e| Reply::refused(&e)))
        .and_then(|()| subscribe(request).map_err(|r| r.head_only(false)))
        .and_then(|s| read_message(config, request, body).map(|m| (s.channel, m)));
    let (channel, message) = match checked {
        Ok(pair) => pair,
        Err(reply) => return reply,
    };
    match append(&channel, &message) {
        Ok(id) => {
            let body = serde_json::json!({ "id": id.to_string(), "channel": channel });
            Reply::body(http::CREATED, "application/json", format!("{body}\n"))
        }
        Err(e) if rate::is_rate_limited(&e) => {
            Reply::error(http::TOO_MANY_REQUESTS, &e.to_string()).header("Retry-After", "1")
        }
        Err(e) => Reply::server_failure("publish", &e),
    }
}

fn read_message(config: &Config, request: &Request, body: &mut dyn Read) -> Result<Message, Reply> {
    let content_type = request.headers.content_type.as_deref();
    let length = request.headers.content_length.as_deref();
    message::check_content_type(content_type)
        .and_then(|()| message::read_body(body, length, config.max_body))
        .and_then(|bytes| message::parse_body(content_type, &bytes))
        .map_err(|e| Reply::refused(&e))
}

/// The status an answer starts with (for the log).
pub fn status(answer: &Answer) -> Status {
    match answer {
        Answer::Reply(r) => r.status,
        Answer::Stream(_) => http::OK,
        Answer::Upgrade(_) => http::SWITCHING_PROTOCOLS,
        Answer::GripWs(_) => http::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Kind, KEYS};
    use crate::request::Protocol;

    const TOKEN_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut c = Config::default();
        for (k, v) in pairs {
            let key = KEYS.iter().find(|key| key.json == *k).unwrap();
            assert!(key.kind == Kind::Bool || !v.is_empty());
            c.set(key, v, "test").unwrap();
        }
        c
    }

    fn request(method: &str, path: Option<&str>, query: &str, headers: &[(&str, &str)]) -> Request {
        let mut r = Request::new(
            Method::parse(method),
            Protocol::Http11,
            path.map(str::to_owned),
            query.to_owned(),
        );
        r.script_name = "/cgi-bin/nph-events.cgi".into();
        for (k, v) in headers {
            r.headers.set(k, v);
        }
        r
    }

    /// The handler's clock in these tests (Unix seconds).
    const NOW: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(secs)
    }

    /// Runs the handler; returns the answer and what was appended.
    fn run(c: &Config, r: &Request, body: &[u8]) -> (Answer, Vec<(String, Message)>) {
        let mut appended = Vec::new();
        let mut append = |ch: &str, m: &Message| {
            appended.push((ch.to_owned(), m.clone()));
            Ok(42)
        };
        let answer = handle(c, r, &mut &body[..], &mut append, at(NOW));
        (answer, appended)
    }

    fn reply(answer: Answer) -> Reply {
        match answer {
            Answer::Reply(r) => r,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn get_streams_from_now_or_after_the_last_id() {
        let c = Config::default();
        let (a, _) = run(&c, &request("GET", None, "channel=news", &[]), b"");
        let Answer::Stream(s) = a else { panic!() };
        assert_eq!(
            (s.channel.as_str(), s.start, s.head_only),
            ("news", Start::Now, false)
        );
        let r = request("GET", None, "lastEventId=5", &[("Last-Event-ID", "7")]);
        let Answer::Stream(s) = run(&c, &r, b"").0 else {
            panic!()
        };
        assert_eq!(
            (s.channel.as_str(), s.start),
            ("default", Start::After(7)),
            "header wins"
        );
        let r = request("HEAD", Some("/events"), "lastEventId=5", &[]);
        let Answer::Stream(s) = run(&c, &r, b"").0 else {
            panic!()
        };
        assert_eq!((s.start, s.head_only), (Start::After(5), true));
    }

    #[test]
    fn bad_queries_channels_and_ids_are_400() {
        let c = Config::default();
        for (query, last) in [
            ("channel=a/b", ""),
            ("channel=", ""),
            ("a=%zz", ""),
            ("lastEventId=x", ""),
            ("", "12a"),
        ] {
            let r = request("GET", None, query, &[("Last-Event-ID", last)]);
            assert_eq!(
                reply(run(&c, &r, b"").0).status,
                http::BAD_REQUEST,
                "{query} {last}"
            );
        }
    }

    #[test]
    fn pages_routes_and_methods() {
        let c = Config::default();
        let html = [("Accept", "text/html,*/*")];
        let r = reply(run(&c, &request("GET", None, "", &html), b"").0);
        assert_eq!(r.status, http::OK);
        assert!(r.text().contains(r#"content="/cgi-bin/nph-events.cgi""#));
        let r = reply(run(&c, &request("HEAD", Some("/"), "", &[]), b"").0);
        assert!(r.head_only && r.text().contains(r#"content="events""#));
        let r = reply(run(&c, &request("GET", Some("/events"), "", &html), b"").0);
        assert!(r.text().contains(r#"content="events""#));
        let r = reply(run(&c, &request("POST", Some("/"), "", &[]), b"").0);
        assert_eq!(
            (r.status, r.headers[0].1.as_str()),
            (http::METHOD_NOT_ALLOWED, "GET, HEAD")
        );
        let r = reply(run(&c, &request("GET", Some("/x"), "", &[]), b"").0);
        assert_eq!(r.status, http::NOT_FOUND);
        let r = reply(run(&c, &request("HEAD", Some("/x"), "", &[]), b"").0);
        assert_eq!((r.status, r.head_only), (http::NOT_FOUND, true), "no body");
        let r = reply(run(&c, &request("PUT", None, "", &[]), b"").0);
        assert_eq!(r.status, http::METHOD_NOT_ALLOWED);
        assert_eq!(
            r.headers,
            [("Allow", "GET, HEAD, POST, OPTIONS".to_owned())]
        );
    }

    #[test]
    fn post_checks_in_order_and_appends_only_when_all_pass() {
        let c = config(&[("token_sha256", TOKEN_HASH)]);
        let json = ("Content-Type", "application/json");
        let good = br#"{"event":"news","data":"hi"}"#;
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a [u8], u16);
        let cases: &[Case] = &[
            (&[json], "", good, 401),
            (&[json, ("Authorization", "Bearer nope")], "", good, 403),
            (
                &[json, ("Authorization", "Bearer test")],
                "channel=a.b",
                good,
                400,
            ),
            (
                &[
                    ("Authorization", "Bearer test"),
                    ("Content-Type", "image/png"),
                ],
                "",
                good,
                415,
            ),
            (&[json, ("Authorization", "Bearer test")], "", b"{", 400),
            (
                &[
                    json,
                    ("Authorization", "Bearer test"),
                    ("Content-Length", "99999999"),
                ],
                "",
                good,
                413,
            ),
        ];
        for (headers, query, body, status) in cases {
            let (a, appended) = run(&c, &request("POST", None, query, headers), body);
            let r = reply(a);
            assert_eq!(r.status.0, *status, "{headers:?} {query}");
            assert!(appended.is_empty(), "{status}: nothing appended");
        }
        let r = reply(run(&c, &request("POST", None, "", &[json]), good).0);
        assert!(r.headers.iter().any(|(k, _)| *k == "WWW-Authenticate"));
        let headers = [json, ("Authorization", "Bearer test")];
        let (a, appended) = run(&c, &request("POST", None, "channel=n", &headers), good);
        let r = reply(a);
        assert_eq!(
            (r.status, r.text().as_ref()),
            (http::CREATED, "{\"channel\":\"n\",\"id\":\"42\"}\n")
        );
        assert_eq!(appended[0].0, "n");
        assert_eq!(appended[0].1.event.as_deref(), Some("news"));
        let no_publishing = Config::default();
        let r = reply(run(&no_publishing, &request("POST", None, "", &headers), good).0);
        assert_eq!(r.status, http::FORBIDDEN, "publishing not configured");
    }

    #[test]
    fn a_failed_append_is_a_500_with_a_log_line() {
        let c = config(&[("token_sha256", TOKEN_HASH)]);
        let headers = [
            ("Content-Type", "text/plain"),
            ("Authorization", "Bearer test"),
        ];
        let mut failing = |_: &str, _: &Message| Err(io::Error::other("disk full"));
        let r = request("POST", None, "", &headers);
        let r = reply(handle(&c, &r, &mut &b"x"[..], &mut failing, at(NOW)));
        assert_eq!(r.status, http::INTERNAL_ERROR);
        assert!(!r.text().contains("disk full"), "details stay in the log");
        assert_eq!(r.log.as_deref(), Some("cannot publish: disk full"));
    }

    fn handshake(extra: &[(&str, &str)]) -> Request {
        let mut headers = vec![
            ("Host", "example.org"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ];
        headers.extend_from_slice(extra);
        request(
            "GET",
            Some("/events"),
            "channel=chat&lastEventId=3",
            &headers,
        )
    }

    #[test]
    fn websocket_upgrades_with_the_same_channel_start_and_auth() {
        let off = Config::default();
        assert_eq!(
            reply(run(&off, &handshake(&[]), b"").0).status,
            http::NOT_IMPLEMENTED
        );
        let c = config(&[("ws", "true"), ("token_sha256", TOKEN_HASH)]);
        let Answer::Upgrade(u) = run(&c, &handshake(&[]), b"").0 else {
            panic!()
        };
        assert_eq!(u.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            (u.subscribe.channel.as_str(), u.subscribe.start),
            ("chat", Start::After(3))
        );
        assert!(!u.settings.may_publish, "relay auth: no credentials");
        let with = handshake(&[("Authorization", "Bearer test")]);
        let Answer::Upgrade(u) = run(&c, &with, b"").0 else {
            panic!()
        };
        assert!(u.settings.may_publish, "the same credentials as a POST");
        let r = reply(run(&c, &handshake(&[("Sec-WebSocket-Version", "8")]), b"").0);
        assert_eq!(r.status.0, 426);
        let mut apache = handshake(&[]);
        apache.server_software = Some("Apache/2.4".into());
        assert_eq!(reply(run(&c, &apache, b"").0).status, http::NOT_IMPLEMENTED);
    }

    const SECRET: &str = "a subscribe secret for the tests";

    fn private() -> Config {
        config(&[
            ("subscribe_secret", SECRET),
            ("channels", "news=public,user-{REMOTE_USER}=user,*=signed"),
            ("origins", "https://www.example.org"),
            ("ws", "true"),
        ])
    }

    fn signed_query(channel: &str, expires: u64) -> String {
        let exp = expires.to_string();
        let sig = crate::signature::sign(SECRET.as_bytes(), channel, &exp);
        format!("channel={channel}&expires={exp}&sig={sig}")
    }

    /// Every refusal is a reply (no stream, so no spool reader is opened),
    /// with the status and a reason a developer can act on.
    fn refused(c: &Config, r: &Request) -> Reply {
        match run(c, r, b"").0 {
            Answer::Reply(reply) => reply,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn channel_policies_for_streams() {
        let c = private();
        let get = |query: &str, user: Option<&str>| {
            let mut r = request("GET", Some("/events"), query, &[]);
            r.remote_user = user.map(str::to_owned);
            r
        };
        assert!(matches!(
            run(&c, &get("channel=news", None), b"").0,
            Answer::Stream(_)
        ));
        let r = refused(&c, &get("channel=room", None));
        assert_eq!(r.status, http::UNAUTHORIZED);
        assert!(r.text().contains("needs a signed URL"), "{}", r.text());
        assert!(r.headers.iter().any(|(k, _)| *k == "WWW-Authenticate"));
        let Answer::Stream(s) = run(&c, &get(&signed_query("room", NOW + 60), None), b"").0 else {
            panic!("a signed URL opens the channel")
        };
        assert_eq!(s.channel, "room");
        assert_eq!(
            s.headers,
            [("Vary", "Origin".to_owned())],
            "no Origin: no CORS grant"
        );
        let r = refused(&c, &get(&signed_query("room", NOW - 3600), None));
        assert_eq!(r.status, http::FORBIDDEN);
        assert!(r.text().contains("expired"), "{}", r.text());
        let other = signed_query("room", NOW + 60).replace("channel=room", "channel=hall");
        assert_eq!(refused(&c, &get(&other, None)).status, http::FORBIDDEN);
        // The user's own channel, by the web server's authentication.
        let mine = run(&c, &get("channel=user-alice", Some("alice")), b"").0;
        assert!(matches!(mine, Answer::Stream(_)));
        let r = refused(&c, &get("channel=user-alice", Some("bob")));
        assert_eq!(r.status, http::FORBIDDEN);
        assert!(r.text().contains("not user \"bob\"'s"), "{}", r.text());
        assert_eq!(
            refused(&c, &get("channel=user-alice", None)).status,
            http::UNAUTHORIZED
        );
        // Resume: the same rule, with Last-Event-ID.
        let mut resume = get(&signed_query("room", NOW + 60), None);
        resume.headers.set("Last-Event-ID", "7");
        let Answer::Stream(s) = run(&c, &resume, b"").0 else {
            panic!()
        };
        assert_eq!(s.start, Start::After(7));
        let mut resume = get("channel=room", None);
        resume.headers.set("Last-Event-ID", "7");
        assert_eq!(refused(&c, &resume).status, http::UNAUTHORIZED);
    }

    #[test]
    fn channel_policies_for_websocket() {
        let c = private();
        let mut ws = handshake(&[]);
        let r = refused(&c, &ws);
        assert_eq!(
            r.status,
            http::UNAUTHORIZED,
            "channel chat is signed: {}",
            r.text()
        );
        ws.query = signed_query("chat", NOW + 60) + "&lastEventId=3";
        let Answer::Upgrade(u) = run(&c, &ws, b"").0 else {
            panic!("a signed URL opens a WebSocket too")
        };
        assert_eq!(
            (u.subscribe.channel.as_str(), u.subscribe.start),
            ("chat", Start::After(3))
        );
    }

    #[test]
    fn cross_origin_reads() {
        let c = private();
        let from = |origin: &str| {
            request(
                "GET",
                Some("/events"),
                "channel=news",
                &[("Host", "push.example.org"), ("Origin", origin)],
            )
        };
        let Answer::Stream(s) = run(&c, &from("https://www.example.org"), b"").0 else {
            panic!("a listed origin reads")
        };
        assert_eq!(
            s.headers,
            [
                (
                    "Access-Control-Allow-Origin",
                    "https://www.example.org".to_owned()
                ),
                ("Access-Control-Allow-Credentials", "true".to_owned()),
                ("Vary", "Origin".to_owned()),
            ]
        );
        // A refusal by the channel's policy is readable by a listed page.
        let mut private = from("https://www.example.org");
        private.query = "channel=room".into();
        let r = refused(&c, &private);
        assert_eq!(r.status, http::UNAUTHORIZED);
        assert!(r.headers.contains(&(
            "Access-Control-Allow-Origin",
            "https://www.example.org".to_owned()
        )));
        let r = refused(&c, &from("https://evil.example"));
        assert_eq!(r.status, http::FORBIDDEN);
        assert!(r.text().contains("NPH_EVENTS_ORIGINS"), "{}", r.text());
        assert_eq!(refused(&c, &from("null")).status, http::FORBIDDEN);
        // The site's own page needs no CORS headers.
        let own = request(
            "GET",
            Some("/events"),
            "channel=news",
            &[
                ("Host", "localhost:8080"),
                ("Origin", "http://localhost:8080"),
            ],
        );
        let Answer::Stream(s) = run(&c, &own, b"").0 else {
            panic!()
        };
        assert_eq!(s.headers, [("Vary", "Origin".to_owned())]);
        // `*`: anyone reads, without credentials.
        let any = config(&[("origins", "*")]);
        let Answer::Stream(s) = run(&any, &from("https://evil.example"), b"").0 else {
            panic!()
        };
        assert_eq!(
            s.headers[0],
            ("Access-Control-Allow-Origin", "*".to_owned())
        );
        assert!(!s
            .headers
            .iter()
            .any(|(k, _)| *k == "Access-Control-Allow-Credentials"));
        // Without a list nothing changes for clients that send no Origin.
        let plain = Config::default();
        let Answer::Stream(s) = run(&plain, &request("GET", Some("/events"), "", &[]), b"").0
        else {
            panic!()
        };
        assert!(s.headers.is_empty());
    }

    #[test]
    fn preflights() {
        let c = private();
        let preflight = |origin: &str, headers: &str| {
            request(
                "OPTIONS",
                Some("/events"),
                "channel=news",
                &[
                    ("Host", "push.example.org"),
                    ("Origin", origin),
                    ("Access-Control-Request-Method", "POST"),
                    ("Access-Control-Request-Headers", headers),
                ],
            )
        };
        let r = refused(
            &c,
            &preflight("https://www.example.org", "authorization, content-type"),
        );
        assert_eq!(r.status, http::OK);
        let h = |name: &str| {
            r.headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            h("Access-Control-Allow-Origin"),
            Some("https://www.example.org")
        );
        assert_eq!(h("Access-Control-Allow-Credentials"), Some("true"));
        assert_eq!(h("Access-Control-Allow-Methods"), Some("GET, POST"));
        assert!(h("Access-Control-Allow-Headers")
            .unwrap()
            .contains("Authorization"));
        assert_eq!(h("Vary"), Some("Origin"));
        assert_eq!(
            refused(&c, &preflight("https://evil.example", "")).status,
            http::FORBIDDEN
        );
        let r = refused(&c, &preflight("https://www.example.org", "x-custom"));
        assert_eq!(r.status, http::FORBIDDEN);
        assert!(r.text().contains("x-custom"), "{}", r.text());
        let any = config(&[("origins", "*")]);
        let r = refused(&any, &preflight("https://evil.example", ""));
        let methods = r
            .headers
            .iter()
            .find(|(k, _)| *k == "Access-Control-Allow-Methods");
        assert_eq!(
            methods.map(|(_, v)| v.as_str()),
            Some("GET"),
            "* may not POST"
        );
        let plain = refused(&c, &request("OPTIONS", Some("/events"), "", &[]));
        assert_eq!(
            (plain.status, plain.headers[0].1.as_str()),
            (http::OK, ALLOW)
        );
    }

    #[test]
    fn publishing_from_another_origin() {
        let c = config(&[
            ("publish_users", "alice"),
            ("origins", "https://www.example.org,*"),
        ]);
        let post = |origin: &str| {
            let mut r = request(
                "POST",
                Some("/events"),
                "channel=news",
                &[
                    ("Host", "push.example.org"),
                    ("Origin", origin),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Content-Length", "6"),
                ],
            );
            r.remote_user = Some("alice".into());
            r
        };
        let (answer, appended) = run(&c, &post("https://www.example.org"), b"data=x");
        let r = reply(answer);
        assert_eq!(
            (r.status, appended.len()),
            (http::CREATED, 1),
            "{}",
            r.text()
        );
        assert!(r
            .headers
            .contains(&("Access-Control-Allow-Credentials", "true".to_owned())));
        // `*` never lets a page publish with the visitor's credentials.
        let (answer, appended) = run(&c, &post("https://evil.example"), b"data=x");
        assert_eq!((reply(answer).status, appended.len()), (http::FORBIDDEN, 0));
    }

    /// Only a request a GRIP proxy signed gets a hold; anything else, a
    /// forged or expired signature included, the direct stream.
    #[test]
    fn grip_holds_only_for_a_signed_proxy_request() {
        let key = "a grip key of enough bytes";
        let c = config(&[("grip_key", key)]);
        let with =
            |sig: &str| request("GET", Some("/events"), "channel=news", &[("Grip-Sig", sig)]);
        let good = crate::grip::sig::sign(key.as_bytes(), "pushpin", NOW + 60);
        let grip = |c: &Config, r: &Request| match run(c, r, b"").0 {
            Answer::Stream(s) => s.grip.is_some(),
            other => panic!("{other:?}"),
        };
        assert!(grip(&c, &with(&good)));
        let expired = crate::grip::sig::sign(key.as_bytes(), "pushpin", NOW - 1);
        let other_key = crate::grip::sig::sign(b"another key entirely", "pushpin", NOW + 60);
        let other_iss = crate::grip::sig::sign(key.as_bytes(), "someone", NOW + 60);
        for bad in [expired.as_str(), &other_key, &other_iss, "x.y.z", ""] {
            assert!(!grip(&c, &with(bad)), "{bad}");
        }
        assert!(!grip(
            &c,
            &request("GET", Some("/events"), "channel=news", &[])
        ));
        assert!(!grip(&Config::default(), &with(&good)), "no key: never");
        let mut head = with(&good);
        head.method = Method::Head;
        assert!(!grip(&c, &head), "HEAD gets the head");
    }

    /// The proxy asks for what follows the last id it has (`Grip-Last`):
    /// the events after it, held again; the subscription was admitted when
    /// it started, and only the proxy can send the header.
    #[test]
    fn grip_last_continues_a_held_stream() {
        let key = "a grip key of enough bytes";
        let c = config(&[
            ("grip_key", key),
            ("channels", "*=signed"),
            ("subscribe_secret", SECRET),
        ]);
        let good = crate::grip::sig::sign(key.as_bytes(), "pushpin", NOW + 60);
        let with = |last: &str, sig: &str| {
            request(
                "GET",
                Some("/events"),
                "channel=news&x=1",
                &[("Grip-Sig", sig), ("Grip-Last", last)],
            )
        };
        let Answer::Stream(s) = run(&c, &with("news; last-id=41", &good), b"").0 else {
            panic!("a continuation")
        };
        assert_eq!(s.start, Start::After(41));
        let hold = s.grip.expect("held again");
        assert!(hold.continues);
        assert_eq!(hold.link, "/events?channel=news&x=1");
        assert_eq!(
            reply(run(&c, &with("other; last-id=41", &good), b"").0).status,
            http::BAD_REQUEST
        );
        assert_eq!(
            reply(run(&c, &with("news; last=x", &good), b"").0).status,
            http::BAD_REQUEST
        );
        // Without the proxy's signature the header means nothing: the
        // channel's policy applies.
        assert_eq!(
            reply(run(&c, &with("news; last-id=41", "forged"), b"").0).status,
            http::UNAUTHORIZED
        );
    }

    fn ws_events(
        c: &Config,
        events: &[u8],
        extra: &[(&str, &str)],
    ) -> (Answer, Vec<(String, Message)>) {
        let key = "a grip key of enough bytes";
        let sig = crate::grip::sig::sign(key.as_bytes(), "pushpin", NOW + 60);
        let len = events.len().to_string();
        let mut headers = vec![
            ("Content-Type", "application/websocket-events"),
            ("Content-Length", len.as_str()),
            ("Connection-Id", "conn-7"),
            ("Grip-Sig", sig.as_str()),
        ];
        headers.extend_from_slice(extra);
        run(
            c,
            &request("POST", Some("/events"), "channel=chat", &headers),
            events,
        )
    }

    fn grip_ws_config(more: &[(&str, &str)]) -> Config {
        let mut pairs = vec![("grip_key", "a grip key of enough bytes"), ("ws", "true")];
        pairs.extend_from_slice(more);
        config(&pairs)
    }

    fn batch(a: Answer) -> Batch {
        match a {
            Answer::GripWs(b) => b,
            other => panic!("expected events, got {other:?}"),
        }
    }

    #[test]
    fn websocket_over_http_open_ping_close() {
        let c = grip_ws_config(&[]);
        let (a, _) = ws_events(&c, b"OPEN\r\nPING 2\r\nhi\r\nCLOSE 2\r\n\x03\xe8\r\n", &[]);
        let b = batch(a);
        assert_eq!(
            b.events,
            [
                WsEvent::Open,
                WsEvent::Pong(b"hi".to_vec()),
                WsEvent::Close(Some(1000))
            ]
        );
        let open = b.open.expect("OPEN subscribes");
        assert_eq!((open.channel.as_str(), open.start), ("chat", Start::Now));
        assert_eq!(b.connection, "conn-7");
        // Only the proxy may send these.
        let mut r = request(
            "POST",
            Some("/events"),
            "channel=chat",
            &[
                ("Content-Type", "application/websocket-events"),
                ("Connection-Id", "x"),
            ],
        );
        r.headers.set("Content-Length", "6");
        assert_eq!(reply(run(&c, &r, b"OPEN\r\n").0).status, http::FORBIDDEN);
        let (a, _) = ws_events(&c, b"TEXT 5\r\nhi\r\n", &[]);
        assert_eq!(reply(a).status, http::BAD_REQUEST);
        let (a, _) = ws_events(&c, b"BINARY 1\r\nx\r\n", &[]);
        assert_eq!(batch(a).events, [WsEvent::Close(Some(1003))]);
        // The channel's policy applies at OPEN, as to a direct WebSocket.
        let private = grip_ws_config(&[("channels", "*=signed"), ("subscribe_secret", SECRET)]);
        let (a, _) = ws_events(&private, b"OPEN\r\n", &[]);
        assert_eq!(reply(a).status, http::UNAUTHORIZED);
    }

    #[test]
    fn websocket_over_http_relay_with_the_same_rules() {
        let open = grip_ws_config(&[("ws_relay", "open"), ("ws_rate", "2")]);
        let (a, appended) = ws_events(
            &open,
            b"TEXT 2\r\nhi\r\nTEXT 2\r\nho\r\nTEXT 2\r\nhu\r\n",
            &[],
        );
        let b = batch(a);
        assert_eq!(appended.len(), 2, "ws_rate 2: the third is refused");
        assert_eq!(
            appended[0],
            (
                "chat".to_owned(),
                Message {
                    event: None,
                    data: "hi".into(),
                    sender: Some("conn-7".into()),
                }
            )
        );
        assert!(
            matches!(&b.events[..], [WsEvent::Text(t)] if t.contains("slow down")),
            "{:?}",
            b.events
        );
        let meta = b
            .headers
            .iter()
            .find(|(k, _)| *k == "Set-Meta-Nph-Rate")
            .unwrap()
            .1
            .clone();
        // The proxy hands the allowance back: still spent this second.
        let (a, appended) = ws_events(&open, b"TEXT 1\r\nx\r\n", &[("Meta-Nph-Rate", &meta)]);
        assert!(appended.is_empty());
        assert_eq!(batch(a).events.len(), 1);
        let later = format!("0.000:{}", NOW - 1);
        let (_, appended) = ws_events(&open, b"TEXT 1\r\nx\r\n", &[("Meta-Nph-Rate", &later)]);
        assert_eq!(appended.len(), 1, "a second later");
        // Relay auth: credentials as for a POST.
        let auth = grip_ws_config(&[("token_sha256", TOKEN_HASH)]);
        let (a, appended) = ws_events(&auth, b"TEXT 1\r\nx\r\n", &[]);
        assert!(appended.is_empty());
        assert!(
            matches!(&batch(a).events[..], [WsEvent::Text(t)] if t.contains("may not publish"))
        );
        let (_, appended) = ws_events(
            &auth,
            b"TEXT 1\r\nx\r\n",
            &[("Authorization", "Bearer test")],
        );
        assert_eq!(appended.len(), 1);
        // Over max_body: closed with 1009, nothing published.
        let small = grip_ws_config(&[("ws_relay", "open"), ("max_body", "4")]);
        let (a, appended) = ws_events(&small, b"TEXT 5\r\nhello\r\n", &[]);
        assert!(appended.is_empty());
        assert_eq!(batch(a).events, [WsEvent::Close(Some(1009))]);
    }
}
