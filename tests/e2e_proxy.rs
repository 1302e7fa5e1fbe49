//! `nph-events serve` behind real reverse proxies, each using the shipped
//! config unchanged: nginx (`nginx-conf/`) and Apache mod_proxy
//! (`apache-conf/nph-events-proxy.conf`). Events must arrive live.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::listener::Listener;
use support::nginx::Nginx;
use support::servers::{available, Kind, Server};
use support::{body_of, parse_sse, Chunks};

const TOKEN: &str = "proxy-token";

fn listener(tag: &str) -> Listener {
    let hash = nph_events::auth::token_hash_hex(TOKEN);
    Listener::start(
        tag,
        &[
            "--interval",
            "0.3",
            "--heartbeat",
            "1",
            "--token-sha256",
            &hash,
        ],
    )
}

fn request(port: u16, raw: &str) -> (TcpStream, Chunks) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let r = Chunks::new(s.try_clone().unwrap());
    (s, r)
}

/// Through the proxy on `port`: ticks arrive one by one, a POST reaches the
/// streams, and the demo page is served under the prefix; the listener's
/// numbers (on `backend`) are not served to the proxy's visitors.
fn live_through(port: u16, backend: u16, what: &str) {
    let get =
        "GET /nph-events/events?channel=px HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n";
    let t0 = Instant::now();
    let mut streams = [request(port, get), request(port, get)];
    for (_, r) in streams.iter_mut() {
        assert!(
            r.until_count("event: tick", 4, Duration::from_secs(5)),
            "{what}: {}",
            r.text()
        );
        let ticks = r.arrivals("event: tick");
        assert!(
            ticks[0] - t0 < Duration::from_secs(1),
            "{what}: first event late"
        );
        for pair in ticks.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(150),
                "{what}: ticks batched ({gap:?})"
            );
        }
        assert!(
            !r.text().to_ascii_lowercase().contains("content-encoding"),
            "{what}: compressed"
        );
    }
    let body = "published through the proxy";
    let post = format!(
        "POST /nph-events/events?channel=px HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (_p, mut answer) = request(port, &post);
    answer.until_eof(Duration::from_secs(5));
    assert!(
        answer.text().starts_with("HTTP/1.1 201"),
        "{what}: {}",
        answer.text()
    );
    for (_, r) in streams.iter_mut() {
        assert!(
            r.until(body, Duration::from_secs(2)),
            "{what}: publish not delivered"
        );
        let (events, _) = parse_sse(&body_of(&r.text()));
        assert!(events
            .iter()
            .any(|e| e.data == body && !e.last_event_id.is_empty()));
    }
    let (_c, mut page) = request(
        port,
        "GET /nph-events/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    page.until_eof(Duration::from_secs(5));
    assert!(
        page.text().starts_with("HTTP/1.1 200"),
        "{what}: {}",
        page.text()
    );
    assert!(
        page.text().contains("content=\"events\""),
        "{what}: demo page"
    );
    let get = |port: u16, path: &str| {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let (_c, mut r) = request(port, &raw);
        r.until_eof(Duration::from_secs(5));
        r.text()
    };
    let metrics = get(port, "/nph-events/metrics");
    assert!(
        metrics.starts_with("HTTP/1.1 403") || metrics.starts_with("HTTP/1.1 404"),
        "{what}: /metrics reached visitors: {metrics}"
    );
    assert!(!metrics.contains("nph_events_"), "{what}: {metrics}");
    let health = get(port, "/nph-events/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{what}: {health}");
    let direct = get(backend, "/metrics");
    assert!(
        direct.starts_with("HTTP/1.1 200") && direct.contains("nph_events_"),
        "{what}: the operator scrapes the listener directly: {direct}"
    );
}

#[test]
fn nginx_in_front_of_the_listener() {
    let backend = listener("nginx");
    let Some(nginx) = Nginx::start(backend.port) else {
        return;
    };
    live_through(nginx.port, backend.port, "nginx");
}

#[test]
fn apache_mod_proxy_in_front_of_the_listener() {
    if !available(Kind::ApacheCgidEvent) {
        return;
    }
    let backend = listener("modproxy");
    let server = Server::apache_proxy(backend.port);
    live_through(server.port, backend.port, "apache mod_proxy");
}
