//! A reader that falls further behind than its channel retains is told:
//! a `reset` event (reason `gap`) whose id is where the stream continues,
//! then the events from there on. Nothing is skipped without a word, on
//! SSE and WebSocket, through the CGI and through the listener.
//!
//! The reader is made to fall behind by stopping its process (SIGSTOP)
//! while more events are published than the channel keeps (4 here, in
//! segments of one event), then letting it run again (SIGCONT).

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::listener::Listener;
use support::{bin, cgi_command, get_vars, parse_sse, ws_frames, Chunks, Proc};

/// Events a channel keeps: every publish rotates to a new segment, and
/// older segments are deleted.
const RETAIN: &str = "4";
/// Events published while the reader is stopped: far more than it keeps.
const BURST: usize = 20;

fn temp_spool(tag: &str) -> String {
    let p = std::env::temp_dir().join(format!("nph-gap-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p.to_str().unwrap().to_owned()
}

/// Publishes `data` on channel `g` with the small retention; returns its id.
fn publish(spool: &str, data: &str) -> u64 {
    let out = Command::new(bin())
        .env_clear()
        .args(["publish", "--spool", spool, "--channel", "g"])
        .args(["--retain-events", RETAIN, "--data", data])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Publishes the burst while `stopped` is stopped; returns the ids.
fn burst_while_stopped(spool: &str, stopped: &Proc) -> Vec<u64> {
    stopped.signal(libc::SIGSTOP);
    let ids = (0..BURST)
        .map(|i| publish(spool, &format!("m{i}")))
        .collect();
    stopped.signal(libc::SIGCONT);
    ids
}

/// One event as a client saw it: (event name, id, data).
type Seen = (String, Option<u64>, String);

/// Checks what the reader got after `first`: a `reset` (gap) naming
/// `first` as the last id it had and, as its id, where it continues; then
/// every event after that id, consecutive, up to the last one published.
fn assert_told(seen: &[Seen], first: u64, burst: &[u64]) {
    let at = seen
        .iter()
        .position(|(name, _, _)| name == "reset")
        .unwrap_or_else(|| panic!("no reset among {seen:?}"));
    let (_, id, data) = &seen[at];
    let reset: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(reset["reason"], "gap", "{data}");
    assert_eq!(reset["requested"], first.to_string(), "{data}");
    let resume = id.expect("the reset carries the id where the stream continues");
    assert_eq!(reset["resume_after"], resume.to_string());
    assert!(
        resume > first && resume < *burst.last().unwrap(),
        "{resume}"
    );
    let before: Vec<_> = seen[..at].iter().filter_map(|(_, id, _)| *id).collect();
    assert!(
        before.iter().all(|id| *id <= first),
        "nothing lost before the reset: {before:?}"
    );
    let after: Vec<u64> = seen[at + 1..].iter().filter_map(|(_, id, _)| *id).collect();
    let expected: Vec<u64> = burst.iter().copied().filter(|id| *id > resume).collect();
    assert_eq!(
        after, expected,
        "every event after the reset's id, in order"
    );
}

fn sse_seen(body: &str) -> Vec<Seen> {
    parse_sse(body)
        .0
        .into_iter()
        .map(|d| (d.event, d.last_event_id.parse().ok(), d.data))
        .collect()
}

/// WebSocket text frames `{"id","event","data"}` as events.
fn ws_seen(frames: &[(u8, Vec<u8>)]) -> Vec<Seen> {
    frames
        .iter()
        .filter(|(op, _)| *op == 1)
        .map(|(_, payload)| {
            let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
            let id = v["id"].as_str().and_then(|s| s.parse().ok());
            let data = v["data"].as_str().unwrap_or_default().to_owned();
            (v["event"].as_str().unwrap_or_default().to_owned(), id, data)
        })
        .collect()
}

fn body(raw: &[u8]) -> &[u8] {
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    &raw[at + 4..]
}

#[test]
fn cgi_sse_reader_that_fell_behind_gets_a_gap_reset() {
    let spool = temp_spool("cgi-sse");
    let first = publish(&spool, "first");
    let mut vars = get_vars();
    vars.retain(|(k, _)| *k != "QUERY_STRING");
    vars.extend_from_slice(&[
        ("QUERY_STRING", "channel=g"),
        ("NPH_EVENTS_SPOOL", &spool),
        ("NPH_EVENTS_INTERVAL", "0"),
        ("NPH_EVENTS_HEARTBEAT", "0.3"),
    ]);
    let last = format!("{}", first - 1);
    vars.push(("HTTP_LAST_EVENT_ID", &last));
    let mut p = Proc::spawn(&mut cgi_command(bin(), &vars));
    let mut out = Chunks::new(p.child.stdout.take().unwrap());
    assert!(out.until("data: first", Duration::from_secs(5)));
    let burst = burst_while_stopped(&spool, &p);
    assert!(
        out.until("data: m19", Duration::from_secs(5)),
        "{}",
        out.text()
    );
    let text = out.text();
    let events = String::from_utf8_lossy(body(text.as_bytes())).into_owned();
    assert_told(&sse_seen(&events), first, &burst);
    drop(p);
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn cgi_websocket_reader_that_fell_behind_gets_a_gap_reset() {
    let spool = temp_spool("cgi-ws");
    let first = publish(&spool, "first");
    let last = format!("channel=g&lastEventId={}", first - 1);
    let vars = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "GET"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_SOFTWARE", "lighttpd/1.4.69"),
        ("QUERY_STRING", last.as_str()),
        ("HTTP_HOST", "example.org"),
        ("HTTP_UPGRADE", "websocket"),
        ("HTTP_CONNECTION", "Upgrade"),
        ("HTTP_SEC_WEBSOCKET_KEY", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("HTTP_SEC_WEBSOCKET_VERSION", "13"),
        ("NPH_EVENTS_WS", "1"),
        ("NPH_EVENTS_SPOOL", &spool),
        // Pings every 0.5 s; a client silent for 2 s is dropped: time enough.
        ("NPH_EVENTS_HEARTBEAT", "0.5"),
    ];
    let mut cmd = cgi_command(bin(), &vars);
    cmd.stdin(Stdio::piped());
    let mut p = Proc::spawn(&mut cmd);
    let input = p.child.stdin.take().unwrap();
    let mut out = Chunks::new(p.child.stdout.take().unwrap());
    assert!(out.until("first", Duration::from_secs(5)));
    let burst = burst_while_stopped(&spool, &p);
    assert!(out.until("m19", Duration::from_secs(5)), "{}", out.text());
    let seen = ws_seen(&ws_frames(body(&out.all)));
    assert_told(&seen, first, &burst);
    drop(input);
    drop(p);
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn listener_sse_and_websocket_clients_that_fell_behind_get_a_gap_reset() {
    // Channels are read with the slow checks (gaps) every heartbeat (1 s);
    // a WebSocket client silent for 3 s is dropped: time enough.
    let server = Listener::start("gap", &["--ws", "--interval", "0", "--heartbeat", "1"]);
    let first = publish(&server.spool, "first");
    let query = format!("channel=g&lastEventId={}", first - 1);
    let (_c, mut sse) = server.get(&format!("/events?{query}"), &["Accept: text/event-stream"]);
    let handshake = format!(
        "GET /events?{query} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    let (_w, mut raw_ws) = server.raw(handshake.as_bytes());
    assert!(sse.until("data: first", Duration::from_secs(5)));
    assert!(raw_ws.until("first", Duration::from_secs(5)));
    let burst = burst_while_stopped(&server.spool, &server.proc);
    assert!(
        sse.until("data: m19", Duration::from_secs(5)),
        "{}",
        sse.text()
    );
    assert!(
        raw_ws.until("m19", Duration::from_secs(5)),
        "{}",
        raw_ws.text()
    );
    let text = sse.text();
    let events = String::from_utf8_lossy(body(text.as_bytes())).into_owned();
    assert_told(&sse_seen(&events), first, &burst);
    assert_told(&ws_seen(&ws_frames(body(&raw_ws.all))), first, &burst);
}
