//! `nph-events doctor` against real servers, each set up the way a host
//! gets it wrong (or right): the verdict and the fix it names.
//!
//! Streams use short intervals (SetEnv NPH_EVENTS_INTERVAL etc.) and the
//! doctor a short `--seconds`, so each case takes a few seconds.

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::bin;
use support::doctor::{assert_buffered_by_http2, line, verdict};
use support::listener::Listener;
use support::nginx::Nginx;
use support::servers::{available, Kind, Server};

const TOKEN: &str = "doctor-token";

fn token_hash() -> String {
    nph_events::auth::token_hash_hex(TOKEN)
}

/// `nph-events doctor ARGS`: its exit status and report.
fn doctor(args: &[&str]) -> (i32, String) {
    let (status, report, _) = support::doctor::run(args);
    (status, report)
}

/// Settings for a quick stream: a tick every half second, heartbeats
/// every second, publishing with [`TOKEN`].
fn quick(hash: &str, max_duration: Option<&'static str>) -> Vec<(&'static str, String)> {
    let mut s = vec![
        ("NPH_EVENTS_INTERVAL", "0.5".to_owned()),
        ("NPH_EVENTS_HEARTBEAT", "1".to_owned()),
        ("NPH_EVENTS_TOKEN_SHA256", hash.to_owned()),
    ];
    if let Some(d) = max_duration {
        s.push(("NPH_EVENTS_MAX_DURATION", d.to_owned()));
    }
    s
}

fn start(kind: Kind, names: &[&str], settings: &[(&'static str, String)], extra: &str) -> Server {
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_with(kind, names, &pairs, &[], extra)
}

#[test]
fn apache_nph_cgi_is_live() {
    if !available(Kind::ApacheCgidEvent) {
        return;
    }
    let mut settings = quick(&token_hash(), None);
    settings.push(("NPH_EVENTS_ORIGINS", "https://page.example".to_owned()));
    let server = start(Kind::ApacheCgidEvent, &["nph-events.cgi"], &settings, "");
    let url = format!("http://127.0.0.1:{}/cgi-bin/nph-events.cgi", server.port);
    let (status, report) = doctor(&[
        &url,
        "--token",
        TOKEN,
        "--seconds",
        "4",
        "--origin",
        "https://page.example",
    ]);
    assert_eq!(status, 0, "{report}\n{}", server.logs());
    for check in [
        "head",
        "first-byte",
        "live",
        "publish",
        "compression",
        "http",
        "idle",
        "resume",
    ] {
        assert_eq!(verdict(&report, check), "ok", "{check}: {report}");
    }
    assert!(line(&report, "http").contains("HTTP/1.1"), "{report}");
    assert!(line(&report, "live").contains("probes"), "{report}");
    assert_eq!(verdict(&report, "cors"), "ok", "{report}");
    assert!(
        report.contains("server: no Server header, and an nph- name"),
        "{report}"
    );
    assert_eq!(verdict(&report, "websocket"), "info", "{report}");
    assert!(!report.contains("fix:"), "{report}");
    // Without a token the ticker's own timestamps time the stream.
    let (status, report) = doctor(&[&url, "--seconds", "2.5"]);
    assert_eq!(status, 0, "{report}");
    assert!(
        line(&report, "live").contains("ticks written 0.50 s apart"),
        "{report}"
    );
    assert_eq!(verdict(&report, "resume"), "info", "{report}");
    // A page the site does not list is refused, and the doctor says so.
    let (status, report) = doctor(&[&url, "--seconds", "1", "--origin", "https://other.example"]);
    assert_eq!(status, 1, "{report}");
    assert_eq!(verdict(&report, "cors"), "FAIL", "{report}");
    assert!(
        report.contains("fix: answered 403") && report.contains("NPH_EVENTS_ORIGINS"),
        "{report}"
    );
}

#[test]
fn apache_mod_deflate_on_a_parsed_header_name_is_caught() {
    if !available(Kind::ApacheCgidEvent) {
        return;
    }
    // The test Apache compresses text/event-stream host-wide
    // (AddOutputFilterByType DEFLATE); the shipped snippet shields only
    // nph-events.cgi and events.cgi, so a copy installed as stream.cgi
    // (parsed-header mode) is compressed.
    let server = start(
        Kind::ApacheCgidEvent,
        &["stream.cgi"],
        &quick(&token_hash(), None),
        "",
    );
    let url = format!("http://127.0.0.1:{}/cgi-bin/stream.cgi", server.port);
    let (status, report) = doctor(&[&url, "--seconds", "4"]);
    assert_eq!(status, 1, "{report}");
    assert_eq!(verdict(&report, "live"), "FAIL", "{report}");
    assert_eq!(verdict(&report, "compression"), "FAIL", "{report}");
    assert!(report.contains("server: Apache"), "{report}");
    assert!(
        report.contains("fix: Apache compresses the stream"),
        "{report}"
    );
    assert!(
        report.contains("SetEnv no-gzip 1") && report.contains("nph- name"),
        "{report}"
    );
}

#[test]
fn lighttpd_without_stream_response_body_is_caught() {
    if !available(Kind::Lighttpd) {
        return;
    }
    // lighttpd's default: the whole response held until the program
    // exits (which a bounded lifetime makes it do after 3 s).
    let server = start(
        Kind::Lighttpd,
        &["nph-events.cgi"],
        &quick(&token_hash(), Some("3")),
        "server.stream-response-body := 0\n",
    );
    let url = format!("http://127.0.0.1:{}/cgi-bin/nph-events.cgi", server.port);
    let (status, report) = doctor(&[&url, "--token", TOKEN, "--seconds", "5"]);
    assert_eq!(status, 1, "{report}\n{}", server.logs());
    assert_eq!(verdict(&report, "live"), "FAIL", "{report}");
    assert!(
        line(&report, "live").contains("buffered to the end"),
        "{report}"
    );
    assert_eq!(verdict(&report, "publish"), "ok", "{report}");
    assert!(report.contains("server: lighttpd"), "{report}");
    assert!(
        report.contains("server.stream-response-body = 2"),
        "{report}"
    );
}

#[test]
fn nginx_with_proxy_buffering_is_caught() {
    if !Path::new("/usr/sbin/nginx").exists() {
        assert!(std::env::var_os("CI").is_none(), "nginx missing in CI");
        eprintln!("SKIP: nginx not installed");
        return;
    }
    let hash = token_hash();
    let backend = Listener::start(
        "doctor-nginx",
        &[
            "--interval",
            "0.3",
            "--heartbeat",
            "1",
            "--ws",
            "--token-sha256",
            &hash,
        ],
    );
    let Some(nginx) = buffering_nginx(backend.port, true) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/nph-events/events", nginx.port);
    let (status, report) = doctor(&[&url, "--token", TOKEN, "--seconds", "5"]);
    assert_eq!(status, 1, "{report}");
    assert_eq!(verdict(&report, "live"), "FAIL", "{report}");
    assert!(report.contains("server: nginx"), "{report}");
    assert!(report.contains("proxy_buffering off;"), "{report}");
    assert!(report.contains("proxy_ignore_headers"), "{report}");
    // nginx that honours the program's X-Accel-Buffering: no is live with
    // proxy_buffering on: the ignored header was the culprit.
    let Some(honouring) = buffering_nginx(backend.port, false) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/nph-events/events", honouring.port);
    let (status, report) = doctor(&[&url, "--token", TOKEN, "--seconds", "3"]);
    assert_eq!(status, 0, "{report}");
    assert!(report.contains("server: nginx"), "{report}");
    // The same listener, asked directly, is live too.
    let direct = format!("http://127.0.0.1:{}/events", backend.port);
    let (status, report) = doctor(&[&direct, "--token", TOKEN, "--seconds", "3"]);
    assert_eq!(status, 0, "{report}");
    assert_eq!(verdict(&report, "resume"), "ok", "{report}");
    assert_eq!(verdict(&report, "websocket"), "ok", "{report}");
}

#[test]
fn apache_h2c_buffers_the_nph_name_and_streams_the_parsed_header_name() {
    if !available(Kind::ApacheCgidEvent) {
        return;
    }
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "curl missing in CI");
        eprintln!("SKIP: curl not installed");
        return;
    }
    let extra =
        "LoadModule http2_module /usr/lib/apache2/modules/mod_http2.so\nProtocols h2c http/1.1\n";
    // A bounded lifetime, so that the held NPH output comes out at the end.
    let server = start(
        Kind::ApacheCgidEvent,
        &["nph-events.cgi", "events.cgi"],
        &quick(&token_hash(), Some("3")),
        extra,
    );
    let base = format!("http://127.0.0.1:{}/cgi-bin", server.port);
    let nph = format!("{base}/nph-events.cgi");
    let (status, report) = doctor(&[&nph, "--http2", "--seconds", "5"]);
    assert_buffered_by_http2(status, &report, &server.logs());

    let parsed = format!("{base}/events.cgi");
    let (status, report) = doctor(&[&parsed, "--http2", "--token", TOKEN, "--seconds", "2.5"]);
    assert_eq!(status, 0, "{report}\n{}", server.logs());
    assert_eq!(verdict(&report, "live"), "ok", "{report}");
    assert!(line(&report, "http").contains("HTTP/2"), "{report}");
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for args in [
        &[][..],
        &["ftp://x/"],
        &["http://h/", "--seconds", "0"],
        &["http://h/", "--what"],
    ] {
        let out = Command::new(bin())
            .arg("doctor")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("nph-events doctor: "), "{err}");
    }
    // Nothing listening: exit 1, one line.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(bin())
        .args(["doctor", &format!("http://127.0.0.1:{port}/x")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

/// A private nginx in front of `backend` with `proxy_buffering on`, and
/// optionally `proxy_ignore_headers X-Accel-Buffering` (then the program's
/// `X-Accel-Buffering: no` no longer turns buffering off); stopped by PID.
fn buffering_nginx(backend: u16, ignore: bool) -> Option<Nginx> {
    let tag = if ignore { "ignoring" } else { "honouring" };
    let ignore = if ignore {
        "proxy_ignore_headers X-Accel-Buffering;"
    } else {
        ""
    };
    Nginx::start_with(tag, |port| {
        format!(
            "server {{\n    listen 127.0.0.1:{port};\n\
               location /nph-events/ {{\n\
                 proxy_pass http://127.0.0.1:{backend}/;\n\
                 proxy_http_version 1.1;\n\
                 proxy_buffering on;\n\
                 {ignore}\n\
               }}\n  }}\n"
        )
    })
}

#[test]
fn ticks_arriving_in_bursts_behind_a_cdn_are_batched() {
    let fake = BatchingFake::start(Duration::from_secs(2));
    let url = format!("http://127.0.0.1:{}/events", fake.port);
    let (status, report) = doctor(&[&url, "--seconds", "3"]);
    assert_eq!(status, 1, "{report}");
    assert_eq!(verdict(&report, "live"), "FAIL", "{report}");
    assert!(line(&report, "live").contains("bursts"), "{report}");
    assert_eq!(verdict(&report, "first-byte"), "ok", "{report}");
    assert!(report.contains("behind Cloudflare"), "{report}");
    assert!(report.contains("fix: Cloudflare"), "{report}");
    let (status, json) = doctor(&[&url, "--seconds", "3", "--json"]);
    let doc: serde_json::Value =
        serde_json::from_str(json.trim()).expect("--json prints one JSON object");
    assert_eq!(
        (status, doc["live"].as_bool(), doc["status"].as_i64()),
        (1, Some(false), Some(1))
    );
    let live = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "live")
        .unwrap();
    assert_eq!(live["verdict"], "fail", "{json}");
    assert!(live["value"].as_f64().unwrap() > 1.0, "{json}");
}

/// A scripted server on loopback that answers like a stream behind a
/// buffering CDN: the head, the opening and the first tick at once, then
/// the ticks written every 0.5 s meanwhile all together after `hold`.
/// HEAD gets the head; a WebSocket handshake 501.
struct BatchingFake {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl BatchingFake {
    fn start(hold: Duration) -> BatchingFake {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if conn.read(&mut byte).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let stream_head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                                       Server: cloudflare\r\nCF-RAY: 8a1b2c3d-LHR\r\nConnection: close\r\n\r\n";
                    if head.starts_with("head ") {
                        let _ = conn.write_all(stream_head.as_bytes());
                        return;
                    }
                    if head.contains("upgrade: websocket") {
                        let _ = conn.write_all(
                            b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        return;
                    }
                    let t0 = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as u64;
                    let tick = |seq: u64| {
                        let time = t0 + (seq - 1) * 500;
                        format!("event: tick\ndata: {{\"seq\":{seq},\"time\":{time}}}\n\n")
                    };
                    let first = format!(
                        "{stream_head}: nph-events/0.1.0\nretry: 3000\n\n{}",
                        tick(1)
                    );
                    if conn.write_all(first.as_bytes()).is_err() {
                        return;
                    }
                    std::thread::sleep(hold);
                    let held: String = (2..=4).map(tick).collect();
                    let _ = conn.write_all(held.as_bytes());
                    std::thread::sleep(Duration::from_secs(3));
                });
            }
        });
        BatchingFake { port, stop }
    }
}

impl Drop for BatchingFake {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
