//! The demo page as a new user meets it, in headless Chromium against the
//! real server (`nph-events serve`, and the CGI under Apache), driven one
//! step at a time by tests/browser/demo_driver.mjs:
//!
//! * an event published from the shell with a name the page has never
//!   heard of appears, without typing the name anywhere;
//! * a row shows an id only when its event carried one (a tick after a
//!   published event does not borrow that event's id);
//! * a refused publish is one line: the status and the server's reason,
//!   not the status twice;
//! * without `--ws` the WebSocket panel says WebSocket is not enabled and
//!   how to enable it, offers no Send, and never tries (no `501` in the
//!   server's log); under Apache's CGI it says why not; with `--ws` it
//!   connects and a message is relayed (and echoed in echo mode).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use support::listener::Listener;
use support::servers::{self, repo, Kind, Server};
use support::{bin, browser_available, Proc};

const TOKEN: &str = "demo-token";

/// One demo page in Chromium, driven by commands (tests/browser/demo_driver.mjs).
struct Page {
    stdin: Option<ChildStdin>,
    answers: mpsc::Receiver<String>,
    node: Proc,
}

impl Page {
    /// Opens `url` and waits for its stream to be open.
    fn open(url: &str) -> Page {
        let mut cmd = Command::new("node");
        cmd.arg(repo().join("tests/browser/demo_driver.mjs"))
            .arg(url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut node = Proc::spawn(&mut cmd);
        let stdin = node.child.stdin.take();
        let stdout = node.child.stdout.take().unwrap();
        let (tx, answers) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut page = Page {
            stdin,
            answers,
            node,
        };
        page.answer("open");
        page
    }

    fn answer(&mut self, what: &str) -> Value {
        let line = self
            .answers
            .recv_timeout(Duration::from_secs(40))
            .unwrap_or_else(|e| panic!("{what}: no answer from the page driver ({e})"));
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["ok"], true, "{what}: {line}");
        v
    }

    /// Sends one command (`{"do": …}`) and returns its answer.
    fn call(&mut self, cmd: Value) -> Value {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
        self.answer(&cmd.to_string())
    }

    fn rows(v: &Value) -> Vec<Row> {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| Row {
                name: r["name"].as_str().unwrap().to_owned(),
                id: r["id"].as_str().unwrap().to_owned(),
                data: r["data"].as_str().unwrap().to_owned(),
            })
            .collect()
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // Closing stdin ends the driver, which closes the browser; killed
        // (by PID, in Proc's drop) if it does not within 10 s.
        drop(self.stdin.take());
        let _ = self.node.wait_for(Duration::from_secs(10));
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    name: String,
    id: String,
    data: String,
}

/// Publishes from the shell as a user would (`nph-events publish`), with
/// `program` (the test binary, or the CGI as installed) into `spool`, as
/// the spool's owner (`sudo -u www-data` when the tests run as root).
/// Returns the id it printed, if it printed one.
fn publish_from_shell(program: &str, spool: &str, args: &[&str]) -> Option<String> {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .args(["publish", "--spool", spool])
        .args(args);
    let owner = std::fs::metadata(spool).unwrap();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(owner.uid()).gid(owner.gid());
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "publish {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
}

/// Checks the rows around an event named `name` with `data` published
/// with id `id`: shown once, under its own name and id, and every tick
/// shown after it has no id of its own, so shows none.
fn assert_shown_with_own_id(rows: &[Row], name: &str, data: &str, id: Option<&str>) {
    let at: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].data == data).collect();
    assert_eq!(at.len(), 1, "{data:?} shown once: {rows:#?}");
    let row = &rows[at[0]];
    assert_eq!(row.name, name, "{rows:#?}");
    assert!(
        !row.id.is_empty() && row.id.bytes().all(|b| b.is_ascii_digit()),
        "the published event shows its id: {row:?}"
    );
    if let Some(id) = id {
        assert_eq!(row.id, id, "the id publish printed");
    }
    let ticks: Vec<&Row> = rows[at[0] + 1..]
        .iter()
        .filter(|r| r.name == "tick")
        .collect();
    assert!(!ticks.is_empty(), "a tick after it: {rows:#?}");
    for t in ticks {
        assert_eq!(t.id, "", "a tick shows no id (it carries none): {rows:#?}");
    }
}

/// Every line the server logged so far.
fn drain(server: &Listener) -> Vec<String> {
    let mut lines = Vec::new();
    while let Ok(line) = server.log.recv_timeout(Duration::from_millis(200)) {
        lines.push(line);
    }
    lines
}

#[test]
fn a_named_event_from_the_shell_appears_and_ticks_borrow_no_id() {
    if !browser_available() {
        return;
    }
    let server = Listener::start("demo-named", &["--interval", "0.5"]);
    let mut page = Page::open(&format!("http://127.0.0.1:{}/", server.port));
    page.call(json!({"do": "waitRow", "data": null, "after": 1}));
    // A name the page has never heard of, then one without a name.
    let alert = publish_from_shell(
        bin(),
        &server.spool,
        &["--event", "alert", "--data", "disk almost full"],
    );
    let plain = publish_from_shell(bin(), &server.spool, &["--data", "no name at all"]);
    let v = page.call(json!({"do": "waitRow", "data": "disk almost full", "after": 2}));
    let v2 = page.call(json!({"do": "waitRow", "data": "no name at all", "after": 2}));
    let rows = Page::rows(&v2);
    assert_shown_with_own_id(&rows, "alert", "disk almost full", alert.as_deref());
    assert_shown_with_own_id(&rows, "message", "no name at all", plain.as_deref());
    // Ticks before any published event showed no id either.
    let first = Page::rows(&v);
    assert!(
        first
            .iter()
            .filter(|r| r.name == "tick")
            .all(|r| r.id.is_empty()),
        "{first:#?}"
    );
}

#[test]
fn a_refused_publish_is_one_line_with_the_status_and_the_reason() {
    if !browser_available() {
        return;
    }
    let hash = nph_events::auth::token_hash_hex(TOKEN);
    let server = Listener::start(
        "demo-refused",
        &["--interval", "0", "--token-sha256", &hash],
    );
    let mut page = Page::open(&format!("http://127.0.0.1:{}/", server.port));
    // What the server itself says, first line of the body.
    let reason = |auth: &[&str]| -> String {
        let mut headers = vec!["Content-Type: application/json"];
        headers.extend_from_slice(auth);
        let answer = server.send("POST", "/events", &headers, br#"{"data":"x"}"#);
        let body = answer.split_once("\r\n\r\n").unwrap().1;
        body.lines().next().unwrap().to_owned()
    };
    for (token, status, expected) in [
        ("wrong", "403", reason(&["Authorization: Bearer wrong"])),
        ("", "401", reason(&[])),
    ] {
        assert!(expected.starts_with(&format!("{status} ")), "{expected}");
        let v = page.call(json!({"do": "publish", "token": token, "event": "x", "data": "hi"}));
        let result = v["result"].as_str().unwrap();
        assert_eq!(v["cls"], "bad", "{v}");
        assert_eq!(result, expected, "one line: the status and the reason");
        assert!(!result.contains('\n'), "{result:?}");
        assert_eq!(result.matches(status).count(), 1, "status once: {result}");
    }
    // And with the token it publishes, and the event shows.
    let v = page.call(json!({"do": "publish", "token": TOKEN, "event": "x", "data": "hi"}));
    assert_eq!(v["cls"], "ok", "{v}");
    assert!(
        v["result"].as_str().unwrap().starts_with("published"),
        "{v}"
    );
    let v = page.call(json!({"do": "waitRow", "data": "hi"}));
    let rows = Page::rows(&v);
    assert_eq!(
        rows.iter().filter(|r| r.name == "x").count(),
        1,
        "{rows:#?}"
    );
}

#[test]
fn without_ws_the_panel_explains_itself_and_never_retries() {
    if !browser_available() {
        return;
    }
    let server = Listener::start("demo-nows", &["--interval", "0"]);
    let mut page = Page::open(&format!("http://127.0.0.1:{}/", server.port));
    page.call(json!({"do": "sleep", "ms": 4000}));
    let ws = page.call(json!({"do": "ws"}));
    let info = ws["info"].as_str().unwrap();
    assert!(info.contains("not enabled on this server"), "{ws}");
    assert!(
        info.contains("NPH_EVENTS_WS=1") && info.contains("serve --ws"),
        "says how: {ws}"
    );
    assert_eq!(ws["state"], "not enabled", "{ws}");
    assert_eq!(ws["sendVisible"], false, "no Send button: {ws}");
    assert_eq!(ws["sockets"], 0, "the page opened no WebSocket: {ws}");
    drop(page);
    let log = drain(&server);
    let refused: Vec<&String> = log.iter().filter(|l| l.ends_with(" 501")).collect();
    assert!(refused.is_empty(), "501s in the server log: {refused:#?}");
    assert!(
        log.iter().any(|l| l.ends_with(" GET / 200")),
        "the log read is the page's server's: {log:#?}"
    );
}

#[test]
fn with_ws_the_panel_connects_relays_and_echoes() {
    if !browser_available() {
        return;
    }
    // Relay: the message goes to the channel (the SSE log shows it) and
    // not back to its sender.
    let server = Listener::start(
        "demo-ws",
        &["--interval", "0", "--ws", "--ws-relay", "open"],
    );
    let mut page = Page::open(&format!("http://127.0.0.1:{}/", server.port));
    page.call(json!({"do": "wsSend", "text": "hello over websocket"}));
    let v = page.call(json!({"do": "waitRow", "data": "hello over websocket"}));
    let rows = Page::rows(&v);
    let row = rows
        .iter()
        .find(|r| r.data == "hello over websocket")
        .unwrap();
    assert_eq!(row.name, "message");
    assert!(!row.id.is_empty(), "published, so it has an id: {row:?}");
    let ws = page.call(json!({"do": "ws"}));
    assert_eq!(ws["state"], "open", "{ws}");
    assert_eq!(ws["sendEnabled"], true, "{ws}");
    assert_eq!(ws["info"], "", "nothing to explain: {ws}");
    let v = page.call(json!({"do": "waitWsLine", "text": "you: hello over websocket"}));
    assert_eq!(
        v["lines"],
        json!(["you: hello over websocket"]),
        "not echoed"
    );
    drop(page);
    drop(server);

    // Echo: the server sends the text back to the sender.
    let server = Listener::start(
        "demo-echo",
        &["--interval", "0", "--ws", "--ws-mode", "echo"],
    );
    let mut page = Page::open(&format!("http://127.0.0.1:{}/", server.port));
    page.call(json!({"do": "wsSend", "text": "echo me"}));
    let v = page.call(json!({"do": "waitWsLine", "text": "echo me"}));
    assert_eq!(v["lines"], json!(["echo me", "you: echo me"]));
}

/// The CGI under Apache (mod_cgid), WebSocket enabled: the page gets the
/// event published from the shell (as the web server's user, with the
/// installed CGI) whatever its name, and its WebSocket panel says that
/// Apache cannot pass WebSocket frames to a CGI instead of trying: no
/// `501` in Apache's access log.
#[test]
fn through_the_apache_cgi_shell_events_show_and_the_ws_panel_explains() {
    if !browser_available() || !servers::available(Kind::ApacheCgidEvent) {
        return;
    }
    let log = "CustomLog \"${NPH_EVENTS_CGI_DIR}/../access.log\" \"%r %>s\"\n";
    let server = Server::start_with(
        Kind::ApacheCgidEvent,
        &["nph-events.cgi"],
        &[("NPH_EVENTS_WS", "1"), ("NPH_EVENTS_INTERVAL", "0.5")],
        &[],
        log,
    );
    let url = format!("http://127.0.0.1:{}/cgi-bin/nph-events.cgi", server.port);
    let mut page = Page::open(&url);
    let cgi = server.installed[0].to_str().unwrap().to_owned();
    let spool = server.spool().to_str().unwrap().to_owned();
    let id = publish_from_shell(
        &cgi,
        &spool,
        &["--event", "deploy", "--data", "version 2 is live"],
    );
    let v = page.call(json!({"do": "waitRow", "data": "version 2 is live", "after": 2}));
    assert_shown_with_own_id(
        &Page::rows(&v),
        "deploy",
        "version 2 is live",
        id.as_deref(),
    );
    page.call(json!({"do": "sleep", "ms": 2000}));
    let ws = page.call(json!({"do": "ws"}));
    let info = ws["info"].as_str().unwrap();
    assert!(
        info.contains("Apache cannot pass WebSocket frames to a CGI"),
        "{ws}"
    );
    assert!(info.contains("serve --ws"), "says what works: {ws}");
    assert_eq!(ws["sendVisible"], false, "{ws}");
    assert_eq!(ws["sockets"], 0, "{ws}");
    drop(page);
    let access = std::fs::read_to_string(server.dir.join("access.log")).unwrap();
    assert!(access.contains("GET /cgi-bin/nph-events.cgi"), "{access}");
    assert!(
        !access.lines().any(|l| l.ends_with(" 501")),
        "501s in the access log: {access}"
    );
}

/// A stream the server refuses (a channel that needs a signed URL) shows
/// one line, the status and the server's reason, and is not asked for
/// again: retrying cannot change that answer (EventSource gives up too).
#[test]
fn a_refused_stream_is_one_line_and_not_retried() {
    if !browser_available() {
        return;
    }
    let server = Listener::start(
        "demo-private",
        &["--interval", "0", "--channels", "secret=signed"],
    );
    let mut page = Page::open(&format!("http://127.0.0.1:{}/", server.port));
    let expected = {
        let answer = server.send("GET", "/events?channel=secret", &[], b"");
        let body = answer.split_once("\r\n\r\n").unwrap().1;
        body.lines().next().unwrap().to_owned()
    };
    assert!(expected.starts_with("401 "), "{expected}");
    let before = page.call(json!({"do": "streamRequests"}))["streamRequests"]
        .as_u64()
        .unwrap();
    page.call(json!({"do": "subscribe", "channel": "secret"}));
    let v = page.call(json!({"do": "waitState", "cls": "closed"}));
    assert_eq!(v["state"], "refused", "{v}");
    page.call(json!({"do": "sleep", "ms": 3000}));
    let rows = Page::rows(&page.call(json!({"do": "rows"})));
    let refused: Vec<&Row> = rows.iter().filter(|r| r.name == "refused").collect();
    assert_eq!(refused.len(), 1, "{rows:#?}");
    assert_eq!(refused[0].data, expected, "one line: status and reason");
    let after = page.call(json!({"do": "streamRequests"}))["streamRequests"]
        .as_u64()
        .unwrap();
    assert_eq!(after - before, 1, "asked once, not retried");
    drop(page);
    let log = drain(&server);
    let asked = log
        .iter()
        .filter(|l| l.contains("GET /events?channel=secret "))
        .count();
    assert_eq!(asked, 2, "the page's one request and ours: {log:#?}");
}

/// While the server is down the page reconnects with a growing delay
/// (`retry:` first, then doubling), not every `retry:` ms; when the
/// server is back it resumes.
#[test]
fn reconnects_back_off_while_the_server_is_down() {
    if !browser_available() {
        return;
    }
    let flags = ["--interval", "0", "--retry", "300"];
    let mut server = Listener::start("demo-down", &flags);
    server.keep_spool = true;
    let (spool, port) = (server.spool.clone(), server.port);
    let mut page = Page::open(&format!("http://127.0.0.1:{port}/"));
    // An event before: the page has an id to resume after.
    publish_from_shell(bin(), &spool, &["--data", "before"]);
    page.call(json!({"do": "waitRow", "data": "before"}));
    let before = page.call(json!({"do": "streamRequests"}))["streamRequests"]
        .as_u64()
        .unwrap();
    server.proc.signal(libc::SIGTERM);
    assert!(server.proc.wait_for(Duration::from_secs(10)).is_some());
    drop(server);
    page.call(json!({"do": "sleep", "ms": 6000}));
    let tries = page.call(json!({"do": "streamRequests"}))["streamRequests"]
        .as_u64()
        .unwrap()
        - before;
    // 0.3, 0.6, 1.2, 2.4 s apart: 4 tries within 6 s (at 0.3, 0.9, 2.1,
    // 4.5 s); a fixed 300 ms would be 20.
    assert!((2..=6).contains(&tries), "{tries} tries in 6 s");
    publish_from_shell(bin(), &spool, &["--data", "while down"]);
    let server = Listener::start_on(&spool, port, &flags);
    let v = page.call(json!({"do": "waitRow", "data": "while down"}));
    let rows = Page::rows(&v);
    drop(page);
    let log = drain(&server);
    drop(server);
    // "before", then the reconnect note(s) naming its id (a stream the
    // stopping server still opened and ended counts too), then what was
    // published while it was down, once.
    let resume = format!("reconnected; resuming after id {}", rows[0].id);
    assert_eq!(rows[0].data, "before", "{rows:#?}");
    let (last, notes) = rows[1..].split_last().unwrap();
    assert!(!notes.is_empty(), "{rows:#?}\n{log:#?}");
    assert!(
        notes.iter().all(|r| r.name == "note" && r.data == resume),
        "{rows:#?}"
    );
    assert_eq!(last.data, "while down", "{rows:#?}");
    let _ = std::fs::remove_dir_all(&spool);
}

/// The page's own SSE parser (it reads the stream with fetch() to see
/// every event name), fed as the page feeds it (a streaming TextDecoder,
/// chunks split anywhere), dispatches what the spec's algorithm does:
/// compared with the tests' spec-following parser (support::parse_sse),
/// and it knows which events carried an `id:` of their own.
#[test]
fn the_pages_sse_parser_follows_the_spec() {
    if !browser_available() {
        return;
    }
    let cases = [
        "data: a\n\n",
        "event: alert\nid: 7\ndata: x\n\nevent: tick\ndata: {}\n\n",
        "data: a\r\ndata: b\r\n\r\n",
        "data: a\rdata: b\r\r",
        "data: a\r\n\rdata: b\n\n",
        "\u{feff}data: bom\n\n",
        "data\n\ndata:\n\n",
        "data:no space\ndata:  two spaces\n\n",
        ": comment\n\n: another\ndata: after comments\n\n",
        "id: 5\n\ndata: no id of its own\n\n",
        "id: a\0b\ndata: x\n\n",
        "retry: 500\ndata: x\n\nretry: 5x\n\n",
        "data: one\n\ndata: unterminated",
        "data: é 日本 🎉\n\n",
        "event:\ndata: x\n\n",
        "id\ndata: x\n\n",
        "data: x\n\r",
        "event: a\nevent: b\ndata: last name wins\n\n",
        "unknown: field\ndata: x\nretry\n\n",
    ];
    let mut node = Command::new("node");
    node.arg(repo().join("tests/browser/sse_parser.mjs"))
        .arg(repo().join("src/demo.html"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut node = Proc::spawn(&mut node);
    let input = serde_json::to_vec(&cases).unwrap();
    node.child.stdin.take().unwrap().write_all(&input).unwrap();
    let status = node.wait_for(Duration::from_secs(30)).expect("node ended");
    let mut out = String::new();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut node.child.stdout.take().unwrap(), &mut out).unwrap();
    std::io::Read::read_to_string(&mut node.child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    let results: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    for (case, got) in cases.iter().zip(&results) {
        assert!(got["error"].is_null(), "{case:?}: {got}");
        let (expected, retry) = support::parse_sse(case);
        let events: Vec<(String, String, String)> = got["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap().to_owned();
                (s("type"), s("data"), s("lastEventId"))
            })
            .collect();
        let expected: Vec<(String, String, String)> = expected
            .into_iter()
            .map(|d| (d.event, d.data, d.last_event_id))
            .collect();
        assert_eq!(events, expected, "{case:?}");
        assert_eq!(got["retry"].as_u64(), retry, "{case:?}");
    }
    let has_id = |i: usize| -> Vec<bool> {
        results[i]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["hasId"].as_bool().unwrap())
            .collect()
    };
    assert_eq!(
        has_id(1),
        [true, false],
        "the tick after an event has no id"
    );
    assert_eq!(has_id(9), [false], "an id alone is no event's own id");
    assert_eq!(results[9]["lastId"], "5", "but it is the resume point");
    assert_eq!(has_id(10), [false], "an id with NUL is ignored");
    assert_eq!(has_id(15), [true], "an empty id is an id");
}
