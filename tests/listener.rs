//! `nph-events serve` on 127.0.0.1: the same behaviour as the CGI, and the
//! server's own limits.

mod support;

use std::time::{Duration, Instant};

use support::listener::Listener;
use support::{bin, cgi_command, get_vars, parse_sse, Chunks, Proc};

const TOKEN: &str = "listener-token";

fn body(text: &str) -> &str {
    text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Digits vary (times, dates): compare shapes.
fn shape(s: &str) -> String {
    s.replace(|c: char| c.is_ascii_digit(), "9")
}

#[test]
fn stream_matches_the_cgi_apart_from_framing() {
    let flags = [
        "--interval",
        "0.2",
        "--max-duration",
        "0.5",
        "--max-duration-jitter",
        "0",
        "--retry",
        "1234",
    ];
    let server = Listener::start("parity", &flags);
    let (_c, mut r) = server.get("/events?channel=p", &["Accept: text/event-stream"]);
    assert!(
        r.until_eof(Duration::from_secs(5)),
        "stream ended by max-duration"
    );
    let listener = r.text();

    let mut vars = get_vars();
    vars.retain(|(k, _)| *k != "QUERY_STRING");
    vars.extend_from_slice(&[
        ("QUERY_STRING", "channel=p"),
        ("NPH_EVENTS_INTERVAL", "0.2"),
        ("NPH_EVENTS_MAX_DURATION", "0.5"),
        ("NPH_EVENTS_MAX_DURATION_JITTER", "0"),
        ("NPH_EVENTS_RETRY", "1234"),
        ("NPH_EVENTS_SPOOL", &server.spool),
    ]);
    let mut p = Proc::spawn(&mut cgi_command(bin(), &vars));
    let mut out = Chunks::new(p.child.stdout.take().unwrap());
    assert!(out.until_eof(Duration::from_secs(5)));
    let cgi = out.text();

    assert_eq!(shape(body(&listener)), shape(body(&cgi)), "same body bytes");
    let head_lines = |t: &str| -> Vec<String> {
        t.split("\r\n\r\n")
            .next()
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let (l, c) = (head_lines(&listener), head_lines(&cgi));
    // The listener adds Server; Date differs; the rest is identical.
    let without = |v: &[String]| -> Vec<String> {
        v.iter()
            .filter(|h| !h.starts_with("Date: ") && !h.starts_with("Server: "))
            .cloned()
            .collect()
    };
    assert_eq!(without(&l), without(&c));
    assert!(l.iter().any(|h| h.starts_with("Server: nph-events/")));
}

#[test]
fn publish_auth_resume_and_fan_out() {
    let hash = nph_events::auth::token_hash_hex(TOKEN);
    let server = Listener::start("pub", &["--interval", "0", "--token-sha256", &hash]);
    let mut streams: Vec<_> = (0..3)
        .map(|_| server.get("/events?channel=room", &[]))
        .collect();
    for (_, r) in streams.iter_mut() {
        assert!(r.until("retry:", Duration::from_secs(2)));
    }
    let auth = format!("Authorization: Bearer {TOKEN}");
    let ct = "Content-Type: application/json";
    let denied = server.send("POST", "/events?channel=room", &[ct], br#"{"data":"x"}"#);
    assert!(denied.starts_with("HTTP/1.1 401 "), "{denied}");
    let wrong = server.send(
        "POST",
        "/events?channel=room",
        &[ct, "Authorization: Bearer no"],
        b"{}",
    );
    assert!(wrong.starts_with("HTTP/1.1 403 "), "{wrong}");
    let mut ids = Vec::new();
    for i in 0..3 {
        let body_json = format!(r#"{{"event":"chat","data":"m{i}"}}"#);
        let ok = server.send(
            "POST",
            "/events?channel=room",
            &[ct, &auth],
            body_json.as_bytes(),
        );
        assert!(ok.starts_with("HTTP/1.1 201 "), "{ok}");
        let v: serde_json::Value = serde_json::from_str(body(&ok).trim()).unwrap();
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    for (_, r) in streams.iter_mut() {
        assert!(r.until("data: m2", Duration::from_secs(2)), "{}", r.text());
        let (events, _) = parse_sse(body(&r.text()));
        let got: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(got, vec!["m0", "m1", "m2"]);
    }
    // Reconnect with the first id: the rest comes from the spool.
    let lei = format!("Last-Event-ID: {}", ids[0]);
    let (_c, mut r) = server.get("/events?channel=room", &[&lei]);
    assert!(r.until("data: m2", Duration::from_secs(2)));
    let (events, _) = parse_sse(body(&r.text()));
    let got: Vec<&str> = events.iter().map(|e| e.last_event_id.as_str()).collect();
    assert_eq!(got, vec![ids[1].as_str(), ids[2].as_str()]);
    let (_c, mut r) = server.get("/events?channel=room", &["Last-Event-ID: x"]);
    r.until_eof(Duration::from_secs(2));
    assert!(r.text().starts_with("HTTP/1.1 400 "), "{}", r.text());
}

#[test]
fn connection_cap_answers_503_with_retry_after() {
    let server = Listener::start("cap", &["--max-connections", "2", "--interval", "0"]);
    let mut held: Vec<_> = (0..2).map(|_| server.get("/events", &[])).collect();
    for (_, r) in held.iter_mut() {
        assert!(r.until("retry:", Duration::from_secs(2)));
    }
    let (_c, mut r) = server.get("/events", &[]);
    assert!(r.until_eof(Duration::from_secs(2)));
    let text = r.text();
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nRetry-After: 5\r\n"));
    drop(held);
}

/// A stream whose client hangs up gives its descriptor and its connection
/// slot back at once, not at its next heartbeat (60 s here).
#[test]
fn a_departed_stream_frees_its_slot_at_once() {
    let flags = [
        "--max-connections",
        "2",
        "--interval",
        "0",
        "--heartbeat",
        "60",
    ];
    let server = Listener::start("departed", &flags);
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", server.proc.pid()))
            .unwrap()
            .count()
    };
    let idle = fds();
    let mut held: Vec<_> = (0..2).map(|_| server.get("/events", &[])).collect();
    for (_, r) in held.iter_mut() {
        assert!(r.until("retry:", Duration::from_secs(2)));
    }
    let with_two = fds();
    assert!(with_two >= idle + 2, "{idle} -> {with_two}");
    // (Its reader thread holds a copy of the socket: shut it down.)
    let (gone, _) = held.pop().unwrap();
    gone.shutdown(std::net::Shutdown::Both).unwrap();
    // (Its channel's follower may go with it: at least one descriptor.)
    let left = Instant::now();
    while fds() >= with_two && left.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(fds() < with_two, "descriptor freed within 1 s");
    let (_c, mut r) = server.get("/events", &[]);
    assert!(
        r.until("retry:", Duration::from_secs(2)),
        "slot free: {}",
        r.text()
    );
    assert!(r.text().starts_with("HTTP/1.1 200 OK\r\n"));
}

#[test]
fn slow_request_head_gets_408_and_is_closed() {
    let server = Listener::start("slow", &["--header-timeout", "0.5"]);
    let t0 = Instant::now();
    let (_c, mut r) = server.raw(b"GET /events HTTP/1.1\r\nHost: slow");
    assert!(r.until_eof(Duration::from_secs(5)), "closed");
    let took = t0.elapsed();
    assert!(
        r.text().starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{}",
        r.text()
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn oversized_head_gets_431() {
    let server = Listener::start("big", &[]);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let (_c, mut r) = server.raw(big.as_bytes());
    assert!(r.until_eof(Duration::from_secs(5)));
    assert!(r.text().starts_with("HTTP/1.1 431 "), "{}", r.text());
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let (_c, mut r) = server.raw(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes());
    assert!(r.until_eof(Duration::from_secs(5)));
    assert!(r.text().starts_with("HTTP/1.1 431 "), "{}", r.text());
    let (_c, mut r) = server.raw(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n");
    assert!(r.until_eof(Duration::from_secs(5)));
    assert!(r.text().starts_with("HTTP/1.1 400 "), "{}", r.text());
}

#[test]
fn keep_alive_for_ordinary_responses_and_routes() {
    let server = Listener::start("ka", &[]);
    let two = b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let (_c, mut r) = server.raw(two);
    assert!(r.until_eof(Duration::from_secs(5)));
    let text = r.text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("<title>nph-events"), "demo page");
    assert!(
        text.contains("HTTP/1.1 404 Not Found\r\n"),
        "second request on the same connection"
    );
    let (_c, mut r) = server.raw(b"DELETE / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(r.until_eof(Duration::from_secs(5)));
    assert!(r.text().starts_with("HTTP/1.1 405 "), "{}", r.text());
    let (_c, mut r) = server.get("/events", &["Accept: text/html", "Connection: close"]);
    assert!(r.until_eof(Duration::from_secs(5)));
    assert!(
        r.text().contains("content=\"events\""),
        "browsers navigating to /events get the page"
    );
}

#[test]
fn sigterm_ends_streams_cleanly_with_every_event() {
    let hash = nph_events::auth::token_hash_hex(TOKEN);
    let mut server = Listener::start("term", &["--interval", "0", "--token-sha256", &hash]);
    let mut streams: Vec<_> = (0..3)
        .map(|_| server.get("/events?channel=t", &[]))
        .collect();
    for (_, r) in streams.iter_mut() {
        assert!(r.until("retry:", Duration::from_secs(2)));
    }
    let auth = format!("Authorization: Bearer {TOKEN}");
    for i in 0..20 {
        let ok = server.send(
            "POST",
            "/events?channel=t",
            &["Content-Type: text/plain", &auth],
            format!("e{i}").as_bytes(),
        );
        assert!(ok.starts_with("HTTP/1.1 201"), "{ok}");
    }
    for (_, r) in streams.iter_mut() {
        assert!(r.until("data: e19", Duration::from_secs(2)));
    }
    let t0 = Instant::now();
    server.proc.signal(libc::SIGTERM);
    let status = server
        .proc
        .wait_for(Duration::from_secs(10))
        .expect("server exited");
    assert_eq!(status.code(), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    for (_, r) in streams.iter_mut() {
        assert!(r.until_eof(Duration::from_secs(2)), "stream closed");
        let text = r.text();
        assert!(
            text.ends_with("\n\n"),
            "ended at an event boundary: {text:?}"
        );
        let (events, _) = parse_sse(body(&text));
        let got: Vec<String> = events.iter().map(|e| e.data.clone()).collect();
        let want: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
        assert_eq!(got, want);
    }
    let log: Vec<String> = server.log.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("stopping")), "{log:?}");
}

#[test]
fn non_loopback_address_needs_allow_remote() {
    let out = std::process::Command::new(bin())
        .env_clear()
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--allow-remote") && err.contains("not a loopback"),
        "{err}"
    );
}
