//! Pages on other origins, in a real browser (Debian's Chromium, headless,
//! driven by playwright-core through tests/browser/origins.mjs).
//!
//! Every origin here is 127.0.0.1 on its own port: a small page server in
//! this file serves the same page on origin A (listed in the site's
//! origins) and on origin C (not listed); the stream and the publish URL
//! live on a third port (`nph-events serve`, or a private Apache with the
//! CGI). The page itself does the work, as a page on another site would:
//! it opens `new EventSource(url, { withCredentials: true })`, or it
//! auto-submits a hidden form POST.
//!
//! * A listener stream is read from A with credentials, and refused (403,
//!   nothing received) from C.
//! * Under Apache Basic auth, publishers are let in by `REMOTE_USER`, and
//!   the browser holds alice's credentials: a forged form POST from C
//!   (text/plain and urlencoded, top level and into a hidden iframe)
//!   reaches the CGI with those credentials and is refused, nothing
//!   appended; the same forms from A publish (the control).
//! * alice's own channel (`user-{REMOTE_USER}=user`) is read from A with
//!   her cached Basic credentials (Chromium sends them unasked); with a
//!   wrong password (401), as bob (403) or from C (403) it is refused, and
//!   without credentials the browser is left at Apache's login prompt;
//!   none of these receives anything.
//!
//! What went over the wire (status, whether `Authorization` or `Cookie`
//! was sent) is read from Chromium's network events, which also see the
//! responses CORS hides from the page.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use support::listener::Listener;
use support::servers::{available, repo, Kind, Server};
use support::{browser_available, http_send, parse_sse, Proc};

const TOKEN: &str = "origins-token";

/// One browser at a time: the machine has 2 cores.
fn one_browser() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The page every origin serves. `?read=URL` opens an EventSource with
/// credentials (after setting `?cookie=name=value` for 127.0.0.1, which
/// every port shares); `?post=URL&enctype=E&target=T&data=D` submits a hidden
/// form (field `data`) to URL at once, into the page itself (`_self`) or
/// a hidden iframe (`sink`).
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>a page on another origin</title></head>
<body>
<form id="f" method="POST" hidden></form>
<iframe name="sink" hidden></iframe>
<script>
const q = new URLSearchParams(location.search);
window.report = { opened: false, errors: 0, seen: [] };
if (q.has("cookie")) document.cookie = q.get("cookie") + "; path=/; SameSite=Lax";
if (q.has("read")) {
  const es = new EventSource(q.get("read"), { withCredentials: true });
  window.es = es;
  es.onopen = () => { window.report.opened = true; };
  es.onerror = () => { window.report.errors++; };
  es.onmessage = e => window.report.seen.push({ data: e.data, id: e.lastEventId });
}
if (q.has("post")) {
  const f = document.getElementById("f");
  f.action = q.get("post");
  f.enctype = q.get("enctype");
  f.target = q.get("target") || "_self";
  const field = document.createElement("input");
  field.type = "hidden";
  field.name = "data";
  field.value = q.get("data");
  f.appendChild(field);
  f.submit();
}
</script>
</body></html>
"#;

/// Serves [`PAGE`] at `/` on 127.0.0.1:`port` (one origin); stopped when
/// dropped.
struct PageServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PageServer {
    fn start() -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    serve_page(conn);
                }
            }
        });
        PageServer {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// This origin's page reading `stream`.
    fn reading(&self, stream: &str) -> String {
        format!("{}/?read={}", self.origin(), enc(stream))
    }

    /// This origin's page setting a cookie, then reading `stream`.
    fn reading_with_cookie(&self, stream: &str, cookie: &str) -> String {
        format!("{}&cookie={}", self.reading(stream), enc(cookie))
    }

    /// This origin's page posting a form to `action`.
    fn posting(&self, action: &str, enctype: &str, target: &str, data: &str) -> String {
        format!(
            "{}/?post={}&enctype={}&target={target}&data={}",
            self.origin(),
            enc(action),
            enc(enctype),
            enc(data)
        )
    }
}

fn serve_page(mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split(' ').nth(1).unwrap_or("");
    let (status, body) = if path == "/" || path.starts_with("/?") {
        ("200 OK", PAGE)
    } else {
        ("404 Not Found", "not here\n")
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(reply.as_bytes());
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Percent-encodes everything but unreserved characters (a query value).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// tests/browser/origins.mjs: one command in, one JSON answer out. The
/// node process (and with it Chromium) is told to quit when dropped, and
/// killed by PID if it does not.
struct Browser {
    proc: Proc,
    stdin: Option<ChildStdin>,
    answers: mpsc::Receiver<String>,
}

impl Browser {
    fn start() -> Browser {
        let mut node = Command::new("node");
        node.arg(repo().join("tests/browser/origins.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut proc = Proc::spawn(&mut node);
        let stdin = proc.child.stdin.take();
        let stdout = proc.child.stdout.take().unwrap();
        let (tx, answers) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Browser {
            proc,
            stdin,
            answers,
        }
    }

    /// Sends `command`; its answer (which must say ok).
    fn cmd(&mut self, command: Value) -> Value {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").expect("origins.mjs is running");
        let line = self
            .answers
            .recv_timeout(Duration::from_secs(45))
            .unwrap_or_else(|e| panic!("no answer from origins.mjs to {command}: {e}"));
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["ok"], true, "{command} failed: {line}");
        v
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "{}", json!({"op": "quit"}));
        }
        let _ = self.proc.wait_for(Duration::from_secs(15));
    }
}

/// Every log line the listener printed so far (waiting `settle` for late
/// ones).
fn log_lines(server: &Listener, settle: Duration) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(line) = server.log.recv_timeout(settle) {
        out.push(line);
    }
    out
}

/// A page on listed origin A reads a listener's stream with credentials
/// and receives a published event; the same page on unlisted origin C is
/// refused (403 in the server's log), fails, and receives nothing.
#[test]
fn listener_stream_is_read_by_a_listed_origin_only() {
    if !browser_available() {
        return;
    }
    let _one = one_browser();
    let (a, c) = (PageServer::start(), PageServer::start());
    let hash = nph_events::auth::token_hash_hex(TOKEN);
    let flags = [
        "--interval",
        "0",
        "--origins",
        &a.origin(),
        "--token-sha256",
        &hash,
    ];
    let server = Listener::start("origins", &flags);
    let stream = format!("http://127.0.0.1:{}/events?channel=news", server.port);
    let mut browser = Browser::start();
    browser.cmd(json!({"op": "context", "name": "visitor"}));
    // Page A sets a cookie for 127.0.0.1 (every port's): with
    // `withCredentials` it goes along to B, and the stream opens only if
    // B allows A with credentials (Allow-Origin A, Allow-Credentials).
    let url = a.reading_with_cookie(&stream, "visitor=v1");
    let on_a = browser.cmd(json!({"op": "open", "ctx": "visitor", "page": "a", "url": url}));
    let on_c = browser
        .cmd(json!({"op": "open", "ctx": "visitor", "page": "c", "url": c.reading(&stream)}));
    let (st, wire) = (&on_a["state"], &on_a["streams"][0]);
    assert!(
        st["opened"] == true && st["readyState"] == 1 && st["withCredentials"] == true,
        "origin A's EventSource did not open: {on_a}"
    );
    assert_eq!(wire["statuses"], json!([200]), "{on_a}");
    assert_eq!(wire["sent"][0]["cookie"], true, "credentials sent: {on_a}");
    let (st, wire) = (&on_c["state"], &on_c["streams"][0]);
    assert!(
        st["opened"] == false && st["errors"].as_u64() >= Some(1) && st["readyState"] == 2,
        "origin C's EventSource should have failed and closed: {on_c}"
    );
    assert_eq!(wire["statuses"], json!([403]), "{on_c}");
    assert_eq!(wire["sent"][0]["cookie"], true, "{on_c}");

    let marker = "news for listed pages";
    let reply = http_send(
        server.port,
        "POST",
        "/events?channel=news",
        &[
            "Content-Type: text/plain",
            &format!("Authorization: Bearer {TOKEN}"),
        ],
        marker.as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");

    let got_a = browser.cmd(json!({"op": "wait", "page": "a", "data": marker, "ms": 10000}));
    assert_eq!(got_a["seen"], true, "origin A did not receive it: {got_a}");
    let datas: Vec<&Value> = got_a["state"]["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["data"])
        .collect();
    assert_eq!(datas, [marker], "{got_a}");
    let got_c = browser.cmd(json!({"op": "wait", "page": "c", "data": marker, "ms": 1500}));
    assert_eq!(got_c["seen"], false, "origin C received it: {got_c}");
    assert_eq!(got_c["state"]["seen"], json!([]), "{got_c}");
    assert_eq!(got_c["state"]["readyState"], 2, "{got_c}");
    drop(browser);

    let log = log_lines(&server, Duration::from_millis(300));
    let gets = |status: &str| {
        log.iter()
            .filter(|l| l.contains(&format!(" GET /events?channel=news {status}")))
            .count()
    };
    assert_eq!(gets("200 stream"), 1, "one stream, for A: {log:#?}");
    assert!(gets("403") >= 1, "C's request refused with 403: {log:#?}");
}

/// alice:pw and bob:pw in Basic form.
const ALICE: &str = "Authorization: Basic YWxpY2U6cHc=";

/// A private Apache with the CGI behind Basic auth (alice and bob, both
/// with password `pw`), alice a publisher by `REMOTE_USER`, origin A
/// listed, alice's own channel readable by her; and the two origins'
/// page servers.
struct Site {
    server: Server,
    script: &'static str,
    a: PageServer,
    c: PageServer,
    dir: PathBuf,
}

impl Site {
    fn start(kind: Kind) -> Option<Site> {
        if !available(kind) {
            return None;
        }
        let (a, c) = (PageServer::start(), PageServer::start());
        let script = match kind {
            Kind::ApacheCgidEvent => "nph-events.cgi",
            _ => "events.cgi",
        };
        let users = support::servers::htpasswd(&format!("origins-{}", a.port));
        let dir = users.parent().expect("its directory").to_path_buf();
        let m = "/usr/lib/apache2/modules";
        let extra = format!(
            "LoadModule auth_basic_module {m}/mod_auth_basic.so\n\
             LoadModule authn_core_module {m}/mod_authn_core.so\n\
             LoadModule authn_file_module {m}/mod_authn_file.so\n\
             LoadModule authz_user_module {m}/mod_authz_user.so\n\
             LogFormat \"%m %U%q %>s user=%u origin=%{{Origin}}i\" origins\n\
             CustomLog \"{}\" origins\n\
             <Files \"{script}\">\n\
                 AuthType Basic\n\
                 AuthName \"staff\"\n\
                 AuthUserFile \"{}\"\n\
                 Require valid-user\n\
             </Files>\n",
            dir.join("access.log").display(),
            users.display()
        );
        let settings = [
            ("NPH_EVENTS_INTERVAL", "0".to_owned()),
            ("NPH_EVENTS_HEARTBEAT", "1".to_owned()),
            ("NPH_EVENTS_PUBLISH_USERS", "alice".to_owned()),
            ("NPH_EVENTS_ORIGINS", a.origin()),
            (
                "NPH_EVENTS_CHANNELS",
                "news=public,user-{REMOTE_USER}=user".to_owned(),
            ),
        ];
        let s: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = Server::start_with(kind, &[script], &s, &[], &extra);
        Some(Site {
            server,
            script,
            a,
            c,
            dir,
        })
    }

    /// The CGI's URL for `channel`, with `userinfo` (`user:pw@`) if given.
    fn url(&self, userinfo: &str, channel: &str) -> String {
        format!(
            "http://{userinfo}127.0.0.1:{}/cgi-bin/{}?channel={channel}",
            self.server.port, self.script
        )
    }

    /// A browser context that logged in as `user` (password `pw`) by a
    /// top-level visit to the CGI (its demo page): Chromium caches the
    /// Basic credentials and sends them with every later request under
    /// /cgi-bin/, as a visitor's browser does.
    fn logged_in(&self, browser: &mut Browser, user: &str) {
        let warm = self.url(&format!("{user}:pw@"), "warm-up");
        let v = browser.cmd(json!({"op": "context", "name": user, "warm": warm}));
        assert_eq!(
            v["status"],
            200,
            "logging in as {user}: {v}\n{}",
            self.logs()
        );
    }

    /// Everything appended to `channel`.
    fn spool_text(&self, channel: &str) -> String {
        let dir = self.server.spool().join("channels").join(channel);
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sse"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// The access log once `done` holds for it (Apache writes a line when
    /// a request ends: a stream's when the CGI notices the browser left),
    /// or after 10 s.
    fn access_log_when(&self, done: impl Fn(&str) -> bool) -> String {
        let start = std::time::Instant::now();
        loop {
            let log = self.access_log();
            if done(&log) || start.elapsed() > Duration::from_secs(10) {
                return log;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        format!("access log:\n{}\n{}", self.access_log(), self.server.logs())
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A page on unlisted origin C auto-submits hidden forms to the publish
/// URL while the browser holds alice's Basic credentials: each POST
/// reaches the CGI as alice (Apache would answer 401 otherwise) and is
/// refused with 403, nothing appended. The same forms from listed origin
/// A publish: the control that proves the forms work.
fn forged_forms_publish_nothing(kind: Kind) {
    if !browser_available() {
        return;
    }
    let Some(site) = Site::start(kind) else {
        return;
    };
    let _one = one_browser();
    let mut browser = Browser::start();
    site.logged_in(&mut browser, "alice");
    let action = site.url("", "news");
    let mut forged = Vec::new();
    let mut genuine = Vec::new();
    for (page, listed) in [(&site.c, false), (&site.a, true)] {
        for (enctype, short) in [
            ("text/plain", "plain"),
            ("application/x-www-form-urlencoded", "form"),
        ] {
            for target in ["_self", "sink"] {
                let who = if listed { "listed" } else { "forged" };
                let marker = format!("{who}-{short}-{}", target.trim_start_matches('_'));
                let url = page.posting(&action, enctype, target, &marker);
                let v = browser
                    .cmd(json!({"op": "post", "ctx": "alice", "url": url, "action": action}));
                let headers = &v["requestHeaders"];
                assert!(
                    headers["authorization"]
                        .as_str()
                        .is_some_and(|a| a.starts_with("Basic ")),
                    "{marker}: the browser did not send alice's credentials: {v}"
                );
                assert_eq!(headers["origin"], page.origin(), "{marker}: {v}");
                assert_eq!(
                    v["frame"],
                    if target == "sink" { "iframe" } else { "main" },
                    "{v}"
                );
                let body = v["body"].as_str().unwrap_or("");
                if listed {
                    assert_eq!(v["status"], 201, "{marker}: {v}\n{}", site.logs());
                    genuine.push(marker);
                } else {
                    assert_eq!(v["status"], 403, "{marker}: {v}\n{}", site.logs());
                    assert!(
                        body.contains("NPH_EVENTS_ORIGINS"),
                        "{marker}: refused by nph-events for its origin: {v}"
                    );
                    forged.push(marker);
                }
            }
        }
    }
    drop(browser);
    let news = site.spool_text("news");
    let (events, _) = parse_sse(&news);
    for marker in &forged {
        assert!(
            !news.contains(marker.as_str()),
            "{marker} was appended:\n{news}"
        );
    }
    for marker in &genuine {
        assert!(
            events.iter().any(|e| e.data.contains(marker.as_str())),
            "{marker} missing:\n{news}"
        );
    }
    assert_eq!(events.len(), genuine.len(), "{news}");
    // Apache's own record: every POST came with alice's credentials
    // (none needed a 401 first). Apache does not read an nph- script's
    // status (it logs 200); a parsed-header script's it logs.
    let total = forged.len() + genuine.len();
    let log =
        site.access_log_when(|log| log.lines().filter(|l| l.starts_with("POST ")).count() >= total);
    let posts: Vec<&str> = log.lines().filter(|l| l.starts_with("POST ")).collect();
    assert_eq!(posts.len(), total, "{log}");
    let status = if site.script.starts_with("nph-") {
        "200"
    } else {
        "403"
    };
    let c_origin = format!("origin={}", site.c.origin());
    let refused = posts
        .iter()
        .filter(|l| l.contains(&format!(" {status} user=alice ")) && l.ends_with(&c_origin))
        .count();
    assert_eq!(refused, forged.len(), "{log}");
}

#[test]
fn apache_cgid_forged_form_posts_publish_nothing() {
    forged_forms_publish_nothing(Kind::ApacheCgidEvent);
}

#[test]
fn apache_prefork_forged_form_posts_publish_nothing() {
    forged_forms_publish_nothing(Kind::ApacheCgiPrefork);
}

/// A page on listed origin A reads alice's own channel with her cached
/// Basic credentials (`withCredentials`) and receives what is published
/// there; with a wrong password (401), as bob (403), from unlisted C (403)
/// or with no credentials at all the stream is refused and nothing
/// arrives.
fn user_channel_across_origins(kind: Kind) {
    if !browser_available() {
        return;
    }
    let Some(site) = Site::start(kind) else {
        return;
    };
    let _one = one_browser();
    let mut browser = Browser::start();
    site.logged_in(&mut browser, "alice");
    site.logged_in(&mut browser, "bob");
    browser.cmd(json!({"op": "context", "name": "nobody"}));
    let wrong = json!({"username": "alice", "password": "wrong"});
    browser.cmd(json!({"op": "context", "name": "stranger", "credentials": wrong}));
    let stream = site.url("", "user-alice");
    // (page, context, origin, the status on the wire, credentials sent)
    let cases = [
        ("mine", "alice", &site.a, Some(200), true),
        // No credentials: Apache's 401 asks the visitor to log in, and
        // headless Chromium waits at that prompt (readyState CONNECTING).
        ("nobody", "nobody", &site.a, None, false),
        ("stranger", "stranger", &site.a, Some(401), false),
        ("bob", "bob", &site.a, Some(403), true),
        ("foreign", "alice", &site.c, Some(403), true),
    ];
    for (page, ctx, origin, status, credentials) in cases {
        let ms = if status.is_some() { 10000 } else { 3000 };
        let v = browser.cmd(json!({"op": "open", "ctx": ctx, "page": page,
                                   "url": origin.reading(&stream), "ms": ms}));
        let wire = &v["streams"][0];
        let st = &v["state"];
        assert_eq!(
            wire["sent"][0]["authorization"],
            credentials,
            "{page}: {v}\n{}",
            site.logs()
        );
        assert_eq!(
            wire["sent"].as_array().map(Vec::len),
            Some(1),
            "{page}: {v}"
        );
        match status {
            Some(200) => assert!(
                st["opened"] == true && st["readyState"] == 1 && wire["statuses"] == json!([200]),
                "{page}: {v}\n{}",
                site.logs()
            ),
            Some(status) => assert!(
                v["settled"] == true
                    && st["opened"] == false
                    && st["readyState"] == 2
                    && wire["statuses"] == json!([status]),
                "{page} should be refused with {status}: {v}\n{}",
                site.logs()
            ),
            None => assert!(
                st["opened"] == false && st["readyState"] != 1,
                "{page}: {v}\n{}",
                site.logs()
            ),
        }
    }
    let marker = "for alice only";
    let reply = site.server.send(
        "POST",
        &format!("/cgi-bin/{}?channel=user-alice", site.script),
        &["Content-Type: text/plain", ALICE],
        marker.as_bytes(),
    );
    assert!(
        reply.starts_with("HTTP/1.1 201"),
        "{reply}\n{}",
        site.logs()
    );
    let v = browser.cmd(json!({"op": "wait", "page": "mine", "data": marker, "ms": 10000}));
    assert_eq!(v["seen"], true, "alice's page on A: {v}\n{}", site.logs());
    assert_eq!(v["state"]["seen"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["state"]["seen"][0]["data"], marker, "{v}");
    for (page, ..) in &cases[1..] {
        let v = browser.cmd(json!({"op": "wait", "page": page, "data": marker, "ms": 300}));
        assert_eq!(v["state"]["seen"], json!([]), "{page}: {v}");
    }
    drop(browser);
    let a_origin = format!("origin={}", site.a.origin());
    let mine = |l: &str| {
        l.starts_with("GET ")
            && l.contains("channel=user-alice 200 user=alice ")
            && l.ends_with(&a_origin)
    };
    let log = site.access_log_when(|log| log.lines().any(mine));
    assert!(
        log.lines().any(mine),
        "alice's cross-origin stream, authenticated:\n{log}"
    );
}

#[test]
fn apache_cgid_user_channel_read_from_a_listed_origin() {
    user_channel_across_origins(Kind::ApacheCgidEvent);
}

#[test]
fn apache_prefork_user_channel_read_from_a_listed_origin() {
    user_channel_across_origins(Kind::ApacheCgiPrefork);
}
