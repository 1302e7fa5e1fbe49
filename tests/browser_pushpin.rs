//! The demo page through Pushpin in front of Apache running the CGI, in
//! headless Chromium: two pages, both panels. The SSE panel's stream is
//! held by Pushpin (the CGI answered with a hold and exited); the
//! WebSocket panel's socket is Pushpin's, which the CGI serves as
//! WebSocket-over-HTTP (a plain Apache CGI cannot pass WebSocket frames).
//! A message from one page's WebSocket panel reaches the other page's
//! WebSocket panel and both SSE panels, and is not echoed to its sender.

mod support;

use std::process::Command;
use std::time::Instant;

use support::browser_available;
use support::pushpin::{self, Pushpin};
use support::servers::{self, repo, Kind, Server};

const KEY: &str = "the browser test's grip key";

#[test]
fn demo_page_chat_through_pushpin_in_front_of_the_apache_cgi() {
    if !browser_available() || !pushpin::available() || !servers::available(Kind::ApacheCgidEvent) {
        return;
    }
    let mut pp = Pushpin::new(KEY);
    let publish = pp.publish_url();
    let server = Server::start(
        Kind::ApacheCgidEvent,
        &["nph-events.cgi"],
        &[
            ("NPH_EVENTS_GRIP_KEY", KEY),
            ("NPH_EVENTS_GRIP_PUBLISH", &publish),
            ("NPH_EVENTS_WS", "1"),
            ("NPH_EVENTS_WS_RELAY", "open"),
            ("NPH_EVENTS_INTERVAL", "0"),
        ],
    );
    pp.start(server.port);
    let url = format!("http://127.0.0.1:{}/cgi-bin/nph-events.cgi", pp.front_port);
    let start = Instant::now();
    let out = Command::new("timeout")
        .arg("90")
        .arg("node")
        .arg(repo().join("tests/browser/chat.mjs"))
        .arg(&url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{e}: {stdout}\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            pp.logs(),
            server.logs()
        )
    });
    assert!(
        out.status.success() && v["ok"] == true,
        "{stdout}\n{}\n{}",
        pp.logs(),
        server.logs()
    );
    assert_eq!(
        v["senderPanel"],
        serde_json::json!(["you: hi from page one"]),
        "sender not echoed"
    );
    eprintln!("two pages chatted through Pushpin in {:?}", start.elapsed());
}
