//! The demo page in a real browser: Debian's Chromium, headless, driven by
//! playwright-core (tests/browser/demo.mjs). It must connect, show ticker
//! and published events live, publish with a token, and after a server
//! restart reconnect and resume without a gap.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::listener::Listener;
use support::servers::repo;
use support::{bin, browser_available, Proc};

const TOKEN: &str = "browser-token";

#[test]
fn demo_page_live_publish_and_resume_after_restart() {
    if !browser_available() {
        return;
    }
    let hash = nph_events::auth::token_hash_hex(TOKEN);
    let flags = [
        "--interval",
        "1",
        "--retry",
        "500",
        "--ws",
        "--token-sha256",
        &hash,
    ];
    let mut server = Listener::start("browser", &flags);
    server.keep_spool = true;
    let (spool, port) = (server.spool.clone(), server.port);
    let shot = std::env::temp_dir().join(format!("nph-demo-{}.png", std::process::id()));
    let mut node = Command::new("node");
    node.arg(repo().join("tests/browser/demo.mjs"))
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg(TOKEN)
        .arg(&shot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut node = Proc::spawn(&mut node);
    let mut stdin = node.child.stdin.take().unwrap();
    let mut lines = BufReader::new(node.child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("node output").unwrap();
    assert_eq!(first, "RESTART", "before the restart: {first}");
    assert!(shot.exists(), "screenshot taken");
    if let Ok(target) = std::env::var("NPH_DEMO_SCREENSHOT") {
        std::fs::copy(&shot, target).unwrap();
    }

    // Stop the server, publish while it is down, start it again in place.
    server.proc.signal(libc::SIGTERM);
    assert_eq!(
        server
            .proc
            .wait_for(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
    drop(server);
    for data in ["while down 1", "while down 2"] {
        let out = Command::new(bin())
            .env_clear()
            .args(["publish", "--spool", &spool, "--data", data])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let server = Listener::start_on(&spool, port, &flags);
    writeln!(stdin, "go").unwrap();
    let result = lines.next().expect("node result").unwrap();
    let status = node
        .wait_for(Duration::from_secs(30))
        .expect("node finished");
    drop(server);
    let _ = std::fs::remove_file(&shot);
    let v: serde_json::Value =
        serde_json::from_str(&result).unwrap_or_else(|e| panic!("{e}: {result}"));
    assert!(status.success() && v["ok"] == true, "{result}");
    assert_eq!(v["batching"], false, "the page saw batching: {result}");
    assert!(v["reconnects"].as_u64().unwrap() >= 1, "{result}");
    // Published events, in order, each once, ids consecutive: no gap.
    let rows = v["rows"].as_array().unwrap();
    let published: Vec<(String, u64)> = rows
        .iter()
        .filter(|r| {
            r["name"] != "tick" && r["name"] != "note" && !r["id"].as_str().unwrap().is_empty()
        })
        .map(|r| {
            (
                r["data"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let datas: Vec<&str> = published.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(
        datas,
        vec!["hello from the browser", "while down 1", "while down 2"],
        "{result}"
    );
    assert!(
        published.windows(2).all(|w| w[1].1 == w[0].1 + 1),
        "ids consecutive: {published:?}"
    );
    assert!(
        rows.iter().any(|r| r["data"]
            .as_str()
            .is_some_and(|d| d.starts_with("reconnected; resuming after id"))),
        "the page showed the resume: {result}"
    );
}

#[test]
fn demo_page_websocket_chat_between_two_pages() {
    if !browser_available() {
        return;
    }
    let server = Listener::start("chat", &["--ws", "--ws-relay", "open", "--interval", "0"]);
    let out = Command::new("node")
        .arg(repo().join("tests/browser/chat.mjs"))
        .arg(format!("http://127.0.0.1:{}/", server.port))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(out.status.success() && v["ok"] == true, "{stdout}");
    assert_eq!(
        v["senderPanel"],
        serde_json::json!(["you: hi from page one"]),
        "sender not echoed"
    );
}
