//! Sends each published event to every GRIP proxy's publish endpoint
//! (`grip_publish`), which fans it out to the clients the proxy holds.
//!
//! An item carries the event's `id` and `prev-id` (ids of a channel are
//! consecutive), so a proxy delivers in order, and two formats: the exact
//! SSE bytes a direct stream sends (`http-stream`) and the JSON text frame
//! a WebSocket client gets (`ws-message`). The spool append comes first
//! and is the truth: a proxy that is down or slow costs at most
//! [`TIMEOUT`] per endpoint and a log line, never the append.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub use super::endpoint::Endpoint;

/// The id a hold names for a channel with no event yet, and the `prev-id`
/// of a channel's first event as the proxies get it. Ids are Unix
/// microseconds, never 0. Without it a held client of an empty channel
/// would have no last id, the proxy's own later requests would carry no
/// `Grip-Last`, and an event published meanwhile could be lost (found with
/// Pushpin 1.36).
pub const EMPTY: u64 = crate::spool::BEFORE_FIRST;

/// The longest one endpoint may take (connect, send, answer).
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// One event as the proxies get it.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// Its channel.
    pub channel: &'a str,
    /// Its id.
    pub id: u64,
    /// The id before it on the channel, if any.
    pub prev_id: Option<u64>,
    /// The SSE record, exactly as a direct stream sends it.
    pub sse: &'a [u8],
    /// The WebSocket text frame's payload.
    pub ws_text: &'a str,
    /// The GRIP connection that sent it: the proxy skips it (`skip-self`).
    pub sender: Option<&'a str>,
}

/// The publish request's JSON body.
pub fn body(item: &Item<'_>) -> String {
    let mut entry = serde_json::json!({
        "channel": item.channel,
        "id": item.id.to_string(),
        "formats": {
            "http-stream": { "content": String::from_utf8_lossy(item.sse) },
            "ws-message": { "content": item.ws_text },
        },
    });
    if let Some(prev) = item.prev_id {
        entry["prev-id"] = serde_json::Value::String(prev.to_string());
    }
    if let Some(sender) = item.sender {
        entry["meta"] = serde_json::json!({ "sender": sender });
    }
    serde_json::json!({ "items": [entry] }).to_string()
}

/// Sends `item` to every endpoint, one after another, each within
/// [`TIMEOUT`]; returns the failures (endpoint without credentials, why).
pub fn send_all(endpoints: &[String], item: &Item<'_>) -> Vec<(String, String)> {
    let body = body(item);
    let mut failed = Vec::new();
    for url in endpoints {
        let result = Endpoint::parse(url)
            .map_err(|e| (url.clone(), e))
            .and_then(|ep| send(&ep, &body).map_err(|e| (ep.to_string(), e.to_string())));
        if let Err(f) = result {
            failed.push(f);
        }
    }
    failed
}

/// POSTs `body` to `ep`; Ok on a 2xx answer.
pub fn send(ep: &Endpoint, body: &str) -> io::Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    let addr: SocketAddr = (ep.host.as_str(), ep.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    s.set_write_timeout(Some(left()))?;
    let auth = ep
        .auth
        .as_deref()
        .map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{auth}Connection: close\r\n\r\n",
        ep.path,
        ep.host,
        ep.port,
        body.len()
    );
    s.write_all(format!("{head}{body}").as_bytes())?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        s.set_read_timeout(Some(left()))?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if answer.windows(4).any(|w| w == b"\r\n\r\n") || answer.len() > 64 * 1024 {
            break;
        }
    }
    let status = String::from_utf8_lossy(&answer);
    let line = status.lines().next().unwrap_or("");
    match line.split(' ').nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        _ => Err(io::Error::other(format!("answered {line:?}"))),
    }
}

/// A publish waiting for the sender thread.
struct Job {
    endpoints: Vec<String>,
    channel: String,
    id: u64,
    prev_id: Option<u64>,
    sse: Vec<u8>,
    ws_text: String,
    sender: Option<String>,
}

/// Publishes waiting for the proxies, at most: a proxy that stalls holds
/// this many events (a few MiB at most), then publishes skip it (logged).
const QUEUE: usize = 1024;

static SENDER: OnceLock<SyncSender<Job>> = OnceLock::new();

/// In a long-lived process (the listener), sends to the proxies from one
/// thread of its own, in publish order, so that a request thread or the
/// reactor never waits for a proxy. Short-lived processes (a CGI, the
/// command line) send before they exit, without it.
pub fn start_sender() {
    SENDER.get_or_init(|| {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let spawned = thread::Builder::new()
            .name("grip-publish".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                for job in rx {
                    let item = Item {
                        channel: &job.channel,
                        id: job.id,
                        prev_id: job.prev_id,
                        sse: &job.sse,
                        ws_text: &job.ws_text,
                        sender: job.sender.as_deref(),
                    };
                    log_failures(&item, &send_all(&job.endpoints, &item));
                }
            });
        if let Err(e) = spawned {
            eprintln!("nph-events: cannot start the GRIP publishing thread: {e}; publishing to proxies from each request");
        }
        tx
    });
}

/// Sends `item` to `endpoints`: through the sender thread when there is
/// one, else here and now. Failures are logged; the event is in the spool
/// either way.
pub fn dispatch(endpoints: &[String], item: &Item<'_>) {
    let Some(tx) = SENDER.get() else {
        log_failures(item, &send_all(endpoints, item));
        return;
    };
    let job = Job {
        endpoints: endpoints.to_vec(),
        channel: item.channel.to_owned(),
        id: item.id,
        prev_id: item.prev_id,
        sse: item.sse.to_vec(),
        ws_text: item.ws_text.to_owned(),
        sender: item.sender.map(str::to_owned),
    };
    if tx.try_send(job).is_err() {
        eprintln!(
            "nph-events: event {} on {} is in the spool but not sent to the GRIP proxies: {QUEUE} events already wait for them (a proxy too slow or down); their clients get it when they reconnect",
            item.id, item.channel
        );
    }
}

fn log_failures(item: &Item<'_>, failed: &[(String, String)]) {
    for (endpoint, why) in failed {
        eprintln!(
            "nph-events: event {} on {} is in the spool but did not reach the GRIP proxy at {endpoint}: {why}; the clients it holds get it when they reconnect",
            item.id, item.channel
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn the_item_carries_ids_and_both_formats() {
        let item = Item {
            channel: "news",
            id: 8,
            prev_id: Some(7),
            sse: b"id: 8\ndata: hi\n\n",
            ws_text: r#"{"id":"8","data":"hi"}"#,
            sender: Some("conn-1"),
        };
        let v: serde_json::Value = serde_json::from_str(&body(&item)).unwrap();
        let it = &v["items"][0];
        assert_eq!(
            (it["id"].as_str(), it["prev-id"].as_str()),
            (Some("8"), Some("7"))
        );
        assert_eq!(
            it["formats"]["http-stream"]["content"],
            "id: 8\ndata: hi\n\n"
        );
        assert_eq!(it["formats"]["ws-message"]["content"], item.ws_text);
        assert_eq!(it["meta"]["sender"], "conn-1");
        let first = Item {
            prev_id: None,
            ..item
        };
        assert!(body(&first).find("prev-id").is_none());
    }

    /// A proxy that takes the connection and never answers costs at most
    /// the timeout; one that is not there fails at once; a 200 is success.
    #[test]
    fn bounded_by_the_timeout() {
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let ok = TcpListener::bind("127.0.0.1:0").unwrap();
        let ok_port = ok.local_addr().unwrap().port();
        let answering = std::thread::spawn(move || {
            let (mut c, _) = ok.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.ends_with(b"}") {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                got.extend_from_slice(&buf[..n]);
            }
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nPublished\n")
                .unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let urls = vec![
            format!(
                "http://127.0.0.1:{}/publish/",
                silent.local_addr().unwrap().port()
            ),
            format!("http://127.0.0.1:{ok_port}/publish/"),
            format!("http://127.0.0.1:{closed_port}/publish/"),
        ];
        let item = Item {
            channel: "c",
            id: 1,
            prev_id: None,
            sse: b"id: 1\ndata: x\n\n",
            ws_text: "{}",
            sender: None,
        };
        let start = Instant::now();
        let failed = send_all(&urls, &item);
        let took = start.elapsed();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed[0]
            .0
            .ends_with(&format!("{}/publish/", silent.local_addr().unwrap().port())));
        assert!(
            took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(1),
            "{took:?}"
        );
        let request = answering.join().unwrap();
        assert!(
            request.starts_with("POST /publish/ HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("\"channel\":\"c\""), "{request}");
    }
}
