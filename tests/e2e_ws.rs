//! WebSocket chat through each deployment, with the shipped configs:
//! lighttpd `cgi.upgrade` → the CGI; Apache mod_proxy (`upgrade=websocket`)
//! → the listener; nginx → the listener. A WebSocket client's message
//! reaches the other WebSocket client and an SSE client, not the sender.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use support::listener::Listener;
use support::nginx::Nginx;
use support::servers::{available, Kind, Server};
use support::{body_of, parse_sse, ws_texts, Chunks};

type Ws = tungstenite::WebSocket<TcpStream>;

fn connect(port: u16, path: &str) -> Ws {
    let url = format!("ws://127.0.0.1:{port}{path}");
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (ws, response) =
        tungstenite::client(url, stream).unwrap_or_else(|e| panic!("handshake {path}: {e}"));
    assert_eq!(response.status(), 101);
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    ws
}

/// The chat check on `port`, WebSocket and SSE at `path` (with a query).
fn chat(port: u16, path: &str, what: &str) {
    let mut a = connect(port, path);
    let mut b = connect(port, path);
    let mut sse_conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::Write;
    sse_conn
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut sse = Chunks::new(sse_conn.try_clone().unwrap());
    assert!(
        sse.until("retry:", Duration::from_secs(3)),
        "{what}: {}",
        sse.text()
    );
    std::thread::sleep(Duration::from_millis(200));
    let message = format!("hello through {what}");
    a.send(tungstenite::Message::text(message.clone())).unwrap();
    let got = ws_texts(&mut b, Duration::from_millis(1500));
    assert!(
        got.iter().any(|m| m["data"] == message.as_str()),
        "{what}: b got {got:?}"
    );
    assert!(
        sse.until(&message, Duration::from_secs(3)),
        "{what}: SSE {}",
        sse.text()
    );
    let (events, _) = parse_sse(&body_of(&sse.text()));
    assert!(events
        .iter()
        .any(|e| e.data == message && !e.last_event_id.is_empty()));
    let echoed = ws_texts(&mut a, Duration::from_millis(500));
    assert!(
        !echoed.iter().any(|m| m["data"] == message.as_str()),
        "{what}: sender echoed"
    );
    let _ = a.close(None);
    let _ = b.close(None);
}

#[test]
fn lighttpd_cgi_upgrade_chat() {
    if !available(Kind::Lighttpd) {
        return;
    }
    let settings = [
        ("NPH_EVENTS_WS", "1"),
        ("NPH_EVENTS_WS_RELAY", "open"),
        ("NPH_EVENTS_WS_ORIGINS", "*"),
        ("NPH_EVENTS_INTERVAL", "0"),
        ("NPH_EVENTS_HEARTBEAT", "1"),
    ];
    let server = Server::start(Kind::Lighttpd, &["nph-events.cgi"], &settings);
    chat(
        server.port,
        "/cgi-bin/nph-events.cgi?channel=room",
        "lighttpd cgi.upgrade",
    );
}

fn ws_listener(tag: &str) -> Listener {
    Listener::start(
        tag,
        &[
            "--ws",
            "--ws-relay",
            "open",
            "--ws-origins",
            "*",
            "--interval",
            "0",
        ],
    )
}

#[test]
fn apache_mod_proxy_websocket_chat() {
    if !available(Kind::ApacheCgidEvent) {
        return;
    }
    let backend = ws_listener("wsapache");
    let server = Server::apache_proxy(backend.port);
    chat(
        server.port,
        "/nph-events/events?channel=room",
        "Apache mod_proxy",
    );
}

#[test]
fn apache_mod_proxy_wstunnel_chat() {
    if !available(Kind::ApacheCgidEvent) {
        return;
    }
    let backend = ws_listener("wstunnel");
    let server = Server::apache_wstunnel(backend.port);
    chat(
        server.port,
        "/nph-events/events?channel=room",
        "Apache mod_proxy_wstunnel",
    );
    // Plain requests on the same URLs still go through mod_proxy_http.
    let page = support::http_send(server.port, "GET", "/nph-events/", &[], b"");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
}

#[test]
fn nginx_websocket_chat() {
    let backend = ws_listener("wsnginx");
    let Some(nginx) = Nginx::start(backend.port) else {
        return;
    };
    chat(nginx.port, "/nph-events/events?channel=room", "nginx");
}
