//! WebSocket: the CGI path fed raw masked frames on stdin, the handshake
//! validator through the binary, and the listener's relay with a real
//! client library (tungstenite's client).

mod support;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use support::listener::Listener;
use support::ws_frames as decode;
use support::{bin, cgi_command, parse_sse, ws_texts, ws_timed_out, Chunks, Proc};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn ws_vars(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "GET"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_SOFTWARE", "lighttpd/1.4.69"),
        ("QUERY_STRING", "channel=c"),
        ("HTTP_HOST", "example.org"),
        ("HTTP_UPGRADE", "websocket"),
        ("HTTP_CONNECTION", "Upgrade"),
        ("HTTP_SEC_WEBSOCKET_KEY", KEY),
        ("HTTP_SEC_WEBSOCKET_VERSION", "13"),
        ("NPH_EVENTS_WS", "1"),
        ("NPH_EVENTS_WS_MODE", "echo"),
        ("NPH_EVENTS_MAX_BODY", "1000"),
    ];
    for (k, val) in extra {
        v.retain(|(key, _)| key != k);
        if !val.is_empty() {
            v.push((k, val));
        }
    }
    v
}

/// A masked client frame.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Runs the CGI with `frames` on stdin (then stdin stays open until the
/// process ends or 5 s pass); returns (head, server frames, exit code).
fn cgi_session(vars: &[(&str, &str)], frames: &[Vec<u8>]) -> (String, Vec<(u8, Vec<u8>)>, i32) {
    let mut cmd = cgi_command(bin(), vars);
    cmd.stdin(Stdio::piped());
    let mut p = Proc::spawn(&mut cmd);
    let mut input = p.child.stdin.take().unwrap();
    let mut out = Chunks::new(p.child.stdout.take().unwrap());
    for f in frames {
        input.write_all(f).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let status = p.wait_for(Duration::from_secs(8));
    drop(input);
    out.until_eof(Duration::from_secs(2));
    let raw = out.all.clone();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    (
        head,
        decode(&raw[split..]),
        status.and_then(|s| s.code()).unwrap_or(-1),
    )
}

fn close_code(frames: &[(u8, Vec<u8>)]) -> Option<u16> {
    frames
        .iter()
        .find(|(op, _)| *op == 8)
        .map(|(_, p)| u16::from_be_bytes([p[0], p[1]]))
}

#[test]
fn cgi_echo_and_clean_close() {
    let close = frame(0x88, &1000u16.to_be_bytes());
    let (head, frames, code) = cgi_session(
        &ws_vars(&[]),
        &[frame(0x81, b"hello"), frame(0x82, &[1, 2, 3]), close],
    );
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_eq!(frames[0], (1, b"hello".to_vec()));
    assert_eq!(frames[1], (2, vec![1, 2, 3]));
    assert_eq!(close_code(&frames), Some(1000));
    assert_eq!(code, 0);
}

#[test]
fn cgi_parsed_header_mode_answers_status_101() {
    let (dir, program) = {
        let dir = std::env::temp_dir().join(format!("nph-ws-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("events.cgi");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(bin(), &link).unwrap();
        (dir, link)
    };
    let mut cmd = cgi_command(program.to_str().unwrap(), &ws_vars(&[]));
    cmd.stdin(Stdio::piped());
    let mut p = Proc::spawn(&mut cmd);
    let mut out = Chunks::new(p.child.stdout.take().unwrap());
    assert!(out.until("\r\n\r\n", Duration::from_secs(2)));
    assert!(
        out.text()
            .starts_with("Status: 101 Switching Protocols\r\n"),
        "{}",
        out.text()
    );
    drop(p);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cgi_bad_frames_get_the_close_code_the_rfc_requires() {
    let unmasked = vec![0x81, 0x02, b'h', b'i'];
    let cases: Vec<(&str, Vec<Vec<u8>>, u16)> = vec![
        ("unmasked frame", vec![unmasked], 1002),
        (
            "invalid UTF-8",
            vec![frame(0x81, &[0xff, 0xfe, 0xfd])],
            1007,
        ),
        (
            "message over the limit",
            vec![frame(0x81, &[b'a'; 1500])],
            1009,
        ),
        (
            "control frame over 125 bytes",
            vec![frame(0x89, &[0u8; 126][..])],
            1002,
        ),
        ("reserved opcode", vec![frame(0x83, b"x")], 1002),
        ("reserved bit", vec![frame(0xc1, b"x")], 1002),
        ("continuation without start", vec![frame(0x80, b"x")], 1002),
    ];
    for (what, frames, want) in cases {
        let (_, got, code) = cgi_session(&ws_vars(&[]), &frames);
        assert_eq!(close_code(&got), Some(want), "{what}: {got:?}");
        assert_eq!(code, 0, "{what}: no crash");
    }
    // A close in the middle of a fragmented message is allowed: echoed.
    let frames = vec![frame(0x01, b"frag"), frame(0x88, &1000u16.to_be_bytes())];
    let (_, got, _) = cgi_session(&ws_vars(&[]), &frames);
    assert_eq!(close_code(&got), Some(1000), "{got:?}");
}

#[test]
fn handshake_refusals_through_the_binary() {
    type Case = (
        Vec<(&'static str, &'static str)>,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            vec![("HTTP_SEC_WEBSOCKET_VERSION", "8")],
            "HTTP/1.1 426 Upgrade Required",
            "Sec-WebSocket-Version: 13",
        ),
        (
            vec![("HTTP_SEC_WEBSOCKET_KEY", "")],
            "HTTP/1.1 400 Bad Request",
            "Sec-WebSocket-Key",
        ),
        (
            vec![("HTTP_CONNECTION", "keep-alive")],
            "HTTP/1.1 400 Bad Request",
            "Connection",
        ),
        (
            vec![("HTTP_ORIGIN", "https://evil.example")],
            "HTTP/1.1 403 Forbidden",
            "Origin",
        ),
        (
            vec![("NPH_EVENTS_WS", "")],
            "HTTP/1.1 501 Not Implemented",
            "NPH_EVENTS_WS=1",
        ),
        (
            vec![("SERVER_SOFTWARE", "Apache/2.4.71 (Debian)")],
            "HTTP/1.1 501 Not Implemented",
            "mod_proxy_wstunnel",
        ),
    ];
    for (extra, status, mention) in cases {
        let (head, frames, code) = cgi_session(&ws_vars(&extra), &[]);
        assert_eq!(code, 0);
        assert!(head.starts_with(status), "{extra:?}: {head}");
        let all = format!("{head}{}", frames.len());
        let mut full = Proc::spawn(cgi_command(bin(), &ws_vars(&extra)).stdin(Stdio::null()));
        let mut text = String::new();
        full.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.contains(mention), "{extra:?}: {text} {all}");
    }
}

fn ws_connect(port: u16, query: &str) -> tungstenite::WebSocket<std::net::TcpStream> {
    let url = format!("ws://127.0.0.1:{port}/events?{query}");
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (ws, response) = tungstenite::client(url, stream).expect("handshake");
    assert_eq!(response.status(), 101);
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    ws
}

#[test]
fn listener_relays_to_other_websockets_and_sse_but_not_the_sender() {
    let server = Listener::start(
        "wsrelay",
        &["--ws", "--ws-relay", "open", "--interval", "0"],
    );
    let mut a = ws_connect(server.port, "channel=room");
    let mut b = ws_connect(server.port, "channel=room");
    let mut other = ws_connect(server.port, "channel=elsewhere");
    let (_c, mut sse) = server.get("/events?channel=room", &[]);
    assert!(sse.until("retry:", Duration::from_secs(2)));
    a.send(tungstenite::Message::text("hello from a")).unwrap();
    let got = ws_texts(&mut b, Duration::from_millis(800));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["data"], "hello from a");
    assert_eq!(got[0]["event"], "message");
    let id = got[0]["id"].as_str().unwrap().to_owned();
    assert!(
        ws_texts(&mut a, Duration::from_millis(400)).is_empty(),
        "the sender is not echoed"
    );
    assert!(
        ws_texts(&mut other, Duration::from_millis(200)).is_empty(),
        "other channel"
    );
    assert!(sse.until("hello from a", Duration::from_secs(2)));
    let (events, _) = parse_sse(sse.text().split_once("\r\n\r\n").unwrap().1);
    assert_eq!(events[0].last_event_id, id);
    // Resume over WebSocket with lastEventId.
    let before: u64 = id.parse::<u64>().unwrap() - 1;
    let mut late = ws_connect(server.port, &format!("channel=room&lastEventId={before}"));
    let got = ws_texts(&mut late, Duration::from_millis(500));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["id"], id.as_str());
    let _ = a.close(None);
}

#[test]
fn listener_relay_needs_credentials_by_default() {
    let server = Listener::start("wsauth", &["--ws", "--interval", "0"]);
    let mut a = ws_connect(server.port, "channel=room");
    a.send(tungstenite::Message::text("may I?")).unwrap();
    let got = ws_texts(&mut a, Duration::from_millis(500));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event"], "error");
    assert!(got[0]["data"].as_str().unwrap().contains("may not publish"));
}

/// Reads until a close frame; returns its code and how many pings came
/// first (tungstenite's client answers them).
fn await_close(
    ws: &mut tungstenite::WebSocket<std::net::TcpStream>,
    limit: Duration,
) -> (Option<u16>, usize) {
    let start = std::time::Instant::now();
    let mut pings = 0;
    while start.elapsed() < limit {
        match ws.read() {
            Ok(tungstenite::Message::Ping(_)) => pings += 1,
            Ok(tungstenite::Message::Close(frame)) => {
                return (frame.map(|f| u16::from(f.code)), pings)
            }
            Ok(_) => {}
            Err(e) if ws_timed_out(&e) => {}
            Err(_) => return (None, pings),
        }
    }
    (None, pings)
}

#[test]
fn listener_pings_and_ends_with_1000_at_max_duration() {
    let server = Listener::start(
        "wsmaxdur",
        &[
            "--ws",
            "--heartbeat",
            "0.3",
            "--max-duration",
            "1.5",
            "--max-duration-jitter",
            "0",
            "--interval",
            "0",
        ],
    );
    let mut ws = ws_connect(server.port, "channel=room");
    let start = std::time::Instant::now();
    let (code, pings) = await_close(&mut ws, Duration::from_secs(5));
    assert_eq!(code, Some(1000));
    assert!(pings >= 3, "a ping every heartbeat: {pings}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn listener_says_1001_when_it_stops() {
    let mut server = Listener::start("wsstop", &["--ws", "--interval", "0"]);
    let mut a = ws_connect(server.port, "channel=room");
    let mut b = ws_connect(server.port, "channel=other");
    std::thread::sleep(Duration::from_millis(200));
    server.proc.signal(15);
    assert_eq!(await_close(&mut a, Duration::from_secs(3)).0, Some(1001));
    assert_eq!(await_close(&mut b, Duration::from_secs(3)).0, Some(1001));
    let status = server
        .proc
        .wait_for(Duration::from_secs(6))
        .expect("exited");
    assert!(status.success(), "{status:?}");
}

#[test]
fn listener_drops_a_peer_that_stops_answering() {
    let server = Listener::start("wsdead", &["--ws", "--heartbeat", "0.3", "--interval", "0"]);
    // A raw client: handshake, then silence (no pongs, no close reply).
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    conn.write_all(
        format!(
            "GET /events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let start = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(7), "dropped: {took:?}");
    assert!(
        took >= Duration::from_millis(1500),
        "not before two heartbeats: {took:?}"
    );
    let body = &got[got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    // Pings (0x89 0x00), then a close frame with 1001.
    assert!(body.starts_with(&[0x89, 0x00]), "{body:?}");
    assert!(body.ends_with(&[0x88, 0x02, 0x03, 0xe9]), "{body:?}");
    // The server logs why (its stderr reaches the test through a thread).
    let mut log = Vec::new();
    while let Ok(line) = server.log.recv_timeout(Duration::from_secs(2)) {
        if line.contains("peer stopped answering pings") {
            return;
        }
        log.push(line);
    }
    panic!("no log line: {log:?}");
}

#[test]
fn listener_rate_limits_a_chatty_client() {
    let server = Listener::start(
        "wsrate",
        &[
            "--ws",
            "--ws-relay",
            "open",
            "--ws-rate",
            "2",
            "--interval",
            "0",
        ],
    );
    let mut a = ws_connect(server.port, "channel=room");
    let mut b = ws_connect(server.port, "channel=room");
    for i in 0..5 {
        a.send(tungstenite::Message::text(format!("m{i}"))).unwrap();
    }
    let notices = ws_texts(&mut a, Duration::from_millis(800));
    assert_eq!(notices.len(), 3, "{notices:?}");
    assert!(notices
        .iter()
        .all(|n| n["event"] == "error" && n["data"].as_str().unwrap().contains("slow down")));
    let got = ws_texts(&mut b, Duration::from_millis(800));
    let data: Vec<&str> = got.iter().map(|m| m["data"].as_str().unwrap()).collect();
    assert_eq!(data, ["m0", "m1"]);
}

#[test]
fn listener_reads_frames_sent_with_the_handshake() {
    // A client may send its first frame right behind the request head.
    let server = Listener::start("wsearly", &["--ws", "--ws-mode", "echo", "--interval", "0"]);
    let mut raw = format!(
        "GET /events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    let key = [1u8, 2, 3, 4];
    raw.extend_from_slice(&[0x81, 0x82]);
    raw.extend_from_slice(&key);
    raw.extend(b"hi".iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    conn.write_all(&raw).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(&[0x81, 0x02, b'h', b'i']) {
        match conn.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => panic!("no echo: {:?}", String::from_utf8_lossy(&got)),
        }
    }
}

#[test]
fn cgi_says_1001_when_the_web_server_stops_it() {
    let mut cmd = cgi_command(bin(), &ws_vars(&[]));
    cmd.stdin(Stdio::piped());
    let mut p = Proc::spawn(&mut cmd);
    let mut input = p.child.stdin.take().unwrap();
    let mut out = Chunks::new(p.child.stdout.take().unwrap());
    assert!(out.until("\r\n\r\n", Duration::from_secs(2)));
    p.signal(15);
    let start = std::time::Instant::now();
    let closed = loop {
        let raw = out.all.clone();
        let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        if let Some(code) = close_code(&decode(&raw[at..])) {
            break Some(code);
        }
        if start.elapsed() > Duration::from_secs(3) {
            break None;
        }
        out.until("\u{0}never", Duration::from_millis(50));
    };
    assert_eq!(closed, Some(1001));
    input
        .write_all(&frame(0x88, &1001u16.to_be_bytes()))
        .unwrap();
    let status = p
        .wait_for(Duration::from_secs(3))
        .expect("ended after the reply");
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "did not wait out the close timeout"
    );
}
