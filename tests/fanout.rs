//! Publishing and resuming at the binary level: POST as a CGI, the
//! `publish` command, and streams that resume with Last-Event-ID.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::{bin, cgi_command, get_vars, parse_sse, Chunks, Proc};

const TOKEN: &str = "correct horse battery staple";

/// A spool directory of its own, removed on drop.
struct TempSpool(PathBuf);

impl TempSpool {
    fn new(tag: &str) -> TempSpool {
        let p = std::env::temp_dir().join(format!("nphf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempSpool(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
    /// Every segment's bytes of `channel`, concatenated.
    fn contents(&self, channel: &str) -> String {
        let dir = self.0.join("channels").join(channel);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return String::new();
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sse"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

impl Drop for TempSpool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn token_hash() -> String {
    nph_events::auth::token_hash_hex(TOKEN)
}

/// Runs the binary with `vars` (plus the spool) and `stdin`; returns
/// (exit code, stdout, stderr).
fn run(
    spool: &TempSpool,
    vars: &[(&str, &str)],
    args: &[&str],
    stdin: &[u8],
) -> (i32, String, String) {
    let mut all: Vec<(&str, &str)> = vars.to_vec();
    all.push(("NPH_EVENTS_SPOOL", spool.path()));
    let mut cmd = cgi_command(bin(), &all);
    cmd.args(args).stdin(Stdio::piped());
    let mut p = Proc::spawn(&mut cmd);
    let mut input = p.child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    let mut out = Chunks::new(p.child.stdout.take().unwrap());
    let mut err = Chunks::new(p.child.stderr.take().unwrap());
    let status = p.wait_for(Duration::from_secs(10)).expect("ended");
    out.until_eof(Duration::from_secs(2));
    err.until_eof(Duration::from_secs(2));
    (status.code().unwrap_or(-1), out.text(), err.text())
}

fn post_vars<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = get_vars()
        .into_iter()
        .filter(|(k, _)| *k != "REQUEST_METHOD")
        .collect();
    v.push(("REQUEST_METHOD", "POST"));
    v.extend_from_slice(extra);
    v
}

fn status_of(out: &str) -> &str {
    out.lines().next().unwrap_or("")
}

#[test]
fn post_auth_matrix_and_nothing_appended_on_rejection() {
    let spool = TempSpool::new("auth");
    let hash = token_hash();
    let bearer = format!("Bearer {TOKEN}");
    let json = ("CONTENT_TYPE", "application/json");
    let body = br#"{"event":"news","data":"hi"}"#;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![json], "HTTP/1.1 403 Forbidden"), // publishing not configured
        (
            vec![json, ("NPH_EVENTS_TOKEN_SHA256", &hash)],
            "HTTP/1.1 401 Unauthorized",
        ),
        (
            vec![
                json,
                ("NPH_EVENTS_TOKEN_SHA256", &hash),
                ("HTTP_AUTHORIZATION", "Bearer wrong"),
            ],
            "HTTP/1.1 403 Forbidden",
        ),
        (
            vec![
                json,
                ("NPH_EVENTS_PUBLISH_USERS", "alice"),
                ("REMOTE_USER", "mallory"),
            ],
            "HTTP/1.1 403 Forbidden",
        ),
    ];
    for (extra, want) in &cases {
        let (code, out, _) = run(&spool, &post_vars(extra), &[], body);
        assert_eq!(code, 0);
        assert_eq!(status_of(&out), *want, "{extra:?}\n{out}");
        if want.contains("401") {
            assert!(
                out.contains("\r\nWWW-Authenticate: Bearer realm=\"nph-events\"\r\n"),
                "{out}"
            );
        }
    }
    assert_eq!(
        spool.contents("default"),
        "",
        "a rejected publish appends nothing"
    );

    let good: Vec<Vec<(&str, &str)>> = vec![
        vec![
            json,
            ("NPH_EVENTS_TOKEN_SHA256", &hash),
            ("HTTP_AUTHORIZATION", &bearer),
        ],
        vec![
            json,
            ("NPH_EVENTS_PUBLISH_USERS", "bob, alice"),
            ("REMOTE_USER", "alice"),
        ],
    ];
    let mut ids = Vec::new();
    for extra in &good {
        let (code, out, err) = run(&spool, &post_vars(extra), &[], body);
        assert_eq!(code, 0, "{err}");
        assert_eq!(status_of(&out), "HTTP/1.1 201 Created", "{out}");
        assert!(out.contains("Content-Type: application/json\r\n"));
        let json: serde_json::Value =
            serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(json["channel"], "default");
        ids.push(json["id"].as_str().unwrap().parse::<u64>().unwrap());
    }
    assert_eq!(ids[1], ids[0] + 1);
    let (events, _) = parse_sse(&spool.contents("default"));
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0].event.as_str(), events[0].data.as_str()),
        ("news", "hi")
    );
}

#[test]
fn post_body_limits_and_formats() {
    let spool = TempSpool::new("limits");
    let hash = token_hash();
    let bearer = format!("Bearer {TOKEN}");
    let auth = [
        ("NPH_EVENTS_TOKEN_SHA256", hash.as_str()),
        ("HTTP_AUTHORIZATION", bearer.as_str()),
    ];
    let big = vec![b'x'; 200];
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a [u8], &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("CONTENT_TYPE", "text/plain"), ("CONTENT_LENGTH", "200")],
            &big,
            "413",
        ),
        (vec![("CONTENT_TYPE", "text/plain")], &big, "413"),
        (vec![("CONTENT_TYPE", "text/plain")], b"\xff\xfe", "400"),
        (vec![("CONTENT_TYPE", "application/json")], b"{nope", "400"),
        (
            vec![("CONTENT_TYPE", "application/json")],
            br#"{"event":"reset","data":"x"}"#,
            "400",
        ),
        (
            vec![("CONTENT_TYPE", "application/json")],
            br#"{"event":"a\nb","data":"x"}"#,
            "400",
        ),
        (vec![("CONTENT_TYPE", "image/png")], b"x", "415"),
        (vec![], b"x", "415"),
        (
            vec![
                ("CONTENT_TYPE", "text/plain"),
                ("QUERY_STRING", "channel=../x"),
            ],
            b"x",
            "400",
        ),
        (
            vec![("CONTENT_TYPE", "text/plain"), ("QUERY_STRING", "channel=")],
            b"x",
            "400",
        ),
        (
            vec![("CONTENT_TYPE", "text/plain"), ("CONTENT_LENGTH", "5")],
            b"ab",
            "400",
        ),
    ];
    for (extra, body, want) in &cases {
        let mut vars = post_vars(&auth);
        vars.push(("NPH_EVENTS_MAX_BODY", "100"));
        vars.extend_from_slice(extra);
        let (code, out, _) = run(&spool, &vars, &[], body);
        assert_eq!(code, 0);
        assert!(
            status_of(&out).starts_with(&format!("HTTP/1.1 {want} ")),
            "{extra:?}: {out}"
        );
    }
    assert!(
        !spool.0.join("channels").exists(),
        "nothing created on disk"
    );

    let accepted: Vec<(&str, &[u8], &str, &str)> = vec![
        (
            "application/x-www-form-urlencoded",
            b"event=f&data=a+b%0Ac",
            "f",
            "a b\nc",
        ),
        (
            "text/plain; charset=utf-8",
            b"plain\ntext",
            "message",
            "plain\ntext",
        ),
        (
            "application/json",
            br#"{"data":[1,{"k":"v"}]}"#,
            "message",
            r#"[1,{"k":"v"}]"#,
        ),
    ];
    for (ct, body, _, _) in &accepted {
        let mut vars = post_vars(&auth);
        vars.push(("CONTENT_TYPE", ct));
        vars.push(("QUERY_STRING", "channel=room-1"));
        let (_, out, _) = run(&spool, &vars, &[], body);
        assert_eq!(status_of(&out), "HTTP/1.1 201 Created", "{ct}: {out}");
    }
    let (events, _) = parse_sse(&spool.contents("room-1"));
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.event.as_str(), e.data.as_str()))
        .collect();
    let want: Vec<(&str, &str)> = accepted.iter().map(|(_, _, e, d)| (*e, *d)).collect();
    assert_eq!(got, want);
}

#[test]
fn cli_publish_prints_ids_and_validates() {
    let spool = TempSpool::new("cli");
    fn with<'a>(spool: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["publish", "--spool", spool];
        a.extend_from_slice(extra);
        a
    }
    let pub_args = |extra: &[&'static str]| with(spool.path(), extra);
    let (code, out, err) = run(
        &spool,
        &[],
        &pub_args(&["--channel", "c", "--data", "one"]),
        b"",
    );
    assert_eq!(code, 0, "{err}");
    let first: u64 = out.trim().parse().unwrap();
    let (_, out, _) = run(
        &spool,
        &[],
        &pub_args(&["--channel", "c", "--event", "e"]),
        b"from stdin\n",
    );
    assert_eq!(out.trim().parse::<u64>().unwrap(), first + 1);
    let (_, out, _) = run(
        &spool,
        &[],
        &pub_args(&["--channel", "c", "--json", "{ \"a\" : 1 }"]),
        b"",
    );
    assert_eq!(out.trim().parse::<u64>().unwrap(), first + 2);
    let (events, _) = parse_sse(&spool.contents("c"));
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.event.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("message", "one"),
            ("e", "from stdin"),
            ("message", "{\"a\":1}")
        ]
    );
    assert_eq!(events[2].last_event_id, (first + 2).to_string());

    for (args, stdin, what) in [
        (pub_args(&["--channel", "../etc"]), &b"x"[..], "--channel"),
        (pub_args(&["--json", "{bad"]), b"", "JSON"),
        (
            pub_args(&["--event", "reset", "--data", "x"]),
            b"",
            "reserved",
        ),
        (pub_args(&[]), b"\xff", "UTF-8"),
        (
            pub_args(&["--max-body", "3", "--data", "four"]),
            b"",
            "max_body",
        ),
    ] {
        let (code, out, err) = run(&spool, &[], &args, stdin);
        assert_eq!((code, out.as_str()), (2, ""), "{args:?}");
        assert!(
            err.starts_with("nph-events publish: ") && err.contains(what),
            "{err}"
        );
    }
    let (events, _) = parse_sse(&spool.contents("c"));
    assert_eq!(events.len(), 3, "failed publishes appended nothing");
}

/// A stream from `spool`, channel `c`, with extra CGI variables.
fn stream(spool: &TempSpool, extra: &[(&str, &str)]) -> (Proc, Chunks) {
    let mut vars: Vec<(&str, &str)> = get_vars();
    vars.push(("NPH_EVENTS_SPOOL", spool.path()));
    vars.push(("NPH_EVENTS_INTERVAL", "0"));
    vars.push(("NPH_EVENTS_HEARTBEAT", "0.2"));
    vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    vars.extend_from_slice(extra);
    let mut p = Proc::spawn(&mut cgi_command(bin(), &vars));
    let out = Chunks::new(p.child.stdout.take().unwrap());
    (p, out)
}

fn publish_cli(spool: &TempSpool, channel: &str, data: &str) -> u64 {
    let args = [
        "publish",
        "--spool",
        spool.path(),
        "--channel",
        channel,
        "--data",
        data,
    ];
    let (code, out, err) = run(spool, &[], &args, b"");
    assert_eq!(code, 0, "{err}");
    out.trim().parse().unwrap()
}

fn body_events(text: &str) -> Vec<support::Dispatched> {
    parse_sse(text.split_once("\r\n\r\n").map_or("", |(_, b)| b)).0
}

/// Delivery is driven by wake-ups: with a 60 s heartbeat nothing else
/// would make the streams look at the spool within the test's 2 s.
#[test]
fn live_delivery_to_every_stream_of_the_channel_only() {
    let spool = TempSpool::new("live");
    let quiet = ("NPH_EVENTS_HEARTBEAT", "60");
    let mut streams: Vec<(Proc, Chunks)> = (0..3)
        .map(|_| stream(&spool, &[("QUERY_STRING", "channel=news"), quiet]))
        .collect();
    let (_other, mut other_out) = stream(&spool, &[("QUERY_STRING", "channel=sport"), quiet]);
    for (_, out) in streams.iter_mut() {
        assert!(out.until("retry:", Duration::from_secs(2)));
    }
    assert!(other_out.until("retry:", Duration::from_secs(2)));
    let id = publish_cli(&spool, "news", "breaking");
    for (_, out) in streams.iter_mut() {
        assert!(
            out.until("breaking", Duration::from_secs(2)),
            "{}",
            out.text()
        );
        let events = body_events(&out.text());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].last_event_id, id.to_string());
    }
    other_out.until("breaking", Duration::from_millis(300));
    assert!(
        !other_out.text().contains("breaking"),
        "other channel got it"
    );
}

#[test]
fn resume_middle_end_too_old_unknown_malformed() {
    let spool = TempSpool::new("resume");
    let retain = [("NPH_EVENTS_RETAIN_EVENTS", "8")];
    let mut ids = Vec::new();
    for i in 0..30 {
        let args = [
            "publish",
            "--spool",
            spool.path(),
            "--channel",
            "c",
            "--data",
        ];
        let data = format!("m{i}");
        let mut a: Vec<&str> = args.to_vec();
        a.push(&data);
        let (_, out, _) = run(&spool, &retain, &a, b"");
        ids.push(out.trim().parse::<u64>().unwrap());
    }
    let last = ids[29];
    let get = |extra: &[(&str, &str)]| {
        let mut vars = vec![("QUERY_STRING", "channel=c")];
        vars.extend_from_slice(extra);
        vars.extend_from_slice(&retain);
        let (mut p, mut out) = stream(&spool, &vars);
        out.until(": heartbeat", Duration::from_secs(2));
        drop(p.child.kill());
        out.text()
    };
    let datas = |text: &str| {
        body_events(text)
            .iter()
            .map(|e| e.data.clone())
            .collect::<Vec<_>>()
    };

    let mid = (ids[25]).to_string();
    assert_eq!(
        datas(&get(&[("HTTP_LAST_EVENT_ID", &mid)])),
        vec!["m26", "m27", "m28", "m29"]
    );
    let q = format!("channel=c&lastEventId={}", ids[27]);
    assert_eq!(datas(&get(&[("QUERY_STRING", &q)])), vec!["m28", "m29"]);
    let header_wins = [("QUERY_STRING", q.as_str()), ("HTTP_LAST_EVENT_ID", &mid)];
    assert_eq!(datas(&get(&header_wins)).len(), 4);
    assert_eq!(
        datas(&get(&[("HTTP_LAST_EVENT_ID", &last.to_string())])),
        Vec::<String>::new()
    );

    let too_old = body_events(&get(&[("HTTP_LAST_EVENT_ID", &ids[0].to_string())]));
    assert_eq!(too_old[0].event, "reset");
    let reset: serde_json::Value = serde_json::from_str(&too_old[0].data).unwrap();
    assert_eq!(reset["reason"], "too-old");
    let kept: Vec<&str> = too_old[1..].iter().map(|e| e.data.as_str()).collect();
    assert!(kept.len() >= 8 && kept.last() == Some(&"m29"), "{kept:?}");
    let resume_after: u64 = reset["resume_after"].as_str().unwrap().parse().unwrap();
    assert_eq!(too_old[0].last_event_id, resume_after.to_string());
    assert_eq!(
        too_old[1].last_event_id,
        (resume_after + 1).to_string(),
        "no gap after reset"
    );

    let unknown = body_events(&get(&[("HTTP_LAST_EVENT_ID", &(last + 1000).to_string())]));
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].event, "reset");
    assert!(unknown[0].data.contains("\"unknown\""));
    assert_eq!(unknown[0].last_event_id, last.to_string());

    for bad in ["abc", "-1", "1.5", "99999999999999999999999"] {
        let text = get(&[("HTTP_LAST_EVENT_ID", bad)]);
        assert!(
            text.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{bad}: {text}"
        );
    }
}

#[test]
fn bad_channel_in_get_is_400_and_creates_nothing() {
    let spool = TempSpool::new("badch");
    let long = format!("channel={}", "x".repeat(10_000));
    for q in [
        "channel=../x",
        "channel=a%00b",
        "channel=",
        "channel=a/b",
        long.as_str(),
    ] {
        let mut vars = get_vars();
        vars.retain(|(k, _)| *k != "QUERY_STRING");
        vars.push(("QUERY_STRING", q));
        let (code, out, _) = run(&spool, &vars, &[], b"");
        assert_eq!(code, 0);
        assert!(
            out.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{q}: {out}"
        );
    }
    assert!(
        !Path::new(spool.path()).exists(),
        "the spool was not even created"
    );
}

/// A write that fails half-way (here: the file-size limit, as a full disk
/// would) fails the publish with a clear error, leaves no partial record,
/// and a reader that is connected meanwhile only ever sees whole events.
#[test]
fn failed_append_is_reported_and_rolled_back() {
    use std::os::unix::process::CommandExt;
    let spool = TempSpool::new("efbig");
    let (_reader, mut out) = stream(&spool, &[("QUERY_STRING", "channel=c")]);
    assert!(out.until("retry:", Duration::from_secs(2)));
    let first = publish_cli(&spool, "c", "small");
    let before = spool.contents("c");
    let big = "x".repeat(200_000);
    let args = [
        "publish",
        "--spool",
        spool.path(),
        "--channel",
        "c",
        "--max-body",
        "300000",
    ];
    let mut cmd = cgi_command(bin(), &[]);
    cmd.args(args).stdin(Stdio::piped());
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64 * 1024,
                rlim_max: 64 * 1024,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(big.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("nph-events publish: cannot publish: "),
        "{err}"
    );
    assert!(err.to_lowercase().contains("file too large"), "{err}");
    assert_eq!(spool.contents("c"), before, "no partial record left behind");
    let next = publish_cli(&spool, "c", "after");
    assert_eq!(next, first + 1, "the failed publish consumed no id");
    assert!(out.until("after", Duration::from_secs(2)));
    let datas: Vec<String> = body_events(&out.text())
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(datas, vec!["small", "after"]);
}

#[test]
fn unusable_spool_fails_clearly() {
    let spool = TempSpool::new("notdir");
    std::fs::write(&spool.0, "a file, not a directory").unwrap();
    let args = ["publish", "--spool", spool.path(), "--data", "x"];
    let (code, out, err) = run(&spool, &[], &args, b"");
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with("nph-events publish: cannot publish: ") && err.contains("not a directory"),
        "{err}"
    );
    // The same through a POST: 500 for the visitor, the reason in the log.
    let hash = token_hash();
    let bearer = format!("Bearer {TOKEN}");
    let vars = post_vars(&[
        ("CONTENT_TYPE", "text/plain"),
        ("NPH_EVENTS_TOKEN_SHA256", &hash),
        ("HTTP_AUTHORIZATION", &bearer),
    ]);
    let (code, out, err) = run(&spool, &vars, &[], b"hello");
    assert_eq!(code, 0);
    assert!(status_of(&out).starts_with("HTTP/1.1 500 "), "{out}");
    assert!(
        out.contains("cannot publish (see the server error log)"),
        "{out}"
    );
    assert!(
        err.starts_with("nph-events: cannot publish: ") && err.contains("not a directory"),
        "{err}"
    );
    // And a GET: 500, not a stream.
    let (_, out, err) = run(&spool, &get_vars(), &[], b"");
    assert!(status_of(&out).starts_with("HTTP/1.1 500 "), "{out}");
    assert!(err.contains("cannot open the spool"), "{err}");
    std::fs::remove_file(&spool.0).unwrap();
}
