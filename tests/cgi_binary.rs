//! The binary run as a CGI: cleared environment, CGI variables, real pipes.

mod support;

use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{bin, cgi_command, get_vars, parse_sse, Chunks, Proc};

const FAST: [(&str, &str); 2] = [
    ("NPH_EVENTS_INTERVAL", "0.2"),
    ("NPH_EVENTS_HEARTBEAT", "0.3"),
];

/// Runs to completion (the test bounds it with max-duration or a request
/// that ends by itself) and returns (status, stdout, stderr).
fn run(program: &str, vars: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = cgi_command(program, vars);
    cmd.args(args);
    let mut p = Proc::spawn(&mut cmd);
    let out = Chunks::new(p.child.stdout.take().unwrap());
    let err = Chunks::new(p.child.stderr.take().unwrap());
    let status = p.wait_for(Duration::from_secs(10)).expect("process ended");
    let (mut out, mut err) = (out, err);
    out.until_eof(Duration::from_secs(2));
    err.until_eof(Duration::from_secs(2));
    (status.code().unwrap_or(-1), out.text(), err.text())
}

fn vars_with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = get_vars();
    v.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    v.extend_from_slice(extra);
    v
}

/// The binary under another file name (as an installer would name it).
fn named(name: &str) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("nph-events-bin-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join(name);
    let _ = std::fs::remove_file(&link);
    symlink(bin(), &link).unwrap();
    let s = link.to_str().unwrap().to_owned();
    (dir, s)
}

fn strip_date(head: &str) -> String {
    head.lines()
        .filter(|l| !l.starts_with("Date: "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn nph_head_bytes() {
    let vars = vars_with(&[("NPH_EVENTS_MAX_DURATION", "0.1")]);
    let (code, out, err) = run(bin(), &vars, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "");
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let date = head
        .lines()
        .find(|l| l.starts_with("Date: "))
        .expect("Date");
    assert!(httpdate::parse_http_date(&date[6..]).is_ok(), "{date}");
    assert_eq!(
        format!("{head}\r\n\r\n"),
        format!(
            "HTTP/1.1 200 OK\r\n{date}\r\n\
             Content-Type: text/event-stream; charset=utf-8\r\n\
             Cache-Control: no-cache, no-transform\r\n\
             X-Accel-Buffering: no\r\n\
             Connection: close\r\n\r\n"
        )
    );
    assert!(body.starts_with(": nph-events/"), "{body}");
    assert!(body.contains("\nretry: 3000\n\n"), "{body}");
    assert!(
        body.ends_with("\n\n"),
        "ends at an event boundary: {body:?}"
    );
}

#[test]
fn parsed_header_mode_by_file_name() {
    let (dir, program) = named("events.cgi");
    let vars = vars_with(&[("NPH_EVENTS_MAX_DURATION", "0.1")]);
    let (code, out, _) = run(&program, &vars, &[]);
    std::fs::remove_dir_all(dir).unwrap();
    assert_eq!(code, 0);
    assert!(out.starts_with(
        "Status: 200 OK\r\n\
         Content-Type: text/event-stream; charset=utf-8\r\n\
         Cache-Control: no-cache, no-transform\r\n\
         X-Accel-Buffering: no\r\n\r\n: nph-events/"
    ));
}

#[test]
fn output_setting_overrides_the_name() {
    let vars = vars_with(&[
        ("NPH_EVENTS_MAX_DURATION", "0.1"),
        ("NPH_EVENTS_OUTPUT", "cgi"),
    ]);
    let (_, out, _) = run(bin(), &vars, &[]);
    assert!(out.starts_with("Status: 200 OK\r\n"), "{out}");
}

#[test]
fn ticks_heartbeats_and_clean_end() {
    let vars = vars_with(&[
        ("NPH_EVENTS_INTERVAL", "0.25"),
        ("NPH_EVENTS_HEARTBEAT", "0.1"),
        ("NPH_EVENTS_MAX_DURATION", "0.8"),
        ("NPH_EVENTS_MAX_DURATION_JITTER", "0"),
        ("NPH_EVENTS_TICK_EVENT", "beat"),
        ("NPH_EVENTS_RETRY", "1500"),
    ]);
    let t0 = Instant::now();
    let (code, out, _) = run(bin(), &vars, &[]);
    let took = t0.elapsed();
    assert_eq!(code, 0);
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let body = out.split_once("\r\n\r\n").unwrap().1;
    assert!(body.contains(": heartbeat\n\n"), "{body}");
    assert!(body.contains("retry: 1500\n\n"), "{body}");
    // The lifetime's end: a short retry, so the client is back at once.
    assert!(body.ends_with("\n\nretry: 500\n\n"), "{body}");
    assert_eq!(body.matches("retry: 500").count(), 1, "{body}");
    assert!(
        body.starts_with(": nph-events/") && body.contains("retry: 1500\n\nid: 0\n\n"),
        "a fresh stream tells its position: {body}"
    );
    assert_eq!(body.matches("id: ").count(), 1, "{body}");
    let (events, retry) = parse_sse(body);
    assert_eq!(retry, Some(500));
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| {
            assert_eq!(e.event, "beat");
            // Ticks carry no id of their own: the client keeps the
            // stream's starting position (an empty channel's 0).
            assert_eq!(e.last_event_id, "0", "ticks carry no id");
            serde_json::from_str::<serde_json::Value>(&e.data).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

#[test]
fn head_request_gets_head_only_and_exits() {
    let vars = vars_with(&[("REQUEST_METHOD", "HEAD")]);
    let t0 = Instant::now();
    let (code, out, _) = run(bin(), &vars, &[]);
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(code, 0);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(out.ends_with("Connection: close\r\n\r\n"), "{out:?}");
}

#[test]
fn other_methods_get_405_with_allow() {
    for method in ["PUT", "DELETE", "PATCH", "get"] {
        let vars = vars_with(&[("REQUEST_METHOD", method)]);
        let (code, out, _) = run(bin(), &vars, &[]);
        assert_eq!(code, 0);
        assert!(
            out.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{method}: {out}"
        );
        assert!(out.contains("\r\nAllow: GET, HEAD, POST, OPTIONS\r\n"));
        let body = out.split_once("\r\n\r\n").unwrap().1;
        assert!(out.contains(&format!("Content-Length: {}\r\n", body.len())));
    }
    // OPTIONS is answered: the methods, or a CORS preflight's answer.
    let (code, out, _) = run(bin(), &vars_with(&[("REQUEST_METHOD", "OPTIONS")]), &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(
        out.contains("\r\nAllow: GET, HEAD, POST, OPTIONS\r\n"),
        "{out}"
    );
}

#[test]
fn malformed_query_gets_400() {
    for q in ["a=%zz", "x=%ff", "%"] {
        let vars = vars_with(&[("QUERY_STRING", q)]);
        let (code, out, _) = run(bin(), &vars, &[]);
        assert_eq!(code, 0);
        assert!(
            out.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{q}: {out}"
        );
    }
}

#[test]
fn bad_config_gets_500_and_one_log_line_naming_it() {
    for (name, value) in [
        ("NPH_EVENTS_INTERVAL", "ten"),
        ("NPH_EVENTS_HEARTBEAT", "0"),
        ("NPH_EVENTS_INTERVALL", "1"),
        ("NPH_EVENTS_TICK_EVENT", "a\nb"),
        ("NPH_EVENTS_CONFIG", "/nonexistent/nph-events.json"),
    ] {
        let vars = vars_with(&[(name, value)]);
        let (code, out, err) = run(bin(), &vars, &[]);
        assert_eq!(code, 1);
        assert!(
            out.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
            "{out}"
        );
        assert!(out.contains("Content-Type: text/plain"));
        let body = out.split_once("\r\n\r\n").unwrap().1;
        assert!(body.contains(name), "body names the setting: {body}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("nph-events: invalid setting ") && err.contains(name),
            "{err}"
        );
    }
}

#[test]
fn json_config_file_then_env_precedence() {
    let dir = std::env::temp_dir().join(format!("nph-events-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.json");
    std::fs::write(
        &file,
        r#"{"tick_event": "fromfile", "retry": 1234, "max_duration": 0.1}"#,
    )
    .unwrap();
    let path = file.to_str().unwrap().to_owned();
    let path: &'static str = Box::leak(path.into_boxed_str());
    let vars = vars_with(&[("NPH_EVENTS_CONFIG", path), ("NPH_EVENTS_RETRY", "999")]);
    let (code, out, _) = run(bin(), &vars, &[]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 0);
    assert!(out.contains("event: fromfile\n"), "file applies: {out}");
    assert!(out.contains("retry: 999\n"), "env beats file: {out}");
}

#[test]
fn argv_is_ignored_under_cgi() {
    let vars = vars_with(&[("NPH_EVENTS_MAX_DURATION", "0.1")]);
    let (plain_code, plain, _) = run(bin(), &vars, &[]);
    let args = [
        "--output",
        "cgi",
        "--interval",
        "0.01",
        "--tick-event",
        "pwned",
        "--help",
    ];
    let (code, injected, err) = run(bin(), &vars, &args);
    assert_eq!((plain_code, code), (0, 0));
    assert_eq!(err, "");
    let shape = |s: &str| strip_date(s).replace(|c: char| c.is_ascii_digit(), "");
    assert_eq!(shape(&injected), shape(&plain));
    assert!(!injected.contains("pwned") && !injected.contains("Usage"));
}

#[test]
fn request_headers_never_reach_response_headers() {
    let vars = vars_with(&[
        ("SERVER_PROTOCOL", "HTTP/1.1\r\nX-Injected: 1"),
        ("HTTP_ACCEPT", "text/event-stream\r\nX-Evil: 1"),
        ("NPH_EVENTS_MAX_DURATION", "0.1"),
    ]);
    let (code, out, _) = run(bin(), &vars, &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"));
    for bad in ["X-Injected", "X-Evil"] {
        assert!(!out.contains(bad), "{bad} leaked: {out}");
    }
    // A Last-Event-ID with CR/LF is malformed: 400, and nothing echoed.
    let vars = vars_with(&[("HTTP_LAST_EVENT_ID", "1\r\nSet-Cookie: a=b")]);
    let (code, out, _) = run(bin(), &vars, &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert!(!out.contains("Set-Cookie"), "{out}");
}

#[test]
fn http10_status_line_and_http2_warning() {
    let vars = vars_with(&[("SERVER_PROTOCOL", "HTTP/1.0"), ("REQUEST_METHOD", "HEAD")]);
    let (_, out, err) = run(bin(), &vars, &[]);
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n"));
    assert_eq!(err, "");
    let vars = vars_with(&[("SERVER_PROTOCOL", "HTTP/2.0"), ("REQUEST_METHOD", "HEAD")]);
    let (code, _, err) = run(bin(), &vars, &[]);
    assert_eq!(code, 0);
    assert_eq!(err.lines().count(), 1);
    assert!(
        err.contains("HTTP/2") && err.contains("NPH_EVENTS_OUTPUT=cgi"),
        "{err}"
    );
    let (dir, parsed) = named("events.cgi");
    let (_, _, err) = run(&parsed, &vars, &[]);
    std::fs::remove_dir_all(dir).unwrap();
    assert_eq!(err, "", "no warning in parsed-header mode");
}

/// Spawns a long stream with FAST timing and returns it once the opening
/// has been read.
fn live_stream(configure: impl FnOnce(&mut Command)) -> (Proc, Chunks, Chunks) {
    let vars = vars_with(&FAST);
    let mut cmd = cgi_command(bin(), &vars);
    configure(&mut cmd);
    let mut p = Proc::spawn(&mut cmd);
    let mut out = Chunks::new(p.child.stdout.take().unwrap());
    let err = Chunks::new(p.child.stderr.take().unwrap());
    assert!(
        out.until("retry: 3000", Duration::from_secs(2)),
        "{}",
        out.text()
    );
    (p, out, err)
}

/// The reader closes the pipe while the stream is idle: the process sees
/// the hang-up (or EPIPE on its next write) and exits 0 without a log line.
#[test]
fn client_disconnect_exits_zero_quickly_and_quietly() {
    use std::io::Read;
    let vars = vars_with(&[
        ("NPH_EVENTS_INTERVAL", "0"),
        ("NPH_EVENTS_HEARTBEAT", "0.3"),
    ]);
    let mut p = Proc::spawn(&mut cgi_command(bin(), &vars));
    let mut stdout = p.child.stdout.take().unwrap();
    let mut buf = [0u8; 512];
    assert!(stdout.read(&mut buf).unwrap() > 0);
    drop(stdout);
    let closed = Instant::now();
    let status = p
        .wait_for(Duration::from_secs(3))
        .expect("exited after disconnect");
    let took = closed.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took < Duration::from_millis(250),
        "took {took:?}: hang-up not seen while idle"
    );
    let mut stderr = String::new();
    p.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(stderr, "", "no log spam on disconnect");
}

#[test]
fn termination_signals_exit_zero() {
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        let (mut p, _out, _err) = live_stream(|_| {});
        p.signal(sig);
        let status = p
            .wait_for(Duration::from_secs(2))
            .expect("exited on signal");
        assert_eq!(status.code(), Some(0), "signal {sig}");
    }
}

/// Apache mod_cgi under a threaded MPM starts CGIs with TERM blocked; the
/// program must still stop on SIGTERM.
#[test]
fn sigterm_works_with_inherited_blocked_mask() {
    let (mut p, _out, _err) = live_stream(|cmd| {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for s in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
                    libc::sigaddset(&mut set, s);
                }
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
    });
    let status_line = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
    let blocked = status_line
        .lines()
        .find(|l| l.starts_with("SigBlk:"))
        .unwrap()
        .to_owned();
    assert!(
        blocked.ends_with("0000000000000000"),
        "mask not reset: {blocked}"
    );
    p.signal(libc::SIGTERM);
    let status = p
        .wait_for(Duration::from_secs(2))
        .expect("SIGTERM delivered");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn terminal_mode_help_version_and_flags() {
    let (code, out, _) = run(bin(), &[], &["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("NPH_EVENTS_INTERVAL") && out.contains("--heartbeat"));
    let (code, out, _) = run(bin(), &[], &["--version"]);
    assert_eq!(
        (code, out.trim()),
        (
            0,
            format!("nph-events {}", env!("CARGO_PKG_VERSION")).as_str()
        )
    );
    let (code, _, err) = run(bin(), &[], &["--bogus"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown flag") && err.contains("--bogus") && err.contains("help stream"),
        "{err}"
    );
    let (code, _, err) = run(bin(), &[], &["bogus"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown command \"bogus\""), "{err}");
    let (code, out, _) = run(bin(), &[], &["help", "publish"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("--event NAME") && !out.contains("--listen"),
        "{out}"
    );
    let (code, out2, _) = run(bin(), &[], &["publish", "--help"]);
    assert_eq!((code, out2), (0, out));
    let (code, _, err) = run(bin(), &[], &["--interval", "x"]);
    assert_eq!(code, 2);
    assert!(err.contains("--interval"), "{err}");
    let args = [
        "--interval",
        "0.1",
        "--max-duration",
        "0.35",
        "--max-duration-jitter",
        "0",
        "--heartbeat",
        "5",
    ];
    let (code, out, _) = run(bin(), &[], &args);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\n"),
        "same bytes as a CGI client: {out}"
    );
    assert_eq!(out.matches("event: tick").count(), 4, "{out}");
}

#[test]
fn flags_beat_environment_outside_cgi() {
    let vars = [
        ("NPH_EVENTS_TICK_EVENT", "env"),
        ("NPH_EVENTS_MAX_DURATION", "0.1"),
    ];
    let (_, out, _) = run(bin(), &vars, &["--tick-event", "flag"]);
    assert!(out.contains("event: flag\n"), "{out}");
}

#[test]
fn stdin_is_not_needed() {
    let vars = vars_with(&[("NPH_EVENTS_MAX_DURATION", "0.1")]);
    let mut cmd = cgi_command(bin(), &vars);
    cmd.stdin(Stdio::piped());
    let mut p = Proc::spawn(&mut cmd);
    assert!(p.wait_for(Duration::from_secs(3)).is_some());
}

/// A browser navigating to the CGI URL gets the demo page, pointed at
/// the script itself; an EventSource (Accept: text/event-stream) gets the
/// stream.
#[test]
fn browser_navigation_gets_the_demo_page() {
    let accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let vars = vars_with(&[("HTTP_ACCEPT", accept)]);
    let (code, out, _) = run(bin(), &vars, &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("Content-Type: text/html; charset=utf-8\r\n"));
    let body = out.split_once("\r\n\r\n").unwrap().1;
    assert!(out.contains(&format!("Content-Length: {}\r\n", body.len())));
    assert!(
        body.contains(r#"content="/cgi-bin/nph-events.cgi""#),
        "page points at the script"
    );
    assert!(body.contains("new EventSource("));
}
