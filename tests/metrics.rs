//! The numbers an operator watches: the listener's `/metrics`, parsed by
//! a real Prometheus text parser (the Python `prometheus_client` one,
//! Debian's `python3-prometheus-client`), `/healthz`, and
//! `nph-events stats` against a spool with live readers (a CGI stream and
//! a listener).

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::listener::Listener;
use support::{bin, cgi_command, get_vars, Chunks, Proc};

const TOKEN: &str = "metrics-token";

fn token_sha256() -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(TOKEN.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Python with `prometheus_client`: Debian's package installs it for
/// the system Python, which may not be the first `python3` on `PATH`.
/// A skip outside CI, a failure in CI.
fn parser_python() -> Option<&'static str> {
    let found = ["/usr/bin/python3", "python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import prometheus_client.parser"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with prometheus_client is needed in CI (apt-get install python3-prometheus-client)"
        );
        eprintln!(
            "SKIP: python3 with prometheus_client missing (apt-get install python3-prometheus-client)"
        );
    }
    found
}

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([family.name, family.type, s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// One sample as the parser script prints it: family, its type, sample
/// name, labels, value.
type Row = (String, String, String, HashMap<String, String>, f64);

/// Samples by `name{label="value",…}` (labels sorted), as the parser
/// read them; every family's type is checked against its name.
fn parse(python: &str, text: &str) -> HashMap<String, f64> {
    let mut child = Command::new(python)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Row> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rows.len() > 20, "{text}");
    let mut samples = HashMap::new();
    for (family, kind, name, labels, value) in rows {
        assert!(kind == "counter" || kind == "gauge", "{family}: {kind}");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}"
        );
        let mut labels: Vec<_> = labels.into_iter().collect();
        labels.sort();
        let key = if labels.is_empty() {
            name
        } else {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!("{name}{{{}}}", l.join(","))
        };
        assert!(samples.insert(key.clone(), value).is_none(), "{key} twice");
    }
    samples
}

/// GET `path` on its own connection: status, head, body.
fn get(server: &Listener, path: &str, headers: &[&str]) -> (u16, String, String) {
    let raw = server.send("GET", path, headers, b"");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

struct Scraper {
    python: &'static str,
}

impl Scraper {
    fn scrape(&self, server: &Listener) -> (HashMap<String, f64>, String) {
        self.try_scrape(server).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_scrape(&self, server: &Listener) -> Result<(HashMap<String, f64>, String), String> {
        let (status, head, body) = get(server, "/metrics", &[]);
        if status != 200 {
            return Err(format!("{head}\n{body}"));
        }
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
            "{head}"
        );
        Ok((parse(self.python, &body), body))
    }

    /// Scrapes until `want` holds (the reactor counts a moment after the
    /// client sees its bytes); the last scrape.
    fn until(
        &self,
        server: &Listener,
        what: &str,
        want: impl Fn(&HashMap<String, f64>) -> bool,
    ) -> HashMap<String, f64> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            // (A scrape may be refused while a closed client's slot is
            // not free yet.)
            let text = match self.try_scrape(server) {
                Ok((m, _)) if want(&m) => return m,
                Ok((_, text)) => text,
                Err(e) => e,
            };
            assert!(Instant::now() < end, "{what} never held:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn v(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("{key} missing from {:?}", m.keys()))
}

fn publish(server: &Listener, channel: &str, data: &str) {
    let auth = format!("Authorization: Bearer {TOKEN}");
    let body = format!(r#"{{"event":"news","data":"{data}"}}"#);
    let answer = server.send(
        "POST",
        &format!("/events?channel={channel}"),
        &[&auth, "Content-Type: application/json"],
        body.as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

fn ws_connect(port: u16, query: &str) -> tungstenite::WebSocket<std::net::TcpStream> {
    let url = format!("ws://127.0.0.1:{port}/events?{query}");
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (ws, response) = tungstenite::client(url, stream).expect("handshake");
    assert_eq!(response.status(), 101);
    ws
}

#[test]
fn counters_move_as_clients_come_and_go() {
    let Some(python) = parser_python() else {
        return;
    };
    let scraper = Scraper { python };
    let hash = token_sha256();
    let server = Listener::start(
        "metrics",
        &[
            "--ws",
            "--ws-relay",
            "open",
            "--interval",
            "0",
            "--token-sha256",
            &hash,
        ],
    );
    let (m, text) = scraper.scrape(&server);
    assert_eq!(v(&m, r#"nph_events_connections_open{protocol="sse"}"#), 0.0);
    assert_eq!(
        v(&m, r#"nph_events_connections_open{protocol="websocket"}"#),
        0.0
    );
    // The scrape itself is an open http connection.
    assert_eq!(
        v(&m, r#"nph_events_connections_open{protocol="http"}"#),
        1.0
    );
    assert!(v(&m, "nph_events_connections_accepted_total") >= 1.0);
    assert_eq!(v(&m, r#"nph_events_published_total{via="post"}"#), 0.0);
    assert_eq!(v(&m, "nph_events_spool_channels"), 0.0);
    assert_eq!(v(&m, "nph_events_spool_readable"), 1.0);
    assert!(v(&m, "nph_events_start_time_seconds") > 1.7e9);
    assert!(text.contains("# TYPE nph_events_events_delivered_total counter"));

    // Two SSE clients and a WebSocket client on one channel.
    let (_s1, mut r1) = server.get("/events?channel=news", &[]);
    let (s2, mut r2) = server.get("/events?channel=news", &[]);
    let mut ws = ws_connect(server.port, "channel=news");
    assert!(r1.until("retry:", Duration::from_secs(5)));
    assert!(r2.until("retry:", Duration::from_secs(5)));
    let m = scraper.until(&server, "3 streams open", |m| {
        v(m, r#"nph_events_connections_open{protocol="sse"}"#) == 2.0
            && v(m, r#"nph_events_connections_open{protocol="websocket"}"#) == 1.0
    });
    assert_eq!(v(&m, r#"nph_events_streams_total{protocol="sse"}"#), 2.0);
    assert_eq!(
        v(&m, r#"nph_events_streams_total{protocol="websocket"}"#),
        1.0
    );
    assert!(v(&m, "nph_events_channels_followed") >= 1.0);
    assert!(v(&m, "nph_events_spool_readers") >= 1.0);
    let sse_bytes = v(&m, r#"nph_events_bytes_written_total{protocol="sse"}"#);
    assert!(sse_bytes > 100.0, "heads and opening lines: {sse_bytes}");

    // Three events by POST reach all three.
    for i in 0..3 {
        publish(&server, "news", &format!("n{i}"));
    }
    assert!(r1.until_count("event: news", 3, Duration::from_secs(5)));
    assert!(r2.until_count("event: news", 3, Duration::from_secs(5)));
    let frames = support::ws_texts(&mut ws, Duration::from_millis(500));
    assert_eq!(frames.len(), 3, "{frames:?}");
    let m = scraper.until(&server, "9 deliveries", |m| {
        v(m, r#"nph_events_events_delivered_total{protocol="sse"}"#) == 6.0
            && v(
                m,
                r#"nph_events_events_delivered_total{protocol="websocket"}"#,
            ) == 3.0
    });
    assert_eq!(v(&m, r#"nph_events_published_total{via="post"}"#), 3.0);
    assert_eq!(v(&m, "nph_events_spool_channels"), 1.0);
    assert_eq!(v(&m, "nph_events_spool_events"), 3.0);
    assert!(v(&m, "nph_events_spool_bytes") > 0.0);
    let sse_after = v(&m, r#"nph_events_bytes_written_total{protocol="sse"}"#);
    let received = (r1.all.len() + r2.all.len()) as f64;
    assert!(
        sse_after > sse_bytes && sse_after >= received,
        "{sse_after} {received}"
    );
    assert!(
        v(
            &m,
            r#"nph_events_bytes_written_total{protocol="websocket"}"#
        ) > 0.0
    );
    // No channel names by default.
    let (_, text) = scraper.scrape(&server);
    assert!(!text.contains("news"), "{text}");

    // A WebSocket message is published (an open relay).
    ws.send(tungstenite::Message::text("hello")).unwrap();
    scraper.until(&server, "a websocket publish", |m| {
        v(m, r#"nph_events_published_total{via="websocket"}"#) == 1.0
    });

    // A client resuming from an id the channel never had is told it lost
    // events: one reset.
    let (_s3, mut r3) = server.get("/events?channel=news", &["Last-Event-ID: 1"]);
    assert!(r3.until("event: reset", Duration::from_secs(5)));
    let m = scraper.until(&server, "a reset", |m| {
        v(m, r#"nph_events_resets_sent_total{protocol="sse"}"#) == 1.0
    });
    assert_eq!(v(&m, r#"nph_events_connections_open{protocol="sse"}"#), 3.0);

    // Clients leave: counted as closed by the client, gauges go down.
    // (The reader thread holds a clone of the socket: shut it down.)
    s2.shutdown(std::net::Shutdown::Both).unwrap();
    drop(r2);
    ws.close(None).unwrap();
    // Until the server's close arrives.
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        match ws.read() {
            Ok(_) => {}
            Err(e) if support::ws_timed_out(&e) => {}
            Err(_) => break,
        }
    }
    let m = scraper.until(&server, "two streams ended", |m| {
        v(m, r#"nph_events_connections_open{protocol="sse"}"#) == 2.0
            && v(m, r#"nph_events_connections_open{protocol="websocket"}"#) == 0.0
    });
    assert_eq!(
        v(
            &m,
            r#"nph_events_streams_ended_total{protocol="sse",reason="client_closed"}"#
        ),
        1.0
    );
    assert_eq!(
        v(
            &m,
            r#"nph_events_streams_ended_total{protocol="websocket",reason="client_closed"}"#
        ),
        1.0
    );
    assert_eq!(
        v(
            &m,
            r#"nph_events_slow_clients_dropped_total{protocol="sse"}"#
        ),
        0.0
    );
    drop(r1);
    drop(r3);
}

#[test]
fn refused_connections_are_counted_by_reason() {
    let Some(python) = parser_python() else {
        return;
    };
    let scraper = Scraper { python };
    let server = Listener::start("metrics-cap", &["--max-connections", "2"]);
    let (a, mut ra) = server.get("/events", &[]);
    assert!(ra.until("retry:", Duration::from_secs(5)));
    let (_b, mut rb) = server.get("/events", &[]);
    assert!(rb.until("retry:", Duration::from_secs(5)));
    let (_c, mut rc) = server.get("/events", &[]);
    assert!(rc.until_eof(Duration::from_secs(5)));
    assert!(rc.text().starts_with("HTTP/1.1 503"), "{}", rc.text());
    // (The reader thread holds a clone of the socket: shut it down.)
    a.shutdown(std::net::Shutdown::Both).unwrap();
    drop(ra);
    // (Scrapes made before the slot was free are refused, and counted,
    // too.)
    let m = scraper.until(&server, "a refusal", |m| {
        let refused = r#"nph_events_connections_refused_total{reason="max_connections"}"#;
        v(m, refused) >= 1.0
    });
    assert_eq!(v(&m, "nph_events_max_connections"), 2.0);
    assert_eq!(
        v(
            &m,
            r#"nph_events_connections_refused_total{reason="max_per_client"}"#
        ),
        0.0
    );
}

#[test]
fn metrics_are_for_this_host_only_and_name_channels_only_when_enabled() {
    let Some(python) = parser_python() else {
        return;
    };
    let scraper = Scraper { python };
    let hash = token_sha256();
    let server = Listener::start(
        "metrics-names",
        &["--metrics-channels", "--token-sha256", &hash],
    );
    publish(&server, "room-1", "x");
    publish(&server, "room-1", "y");
    publish(&server, "lobby", "z");
    let (_s, mut r) = server.get("/events?channel=lobby", &[]);
    assert!(r.until("retry:", Duration::from_secs(5)));
    let m = scraper.until(&server, "the lobby's reader", |m| {
        m.get(r#"nph_events_channel_readers{channel="lobby"}"#) == Some(&1.0)
    });
    assert_eq!(v(&m, r#"nph_events_channel_events{channel="room-1"}"#), 2.0);
    assert_eq!(v(&m, r#"nph_events_channel_events{channel="lobby"}"#), 1.0);
    assert_eq!(
        v(&m, r#"nph_events_channel_readers{channel="room-1"}"#),
        0.0
    );
    assert!(v(&m, r#"nph_events_channel_bytes{channel="room-1"}"#) > 0.0);
    assert_eq!(v(&m, "nph_events_spool_events"), 3.0);
    // Through a proxy (which connects from loopback too): refused.
    for header in [
        "X-Forwarded-For: 203.0.113.9",
        "Forwarded: for=203.0.113.9",
        "X-Real-IP: 203.0.113.9",
        "Via: 1.1 proxy",
    ] {
        let (status, _, body) = get(&server, "/metrics", &[header]);
        assert_eq!(status, 403, "{header}: {body}");
        assert!(body.contains("setting: metrics"), "{body}");
    }
    let (status, head, _) = get(&server, "/metrics", &["Connection: keep-alive"]);
    assert_eq!(status, 200, "{head}");
    let answer = server.send("POST", "/metrics", &[], b"x=1");
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    drop((_s, r));

    // metrics=off: not there at all; metrics=any: through a proxy too.
    let off = Listener::start("metrics-off", &["--metrics", "off"]);
    assert_eq!(get(&off, "/metrics", &[]).0, 404);
    assert_eq!(get(&off, "/healthz", &[]).0, 200);
    let any = Listener::start("metrics-any", &["--metrics", "any"]);
    let (status, _, body) = get(&any, "/metrics", &["X-Forwarded-For: 203.0.113.9"]);
    assert_eq!(status, 200);
    parse(python, &body);
}

#[test]
fn healthz_says_ok_or_why_not() {
    use std::os::unix::fs::PermissionsExt;
    let server = Listener::start("healthz", &[]);
    let (status, head, body) = get(&server, "/healthz", &[]);
    assert_eq!((status, body.as_str()), (200, "ok\n"), "{head}");
    assert!(head.contains("Cache-Control: no-store"), "{head}");
    // From elsewhere too (a load balancer), and as HEAD.
    let (status, _, _) = get(&server, "/healthz", &["X-Forwarded-For: 203.0.113.9"]);
    assert_eq!(status, 200);
    let raw = server.send("HEAD", "/healthz", &[], b"");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.ends_with("\r\n\r\n"), "no body: {raw:?}");
    // A spool other users can enter is not usable: 503 and why, no path.
    let perms = |mode| std::fs::Permissions::from_mode(mode);
    std::fs::set_permissions(&server.spool, perms(0o755)).unwrap();
    let (status, _, body) = get(&server, "/healthz", &[]);
    std::fs::set_permissions(&server.spool, perms(0o700)).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("spool not usable: spool directory is open to other users (mode 0755)"),
        "{body}"
    );
    assert!(!body.contains(&server.spool), "{body}");
    assert_eq!(get(&server, "/healthz", &[]).0, 200);
}

/// Runs `nph-events stats` on `spool`.
fn stats(spool: &str, json: bool) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.env_clear().args(["stats", "--spool", spool]);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn stats_counts_channels_events_and_readers_of_every_process() {
    let server = Listener::start("stats", &["--interval", "0"]);
    let spool = server.spool.clone();
    let cli_publish = |channel: &str, data: &str| {
        let out = Command::new(bin())
            .env_clear()
            .args(["publish", "--spool", &spool, "--channel", channel])
            .args(["--data", data])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let first_a = cli_publish("alpha", "1");
    cli_publish("alpha", "2");
    let last_a = cli_publish("alpha", "3");
    cli_publish("beta", "1");
    // Readers: a CGI stream on alpha, and the listener (one client on each
    // channel: one reader each, whichever of its threads has it).
    let mut vars = get_vars();
    vars.push(("QUERY_STRING", "channel=alpha"));
    vars.push(("NPH_EVENTS_SPOOL", &spool));
    vars.push(("NPH_EVENTS_INTERVAL", "0"));
    let mut cgi = Proc::spawn(&mut cgi_command(bin(), &vars));
    let mut cgi_out = Chunks::new(cgi.child.stdout.take().unwrap());
    assert!(cgi_out.until("retry:", Duration::from_secs(5)));
    let (_a, mut ra) = server.get("/events?channel=alpha", &[]);
    let (_b, mut rb) = server.get("/events?channel=beta", &[]);
    let (_q, mut rq) = server.get("/events?channel=quiet", &[]);
    for r in [&mut ra, &mut rb, &mut rq] {
        assert!(r.until("retry:", Duration::from_secs(5)));
    }

    let (code, text, err) = stats(&spool, false);
    assert_eq!(code, 0, "{err}");
    let row = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row:\n{text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        row("alpha")[1..],
        ["3", &first_a, &last_a, &row("alpha")[4], "2"],
        "{text}"
    );
    assert_eq!(row("beta")[1], "1");
    assert_eq!(row("beta")[5], "1", "{text}");
    assert!(text.contains("2 channel(s), 4 event(s) retained"), "{text}");
    assert!(text.contains("4 reader(s) connected"), "{text}");
    assert!(
        text.contains("1 of the readers follow channels with nothing published yet"),
        "{text}"
    );
    assert!(text.contains("one per CGI stream"), "{text}");

    let (code, json, _) = stats(&spool, true);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["totals"]["channels"], 2);
    assert_eq!(v["totals"]["events"], 4);
    assert_eq!(v["totals"]["readers"], 4);
    assert_eq!(v["channels"][0]["name"], "alpha");
    assert_eq!(v["channels"][0]["first_id"], first_a.as_str());
    assert_eq!(v["channels"][0]["last_id"], last_a.as_str());
    assert_eq!(v["channels"][0]["readers"], 2);
    assert_eq!(v["channels"][1]["readers"], 1);
    assert_eq!(v["readers_of_empty_channels"], 1);
    assert!(v["channels"][0]["bytes"].as_u64().unwrap() > 0);

    // The CGI stream ends (SIGTERM: it removes its socket): one reader
    // fewer.
    cgi.signal(libc::SIGTERM);
    assert!(cgi.wait_for(Duration::from_secs(5)).is_some());
    let (_, json, _) = stats(&spool, true);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["channels"][0]["readers"], 1, "{json}");
    drop((ra, rb, rq));

    // A spool that is not there: an error that says what to do, and
    // nothing is created.
    let missing = format!("{spool}-missing");
    let (code, _, err) = stats(&missing, false);
    assert_eq!(code, 1);
    assert!(err.contains("run as the web server's user"), "{err}");
    assert!(!std::path::Path::new(&missing).exists());
}

/// Clients that stop reading while large events are published are
/// dropped once the server's output budget is spent: counted as slow
/// clients dropped (and as streams ended `too_slow`).
#[test]
fn slow_clients_dropped_are_counted() {
    let Some(python) = parser_python() else {
        return;
    };
    let scraper = Scraper { python };
    let hash = token_sha256();
    let server = Listener::start(
        "metrics-slow",
        &[
            "--token-sha256",
            &hash,
            "--queue-budget",
            "1048576",
            "--retain-bytes",
            "16777216",
            "--max-body",
            "200000",
            "--publish-rate",
            "1000",
        ],
    );
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.write_all(b"GET /events?channel=big HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        stalled.push(s);
    }
    scraper.until(&server, "3 streams", |m| {
        v(m, r#"nph_events_connections_open{protocol="sse"}"#) == 3.0
    });
    let data = "y".repeat(150_000);
    let auth = format!("Authorization: Bearer {TOKEN}");
    for _ in 0..20 {
        let answer = server.send(
            "POST",
            "/events?channel=big",
            &[&auth, "Content-Type: text/plain"],
            data.as_bytes(),
        );
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    }
    let m = scraper.until(&server, "a slow client dropped", |m| {
        v(
            m,
            r#"nph_events_slow_clients_dropped_total{protocol="sse"}"#,
        ) >= 1.0
    });
    let dropped = v(
        &m,
        r#"nph_events_slow_clients_dropped_total{protocol="sse"}"#,
    );
    assert_eq!(
        v(
            &m,
            r#"nph_events_streams_ended_total{protocol="sse",reason="too_slow"}"#
        ),
        dropped
    );
    assert!(v(&m, "nph_events_queued_bytes") <= 1048576.0 + 200_000.0);
    assert_eq!(v(&m, "nph_events_queue_budget_bytes"), 1048576.0);
    eprintln!("3 stalled clients, 20 x 150 kB: {dropped} dropped");
    drop(stalled);
}
