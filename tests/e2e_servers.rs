//! End to end through real web servers started on 127.0.0.1: Apache 2.4
//! with mod_cgid (event MPM, Debian's default) and with mod_cgi (prefork),
//! and lighttpd 1.4, each loading the shipped config snippet unchanged.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::servers::{available, disconnect, Kind, Server};
use support::{parse_sse, split_response, Chunks};

const LIVE: &[(&str, &str)] = &[
    ("NPH_EVENTS_INTERVAL", "0.3"),
    ("NPH_EVENTS_HEARTBEAT", "0.5"),
];
const QUIET: &[(&str, &str)] = &[
    ("NPH_EVENTS_INTERVAL", "0"),
    ("NPH_EVENTS_HEARTBEAT", "0.5"),
];
const HEARTBEAT: Duration = Duration::from_millis(500);
/// Scheduling allowance on a shared 2-core machine.
const SLACK: Duration = Duration::from_millis(500);

/// The first event comes within 1 s, and later ones one by one, spaced by
/// the interval: not held back and delivered in a batch.
fn stream_is_live(kind: Kind, name: &str) {
    if !available(kind) {
        return;
    }
    let server = Server::start(kind, &[name], LIVE);
    let t0 = Instant::now();
    let path = format!("/cgi-bin/{name}");
    let (_conn, mut r) = server.request(
        "GET",
        &path,
        &[
            "Accept: text/event-stream",
            "Accept-Encoding: gzip, deflate, br",
        ],
    );
    let got = r.until_count("event: tick", 4, Duration::from_secs(5));
    assert!(got, "4 ticks within 5 s\n{}\n{}", r.text(), server.logs());
    let arrivals = r.arrivals("event: tick");
    let first = arrivals[0] - t0;
    assert!(
        first < Duration::from_secs(1),
        "first event after {first:?}"
    );
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(150) && gap < Duration::from_secs(1),
            "events not live: gap {gap:?} between ticks ({kind:?} {name})"
        );
    }
    let (head, body) = split_response(&r.text());
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: text/event-stream; charset=utf-8"),
        "{head}"
    );
    assert!(
        !lower.contains("content-encoding"),
        "stream was compressed: {head}"
    );
    let (events, retry) = parse_sse(&body);
    assert_eq!(retry, Some(3000));
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| {
            assert_eq!(e.event, "tick");
            let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
            v["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(seqs[..4], [1, 2, 3, 4]);
}

/// HEAD gets the head only, promptly, and the process is not left behind.
fn head_is_prompt(kind: Kind, name: &str) {
    if !available(kind) {
        return;
    }
    let server = Server::start(kind, &[name], LIVE);
    let t0 = Instant::now();
    let path = format!("/cgi-bin/{name}");
    let (_conn, mut r) = server.request("HEAD", &path, &["Connection: close"]);
    assert!(
        r.until_eof(Duration::from_secs(3)),
        "HEAD not closed: {}",
        r.text()
    );
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(1), "HEAD took {took:?}");
    let raw = r.text();
    let (head, body) = raw.split_once("\r\n\r\n").expect("head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("text/event-stream"));
    assert_eq!(body, "", "HEAD must carry no body");
    // The server may answer a moment before the CGI has finished exiting.
    let start = Instant::now();
    while !server.cgi_pids(0).is_empty() && start.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        server.cgi_pids(0).is_empty(),
        "CGI still running 1 s after HEAD"
    );
}

/// Returns the PID of the one CGI process serving a fresh stream.
fn wait_for_one_cgi(server: &Server) -> u32 {
    let start = Instant::now();
    loop {
        let pids = server.cgi_pids(0);
        if pids.len() == 1 {
            return pids[0];
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "CGI pids: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// After the client leaves, the quiet CGI (heartbeats only) is gone within
/// two heartbeats; stopping the server leaves no process behind.
fn disconnect_ends_cgi(kind: Kind, name: &str) {
    if !available(kind) {
        return;
    }
    let mut server = Server::start(kind, &[name], QUIET);
    let path = format!("/cgi-bin/{name}");
    let (conn, mut r) = server.request("GET", &path, &[]);
    let opened = r.until("retry: 3000", Duration::from_secs(5));
    assert!(opened, "no stream: {:?}\n{}", r.text(), server.logs());
    let pid = wait_for_one_cgi(&server);
    disconnect(&conn);
    let left = Instant::now();
    while Instant::now() - left < 2 * HEARTBEAT + SLACK + Duration::from_secs(3) {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let gone_after = left.elapsed();
    eprintln!("{kind:?}: CGI gone {gone_after:?} after the client left (heartbeat {HEARTBEAT:?})");
    assert!(
        gone_after <= 2 * HEARTBEAT + SLACK,
        "{kind:?}: CGI {pid} lived {gone_after:?} after the client left"
    );
    // A second stream, then the server stops under it: nothing may remain.
    let (_c2, mut r2) = server.request("GET", &path, &[]);
    let opened = r2.until("retry: 3000", Duration::from_secs(5));
    assert!(opened, "no stream: {:?}\n{}", r2.text(), server.logs());
    wait_for_one_cgi(&server);
    server.stop();
    let start = Instant::now();
    while !server.cgi_pids(0).is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.cgi_pids(0).is_empty(),
        "orphan CGI after server stop"
    );
}

#[test]
fn apache_cgid_event_nph_stream_is_live() {
    stream_is_live(Kind::ApacheCgidEvent, "nph-events.cgi");
}

#[test]
fn apache_cgid_event_parsed_header_stream_is_live() {
    stream_is_live(Kind::ApacheCgidEvent, "events.cgi");
}

#[test]
fn apache_cgi_prefork_nph_stream_is_live() {
    stream_is_live(Kind::ApacheCgiPrefork, "nph-events.cgi");
}

#[test]
fn apache_cgi_prefork_parsed_header_stream_is_live() {
    stream_is_live(Kind::ApacheCgiPrefork, "events.cgi");
}

/// Heartbeats alone (no ticker) arrive one by one in parsed-header mode
/// on a host that compresses by type, for a client without
/// Accept-Encoding (curl, scripts): the filter chain must not hold them.
#[test]
fn apache_parsed_header_quiet_stream_is_live() {
    for kind in [Kind::ApacheCgiPrefork, Kind::ApacheCgidEvent] {
        if !available(kind) {
            return;
        }
        let server = Server::start(kind, &["events.cgi"], QUIET);
        let t0 = Instant::now();
        let (_c, mut r) = server.request("GET", "/cgi-bin/events.cgi", &[]);
        assert!(
            r.until_count(": heartbeat", 2, Duration::from_secs(3)),
            "{kind:?}: {:?}",
            r.text()
        );
        let opened = r.arrivals("retry:")[0] - t0;
        assert!(
            opened < Duration::from_millis(300),
            "{kind:?}: opening after {opened:?}"
        );
        let beats = r.arrivals(": heartbeat");
        assert!(
            beats[1] - beats[0] >= Duration::from_millis(300),
            "{kind:?}: heartbeats batched"
        );
    }
}

#[test]
fn lighttpd_stream_is_live() {
    stream_is_live(Kind::Lighttpd, "nph-events.cgi");
}

#[test]
fn apache_cgid_event_head() {
    head_is_prompt(Kind::ApacheCgidEvent, "nph-events.cgi");
    head_is_prompt(Kind::ApacheCgidEvent, "events.cgi");
}

#[test]
fn apache_cgi_prefork_head() {
    head_is_prompt(Kind::ApacheCgiPrefork, "nph-events.cgi");
    head_is_prompt(Kind::ApacheCgiPrefork, "events.cgi");
}

#[test]
fn lighttpd_head() {
    head_is_prompt(Kind::Lighttpd, "nph-events.cgi");
}

#[test]
fn apache_cgid_event_disconnect() {
    disconnect_ends_cgi(Kind::ApacheCgidEvent, "nph-events.cgi");
}

#[test]
fn apache_cgi_prefork_disconnect() {
    disconnect_ends_cgi(Kind::ApacheCgiPrefork, "nph-events.cgi");
}

#[test]
fn lighttpd_disconnect() {
    disconnect_ends_cgi(Kind::Lighttpd, "nph-events.cgi");
}

/// `?--output=cgi` style argv injection through Apache changes nothing.
#[test]
fn apache_argv_injection_is_ignored() {
    if !available(Kind::ApacheCgidEvent) {
        return;
    }
    let server = Server::start(Kind::ApacheCgidEvent, &["nph-events.cgi"], LIVE);
    let path = "/cgi-bin/nph-events.cgi?--output+cgi+--interval+0.01+--help";
    let (_c, mut r) = server.request("GET", path, &[]);
    assert!(
        r.until_count("event: tick", 2, Duration::from_secs(3)),
        "{}",
        r.text()
    );
    let (head, _) = split_response(&r.text());
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(!r.text().contains("Usage"));
    let ticks = r.arrivals("event: tick");
    assert!(
        ticks[1] - ticks[0] >= Duration::from_millis(150),
        "interval was changed"
    );
}

/// Node's strict HTTP parser (llhttp) accepts the NPH head: CRLF everywhere.
#[test]
fn apache_nph_head_satisfies_strict_node_client() {
    if !available(Kind::ApacheCgidEvent) {
        return;
    }
    if Command::new("node").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "node missing in CI");
        eprintln!("SKIP: node not installed");
        return;
    }
    let server = Server::start(Kind::ApacheCgidEvent, &["nph-events.cgi"], LIVE);
    let script = format!(
        "const http = require('http');\
         const req = http.get('http://127.0.0.1:{}/cgi-bin/nph-events.cgi', res => {{\
           let body = '';\
           res.on('data', d => {{ body += d; if (body.includes('event: tick')) {{\
             console.log('STATUS ' + res.statusCode + ' ' + res.headers['content-type']);\
             process.exit(0); }} }});\
         }});\
         req.on('error', e => {{ console.log('ERROR ' + e.code); process.exit(1); }});\
         setTimeout(() => {{ console.log('TIMEOUT'); process.exit(2); }}, 5000);",
        server.port
    );
    let out = Command::new("node").args(["-e", &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "STATUS 200 text/event-stream; charset=utf-8",
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An HTTP/1.0 client gets an HTTP/1.0 status line from the NPH head.
#[test]
fn apache_http10_client() {
    if !available(Kind::ApacheCgiPrefork) {
        return;
    }
    let server = Server::start(Kind::ApacheCgiPrefork, &["nph-events.cgi"], LIVE);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    use std::io::Write;
    s.write_all(b"GET /cgi-bin/nph-events.cgi HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut r = Chunks::new(s.try_clone().unwrap());
    assert!(
        r.until("event: tick", Duration::from_secs(2)),
        "{}",
        r.text()
    );
    assert!(r.text().starts_with("HTTP/1.0 200 OK\r\n"), "{}", r.text());
}

/// Shared hosting: no server config access, only the shipped
/// `htaccess.example` as `.htaccess` in a directory of the document root.
#[test]
fn apache_shared_hosting_htaccess() {
    if !available(Kind::ApacheCgiPrefork) {
        return;
    }
    let extra = "LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so\n\
                 TypesConfig /dev/null\n";
    let mut conf = extra.to_owned();
    let server = Server::start_with(Kind::ApacheCgiPrefork, &[], &[], &[], {
        conf.push_str("<Directory \"/tmp\">\n    AllowOverride Options FileInfo\n</Directory>\n");
        &conf
    });
    let hosted = server.dir.join("htdocs/hosted");
    std::fs::create_dir_all(&hosted).unwrap();
    let repo = support::servers::repo();
    std::fs::copy(
        repo.join("apache-conf/htaccess.example"),
        hosted.join(".htaccess"),
    )
    .unwrap();
    for name in ["nph-events.cgi", "events.cgi"] {
        let status = Command::new(repo.join("cgi-bin/install"))
            .args(["--binary", support::bin(), "--name", name])
            .arg(&hosted)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let t0 = Instant::now();
        let path = format!("/hosted/{name}");
        let (_c, mut r) = server.request("GET", &path, &["Accept-Encoding: gzip"]);
        assert!(
            r.until("event: tick", Duration::from_secs(2)),
            "{name}: {}\n{}",
            r.text(),
            server.logs()
        );
        assert!(r.arrivals("event: tick")[0] - t0 < Duration::from_secs(1));
        let (head, _) = split_response(&r.text());
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("content-encoding"),
            "{head}"
        );
    }
}
