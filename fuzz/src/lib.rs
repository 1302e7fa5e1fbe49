//! What must hold for every parser of nph-events, whatever the bytes: one
//! check per target, shared by the coverage-guided targets
//! (`fuzz/fuzz_targets/*.rs`, run with `cargo fuzz`) and the property tests
//! that run in plain `cargo test` (`tests/fuzz_parsers.rs`, which includes
//! this file as a module).
//!
//! Each check takes arbitrary bytes, decodes them into the parser's input,
//! runs the parser and asserts its invariants. A panic, in the library or
//! in an assertion here, is a finding. The decoding is mutation-friendly:
//! fields are separated by `0xFE` (a byte that never occurs in UTF-8, so no
//! text is lost to it) and a body, where there is one, follows `0xFF`.
//! [`seeds`] gives valid inputs to start from.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use nph_events::auth;
use nph_events::clock::{FakeClock, FakeWaiter};
use nph_events::config::{Config, Relay, KEYS};
use nph_events::handler::{self, Answer};
use nph_events::http::{self, Framing, Refusal, Reply};
use nph_events::message::{self, Message, Rejected};
use nph_events::origin;
use nph_events::request::{self, Headers, Method, Protocol, QueryError, Request};
use nph_events::spool::{self, tail::Start};
use nph_events::sse::{self, Event};
use nph_events::stream::rate;
use nph_events::ws::{self, handshake, inbound::Inbound};

/// Separates fields of an input.
pub const SEP: u8 = 0xFE;
/// Starts the body of an input.
pub const BODY: u8 = 0xFF;
/// The bearer token every configured target accepts.
pub const TOKEN: &str = "test";

/// The targets, by name (the fuzz target and the property test of each).
pub const TARGETS: &[&str] = &[
    "handler",
    "cgi_env",
    "query_form",
    "publish_body",
    "spool_records",
    "last_event_id",
    "ws_inbound",
    "ws_frames",
    "config_values",
    "http_head",
    "cgi_door",
];

/// Runs the in-memory check of `target` (not `http_head`, which needs a
/// server; see [`http_exchange`]).
pub fn check(target: &str, data: &[u8]) {
    match target {
        "handler" => handler(data),
        "cgi_env" => cgi_env(data),
        "query_form" => query_form(data),
        "publish_body" => publish_body(data),
        "spool_records" => spool_records(data),
        "last_event_id" => last_event_id(data),
        "ws_inbound" => ws_inbound(data),
        "ws_frames" => ws_frames(data),
        "config_values" => config_values(data),
        other => panic!("no in-memory check named {other}"),
    }
}

// ---------------------------------------------------------------------------
// What the inputs reached (the property tests print it: a coarse stand-in
// for the coverage report libFuzzer gives).

thread_local! {
    static OUTCOMES: std::cell::RefCell<HashMap<String, usize>> =
        std::cell::RefCell::new(HashMap::new());
}

/// Counts one outcome of the current check.
fn note(outcome: impl Into<String>) {
    OUTCOMES.with(|o| *o.borrow_mut().entry(outcome.into()).or_default() += 1);
}

/// The outcomes counted on this thread since the last call, most
/// frequent first.
pub fn take_outcomes() -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = OUTCOMES.with(|o| o.borrow_mut().drain().collect());
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

// ---------------------------------------------------------------------------
// Decoding helpers.

/// Splits `data` into its head fields and its body (after the first 0xFF).
fn fields(data: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let (head, body) = match data.iter().position(|&b| b == BODY) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    (head.split(|&b| b == SEP).collect(), body)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

/// A small deterministic generator driven by input bytes (for choices a
/// check makes that the input does not spell out, such as chunk sizes).
struct Dice(u64);

impl Dice {
    fn from(data: &[u8]) -> Dice {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for &b in data.iter().take(64) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Dice(h | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn key(json: &str) -> &'static nph_events::config::Key {
    KEYS.iter()
        .find(|k| k.json == json)
        .expect("a known setting")
}

/// One of 256 configurations, chosen by a byte.
pub fn config_for(bits: u8) -> Config {
    let mut c = Config::default();
    let mut set = |k: &str, v: &str| c.set(key(k), v, "fuzz").expect("a valid setting");
    if bits & 1 != 0 {
        set("ws", "true");
    }
    if bits & 2 != 0 {
        set("token_sha256", &auth::token_hash_hex(TOKEN));
    }
    if bits & 4 != 0 {
        set("publish_users", "alice, bob");
    }
    match (bits >> 3) & 3 {
        0 => set("ws_relay", "off"),
        2 => set("ws_relay", "open"),
        _ => set("ws_relay", "auth"),
    }
    if bits & 0x20 != 0 {
        set("origins", "https://app.example, http://localhost:8080");
        set("hosts", "example.org, events.example:8443");
    }
    if bits & 0x40 != 0 {
        set("max_body", "16");
    }
    if bits & 0x80 != 0 {
        set("subscribe_secret", SUBSCRIBE_SECRET);
        set("channels", "news=public,user-{REMOTE_USER}=user,*=signed");
    }
    c
}

/// The subscribe secret of the configurations with channel policies.
pub const SUBSCRIBE_SECRET: &str = "the fuzzing subscribe secret";
/// The handler's clock: signed URLs in the seeds expire after it.
pub const NOW_SECS: u64 = 1_800_000_000;

// ---------------------------------------------------------------------------
// The handler: a whole request in, an answer out.

/// A request for the handler, decoded from bytes.
#[derive(Debug)]
pub struct Case {
    /// The configuration.
    pub config: Config,
    /// The request.
    pub request: Request,
    /// The body the reader yields.
    pub body: Vec<u8>,
    /// The reader fails after this many bytes.
    pub body_fails_at: Option<usize>,
    /// The append function fails (disk full, or the publish rate spent).
    pub append_fails: bool,
    /// A failing append says the publish rate is spent.
    pub rate_limited: bool,
}

/// `[config bits, request bits] method SEP path SEP query (SEP name:value)*
/// [BODY body]`. A header named `remote-user`, `script-name` or
/// `server-software` sets that request field instead.
fn decode_case(data: &[u8]) -> Case {
    let (cfg, bits) = (byte(data, 0), byte(data, 1));
    let (f, body) = fields(data.get(2..).unwrap_or(&[]));
    let field = |i: usize| f.get(i).map(|b| text(b)).unwrap_or_default();
    let method = match bits & 7 {
        0 | 4 => Method::Get,
        1 | 6 => Method::Head,
        2 | 5 => Method::Post,
        _ => Method::parse(&field(0)),
    };
    let protocol = match (bits >> 3) & 3 {
        1 => Protocol::Http10,
        2 => Protocol::Http2OrLater,
        _ => Protocol::Http11,
    };
    let path = (bits & 0x20 == 0).then(|| field(1));
    let mut request = Request::new(method, protocol, path, field(2));
    request.script_name = "/cgi-bin/nph-events.cgi".into();
    for h in f.iter().skip(3) {
        let h = text(h);
        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
        match name.to_ascii_lowercase().as_str() {
            "remote-user" => request.remote_user = Some(value.trim().to_owned()),
            "script-name" => request.script_name = value.to_owned(),
            "server-software" => request.server_software = Some(value.trim().to_owned()),
            _ => request.headers.set(name, value),
        }
    }
    Case {
        config: config_for(cfg),
        request,
        body: body.to_vec(),
        body_fails_at: (bits & 0x40 != 0).then_some(body.len() / 2),
        append_fails: cfg & 0x80 != 0,
        rate_limited: bits & 0x80 != 0,
    }
}

/// A request body that counts what was read and can fail.
struct Body<'a> {
    data: &'a [u8],
    read: usize,
    fails_at: Option<usize>,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.fails_at.is_some_and(|at| self.read >= at) && self.read < self.data.len() {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer gone"));
        }
        let end = self.fails_at.unwrap_or(usize::MAX).max(self.read + 1);
        let rest = &self.data[self.read.min(self.data.len())..];
        let n = buf.len().min(rest.len()).min(end - self.read);
        buf[..n].copy_from_slice(&rest[..n]);
        self.read += n;
        Ok(n)
    }
}

/// The id the test append hands out.
const APPENDED_ID: u64 = 1_764_057_600_000_000;

/// Whole request in, answer out: the handler must never panic, and its
/// answer must be one the doors can frame correctly.
pub fn handler(data: &[u8]) {
    check_case(&decode_case(data));
}

/// Runs the handler on `case` and checks its answer.
pub fn check_case(case: &Case) {
    let Case {
        config, request, ..
    } = case;
    let mut body = Body {
        data: &case.body,
        read: 0,
        fails_at: case.body_fails_at,
    };
    let mut appended: Vec<(String, Message)> = Vec::new();
    let mut append = |channel: &str, m: &Message| {
        appended.push((channel.to_owned(), m.clone()));
        if case.append_fails && case.rate_limited {
            Err(io::Error::other(rate::RateLimited))
        } else if case.append_fails {
            Err(io::Error::other("disk full"))
        } else {
            Ok(APPENDED_ID)
        }
    };
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW_SECS);
    let answer = handler::handle(config, request, &mut body, &mut append, now);
    let read = body.read;
    let status = handler::status(&answer);
    let kind = match &answer {
        Answer::Reply(_) => "reply",
        Answer::Stream(s) if s.start == Start::Now => "stream",
        Answer::Stream(_) => "resume",
        Answer::Upgrade(_) => "upgrade",
        Answer::GripWs(_) => "grip-ws",
    };
    let method = match &request.method {
        Method::Other(_) => "other",
        m => m.as_str(),
    };
    note(format!("{method} {} {kind}", status.0));
    let head = request.method == Method::Head;
    let ctx = || {
        format!(
            "request {request:#?}\nbody {:?}\nanswer {answer:#?}",
            case.body
        )
    };
    assert!(
        (100..=599).contains(&status.0),
        "status {status:?}: {}",
        ctx()
    );
    assert!(
        !status.1.is_empty() && !status.1.contains(['\r', '\n']),
        "reason {status:?}"
    );
    // The body is read only for a POST that passed the origin check,
    // authorisation and the channel check, and never beyond the limit.
    let authorized = auth::authorize(
        config,
        request.remote_user.as_deref(),
        request.headers.authorization.as_deref(),
    );
    let same_site = origin::check_publish(request, config);
    if request.method != Method::Post || authorized.is_err() || same_site.is_err() {
        assert_eq!(read, 0, "body read without a need: {}", ctx());
    }
    assert!(read as u64 <= config.max_body + 1, "read {read}: {}", ctx());
    assert!(appended.len() <= 1, "appended twice: {}", ctx());
    check_channel_policy(config, request, &answer, ctx);
    for (channel, m) in &appended {
        assert_eq!(request.method, Method::Post, "{}", ctx());
        assert!(authorized.is_ok(), "unauthorised append: {}", ctx());
        assert!(same_site.is_ok(), "cross-site append: {}", ctx());
        assert!(spool::check_channel(channel).is_ok(), "{}", ctx());
        assert_eq!(message::event_name(m.event.as_deref()), Ok(m.event.clone()));
        assert!(m.data.len() as u64 <= config.max_body, "{}", ctx());
    }
    let routed = matches!(request.path.as_deref(), None | Some(handler::EVENTS_PATH));
    match &answer {
        Answer::Reply(reply) => {
            assert!(
                reply.head_only == head,
                "a reply to {} must {}have a body: {}",
                request.method.as_str(),
                if head { "not " } else { "" },
                ctx()
            );
            for (name, value) in &reply.headers {
                assert!(!value.contains(['\r', '\n']), "header {name}: {value:?}");
            }
            let names: Vec<&str> = reply.headers.iter().map(|(n, _)| *n).collect();
            match status.0 {
                401 => assert!(names.contains(&"WWW-Authenticate"), "{}", ctx()),
                405 => assert!(names.contains(&"Allow"), "{}", ctx()),
                426 => assert!(names.contains(&"Sec-WebSocket-Version"), "{}", ctx()),
                _ => {}
            }
            if status == http::CREATED {
                assert_eq!(appended.len(), 1, "{}", ctx());
                assert!(!case.append_fails);
                let v: serde_json::Value =
                    serde_json::from_slice(&reply.body).expect("201 is JSON");
                assert_eq!(v["id"], APPENDED_ID.to_string());
                assert_eq!(v["channel"], appended[0].0.as_str());
            } else if !appended.is_empty() {
                assert!(
                    case.append_fails,
                    "appended, answered {status:?}: {}",
                    ctx()
                );
                if case.rate_limited {
                    assert_eq!(status, http::TOO_MANY_REQUESTS);
                    assert!(names.contains(&"Retry-After"));
                } else {
                    assert_eq!(status, http::INTERNAL_ERROR);
                    assert!(reply.log.is_some() && !reply.text().contains("disk full"));
                }
            }
            let ws_events = request.headers.content_type.as_deref().is_some_and(|t| {
                t.to_ascii_lowercase()
                    .starts_with("application/websocket-events")
            });
            if request.method == Method::Post && routed && !ws_events {
                // The origin first, then the credentials.
                match (&same_site, authorized) {
                    (Err(e), _) => assert_eq!(status, e.status(), "{}", ctx()),
                    (Ok(()), Err(denied)) => assert_eq!(status, denied.status(), "{}", ctx()),
                    _ => {}
                }
            }
            for framing in framings() {
                check_rendered_reply(&framing, reply);
            }
        }
        Answer::Stream(s) => {
            assert!(request.method.reads_only() && routed, "{}", ctx());
            assert!(!request.wants_websocket() || head, "{}", ctx());
            assert_eq!(s.head_only, head);
            assert!(spool::check_channel(&s.channel).is_ok());
            assert!(appended.is_empty());
            let pairs = request.query_pairs().expect("a stream has a valid query");
            let channel = request::param(&pairs, "channel").unwrap_or(spool::DEFAULT_CHANNEL);
            assert_eq!(s.channel, channel);
            let header = request.headers.last_event_id.as_deref();
            let chosen = header
                .filter(|v| !v.is_empty())
                .or(request::param(&pairs, "lastEventId").filter(|v| !v.is_empty()));
            match (s.start, chosen) {
                (Start::Now, None) => {}
                (Start::After(n), Some(id)) => assert_eq!(sse::parse_id(id), Some(n)),
                (start, chosen) => panic!("start {start:?} from {chosen:?}: {}", ctx()),
            }
        }
        // Only a request a GRIP proxy signed gets WebSocket-over-HTTP events.
        Answer::GripWs(_) => {
            assert!(config.ws && config.grip_key.is_some() && request.method == Method::Post);
            assert!(request.headers.grip_sig.is_some(), "{}", ctx());
        }
        Answer::Upgrade(u) => {
            assert!(config.ws && request.method == Method::Get && routed);
            assert_ne!(request.protocol, Protocol::Http10);
            let key = request.headers.ws_key.as_deref().unwrap_or("").trim();
            let raw = data_encoding::BASE64
                .decode(key.as_bytes())
                .expect("base64 key");
            assert_eq!(raw.len(), 16);
            assert_eq!(u.accept, handshake::accept_key(key));
            assert_eq!(u.accept.len(), 28);
            assert_eq!(
                request.headers.ws_version.as_deref().map(str::trim),
                Some("13")
            );
            assert!(!u.subscribe.head_only && spool::check_channel(&u.subscribe.channel).is_ok());
            let may = match config.ws_relay {
                Relay::Off => false,
                Relay::Open => true,
                Relay::Auth => authorized.is_ok(),
            };
            assert_eq!(u.settings.may_publish, may);
            assert_eq!(u.settings.max_message as u64, config.max_body);
            assert!(appended.is_empty());
        }
    }
    check_origin_rule(request, config);
    // The handshake validator agrees with the answer.
    if config.ws && request.method == Method::Get && routed && request.wants_websocket() {
        let page = nph_events::demo::wants_page(request.headers.accept.as_deref());
        match handshake::accept(request) {
            Err(e) => assert_eq!(status, e.status(), "{}", ctx()),
            Ok(_) if origin::check_handshake(request, config).is_err() => {
                assert_eq!(status, http::FORBIDDEN, "{}", ctx())
            }
            Ok(k) => match &answer {
                Answer::Upgrade(u) => assert_eq!(u.accept, k),
                // 401/403: a channel policy (configurations with bit 0x80).
                Answer::Reply(r) => assert!(
                    matches!(r.status.0, 400 | 501)
                        || (!config.channels.is_empty() && matches!(r.status.0, 401 | 403)),
                    "valid handshake answered {:?} (page {page})",
                    r.status
                ),
                Answer::Stream(_) => panic!("a handshake became a stream"),
                Answer::GripWs(_) => panic!("a handshake became WebSocket-over-HTTP events"),
            },
        }
    }
}

/// A stream of a protected channel starts only for its own user or with a
/// signature that verifies (the policies of [`config_for`]'s bit 0x80).
fn check_channel_policy(
    config: &Config,
    request: &Request,
    answer: &Answer,
    ctx: impl Fn() -> String,
) {
    let channel = match answer {
        Answer::Stream(s) => &s.channel,
        Answer::Upgrade(u) => &u.subscribe.channel,
        Answer::GripWs(b) => match &b.open {
            Some(s) => &s.channel,
            None => return,
        },
        Answer::Reply(_) => return,
    };
    if config.channels.is_empty() || channel == "news" {
        return;
    }
    let own = request
        .remote_user
        .as_deref()
        .is_some_and(|u| !u.is_empty() && *channel == format!("user-{u}"));
    let pairs = request.query_pairs().unwrap_or_default();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let signed = get("sig").is_some_and(|sig| {
        let url = nph_events::signature::Signed {
            channel,
            grant: get("grant"),
            expires: get("expires"),
            sig,
        };
        nph_events::signature::verify(Some(SUBSCRIBE_SECRET.as_bytes()), url, NOW_SECS).is_ok()
    });
    assert!(
        own || signed,
        "protected channel {channel} opened: {}",
        ctx()
    );
}

/// What the same-origin rule lets through: an allowed origin, or a page
/// whose host is the request's own `Host`.
fn check_origin_rule(request: &Request, config: &Config) {
    let Some(o) = request.headers.origin.as_deref().map(str::trim) else {
        return;
    };
    if o.is_empty() || origin::check_handshake(request, config).is_err() {
        return;
    }
    let listed = config
        .origins
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(o));
    let host = request.headers.host.as_deref().unwrap_or("").trim();
    let name = host
        .rsplit_once(':')
        .map_or(host, |(n, _)| n)
        .to_ascii_lowercase();
    assert!(
        listed || (!name.is_empty() && o.to_ascii_lowercase().contains(&name)),
        "origin {o:?} let in for Host {host:?}"
    );
    assert!(!o.eq_ignore_ascii_case("null") || listed);
}

fn framings() -> [Framing; 5] {
    let date = "Wed, 25 Nov 2026 08:00:00 GMT".to_owned();
    [
        Framing::Nph {
            protocol: Protocol::Http11,
            date: date.clone(),
        },
        Framing::Nph {
            protocol: Protocol::Http10,
            date: date.clone(),
        },
        Framing::Cgi,
        Framing::Listener {
            protocol: Protocol::Http11,
            date: date.clone(),
            keep_alive: true,
        },
        Framing::Listener {
            protocol: Protocol::Http10,
            date,
            keep_alive: false,
        },
    ]
}

/// The reply as the door writes it: a head that parses, a length that is
/// the body's, no body after the head of a HEAD answer.
fn check_rendered_reply(framing: &Framing, reply: &Reply) {
    let mut out = Vec::new();
    http::write_reply(&mut out, framing, reply);
    let (status, headers, rest) = parse_framed(framing, &out);
    assert_eq!(status, reply.status.0, "{}", String::from_utf8_lossy(&out));
    let lengths: Vec<&String> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(lengths, [&reply.body.len().to_string()], "one true length");
    if reply.head_only {
        assert!(rest.is_empty(), "a HEAD answer has no body");
    } else {
        assert_eq!(rest, &reply.body[..]);
    }
    for (name, value) in &reply.headers {
        assert!(headers.iter().any(|(n, v)| n == name && v == value));
    }
}

type Parsed<'a> = (u16, Vec<(String, String)>, &'a [u8]);

/// Parses a head as the door framed it (a parsed-header CGI head gets a
/// status line put in front, and its `Status:` header is read).
fn parse_framed<'a>(framing: &Framing, out: &'a [u8]) -> Parsed<'a> {
    let (prefixed, skip);
    let bytes = if matches!(framing, Framing::Cgi) {
        let p = b"HTTP/1.1 299 CGI\r\n";
        skip = p.len();
        prefixed = [&p[..], out].concat();
        &prefixed[..]
    } else {
        skip = 0;
        out
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!(
            "unparseable head ({other:?}): {:?}",
            String::from_utf8_lossy(out)
        ),
    };
    let list: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), text(h.value)))
        .collect();
    let status = match framing {
        Framing::Cgi => {
            let v = &list.iter().find(|(n, _)| n == "Status").expect("Status").1;
            v[..3].parse().expect("a status code")
        }
        Framing::Nph { protocol, .. } | Framing::Listener { protocol, .. } => {
            let want = u8::from(*protocol != Protocol::Http10);
            assert_eq!(resp.version, Some(want));
            resp.code.expect("a code")
        }
    };
    (status, list, &out[len - skip..])
}

// ---------------------------------------------------------------------------
// CGI variables to a request.

/// The variables a web server could set, as `NAME=value` fields.
fn decode_vars(data: &[u8]) -> (HashMap<String, String>, &[u8]) {
    let (f, body) = fields(data);
    let mut vars = HashMap::new();
    for v in f {
        let v = text(v);
        if v.is_empty() {
            continue;
        }
        let (name, value) = v.split_once('=').unwrap_or((&v, ""));
        vars.insert(name.to_owned(), value.to_owned());
    }
    (vars, body)
}

/// CGI variables in, the typed request out; then the handler on it.
pub fn cgi_env(data: &[u8]) {
    let bits = byte(data, 0);
    let (vars, body) = decode_vars(data.get(1..).unwrap_or(&[]));
    let r = Request::from_cgi(&vars);
    let var = |n: &str| vars.get(n).map(|v| v.trim().to_owned());
    match var("REQUEST_METHOD") {
        None => assert_eq!(r.method, Method::Get),
        Some(m) => assert_eq!(r.method.as_str(), m.trim()),
    }
    assert!(["HTTP/1.0", "HTTP/1.1"].contains(&r.protocol.status_line_version()));
    assert_eq!(
        r.protocol,
        Protocol::from_var(vars.get("SERVER_PROTOCOL").map(String::as_str))
    );
    assert_eq!(r.path, None);
    assert_eq!(
        r.query,
        vars.get("QUERY_STRING").cloned().unwrap_or_default()
    );
    let h = &r.headers;
    for (got, name) in [
        (&h.accept, "HTTP_ACCEPT"),
        (&h.last_event_id, "HTTP_LAST_EVENT_ID"),
        (&h.content_type, "CONTENT_TYPE"),
        (&h.content_length, "CONTENT_LENGTH"),
        (&h.host, "HTTP_HOST"),
        (&h.origin, "HTTP_ORIGIN"),
        (&h.upgrade, "HTTP_UPGRADE"),
        (&h.connection, "HTTP_CONNECTION"),
        (&h.ws_key, "HTTP_SEC_WEBSOCKET_KEY"),
        (&h.ws_version, "HTTP_SEC_WEBSOCKET_VERSION"),
        (&h.referer, "HTTP_REFERER"),
        (&h.fetch_site, "HTTP_SEC_FETCH_SITE"),
        (&r.remote_user, "REMOTE_USER"),
        (&r.server_software, "SERVER_SOFTWARE"),
    ] {
        assert_eq!(*got, var(name), "{name}");
    }
    let https = var("HTTPS").is_some_and(|v| v.eq_ignore_ascii_case("on"))
        || var("REQUEST_SCHEME").is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let proto = if https {
        Some("https".to_owned())
    } else {
        var("HTTP_X_FORWARDED_PROTO")
    };
    assert_eq!(h.forwarded_proto, proto);
    let auth = var("HTTP_AUTHORIZATION").or_else(|| var("REDIRECT_HTTP_AUTHORIZATION"));
    assert_eq!(h.authorization, auth);
    assert_eq!(r.script_name, var("SCRIPT_NAME").unwrap_or_default());
    check_case(&Case {
        config: config_for(bits),
        request: r,
        body: body.to_vec(),
        body_fails_at: None,
        append_fails: bits & 0x80 != 0,
        rate_limited: false,
    });
}

/// The whole CGI door: the variables, a body on stdin, a fake clock; the
/// output must be a complete, well-framed answer. `spool` is a private
/// directory of at most 60 bytes; the input's own `NPH_EVENTS_*` variables
/// are dropped (the configuration is the site's, not the visitor's).
pub fn cgi_door(spool: &Path, data: &[u8]) {
    let bits = byte(data, 0);
    let (mut vars, body) = decode_vars(data.get(1..).unwrap_or(&[]));
    vars.retain(|k, _| !k.starts_with("NPH_EVENTS_"));
    vars.insert("GATEWAY_INTERFACE".into(), "CGI/1.1".into());
    vars.insert("NPH_EVENTS_SPOOL".into(), spool.display().to_string());
    vars.insert("NPH_EVENTS_INTERVAL".into(), "0".into());
    if bits & 2 != 0 {
        vars.insert(
            "NPH_EVENTS_TOKEN_SHA256".into(),
            auth::token_hash_hex(TOKEN),
        );
    }
    if bits & 0x40 != 0 {
        vars.insert("NPH_EVENTS_MAX_BODY".into(), "16".into());
    }
    let nph = bits & 1 != 0;
    let program = if nph { "nph-events.cgi" } else { "events.cgi" };
    let clock = FakeClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_057_600));
    let mut waiter = FakeWaiter::new(&clock);
    waiter.close_on_wait = Some(1);
    let mut stdin = body;
    let inputs = nph_events::Inputs {
        args: vec![OsString::from(format!("/usr/lib/cgi-bin/{program}"))],
        vars: vars
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect(),
        clock: &clock,
        waiter: &mut waiter,
        stdin: &mut stdin,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = nph_events::run(inputs, &mut out, &mut err);
    let log = String::from_utf8_lossy(&err);
    let ctx = || {
        format!(
            "vars {vars:?}\nexit {code}\nlog {log}\nout {:?}",
            text(&out)
        )
    };
    assert_eq!(code, 0, "{}", ctx());
    let framing = if nph {
        let protocol = Protocol::from_var(vars.get("SERVER_PROTOCOL").map(String::as_str));
        Framing::Nph {
            protocol,
            date: String::new(),
        }
    } else {
        Framing::Cgi
    };
    let (status, headers, rest) = parse_framed(&framing, &out);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let head = Request::from_cgi(&vars).method == Method::Head;
    note(format!(
        "{status} {}",
        header("Content-Type").unwrap_or("-")
    ));
    match header("Content-Type") {
        Some(t) if t.starts_with("text/event-stream") => {
            assert_eq!(status, 200, "{}", ctx());
            assert!(header("Content-Length").is_none());
            if head {
                assert!(rest.is_empty(), "HEAD of a stream: {}", ctx());
            } else {
                let body = std::str::from_utf8(rest).expect("a UTF-8 stream");
                assert!(!body.contains('\r'), "LF-only body: {}", ctx());
                let (_, retry) = parse_sse(body);
                assert_eq!(retry, Some(3000), "{}", ctx());
            }
        }
        _ => {
            let len: usize = header("Content-Length")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("a reply with a length: {}", ctx()));
            assert_eq!(rest.len(), if head { 0 } else { len }, "{}", ctx());
        }
    }
}

// ---------------------------------------------------------------------------
// Query strings and form bodies.

/// The model decoder of one form component, written from the
/// `application/x-www-form-urlencoded` rules (strict about escapes).
fn model_decode(s: &str) -> Result<String, QueryError> {
    let mut out = Vec::new();
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = it.next().and_then(|c| (c as char).to_digit(16));
                let lo = it.next().and_then(|c| (c as char).to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(QueryError::BadEscape),
                }
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| QueryError::NotUtf8)
}

/// Percent-encodes a form component (everything but unreserved bytes).
pub fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Query and form decoding, `has_token`, `param`, header joining.
pub fn query_form(data: &[u8]) {
    let q = text(data);
    let got = request::form_pairs(&q);
    // The model: each non-empty `&` part, split at its first `=`.
    let model: Result<Vec<(String, String)>, QueryError> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((model_decode(n)?, model_decode(v)?))
        })
        .collect();
    assert_eq!(got, model, "form_pairs({q:?})");
    note(match &got {
        Ok(p) => format!("{} pairs", p.len().min(5)),
        Err(e) => e.as_str().to_owned(),
    });
    if let Ok(pairs) = &got {
        let parts: Vec<&str> = q.split('&').filter(|p| !p.is_empty()).collect();
        assert_eq!(pairs.len(), parts.len());
        for ((name, _), part) in pairs.iter().zip(&parts) {
            let raw = part.split_once('=').map_or(*part, |(n, _)| n);
            // A decoded name holds `&` or `=` only when it was escaped.
            if name.contains('&') {
                assert!(raw.contains("%26"), "{q:?}");
            }
            if name.contains('=') {
                assert!(raw.to_ascii_uppercase().contains("%3D"), "{q:?}");
            }
        }
        if let Some((first, _)) = pairs.first() {
            let want = pairs
                .iter()
                .find(|(k, _)| k == first)
                .map(|(_, v)| v.as_str());
            assert_eq!(request::param(pairs, first), want);
        }
    }
    let r = Request::new(Method::Get, Protocol::Http11, None, q.clone());
    if q.len() > request::MAX_QUERY {
        assert_eq!(r.query_pairs(), Err(QueryError::TooLong));
    } else {
        assert_eq!(r.query_pairs(), got);
    }
    // Round trip: any names and values, encoded, decode to themselves.
    let (f, _) = fields(data);
    let pairs: Vec<(String, String)> = f
        .chunks(2)
        .map(|c| (text(c[0]), c.get(1).map(|v| text(v)).unwrap_or_default()))
        .collect();
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(n, v)| format!("{}={}", form_encode(n), form_encode(v)))
        .collect();
    assert_eq!(
        request::form_pairs(&encoded.join("&")).as_ref(),
        Ok(&pairs),
        "round trip"
    );
    // has_token finds a token wherever it stands in a list, in any case.
    let token = text(f.first().copied().unwrap_or(b"upgrade"));
    let token = token.replace(',', "").trim().to_owned();
    if !token.is_empty() {
        let list = format!(
            "{} ,\t{} , {}",
            text(f.get(1).copied().unwrap_or(b"")).replace(',', ""),
            token.to_ascii_uppercase(),
            q
        );
        assert!(request::has_token(&list, &token), "{list:?} {token:?}");
        if request::has_token(&q, &token) {
            assert!(q.to_ascii_lowercase().contains(&token.to_ascii_lowercase()));
        }
    }
    // Repeated headers are joined as a list, values trimmed.
    let mut h = Headers::default();
    for v in f.iter().take(4) {
        h.set("Connection", &text(v));
    }
    if let Some(joined) = &h.connection {
        let want: Vec<String> = f
            .iter()
            .take(4)
            .map(|v| text(v).trim().to_owned())
            .collect();
        assert_eq!(joined, &want.join(", "));
    }
    let _ = nph_events::demo::wants_page(Some(&q));
    let _ = Protocol::from_var(Some(&q)).status_line_version();
}

// ---------------------------------------------------------------------------
// Publish bodies.

const MEDIA: [&str; 3] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
];

/// `[type bits, limit bits] content-type SEP content-length SEP event SEP
/// data [BODY body]`.
pub fn publish_body(data: &[u8]) {
    let (tb, lb) = (byte(data, 0), byte(data, 1));
    let (f, body) = fields(data.get(2..).unwrap_or(&[]));
    let field = |i: usize| f.get(i).map(|b| text(b)).unwrap_or_default();
    let content_type = match tb & 7 {
        0..=2 => Some(MEDIA[(tb & 7) as usize].to_owned()),
        3 => Some(format!("Application/JSON ; charset=utf-8{}", field(0))),
        4 => None,
        _ => Some(field(0)),
    };
    let ct = content_type.as_deref();
    let max = [1, 16, 1024, 64 * 1024][(lb & 3) as usize];
    let declared = (lb & 4 != 0).then(|| field(1));
    // Reading: the model of the limits.
    let mut input = Body {
        data: body,
        read: 0,
        fails_at: None,
    };
    let got = message::read_body(&mut input, declared.as_deref(), max);
    let trimmed = declared.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let want = match trimmed.map(sse::parse_id) {
        Some(None) => Err("malformed"),
        Some(Some(n)) if n > max => Err("too large"),
        d => {
            let limit = d.flatten().unwrap_or(max + 1);
            let n = (body.len() as u64).min(limit) as usize;
            if n as u64 > max {
                Err("too large")
            } else if d.flatten().is_some_and(|d| d != n as u64) {
                Err("malformed")
            } else {
                Ok(body[..n].to_vec())
            }
        }
    };
    match (&got, &want) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(Rejected::TooLarge), Err("too large")) => {}
        (Err(Rejected::Malformed(_)), Err("malformed")) => {}
        _ => panic!(
            "read_body({declared:?}, max {max}) of {} bytes: {got:?}, want {want:?}",
            body.len()
        ),
    }
    assert!(input.read as u64 <= max + 1);
    let mut drained = Body {
        data: body,
        read: 0,
        fails_at: None,
    };
    message::drain(&mut drained, declared.as_deref(), max);
    assert!(drained.read as u64 <= max + (1 << 20));
    // Parsing.
    let supported = message::check_content_type(ct).is_ok();
    let media = ct
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    assert_eq!(
        supported,
        media.as_deref().is_some_and(|m| MEDIA.contains(&m))
    );
    let parsed = message::parse_body(ct, body);
    note(format!(
        "read {} parse {}",
        match &got {
            Ok(_) => "ok",
            Err(Rejected::TooLarge) => "413",
            Err(_) => "400",
        },
        match (&media, &parsed) {
            (_, Err(e)) => e.status().0.to_string(),
            (Some(m), Ok(_)) => m.rsplit('/').next().unwrap_or("").to_owned(),
            (None, Ok(_)) => "?".to_owned(),
        }
    ));
    if !supported {
        assert_eq!(parsed, Err(Rejected::Unsupported));
    }
    if let Ok(m) = &parsed {
        assert_eq!(message::event_name(m.event.as_deref()), Ok(m.event.clone()));
        let body_text = std::str::from_utf8(body).expect("accepted bodies are UTF-8");
        match media.as_deref() {
            Some("text/plain") => {
                assert_eq!((m.event.as_deref(), m.data.as_str()), (None, body_text))
            }
            Some("application/json") => {
                let v: serde_json::Value = serde_json::from_str(body_text).unwrap();
                let d = &v["data"];
                assert_eq!(
                    d.as_str().map_or_else(|| d.to_string(), str::to_owned),
                    m.data
                );
            }
            _ => {}
        }
    }
    if let Err(Rejected::Malformed(reason)) = &parsed {
        assert!(!reason.is_empty());
    }
    // Event names: the model.
    let event = field(2);
    let want_event = if event.is_empty() {
        Ok(None)
    } else if event.len() > message::MAX_EVENT_NAME
        || event.contains(['\r', '\n', '\0'])
        || event == sse::RESET_EVENT
    {
        Err(())
    } else {
        Ok(Some(event.clone()))
    };
    assert_eq!(
        message::event_name(Some(&event)).map_err(|_| ()),
        want_event
    );
    // Round trips: what a publisher encodes comes out as it went in.
    let data_text = field(3);
    let want = want_event.as_ref().ok().map(|e| Message {
        event: e.clone(),
        data: data_text.clone(),
        sender: None,
    });
    let json = serde_json::json!({ "event": event, "data": data_text }).to_string();
    let form = format!(
        "event={}&data={}",
        form_encode(&event),
        form_encode(&data_text)
    );
    for (media, bytes) in [(MEDIA[0], json.as_bytes()), (MEDIA[1], form.as_bytes())] {
        let got = message::parse_body(Some(media), bytes);
        match &want {
            Some(m) => assert_eq!(got.as_ref(), Ok(m), "{media} {bytes:?}"),
            None => assert!(matches!(got, Err(Rejected::Malformed(_))), "{media}"),
        }
    }
    let plain = message::parse_body(Some("text/plain; charset=utf-8"), data_text.as_bytes());
    assert_eq!(plain.map(|m| m.data), Ok(data_text));
    for e in [
        Rejected::TooLarge,
        Rejected::Unsupported,
        Rejected::Malformed("x".into()),
    ] {
        assert!((400..500).contains(&e.status().0) && !e.reason().is_empty());
    }
}

// ---------------------------------------------------------------------------
// Spool records, segment names, channel names.

fn has_blank_line(b: &[u8]) -> bool {
    b.windows(2).any(|w| w == b"\n\n")
}

/// The check of one spool buffer: what `records` and `complete_len` say.
fn check_records(buf: &[u8]) {
    let c = spool::complete_len(buf);
    assert!(c <= buf.len());
    if c > 0 {
        assert!(buf[..c].ends_with(b"\n\n"));
        // No blank line ends later (not even one straddling `c`).
        assert!(
            !has_blank_line(&buf[c - 1..]),
            "complete_len({buf:?}) = {c}"
        );
    } else {
        assert!(!has_blank_line(buf));
    }
    let recs: Vec<&[u8]> = spool::records(buf).collect();
    note(format!(
        "{} records, {} with ids",
        recs.len().min(4),
        recs.iter()
            .filter(|r| spool::record_id(r).is_some())
            .count()
            .min(4)
    ));
    for r in &recs {
        // A stray newline after a record (a damaged segment) is a piece
        // of its own; every other piece is one record.
        assert!(
            *r == b"\n" || (r.ends_with(b"\n\n") && !has_blank_line(&r[..r.len() - 1])),
            "{r:?}"
        );
        if let Some(n) = spool::record_id(r) {
            let line = r.split(|&b| b == b'\n').next().unwrap();
            let digits = line.strip_prefix(b"id: ").expect("an id line");
            assert_eq!(model_id(&text(digits)), Some(n), "{line:?}");
        }
        if let Some(json) = ws::record_to_json(r) {
            let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
            assert!(v["data"].is_string() && v["event"].is_string());
            assert!(v["id"].is_string() || v["id"].is_null());
            let frame = ws::event_frame(r).expect("a frame for a JSON record");
            check_server_text_frame(&frame, json.as_bytes());
        }
    }
    let total: usize = recs.iter().map(|r| r.len()).sum();
    assert_eq!(
        total,
        c,
        "records() of {:?} cover {total} of the {c} complete bytes",
        String::from_utf8_lossy(buf)
    );
}

/// A server frame: final, text, unmasked, carrying `payload`.
fn check_server_text_frame(frame: &[u8], payload: &[u8]) {
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    use tungstenite::protocol::frame::FrameHeader;
    let mut cur = io::Cursor::new(frame);
    let (h, len) = FrameHeader::parse(&mut cur)
        .expect("header")
        .expect("whole");
    assert!(h.is_final && h.mask.is_none());
    assert_eq!(h.opcode, OpCode::Data(Data::Text));
    assert_eq!(len as usize, payload.len());
    assert_eq!(&frame[cur.position() as usize..], payload);
}

/// Spool records in arbitrary bytes; records the encoder wrote, whole and
/// cut anywhere (what a publisher killed mid-write leaves); segment and
/// channel names.
pub fn spool_records(data: &[u8]) {
    check_records(data);
    let name = text(data);
    if let Some(n) = spool::parse_segment_name(&name) {
        assert_eq!(spool::segment_name(n), name, "one spelling per segment");
    }
    let model = !name.is_empty()
        && name.len() <= spool::MAX_CHANNEL
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    assert_eq!(spool::check_channel(&name).is_ok(), model, "{name:?}");
    if model {
        let root = Path::new("/spool");
        let dir = root.join("channels").join(&name);
        assert_eq!(dir.parent(), Some(root.join("channels").as_path()));
    }
    // The encoder's records.
    let mut dice = Dice::from(data);
    let first = dice.next();
    let (f, _) = fields(data);
    let mut buf = Vec::new();
    let mut want = Vec::new();
    for (i, field) in f.iter().enumerate() {
        let id = first.wrapping_add(i as u64);
        let data_text = text(field);
        let event = (i % 3 == 1).then_some("news");
        let ids = id.to_string();
        let e = Event {
            id: Some(&ids),
            event,
            data: &data_text,
        };
        sse::encode(&e, &mut buf).expect("a valid event");
        want.push((
            id,
            event.unwrap_or("message").to_owned(),
            normalize(&data_text),
        ));
    }
    check_records(&buf);
    let recs: Vec<&[u8]> = spool::records(&buf).collect();
    assert_eq!(recs.len(), want.len());
    for (r, (id, event, d)) in recs.iter().zip(&want) {
        assert_eq!(spool::record_id(r), Some(*id));
        let v: serde_json::Value =
            serde_json::from_str(&ws::record_to_json(r).expect("json")).unwrap();
        assert_eq!(v["id"], id.to_string());
        assert_eq!(v["event"], event.as_str());
        assert_eq!(v["data"], d.as_str());
    }
    let cut = dice.below(buf.len() as u64 + 1) as usize;
    let part = &buf[..cut];
    check_records(part);
    let kept: Vec<&[u8]> = spool::records(part).collect();
    assert!(kept.len() <= recs.len() && kept[..] == recs[..kept.len()]);
    // A record is complete exactly when its blank line is in.
    let ends: Vec<usize> = recs
        .iter()
        .scan(0, |end, r| {
            *end += r.len();
            Some(*end)
        })
        .collect();
    let want_len = ends.iter().rev().find(|&&e| e <= cut).copied().unwrap_or(0);
    assert_eq!(spool::complete_len(part), want_len);
    let n = u64::from_le_bytes(data.get(..8).map_or([0; 8], |b| b.try_into().unwrap()));
    assert_eq!(spool::parse_segment_name(&spool::segment_name(n)), Some(n));
}

/// Line breaks as an SSE client sees them: CRLF, CR and LF all become LF.
fn normalize(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

// ---------------------------------------------------------------------------
// Event ids and the SSE encoder.

/// What an EventSource dispatches: (type, data, last event id), and the
/// last `retry`. Written from the WHATWG "interpret an event stream"
/// algorithm; an unterminated trailing event is dropped.
pub fn parse_sse(input: &str) -> (Vec<(String, String, String)>, Option<u64>) {
    let (mut out, mut retry) = (Vec::new(), None);
    let (mut data, mut kind, mut last) = (String::new(), String::new(), String::new());
    let mut rest = input.strip_prefix('\u{feff}').unwrap_or(input);
    while let Some(i) = rest.find(['\r', '\n']) {
        let line = &rest[..i];
        rest = &rest[i + if rest[i..].starts_with("\r\n") { 2 } else { 1 }..];
        if line.is_empty() {
            if data.is_empty() {
                kind.clear();
                continue;
            }
            data.pop();
            let t = if kind.is_empty() { "message" } else { &kind };
            out.push((t.to_owned(), std::mem::take(&mut data), last.clone()));
            kind.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => kind = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => last = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                retry = value.parse().ok()
            }
            _ => {}
        }
    }
    (out, retry)
}

/// The model of `parse_id`: 1 to 20 ASCII digits whose value fits in u64.
fn model_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u128 = s.bytes().fold(0, |v, b| v * 10 + u128::from(b - b'0'));
    u64::try_from(v).ok()
}

/// `Last-Event-ID` parsing and the SSE encoder.
pub fn last_event_id(data: &[u8]) {
    let s = text(data);
    assert_eq!(sse::parse_id(&s), model_id(&s), "{s:?}");
    note(if model_id(&s).is_some() {
        "an id"
    } else {
        "not an id"
    });
    for piece in data.split(|&b| b == SEP).map(text) {
        assert_eq!(sse::parse_id(&piece), model_id(&piece), "{piece:?}");
    }
    // Every u64 round-trips, plainly and zero-padded to the segment width;
    // a non-digit anywhere is refused.
    let n = u64::from_le_bytes(data.get(..8).map_or([0; 8], |b| b.try_into().unwrap()));
    let plain = n.to_string();
    assert_eq!(sse::parse_id(&plain), Some(n));
    assert_eq!(sse::parse_id(&format!("{n:020}")), Some(n));
    let at = byte(data, 8) as usize % (plain.len() + 1);
    for bad in [b'+', b'-', b' ', b'a', b'\r', b'\0', 0xC2] {
        let mut b = plain.clone().into_bytes();
        b.insert(at, bad);
        assert_eq!(sse::parse_id(&text(&b)), None, "{b:?}");
    }
    // The encoder: refused exactly when a field cannot be carried; what
    // it writes, a spec parser reads back as it was meant.
    let (f, _) = fields(data);
    let field = |i: usize| f.get(i).map(|b| text(b));
    let (id, event, payload) = (field(0), field(1), field(2).unwrap_or_default());
    let e = Event {
        id: id.as_deref(),
        event: event.as_deref(),
        data: &payload,
    };
    let mut out = b"keep".to_vec();
    let bad = |v: &Option<String>| v.as_deref().is_some_and(|v| v.contains(['\r', '\n', '\0']));
    let encoded = sse::encode(&e, &mut out);
    note(if encoded.is_ok() {
        "encoded"
    } else {
        "refused"
    });
    match encoded {
        Err(_) => {
            assert!(bad(&id) || bad(&event));
            assert_eq!(out, b"keep", "nothing written");
        }
        Ok(()) => {
            assert!(!bad(&id) && !bad(&event));
            let wire = std::str::from_utf8(&out[4..]).unwrap();
            assert!(!wire.contains('\r') && wire.ends_with("\n\n"));
            let (events, retry) = parse_sse(wire);
            assert_eq!(retry, None);
            let kind = event
                .as_deref()
                .filter(|k| !k.is_empty())
                .unwrap_or("message");
            let want = (
                kind.to_owned(),
                normalize(&payload),
                id.clone().unwrap_or_default(),
            );
            assert_eq!(events, [want], "{wire:?}");
        }
    }
    // A comment never becomes a field; retry is read back.
    let mut c = Vec::new();
    sse::comment(&payload, &mut c);
    sse::retry(n % 86_400_001, &mut c);
    let wire = std::str::from_utf8(&c).unwrap();
    assert_eq!(parse_sse(wire), (vec![], Some(n % 86_400_001)), "{wire:?}");
    let _ = sse::check_field(&payload);
}

// ---------------------------------------------------------------------------
// WebSocket frame tracking.

/// Arbitrary client bytes, fed whole, byte by byte and in pieces: the
/// tracker must come to the same verdict however the reads fell.
pub fn ws_inbound(data: &[u8]) {
    let mut dice = Dice::from(data);
    let whole = feed(data, &mut |_| data.len().max(1));
    let bytes = feed(data, &mut |_| 1);
    let pieces = feed(data, &mut |_| 1 + dice.below(20) as usize);
    note(match (whole.invalid_utf8(), whole.at_rest()) {
        (true, _) => "invalid UTF-8",
        (false, true) => "at rest",
        (false, false) => "mid-frame or lost",
    });
    for (name, t) in [("bytes", &bytes), ("pieces", &pieces)] {
        assert_eq!(t.invalid_utf8(), whole.invalid_utf8(), "{name}: {data:?}");
        if !whole.invalid_utf8() {
            assert_eq!(t.at_rest(), whole.at_rest(), "{name}: {data:?}");
        }
    }
}

fn feed(bytes: &[u8], size: &mut dyn FnMut(usize) -> usize) -> Inbound {
    let mut t = Inbound::default();
    let mut at = 0;
    let mut was_invalid = false;
    while at < bytes.len() {
        let n = size(at).min(bytes.len() - at);
        t.feed(&bytes[at..at + n]);
        at += n;
        assert!(!was_invalid || t.invalid_utf8(), "invalid stays invalid");
        was_invalid = t.invalid_utf8();
    }
    t
}

/// A masked client frame; `wide` forces a longer length encoding.
fn client_frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4], out: &mut Vec<u8>) {
    out.push((u8::from(fin) << 7) | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
}

/// Valid frame sequences built from the input (text and binary messages,
/// fragmented, with control frames between fragments, every length
/// encoding), fed one byte at a time: the tracker is at rest exactly at
/// the boundaries between whole messages, and it flags invalid UTF-8 at
/// the very byte that makes a text message invalid, and not before.
pub fn ws_frames(data: &[u8]) {
    let mut dice = Dice::from(data);
    let (f, _) = fields(data);
    let mut wire = Vec::new();
    // Positions (in `wire`) after which the tracker must be at rest.
    let mut rest_at = vec![0usize];
    // The position at which invalid UTF-8 must be flagged, if any.
    let mut fail_at: Option<usize> = None;
    // Where frames end.
    let mut bounds = vec![0usize];
    for (i, field) in f.iter().enumerate() {
        if fail_at.is_some() {
            break;
        }
        let mode = byte(field, 0);
        let text_msg = mode & 1 == 0;
        let mut payload: Vec<u8> = if text_msg && mode & 2 == 0 {
            text(field.get(1..).unwrap_or(&[])).into_bytes()
        } else {
            field.get(1..).unwrap_or(&[]).to_vec()
        };
        match (mode >> 2) & 7 {
            5 => payload.resize(payload.len() + 130, b'x'),
            6 if i == 0 && mode & 0xe0 == 0 => payload.resize(payload.len() + 65_540, b'y'),
            _ => {}
        }
        let parts = 1 + dice.below(4) as usize;
        let mut cuts: Vec<usize> = (1..parts)
            .map(|_| dice.below(payload.len() as u64 + 1) as usize)
            .collect();
        cuts.sort_unstable();
        cuts.insert(0, 0);
        cuts.push(payload.len());
        // Where each payload byte lands on the wire.
        let mut at_wire = Vec::with_capacity(payload.len());
        let mut last_frame_end = 0;
        for (k, w) in cuts.windows(2).enumerate() {
            let last = k + 2 == cuts.len();
            let opcode = match (k, text_msg) {
                (0, true) => 1,
                (0, false) => 2,
                _ => 0,
            };
            let key = (dice.next() as u32).to_be_bytes();
            let start = wire.len();
            client_frame(last, opcode, &payload[w[0]..w[1]], key, &mut wire);
            bounds.push(wire.len());
            let head_len = wire.len() - start - (w[1] - w[0]);
            at_wire.extend((0..w[1] - w[0]).map(|j| start + head_len + j + 1));
            last_frame_end = wire.len();
            if !last && dice.below(3) == 0 {
                let ping = &field[..field.len().min(125)];
                client_frame(true, 9 + (dice.below(2) as u8), ping, key, &mut wire);
                bounds.push(wire.len());
            }
        }
        if text_msg {
            fail_at = first_invalid(&payload).map(|j| match j {
                Some(j) => at_wire[j],
                None => last_frame_end, // ends inside a character
            });
        }
        if fail_at.is_none() {
            rest_at.push(wire.len());
        }
        if dice.below(4) == 0 {
            client_frame(true, 10, b"", [1, 2, 3, 4], &mut wire);
            bounds.push(wire.len());
            if fail_at.is_none() {
                rest_at.push(wire.len());
            }
        }
    }
    note(format!(
        "{} messages, {}",
        (rest_at.len() - 1).min(5),
        if fail_at.is_some() {
            "invalid"
        } else {
            "valid"
        }
    ));
    // Every byte boundary; in a long wire (a 64-bit length), every one
    // within 256 bytes of a frame boundary or of the failing byte, the
    // rest of a long payload in one piece.
    let cuts: Vec<usize> = if wire.len() <= 8192 {
        (1..=wire.len()).collect()
    } else {
        let mut c: Vec<usize> = bounds
            .iter()
            .chain(fail_at.as_ref())
            .flat_map(|&b| b.saturating_sub(256)..=b + 256)
            .filter(|&p| (1..=wire.len()).contains(&p))
            .chain([wire.len()])
            .collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let mut t = Inbound::default();
    assert!(t.at_rest());
    let mut prev = 0;
    for fed in cuts {
        t.feed(&wire[prev..fed]);
        prev = fed;
        let should_fail = fail_at.is_some_and(|at| fed >= at);
        assert_eq!(
            t.invalid_utf8(),
            should_fail,
            "after {fed} of {} bytes, fail at {fail_at:?}",
            wire.len()
        );
        if should_fail {
            break;
        }
        assert_eq!(
            t.at_rest(),
            rest_at.contains(&fed),
            "at_rest after {fed} bytes: rest at {rest_at:?}"
        );
    }
    // The same verdict in random pieces.
    let pieces = feed(&wire, &mut |_| 1 + dice.below(300) as usize);
    assert_eq!(pieces.invalid_utf8(), fail_at.is_some());
    if fail_at.is_none() {
        assert!(pieces.at_rest());
    }
}

/// Where a text payload becomes invalid UTF-8: `Some(Some(j))` when the
/// byte at `j` makes every longer prefix invalid, `Some(None)` when it is
/// valid but ends inside a character, `None` when it is valid.
fn first_invalid(p: &[u8]) -> Option<Option<usize>> {
    let definite =
        |n: usize| matches!(std::str::from_utf8(&p[..n]), Err(e) if e.error_len().is_some());
    if definite(p.len()) {
        // The shortest definitely invalid prefix (monotone: binary search).
        let (mut lo, mut hi) = (0, p.len());
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            if definite(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        return Some(Some(hi - 1));
    }
    std::str::from_utf8(p).is_err().then_some(None)
}

// ---------------------------------------------------------------------------
// Settings (operator input, but parsed all the same).

/// Any value for any setting, a JSON config file, `NPH_EVENTS_*`
/// variables, a command line: refused or accepted, never a panic, and an
/// accepted value is within its documented bounds.
pub fn config_values(data: &[u8]) {
    let k = &KEYS[byte(data, 0) as usize % KEYS.len()];
    let raw = text(data.get(1..).unwrap_or(&[]));
    let mut c = Config::default();
    let accepted = c.set(k, &raw, "fuzz").is_ok();
    note(format!(
        "{} {}",
        k.json,
        if accepted { "ok" } else { "refused" }
    ));
    if accepted {
        let secs = |d: Duration| d.as_secs_f64();
        match k.json {
            "interval" => assert!(secs(c.interval) <= 86_400.0),
            "heartbeat" => assert!(secs(c.heartbeat) == 0.0 || secs(c.heartbeat) >= 0.0099),
            "retry" => assert!(c.retry_ms <= 86_400_000),
            "max_body" => assert!((1..=16 << 20).contains(&c.max_body)),
            "spool" => assert!(raw.starts_with('/') && raw.len() <= spool::MAX_ROOT_LEN),
            "token_sha256" => {
                let t = raw.trim();
                assert!(
                    (t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())),
                    "token_sha256 accepted {raw:?}"
                );
            }
            "tick_event" => assert!(sse::check_field(&c.tick_event).is_ok()),
            "publish_users" => assert!(c.publish_users.iter().all(|u| sse::check_field(u).is_ok())),
            _ => {}
        }
    }
    let mut c = Config::default();
    let _ = c.apply_json(&raw, "fuzz.json");
    let (f, _) = fields(data);
    let vars: Vec<(String, String)> = f
        .iter()
        .map(|v| {
            let v = text(v);
            let (n, val) = v.split_once('=').unwrap_or((&v, ""));
            (n.to_owned(), val.to_owned())
        })
        .collect();
    let _ = Config::default().apply_env(vars.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    let args: Vec<String> = f.iter().map(|a| text(a)).collect();
    let _ = nph_events::cli::parse(&args);
    // Who may publish: the configured token in any bearer spelling.
    let token = text(f.first().copied().unwrap_or(b"t"));
    let token = token.trim();
    if !token.is_empty() && !token.contains(char::is_whitespace) {
        let mut c = Config::default();
        c.set(key("token_sha256"), &auth::token_hash_hex(token), "fuzz")
            .unwrap();
        for h in [format!("Bearer {token}"), format!(" bEARER   {token}  ")] {
            assert_eq!(auth::authorize(&c, None, Some(&h)), Ok(()), "{h:?}");
        }
        let other = text(f.get(1).copied().unwrap_or(b""));
        if auth::authorize(&c, None, Some(&other)).is_ok() {
            assert!(other.contains(token));
        }
    }
}

// ---------------------------------------------------------------------------
// The listener: raw bytes on a socket.

/// Sends `data` as they are to a listener at `addr`, half-closes, and
/// checks what comes back: only whole, well-formed responses, each with a
/// length or ending the connection as a stream, and none with a body when
/// the request was HEAD. Returns the responses' status codes.
pub fn http_exchange(addr: SocketAddr, data: &[u8]) -> Vec<u16> {
    let mut s = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("cannot connect to the listener: {e}"),
        }
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(data);
    let _ = s.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(5);
    let first_head = first_method(data).as_deref() == Some("HEAD");
    let (mut got, mut codes, mut at, mut eof) = (Vec::new(), Vec::new(), 0, false);
    let mut buf = [0u8; 4096];
    'read: loop {
        // Take every whole response received so far.
        while at < got.len() {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            let n = match resp.parse(&got[at..]) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if !eof => break,
                other => panic!("bad response ({other:?}) to {data:?}: {:?}", text(&got)),
            };
            let code = resp.code.unwrap();
            assert!((100..=599).contains(&code));
            let header = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| text(h.value))
            };
            let stream = header("Content-Type").is_some_and(|t| t.starts_with("text/event-stream"));
            if code == 101 || stream {
                codes.push(code);
                break 'read; // the reactor has the connection now
            }
            let len: usize = header("Content-Length")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no length in {:?}", text(&got[at..])));
            let mut body_len = len;
            if codes.is_empty() && first_head {
                // Enough to tell a body from the next response, or the end.
                let after = &got[at + n..];
                if after.len() < len.min(7) && !eof {
                    break;
                }
                body_len = 0;
                if !after.is_empty() && !after.starts_with(b"HTTP/1.") {
                    panic!(
                        "a body after the answer to HEAD: request {:?}\nresponse {:?}",
                        text(data),
                        text(&got)
                    );
                }
            }
            if got.len() < at + n + body_len {
                assert!(!eof, "a cut response to {data:?}: {:?}", text(&got));
                break;
            }
            codes.push(code);
            at += n + body_len;
        }
        if eof {
            assert_eq!(
                at,
                got.len(),
                "trailing bytes after {data:?}: {:?}",
                text(&got)
            );
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => eof = true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // libFuzzer's timer signal interrupts reads.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The head reader takes 1 KiB at a time: only more than that
            // can be left unread.
            Err(e) => panic!("no end within 5 s ({e}) for {data:?}: {:?}", text(&got)),
        }
        assert!(Instant::now() < deadline, "no end within 5 s for {data:?}");
    }
    note(format!("{codes:?}"));
    codes
}

/// The method of the first request head in `data`, if it parses (as the
/// listener reads it: `httparse`, bare LF line ends taken too).
fn first_method(data: &[u8]) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(data) {
        Ok(httparse::Status::Complete(_)) => req.method.map(str::to_owned),
        _ => None,
    }
}

/// A listener configuration for [`http_exchange`]: WebSocket on, a token.
pub fn listener_args() -> Vec<String> {
    [
        "--ws",
        "--token-sha256",
        &auth::token_hash_hex(TOKEN),
        "--header-timeout",
        "2",
        "--interval",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

// ---------------------------------------------------------------------------
// Seeds: valid inputs for each target, to mutate from.

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&SEP)
}

fn with_body(head: Vec<u8>, body: &[u8]) -> Vec<u8> {
    let mut v = head;
    v.push(BODY);
    v.extend_from_slice(body);
    v
}

const WS_HEADERS: &[&[u8]] = &[
    b"Host: example.org",
    b"Upgrade: websocket",
    b"Connection: keep-alive, Upgrade",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    b"Sec-WebSocket-Version: 13",
];

/// Valid inputs for `target`.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let bearer: &[u8] = b"Authorization: Bearer test";
    match target {
        "handler" => {
            let req = |cfg: u8, bits: u8, rest: &[&[u8]]| {
                let mut v = vec![cfg, bits];
                v.extend(join(rest));
                v
            };
            let mut ws: Vec<&[u8]> = vec![b"", b"/events", b"channel=chat&lastEventId=3"];
            ws.extend_from_slice(WS_HEADERS);
            let mut ws_auth = ws.clone();
            ws_auth.push(bearer);
            vec![
                req(0, 0, &[b"", b"/events", b"channel=news"]),
                req(0, 0x20, &[b"", b"", b"lastEventId=5", b"Last-Event-ID: 7"]),
                req(0, 1, &[b"", b"/", b""]),
                req(0, 1, &[b"", b"/nope", b""]),
                req(0, 0, &[b"", b"/", b"", b"Accept: text/html,*/*"]),
                req(0, 0x21, &[b"", b"", b"a=%zz"]),
                req(0, 3, &[b"PUT", b"/events", b""]),
                with_body(
                    req(2, 2, &[b"", b"/events", b"channel=n", b"Content-Type: application/json", bearer]),
                    br#"{"event":"news","data":"hi"}"#,
                ),
                with_body(
                    req(0x82, 0x22, &[b"", b"", b"", b"Content-Type: application/x-www-form-urlencoded", b"Content-Length: 20", bearer]),
                    b"event=e&data=a+b%0Ac",
                ),
                with_body(
                    req(6, 0x22, &[b"", b"", b"", b"Content-Type: text/plain", b"remote-user: alice"]),
                    b"raw\r\ntext",
                ),
                with_body(
                    req(0x42, 0x62, &[b"", b"", b"", b"Content-Type: text/plain", bearer]),
                    b"a body longer than sixteen bytes",
                ),
                req(0x01, 0, &ws),
                req(0x13, 0, &ws_auth),
                req(0x21, 0, &[&ws[..], &[b"Origin: https://evil.example"]].concat()),
                req(0x01, 0x20, &[&ws[..], &[b"server-software: Apache/2.4"]].concat()),
                req(0x01, 0x08, &ws),
            ]
        }
        "cgi_env" | "cgi_door" => {
            let env = |bits: u8, vars: &[&[u8]], body: &[u8]| {
                let mut v = vec![bits];
                v.extend(join(vars));
                if body.is_empty() {
                    v
                } else {
                    with_body(v, body)
                }
            };
            vec![
                env(0, &[b"REQUEST_METHOD=GET", b"SERVER_PROTOCOL=HTTP/1.1", b"QUERY_STRING=channel=news"], b""),
                env(1, &[b"REQUEST_METHOD=HEAD", b"SERVER_PROTOCOL=HTTP/1.0", b"HTTP_LAST_EVENT_ID=5"], b""),
                env(1, &[b"REQUEST_METHOD=GET", b"QUERY_STRING=lastEventId=x"], b""),
                env(0, &[b"REQUEST_METHOD=GET", b"HTTP_ACCEPT=text/html", b"SCRIPT_NAME=/cgi-bin/nph-events.cgi"], b""),
                env(
                    3,
                    &[b"REQUEST_METHOD=POST", b"CONTENT_TYPE=application/json", b"CONTENT_LENGTH=28", b"HTTP_AUTHORIZATION=Bearer test"],
                    br#"{"event":"news","data":"hi"}"#,
                ),
                env(
                    2,
                    &[b"REQUEST_METHOD=POST", b"CONTENT_TYPE=text/plain", b"REDIRECT_HTTP_AUTHORIZATION=Bearer test", b"QUERY_STRING=channel=a.b"],
                    b"hello",
                ),
                env(0x42, &[b"REQUEST_METHOD=POST", b"CONTENT_TYPE=text/plain", b"CONTENT_LENGTH=99999999"], b"x"),
                env(
                    1,
                    &[b"REQUEST_METHOD=GET", b"HTTP_UPGRADE=websocket", b"HTTP_CONNECTION=Upgrade", b"HTTP_SEC_WEBSOCKET_KEY=dGhlIHNhbXBsZSBub25jZQ==", b"HTTP_SEC_WEBSOCKET_VERSION=13"],
                    b"",
                ),
                env(0, &[b"REQUEST_METHOD=DELETE", b"SERVER_PROTOCOL=HTTP/2.0"], b""),
            ]
        }
        "query_form" => [
            &b"a=1&b=two%20x+y&--ws&&c=%C3%A9"[..],
            b"channel=news&lastEventId=18446744073709551615",
            b"%26=%3D&x=%zz",
            b"event=e&data=a+b%0Ac",
            b"name\xfevalue\xfeupgrade",
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect(),
        "publish_body" => {
            let body = |bits: [u8; 2], f: &[&[u8]], body: &[u8]| {
                with_body([&bits[..], &join(f)].concat(), body)
            };
            vec![
                body([0, 0], &[b"", b"", b"news", b"hi"], br#"{"event":"news","data":"hi"}"#),
                body([0, 7], &[b"", b"28", b"", b""], br#"{"data":{"a":[1,2]},"x":null}"#),
                body([1, 2], &[b"", b"", b"e", b"a\nb"], b"event=e&data=a+b%0Ac"),
                body([2, 6], &[b"", b"3", b"reset", b""], b"abc"),
                body([5, 3], &[b"image/png", b"", b"", b""], b"x"),
                body([3, 1], &[b"", b"", b"", b""], b"\xff\xfe"),
            ]
        }
        "spool_records" => vec![
            b"id: 7\ndata: a\n\nid: 8\nevent: e\ndata: b\ndata: c\n\nid: 9\ndata: partial".to_vec(),
            b"00000000000000000042.sse".to_vec(),
            b"A-b_9".to_vec(),
            join(&[b"one", b"two\r\nlines", b"", b"\rcr"]),
            b": comment\n\nid: 18446744073709551615\ndata: x\n\n".to_vec(),
        ],
        "last_event_id" => vec![
            b"18446744073709551615".to_vec(),
            b"18446744073709551616".to_vec(),
            b"0000000000000000000042".to_vec(),
            join(&[b"42", b"tick", b"{\"seq\":1}\r\nsecond\rthird\n"]),
            join(&[b"1\r\n2", b"e\0", b" lead"]),
        ],
        "ws_inbound" => {
            let mut v = Vec::new();
            client_frame(true, 1, "κόσμε ✓".as_bytes(), [0x37, 0xfa, 0x21, 0x3d], &mut v);
            client_frame(false, 1, &"€".as_bytes()[..1], [1, 2, 3, 4], &mut v);
            client_frame(true, 9, b"ping", [5, 6, 7, 8], &mut v);
            client_frame(true, 0, &"€".as_bytes()[1..], [9, 9, 9, 9], &mut v);
            let mut bad = Vec::new();
            client_frame(true, 1, b"ok\xf4\x90\x80\x80edited", [1, 1, 1, 1], &mut bad);
            let mut long = Vec::new();
            client_frame(true, 2, &[0xff; 300], [0, 0, 0, 0], &mut long);
            vec![v, bad, long, vec![0x83, 0x80, 1, 2, 3, 4]]
        }
        "ws_frames" => vec![
            join(&["\0κόσμε ✓".as_bytes(), b"\x01\xff\xfe", b"\x02ok\xf4\x90\x80\x80edited"]),
            join(&[b"\x14long text", b"\x02\xe2\x82", b"\x00after"]),
            join(&[b"\x02\xc3", b"\x00x"]),
            join(&[b"\x18huge", b"\x00"]),
        ],
        "config_values" => vec![
            b"\x00 0.5".to_vec(),
            b"\x0a9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_vec(),
            b"\x00{\"interval\": 1, \"ws\": true, \"ws_origins\": \"*\"}".to_vec(),
            join(&[b"\x01NPH_EVENTS_HEARTBEAT=1", b"NPH_EVENTS_WS=yes"]),
            join(&[b"\x02publish", b"--channel", b"news", b"--data", b"hi"]),
            join(&[b"\x03serve", b"--listen", b"127.0.0.1:0", b"--ws"]),
        ],
        "http_head" => [
            &b"GET /events?channel=news HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 3\r\n\r\n"[..],
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.0\r\nAccept: text/html\r\nConnection: keep-alive\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
            b"POST /events?channel=n HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test\r\nContent-Type: application/json\r\nContent-Length: 28\r\n\r\n{\"event\":\"news\",\"data\":\"hi\"}",
            b"POST /events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET /events HTTP/1.1\r\nHost: example.org\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            b"GET /events?a=%zz HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
            b"DELETE /events HTTP/1.1\r\n\r\n",
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect(),
        other => panic!("no seeds for {other}"),
    }
}
