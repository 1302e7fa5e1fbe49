//! Private channels end to end, through real Apache (mod_cgid under the
//! event MPM, mod_cgi under prefork), lighttpd and `nph-events serve`:
//!
//! * a signed URL opens a `signed` channel (one made by `nph-events sign`,
//!   one with a percent-encoded `grant`); expired, tampered, truncated and
//!   other-channel URLs are refused, each with its status and a body that
//!   says why; a refused request leaves no CGI process behind;
//! * `user-{REMOTE_USER}` is read by that user only, with Apache (and
//!   lighttpd) Basic authentication; a forged `Remote-User` header or
//!   unchecked Basic credentials make no one a user;
//! * public channels stream as before, without a signature;
//! * resuming (`Last-Event-ID`, `lastEventId`) with a signed URL gets the
//!   missed events; with an expired one it is refused; a stream that started
//!   with a valid URL outlives the URL;
//! * WebSocket through the listener, with and without a signed URL;
//! * CORS preflights (OPTIONS with `Origin` and
//!   `Access-Control-Request-Method`) through the listener (also behind
//!   Apache mod_proxy), Apache and lighttpd.
//!
//! OPTIONS under Apache 2.4: mod_cgi and mod_cgid pass it to the program,
//! which answers the preflight (checked here: the answer carries the
//! program's `Cache-Control: no-store` and its `Allow` list). Where the web
//! server authenticates users, though, a preflight (never sent with
//! credentials) is answered 401 by the server itself, and the browser never
//! sends the request. The commented snippets in apache-conf/nph-events.conf
//! and lighttpd-conf/nph-events.conf let OPTIONS through unauthenticated;
//! the tests below run them as shipped, and show the 401 without them.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::listener::Listener;
use support::servers::{available, htpasswd, repo, Kind, Server};
use support::{bin, body_of, http_send, parse_sse, split_response, ws_timed_out, Chunks};

const SECRET: &str = "the private-channels test secret";
const CHANNELS: &str = "news=public,user-{REMOTE_USER}=user,*=signed";
const ORIGIN: &str = "https://www.example.org";
const TOKEN: &str = "private-channels-publish-token";
/// alice:pw and bob:pw, Basic.
const ALICE: &str = "Authorization: Basic YWxpY2U6cHc=";
const BOB: &str = "Authorization: Basic Ym9iOnB3";
/// Longest wait for anything to arrive.
const WAIT: Duration = Duration::from_secs(5);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `channel=C&expires=E&sig=S`, signed for `channel` alone.
fn signed(channel: &str, expires: u64) -> String {
    let e = expires.to_string();
    let sig = nph_events::signature::sign(SECRET.as_bytes(), channel, &e);
    format!("channel={channel}&expires={e}&sig={sig}")
}

/// A URL for `channel` signed for `grant` (sent percent-encoded).
fn granted(channel: &str, grant: &str, expires: u64) -> String {
    let e = expires.to_string();
    let sig = nph_events::signature::sign(SECRET.as_bytes(), grant, &e);
    let grant = grant.replace(',', "%2C").replace('*', "%2A");
    format!("channel={channel}&grant={grant}&expires={e}&sig={sig}")
}

/// What `nph-events sign` prints (the query of a signed URL).
fn cli_sign(args: &[&str]) -> String {
    let out = Command::new(bin())
        .env_clear()
        .args(["sign", "--subscribe-secret", SECRET])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nph-events sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let query = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        query.starts_with("channel=") && query.contains("&sig="),
        "{query}"
    );
    query
}

/// `query` with one character of its `sig` changed (still 43 characters of
/// base64url: a signature that does not match, not a malformed one).
fn tampered(query: &str) -> String {
    let at = query.find("sig=").unwrap() + "sig=".len() + 10;
    let mut bytes = query.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// The value of header `name` in a response head (case-insensitive).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn token_hash() -> String {
    nph_events::auth::token_hash_hex(TOKEN)
}

/// The settings every CGI in these tests runs with.
fn cgi_settings(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut s = vec![
        ("NPH_EVENTS_CHANNELS", CHANNELS.to_owned()),
        ("NPH_EVENTS_SUBSCRIBE_SECRET", SECRET.to_owned()),
        ("NPH_EVENTS_ORIGINS", ORIGIN.to_owned()),
        ("NPH_EVENTS_TOKEN_SHA256", token_hash()),
        ("NPH_EVENTS_INTERVAL", "0".to_owned()),
        ("NPH_EVENTS_HEARTBEAT", "1".to_owned()),
    ];
    s.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    s
}

fn start(
    kind: Kind,
    names: &[&str],
    settings: &[(&'static str, String)],
    extra_conf: &str,
) -> Server {
    let s: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_with(kind, names, &s, &[], extra_conf)
}

/// A listener with the same policies, WebSocket on.
fn listener(tag: &str) -> Listener {
    let hash = token_hash();
    Listener::start(
        tag,
        &[
            "--channels",
            CHANNELS,
            "--subscribe-secret",
            SECRET,
            "--origins",
            ORIGIN,
            "--ws",
            "--token-sha256",
            &hash,
            "--interval",
            "0",
            "--heartbeat",
            "1",
        ],
    )
}

/// A stream URL: a CGI under a web server, or the listener's `/events`.
struct Front {
    port: u16,
    path: String,
    what: String,
}

/// An open event stream: the connection and what it has received.
type Stream = (TcpStream, Chunks);

impl Front {
    fn cgi(server: &Server, name: &str) -> Front {
        Front {
            port: server.port,
            path: format!("/cgi-bin/{name}"),
            what: format!("{:?} {name}", server.kind),
        }
    }

    fn listener(l: &Listener) -> Front {
        Front {
            port: l.port,
            path: "/events".to_owned(),
            what: "listener".to_owned(),
        }
    }

    fn url(&self, query: &str) -> String {
        format!("{}?{query}", self.path)
    }

    /// One request, the whole answer (`Connection: close`).
    fn send(&self, method: &str, query: &str, headers: &[&str], body: &[u8]) -> String {
        http_send(self.port, method, &self.url(query), headers, body)
    }

    /// A request that must be refused with `status`, its body naming
    /// `reason`; returns the head.
    fn refused(
        &self,
        method: &str,
        query: &str,
        headers: &[&str],
        status: u16,
        reason: &str,
    ) -> String {
        let raw = self.send(method, query, headers, b"");
        let (head, body) = split_response(&raw);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{}: {method} {query} {headers:?}: expected {status}:\n{raw}",
            self.what
        );
        assert!(
            body.contains(reason),
            "{}: {method} {query} {headers:?}: the body does not say {reason:?}:\n{raw}",
            self.what
        );
        head
    }

    /// A GET that must be refused.
    fn get_refused(&self, query: &str, headers: &[&str], status: u16, reason: &str) -> String {
        self.refused("GET", query, headers, status, reason)
    }

    /// Opens a stream that must be accepted (200 and the stream's start).
    fn open(&self, query: &str, headers: &[&str]) -> Stream {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/event-stream\r\n",
            self.url(query),
            self.port
        );
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut r = Chunks::new(s.try_clone().unwrap());
        let started = r.until("retry:", WAIT);
        assert!(
            started && r.text().starts_with("HTTP/1.1 200 "),
            "{}: {query} {headers:?}: no stream:\n{}",
            self.what,
            r.text()
        );
        (s, r)
    }

    /// Publishes `data` on `channel` with the token; returns its id.
    fn publish(&self, channel: &str, data: &str) -> u64 {
        let auth = format!("Authorization: Bearer {TOKEN}");
        let query = format!("channel={channel}");
        let raw = self.send(
            "POST",
            &query,
            &[&auth, "Content-Type: text/plain"],
            data.as_bytes(),
        );
        published_id(&raw, &self.what)
    }
}

/// The id of a 201 publish answer.
fn published_id(raw: &str, what: &str) -> u64 {
    assert!(raw.starts_with("HTTP/1.1 201 "), "{what}: publish:\n{raw}");
    let v: serde_json::Value = serde_json::from_str(body_of(raw).trim()).unwrap();
    v["id"].as_str().unwrap().parse().unwrap()
}

/// Reads `stream` until `data` arrives; returns the (id, data) of every
/// event it got.
fn events_until(stream: &mut Stream, data: &str, what: &str) -> Vec<(u64, String)> {
    let r = &mut stream.1;
    assert!(
        r.until(&format!("data: {data}\n"), WAIT),
        "{what}: {data:?} did not arrive:\n{}",
        r.text()
    );
    parse_sse(&body_of(&r.text()))
        .0
        .into_iter()
        .map(|e| (e.last_event_id.parse().unwrap(), e.data))
        .collect()
}

/// Waits (up to 2 s) until no copy of `server`'s program `i` runs.
fn no_cgi_left(server: &Server, i: usize, what: &str) {
    let start = Instant::now();
    while !server.cgi_pids(i).is_empty() && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.cgi_pids(i).is_empty(),
        "{what}: refused requests left CGI processes: {:?}",
        server.cgi_pids(i)
    );
}

/// Every refusal of the issue, each with its status and reason. No stream
/// may be open on `f` (the caller counts processes afterwards).
fn refusals(f: &Front) {
    let now = unix_now();
    let good = signed("room", now + 300);
    let head = f.get_refused("channel=room", &[], 401, "needs a signed URL");
    assert_eq!(
        header(&head, "WWW-Authenticate"),
        Some("NPH-Signed-URL realm=\"nph-events\""),
        "{}: {head}",
        f.what
    );
    f.get_refused(&signed("room", now - 3600), &[], 403, "expired");
    // Tampered: the signature, a later expiry, another channel.
    f.get_refused(&tampered(&good), &[], 403, "does not match");
    let later = good.replace(
        &format!("expires={}", now + 300),
        &format!("expires={}", now + 86_400),
    );
    f.get_refused(&later, &[], 403, "does not match");
    let hall = good.replace("channel=room", "channel=hall");
    f.get_refused(&hall, &[], 403, "does not match");
    // A valid URL for other channels.
    let other = granted("hall", "room,news-*", now + 300);
    f.get_refused(&other, &[], 403, "does not grant channel \"hall\"");
    f.get_refused(&good[..good.len() - 1], &[], 403, "malformed signed URL");
    // A user's channel: no authenticated user here, whatever the client
    // claims in headers.
    let user = "channel=user-alice";
    f.get_refused(user, &[], 401, "belongs to a user");
    f.get_refused(user, &["Remote-User: alice"], 401, "belongs to a user");
    f.get_refused(user, &[ALICE], 401, "belongs to a user");
    // Resuming is checked the same way.
    f.get_refused(
        "channel=room",
        &["Last-Event-ID: 1"],
        401,
        "needs a signed URL",
    );
    let expired = signed("room", now - 3600);
    f.get_refused(&expired, &["Last-Event-ID: 1"], 403, "expired");
    f.get_refused(&format!("{expired}&lastEventId=1"), &[], 403, "expired");
}

/// Signed URLs open streams; public channels need none; resuming with a
/// signed URL gets exactly the missed events.
fn signed_streams(f: &Front) {
    let now = unix_now();
    let w = &f.what;
    let mut room = f.open(&cli_sign(&["--channel", "room", "--ttl", "300"]), &[]);
    let mut news = f.open("channel=news", &[]);
    let public_head = split_response(&news.1.text()).0;
    assert_eq!(header(&public_head, "WWW-Authenticate"), None, "{w}");
    assert_eq!(
        header(&public_head, "Access-Control-Allow-Origin"),
        None,
        "{w}"
    );
    let mut eu = f.open(&granted("news-eu", "room,news-*", now + 300), &[]);
    let ids: Vec<u64> = ["m1", "m2", "m3"]
        .iter()
        .map(|d| f.publish("room", d))
        .collect();
    let n1 = f.publish("news", "n1");
    let e1 = f.publish("news-eu", "e1");
    let expected: Vec<(u64, String)> = ids
        .iter()
        .zip(["m1", "m2", "m3"])
        .map(|(id, d)| (*id, d.to_owned()))
        .collect();
    assert_eq!(events_until(&mut room, "m3", w), expected, "{w}: signed");
    assert_eq!(
        events_until(&mut news, "n1", w),
        [(n1, "n1".to_owned())],
        "{w}: public"
    );
    assert_eq!(
        events_until(&mut eu, "e1", w),
        [(e1, "e1".to_owned())],
        "{w}: grant"
    );
    // Resume with a (fresh) signed URL: header, then query parameter.
    let fresh = signed("room", now + 300);
    let lei = format!("Last-Event-ID: {}", ids[0]);
    let mut resumed = f.open(&fresh, &[&lei]);
    assert_eq!(
        events_until(&mut resumed, "m3", w),
        expected[1..],
        "{w}: resumed after m1"
    );
    let mut resumed = f.open(&format!("{fresh}&lastEventId={}", ids[1]), &[]);
    assert_eq!(
        events_until(&mut resumed, "m3", w),
        expected[2..],
        "{w}: resumed after m2"
    );
}

/// A preflight from the listed origin is answered by nph-events itself;
/// other origins and headers are refused; the request it was for works.
fn preflights(f: &Front) {
    let w = &f.what;
    let origin = format!("Origin: {ORIGIN}");
    let ask = [
        origin.as_str(),
        "Access-Control-Request-Method: POST",
        "Access-Control-Request-Headers: authorization, content-type",
    ];
    let raw = f.send("OPTIONS", "channel=room", &ask, b"");
    let head = split_response(&raw).0;
    assert!(head.starts_with("HTTP/1.1 200 "), "{w}: preflight:\n{raw}");
    let h = |name| header(&head, name);
    assert_eq!(
        h("Access-Control-Allow-Origin"),
        Some(ORIGIN),
        "{w}: {head}"
    );
    assert_eq!(h("Access-Control-Allow-Credentials"), Some("true"), "{w}");
    assert_eq!(h("Access-Control-Allow-Methods"), Some("GET, POST"), "{w}");
    let allowed = h("Access-Control-Allow-Headers").unwrap_or_default();
    assert!(
        allowed.contains("Authorization") && allowed.contains("Content-Type"),
        "{w}: {head}"
    );
    assert!(
        h("Vary").is_some_and(|v| v.contains("Origin")),
        "{w}: {head}"
    );
    // The program answered, not the web server.
    assert_eq!(h("Cache-Control"), Some("no-store"), "{w}: {head}");
    let raw = f.send("OPTIONS", "channel=room", &[], b"");
    let head = split_response(&raw).0;
    assert!(head.starts_with("HTTP/1.1 200 "), "{w}: OPTIONS:\n{raw}");
    assert_eq!(
        header(&head, "Allow"),
        Some("GET, HEAD, POST, OPTIONS"),
        "{w}: the program's own list:\n{raw}"
    );
    // Other origins, other headers.
    let foreign = [
        "Origin: https://evil.example",
        "Access-Control-Request-Method: POST",
    ];
    f.refused(
        "OPTIONS",
        "channel=room",
        &foreign,
        403,
        "NPH_EVENTS_ORIGINS",
    );
    let custom = [
        origin.as_str(),
        "Access-Control-Request-Method: POST",
        "Access-Control-Request-Headers: x-custom",
    ];
    f.refused("OPTIONS", "channel=room", &custom, 403, "x-custom");
    // What the preflight was for: the page reads a stream with
    // credentials, publishes, and may read the publish's answer.
    let query = signed("room-cors", unix_now() + 60);
    let mut s = f.open(&query, &[&origin]);
    let head = split_response(&s.1.text()).0;
    assert_eq!(
        header(&head, "Access-Control-Allow-Origin"),
        Some(ORIGIN),
        "{w}: {head}"
    );
    assert_eq!(
        header(&head, "Access-Control-Allow-Credentials"),
        Some("true"),
        "{w}: {head}"
    );
    let auth = format!("Authorization: Bearer {TOKEN}");
    let raw = f.send(
        "POST",
        "channel=room-cors",
        &[&origin, &auth, "Content-Type: application/json"],
        br#"{"data":"from the other site"}"#,
    );
    let id = published_id(&raw, w);
    let head = split_response(&raw).0;
    assert_eq!(
        header(&head, "Access-Control-Allow-Origin"),
        Some(ORIGIN),
        "{w}: {raw}"
    );
    assert_eq!(
        events_until(&mut s, "from the other site", w),
        [(id, "from the other site".to_owned())]
    );
    f.get_refused(
        &signed("room", unix_now() + 60),
        &["Origin: https://evil.example"],
        403,
        "NPH_EVENTS_ORIGINS",
    );
}

/// The whole set on one CGI.
fn through_cgi(kind: Kind, name: &str) {
    if !available(kind) {
        return;
    }
    let server = start(kind, &[name], &cgi_settings(&[]), "");
    let f = Front::cgi(&server, name);
    refusals(&f);
    no_cgi_left(&server, 0, &f.what);
    signed_streams(&f);
    preflights(&f);
}

#[test]
fn apache_cgid_nph_signed_urls_resume_and_preflight() {
    through_cgi(Kind::ApacheCgidEvent, "nph-events.cgi");
}

#[test]
fn apache_prefork_parsed_header_signed_urls_resume_and_preflight() {
    through_cgi(Kind::ApacheCgiPrefork, "events.cgi");
}

#[test]
fn lighttpd_signed_urls_resume_and_preflight() {
    through_cgi(Kind::Lighttpd, "nph-events.cgi");
}

#[test]
fn listener_signed_urls_resume_and_preflight() {
    let l = listener("private");
    let f = Front::listener(&l);
    refusals(&f);
    signed_streams(&f);
    preflights(&f);
}

/// The listener behind the shipped Apache mod_proxy snippet: the preflight
/// reaches the listener and its answer comes back.
#[test]
fn listener_behind_apache_mod_proxy_preflight() {
    if !available(Kind::ApacheCgidEvent) {
        return;
    }
    let l = listener("proxy-preflight");
    let server = Server::apache_proxy(l.port);
    let f = Front {
        port: server.port,
        path: "/nph-events/events".to_owned(),
        what: "Apache mod_proxy → listener".to_owned(),
    };
    f.get_refused("channel=room", &[], 401, "needs a signed URL");
    preflights(&f);
}

/// A URL is checked when the stream starts: a stream opened just before
/// its URL ran out keeps running, and reconnecting with it is refused.
#[test]
fn listener_stream_outlives_its_url() {
    let l = listener("lifetime");
    let f = Front::listener(&l);
    // Accepted for 30 s after `expires` (clock skew): 2 s more here.
    let expires = unix_now() - 28;
    let query = signed("room", expires);
    let mut s = f.open(&query, &[]);
    let deadline = Instant::now() + Duration::from_secs(6);
    while unix_now() <= expires + 31 {
        assert!(Instant::now() < deadline, "the clock stands still");
        std::thread::sleep(Duration::from_millis(100));
    }
    f.get_refused(&query, &[], 403, "expired");
    let id = f.publish("room", "after expiry");
    assert_eq!(
        events_until(&mut s, "after expiry", "listener"),
        [(id, "after expiry".to_owned())]
    );
}

type Ws = tungstenite::WebSocket<TcpStream>;

/// A WebSocket handshake written by hand, for refusals: the answer's
/// start once `until` arrived.
fn ws_handshake(port: u16, path: &str, extra: &[&str], until: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n"
    );
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut r = Chunks::new(s.try_clone().unwrap());
    assert!(r.until(until, WAIT), "{path}: no {until:?}:\n{}", r.text());
    r.text()
}

fn ws_connect(port: u16, path: &str) -> Ws {
    let url = format!("ws://127.0.0.1:{port}{path}");
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (ws, response) =
        tungstenite::client(url, stream).unwrap_or_else(|e| panic!("handshake {path}: {e}"));
    assert_eq!(response.status(), 101);
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    ws
}

/// Text frames `{"id","data"}` until one carries `data`.
fn ws_until(ws: &mut Ws, data: &str) -> Vec<(u64, String)> {
    let end = Instant::now() + WAIT;
    let mut got = Vec::new();
    while Instant::now() < end {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                let id = v["id"].as_str().and_then(|i| i.parse().ok()).unwrap_or(0);
                let d = v["data"].as_str().unwrap_or_default().to_owned();
                let done = d == data;
                got.push((id, d));
                if done {
                    return got;
                }
            }
            Ok(_) => {}
            Err(e) if ws_timed_out(&e) => {}
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{data:?} did not arrive; got {got:?}");
}

#[test]
fn listener_websocket_with_and_without_signed_url() {
    let l = listener("ws-private");
    let f = Front::listener(&l);
    let now = unix_now();
    let path = |query: &str| format!("/events?{query}");
    let refused = |query: &str, extra: &[&str], status: u16, reason: &str| {
        let raw = ws_handshake(l.port, &path(query), extra, reason);
        assert!(
            raw.starts_with(&format!("HTTP/1.1 {status} ")),
            "WebSocket {query}: expected {status}:\n{raw}"
        );
    };
    refused("channel=room", &[], 401, "needs a signed URL");
    refused(&signed("room", now - 3600), &[], 403, "expired");
    refused(
        &tampered(&signed("room", now + 300)),
        &[],
        403,
        "does not match",
    );
    let other = granted("hall", "room", now + 300);
    refused(&other, &[], 403, "does not grant channel \"hall\"");
    refused(
        "channel=user-alice",
        &["Remote-User: alice"],
        401,
        "belongs to a user",
    );
    let good = signed("room", now + 300);
    refused(
        &good,
        &["Origin: https://evil.example"],
        403,
        "NPH_EVENTS_ORIGINS",
    );
    // The listed origin may open it.
    let raw = ws_handshake(
        l.port,
        &path(&good),
        &[&format!("Origin: {ORIGIN}")],
        "\r\n\r\n",
    );
    assert!(raw.starts_with("HTTP/1.1 101 "), "{raw}");

    let mut room = ws_connect(
        l.port,
        &path(&cli_sign(&["--channel", "room", "--ttl", "60"])),
    );
    let mut news = ws_connect(l.port, &path("channel=news"));
    let ids: Vec<u64> = ["w1", "w2", "w3"]
        .iter()
        .map(|d| f.publish("room", d))
        .collect();
    let n1 = f.publish("news", "n1");
    let got = ws_until(&mut room, "w3");
    let want: Vec<(u64, String)> = ids
        .iter()
        .zip(["w1", "w2", "w3"])
        .map(|(id, d)| (*id, d.to_owned()))
        .collect();
    assert_eq!(got, want, "signed WebSocket");
    assert_eq!(ws_until(&mut news, "n1"), [(n1, "n1".to_owned())], "public");
    // Resume: a WebSocket cannot send Last-Event-ID; lastEventId does it.
    let mut resumed = ws_connect(l.port, &path(&format!("{good}&lastEventId={}", ids[0])));
    assert_eq!(ws_until(&mut resumed, "w3"), want[1..], "resumed");
    for ws in [&mut room, &mut news, &mut resumed] {
        let _ = ws.close(None);
    }
}

/// The commented snippet in a shipped config file that starts with the
/// line `first` and ends with the line `last` (both without their comment
/// prefix `prefix`), uncommented.
fn shipped_snippet(conf: &Path, prefix: &str, first: &str, last: &str) -> String {
    let text = std::fs::read_to_string(conf).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|l| l.strip_prefix(prefix) != Some(first))
        .collect();
    let end = lines
        .iter()
        .position(|l| l.strip_prefix(prefix) == Some(last))
        .unwrap_or_else(|| panic!("{}: no snippet {first:?} … {last:?}", conf.display()));
    lines[..=end]
        .iter()
        .map(|l| l.strip_prefix(prefix).unwrap())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `user-{REMOTE_USER}` under Apache Basic authentication, and preflights
/// to an authenticated program with the shipped snippet (and without it).
#[test]
fn apache_basic_auth_user_channels_and_preflight() {
    let kind = Kind::ApacheCgidEvent;
    if !available(kind) {
        return;
    }
    let users = htpasswd("apache");
    let snippet = shipped_snippet(
        &repo().join("apache-conf/nph-events.conf"),
        "#     ",
        "<Files \"nph-events.cgi\">",
        "</Files>",
    )
    .replace(
        "/etc/apache2/nph-events.htpasswd",
        &format!("\"{}\"", users.display()),
    );
    assert!(snippet.contains("Require method OPTIONS"), "{snippet}");
    let m = "/usr/lib/apache2/modules";
    // nph-events.cgi: the shipped snippet. nph-plain-auth.cgi: the usual
    // "Require valid-user". events.cgi: no authentication.
    let extra = format!(
        "LoadModule auth_basic_module {m}/mod_auth_basic.so\n\
         LoadModule authn_core_module {m}/mod_authn_core.so\n\
         LoadModule authn_file_module {m}/mod_authn_file.so\n\
         LoadModule authz_user_module {m}/mod_authz_user.so\n\
         {snippet}\
         <Files \"nph-plain-auth.cgi\">\n\
             AuthType Basic\n\
             AuthName \"events\"\n\
             AuthUserFile \"{}\"\n\
             Require valid-user\n\
         </Files>\n",
        users.display()
    );
    let settings = cgi_settings(&[("NPH_EVENTS_PUBLISH_USERS", "alice")]);
    let names = ["nph-events.cgi", "events.cgi", "nph-plain-auth.cgi"];
    let server = start(kind, &names, &settings, &extra);
    let authed = Front::cgi(&server, "nph-events.cgi");
    let open = Front::cgi(&server, "events.cgi");
    let plain = Front::cgi(&server, "nph-plain-auth.cgi");
    let w = "Apache Basic";

    // The user's own channel, by Apache's authentication alone.
    let mut alice = authed.open("channel=user-alice", &[ALICE]);
    authed.get_refused("channel=user-alice", &[BOB], 403, "is not user \"bob\"'s");
    let bob = authed.open("channel=user-bob", &[BOB]);
    drop(bob);
    // Being a user opens no signed channel.
    authed.get_refused("channel=room", &[ALICE], 401, "needs a signed URL");
    // No credentials: Apache answers, the program never runs.
    let raw = authed.send("GET", "channel=user-alice", &[], b"");
    let head = split_response(&raw).0;
    assert!(head.starts_with("HTTP/1.1 401 "), "{raw}");
    assert!(
        header(&head, "WWW-Authenticate").is_some_and(|v| v.starts_with("Basic")),
        "{raw}"
    );
    // Where Apache authenticates no one, nobody is a user: not with Basic
    // credentials the server never checked, not with a forged header.
    open.get_refused("channel=user-alice", &[ALICE], 401, "belongs to a user");
    open.get_refused(
        "channel=user-alice",
        &["Remote-User: alice"],
        401,
        "belongs to a user",
    );
    // The site's own code may hand out a signed URL for a user's channel.
    let mut handed = open.open(&signed("user-alice", unix_now() + 60), &[]);

    // alice publishes to her channel (NPH_EVENTS_PUBLISH_USERS) and reads it.
    let post = |data: &str| {
        let raw = authed.send(
            "POST",
            "channel=user-alice",
            &[ALICE, "Content-Type: text/plain"],
            data.as_bytes(),
        );
        published_id(&raw, w)
    };
    let a1 = post("a1");
    let a2 = post("a2");
    let both = [(a1, "a1".to_owned()), (a2, "a2".to_owned())];
    assert_eq!(events_until(&mut alice, "a2", w), both);
    assert_eq!(events_until(&mut handed, "a2", w), both, "signed URL");
    // alice resumes.
    let lei = format!("Last-Event-ID: {a1}");
    let mut resumed = authed.open("channel=user-alice", &[ALICE, &lei]);
    assert_eq!(events_until(&mut resumed, "a2", w), both[1..]);
    authed.get_refused(
        "channel=user-alice",
        &[BOB, &lei],
        403,
        "is not user \"bob\"'s",
    );

    // Preflights carry no credentials. With the shipped snippet the
    // program answers; with a plain "Require valid-user" Apache answers 401
    // and no CORS header: a browser would never send the request.
    let origin = format!("Origin: {ORIGIN}");
    let ask = [
        origin.as_str(),
        "Access-Control-Request-Method: POST",
        "Access-Control-Request-Headers: authorization, content-type",
    ];
    let raw = authed.send("OPTIONS", "channel=user-alice", &ask, b"");
    let head = split_response(&raw).0;
    assert!(head.starts_with("HTTP/1.1 200 "), "{raw}");
    assert_eq!(header(&head, "Access-Control-Allow-Origin"), Some(ORIGIN));
    assert_eq!(
        header(&head, "Access-Control-Allow-Credentials"),
        Some("true")
    );
    assert_eq!(header(&head, "Cache-Control"), Some("no-store"), "{raw}");
    let raw = plain.send("OPTIONS", "channel=user-alice", &ask, b"");
    let head = split_response(&raw).0;
    assert!(head.starts_with("HTTP/1.1 401 "), "{raw}");
    assert_eq!(header(&head, "Access-Control-Allow-Origin"), None, "{raw}");
    // OPTIONS is all the snippet lets in without credentials.
    let raw = authed.send(
        "POST",
        "channel=user-alice",
        &["Content-Type: text/plain"],
        b"x",
    );
    assert!(raw.starts_with("HTTP/1.1 401 "), "{raw}");
    // The request after the preflight: alice publishes from the other site.
    let raw = authed.send(
        "POST",
        "channel=user-alice",
        &[&origin, ALICE, "Content-Type: application/json"],
        br#"{"data":"a3"}"#,
    );
    let a3 = published_id(&raw, w);
    let head = split_response(&raw).0;
    assert_eq!(
        header(&head, "Access-Control-Allow-Origin"),
        Some(ORIGIN),
        "{raw}"
    );
    assert_eq!(
        events_until(&mut alice, "a3", w).last(),
        Some(&(a3, "a3".to_owned()))
    );
    let _ = std::fs::remove_dir_all(users.parent().unwrap());
}

/// The same under lighttpd mod_auth, with the shipped lighttpd snippet.
#[test]
fn lighttpd_auth_user_channels_and_preflight() {
    let kind = Kind::Lighttpd;
    if !available(kind) {
        return;
    }
    let users = htpasswd("lighttpd");
    let snippet = shipped_snippet(
        &repo().join("lighttpd-conf/nph-events.conf"),
        "# ",
        "server.modules += ( \"mod_auth\", \"mod_authn_file\" )",
        "}",
    )
    .replace(
        "/etc/lighttpd/nph-events.htpasswd",
        &users.display().to_string(),
    );
    assert!(snippet.contains("\"OPTIONS\""), "{snippet}");
    let settings = cgi_settings(&[("NPH_EVENTS_PUBLISH_USERS", "alice")]);
    let origin = format!("Origin: {ORIGIN}");
    let ask = [
        origin.as_str(),
        "Access-Control-Request-Method: POST",
        "Access-Control-Request-Headers: authorization, content-type",
    ];
    {
        let server = start(kind, &["nph-events.cgi"], &settings, &snippet);
        let f = Front::cgi(&server, "nph-events.cgi");
        let w = "lighttpd auth";
        let mut alice = f.open("channel=user-alice", &[ALICE]);
        f.get_refused("channel=user-alice", &[BOB], 403, "is not user \"bob\"'s");
        let raw = f.send("GET", "channel=user-alice", &["Remote-User: alice"], b"");
        assert!(raw.starts_with("HTTP/1.1 401 "), "{raw}");
        let raw = f.send(
            "POST",
            "channel=user-alice",
            &[ALICE, "Content-Type: text/plain"],
            b"l1",
        );
        let l1 = published_id(&raw, w);
        assert_eq!(events_until(&mut alice, "l1", w), [(l1, "l1".to_owned())]);
        let raw = f.send("OPTIONS", "channel=user-alice", &ask, b"");
        let head = split_response(&raw).0;
        assert!(head.starts_with("HTTP/1.1 200 "), "{w}: preflight:\n{raw}");
        assert_eq!(header(&head, "Access-Control-Allow-Origin"), Some(ORIGIN));
        assert_eq!(header(&head, "Cache-Control"), Some("no-store"), "{raw}");
    }
    // Without the exemption lighttpd answers the preflight itself: 401.
    let plain = snippet
        .lines()
        .filter(|l| !l.contains("request-method") && l.trim() != "}")
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    assert!(plain.contains("auth.require"), "{plain}");
    let server = start(kind, &["nph-events.cgi"], &settings, &plain);
    let f = Front::cgi(&server, "nph-events.cgi");
    let raw = f.send("OPTIONS", "channel=user-alice", &ask, b"");
    let head = split_response(&raw).0;
    assert!(head.starts_with("HTTP/1.1 401 "), "{raw}");
    assert_eq!(header(&head, "Access-Control-Allow-Origin"), None, "{raw}");
    let _ = std::fs::remove_dir_all(users.parent().unwrap());
}
