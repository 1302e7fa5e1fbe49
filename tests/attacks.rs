//! The attack suite: hostile clients against a real `nph-events serve` on
//! 127.0.0.1 (and the CGI binary), each with what must keep holding while
//! the attack runs. Small versions of the `bench/attacks.rs` figures, sized
//! for CI on two cores.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::listener::Listener;
use support::{bin, cgi_command, ws_timed_out, Proc};
use tungstenite::Message;

fn ws_connect(port: u16, query: &str, host: &str) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = tungstenite::http::Request::builder()
        .uri(format!("ws://127.0.0.1:{port}/events?{query}"))
        .header("Host", host)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let (ws, response) = tungstenite::client(request, stream).expect("handshake");
    assert_eq!(response.status(), 101);
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    ws
}

/// Pong round trip of a well-behaved client: sends a ping, waits for its
/// pong (other frames are skipped).
fn pong_rtt(ws: &mut tungstenite::WebSocket<TcpStream>, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    ws.send(Message::Ping(b"rtt".to_vec().into())).ok()?;
    while start.elapsed() < limit {
        match ws.read() {
            Ok(Message::Pong(p)) if p.as_ref() == b"rtt" => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if ws_timed_out(&e) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Raw masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut f = vec![0x80 | opcode];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// A raw WebSocket connection (handshake done, response read).
fn raw_ws(port: u16, query: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /events?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    s
}

/// The bearer token the servers of these tests take publishes with.
const TOKEN: &str = "attack-token";

/// `serve` without a ticker, taking publishes with [`TOKEN`], plus `flags`.
fn start_with_token(tag: &str, flags: &[&str]) -> Listener {
    let hash = nph_events::auth::token_hash_hex(TOKEN);
    let mut all = vec!["--interval", "0", "--token-sha256", &hash];
    all.extend_from_slice(flags);
    Listener::start(tag, &all)
}

/// POSTs `body` as text to `path` with [`TOKEN`]; returns the answer.
fn publish(server: &Listener, path: &str, body: &[u8]) -> String {
    let auth = format!("Authorization: Bearer {TOKEN}");
    server.send("POST", path, &[&auth, "Content-Type: text/plain"], body)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
}

/// Clients that flood pings as fast as the socket takes them (reading
/// what comes back, reconnecting when closed) must not freeze the others:
/// before the fix, one flooding session was read until it would block,
/// and every other session on its reactor thread waited. Now a turn is
/// bounded and a client past 20 pings a second is closed with 1008.
#[test]
fn a_ping_flood_does_not_stall_the_other_sessions() {
    let server = start_with_token("flood", &["--ws"]);
    let port = server.port;
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    for _ in 0..4 {
        let stop = Arc::clone(&stop);
        attackers.push(thread::spawn(move || {
            let burst: Vec<u8> = (0..2000).flat_map(|_| frame(9, b"x")).collect();
            let (mut sessions, mut policy_closes) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let mut s = raw_ws(port, "channel=flood");
                sessions += 1;
                let mut reader = s.try_clone().unwrap();
                let drain = thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n @ 1..) = reader.read(&mut buf) {
                        got.extend_from_slice(&buf[..n]);
                    }
                    got.windows(4).any(|w| w == [0x88, 0x02, 0x03, 0xf0])
                });
                while !stop.load(Ordering::Relaxed) && s.write_all(&burst).is_ok() {}
                let _ = s.shutdown(std::net::Shutdown::Both);
                policy_closes += usize::from(drain.join().unwrap());
            }
            (sessions, policy_closes)
        }));
    }
    let mut good: Vec<_> = (0..6)
        .map(|_| ws_connect(port, "channel=calm", &format!("127.0.0.1:{port}")))
        .collect();
    thread::sleep(Duration::from_millis(300));
    let (_c, mut sse) = server.get("/events?channel=calm", &[]);
    assert!(sse.until("retry:", Duration::from_secs(2)));
    let (mut rtts, mut deliveries) = (Vec::new(), Vec::new());
    let until = Instant::now() + Duration::from_secs(3);
    let mut round = 0;
    while Instant::now() < until {
        for ws in &mut good {
            let rtt = pong_rtt(ws, Duration::from_secs(5)).expect("a pong during the flood");
            rtts.push(rtt);
            thread::sleep(Duration::from_millis(10));
        }
        // An event to the calm channel: its delivery to an SSE client.
        round += 1;
        let sent = Instant::now();
        let r = publish(
            &server,
            "/events?channel=calm",
            format!("round {round}").as_bytes(),
        );
        assert!(r.starts_with("HTTP/1.1 201"), "{r}");
        assert!(
            sse.until(&format!("data: round {round}\n"), Duration::from_secs(5)),
            "event {round} during the flood"
        );
        deliveries.push(sent.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(usize, usize)> = attackers.into_iter().map(|a| a.join().unwrap()).collect();
    let sessions: usize = results.iter().map(|r| r.0).sum();
    let closed: usize = results.iter().map(|r| r.1).sum();
    let (p50, worst) = (percentile(rtts.clone(), 0.5), percentile(rtts.clone(), 1.0));
    eprintln!(
        "ping flood: {sessions} flooding sessions, {closed} closed with 1008; calm pong round trips: \
         {} samples, p50 {p50:?}, max {worst:?}",
        rtts.len()
    );
    let slowest = percentile(deliveries.clone(), 1.0);
    eprintln!(
        "ping flood: {} events published and delivered, slowest {slowest:?}",
        deliveries.len()
    );
    assert!(closed >= 4, "flooders are closed with 1008");
    assert!(rtts.len() >= 30, "only {} round trips in 3 s", rtts.len());
    assert!(worst < Duration::from_millis(300), "max {worst:?}");
    assert!(
        slowest < Duration::from_millis(300),
        "delivery max {slowest:?}"
    );
}

/// Clients that send pings and messages as fast as they can and never
/// read: the server must not queue replies for them (before: a pong per
/// ping and an error notice per refused message, up to 4 MiB each).
#[test]
fn clients_that_never_read_cost_the_server_almost_nothing() {
    let server = Listener::start("noread", &["--ws", "--interval", "0"]);
    let port = server.port;
    let pid = server.proc.pid();
    let before = rss_kib(pid);
    let mut attackers = Vec::new();
    for i in 0..8 {
        let mut s = raw_ws(port, "channel=noread");
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        attackers.push(thread::spawn(move || {
            let op = if i % 2 == 0 { 9 } else { 1 };
            let burst: Vec<u8> = (0..500).flat_map(|_| frame(op, &[b'p'; 120])).collect();
            let end = Instant::now() + Duration::from_secs(3);
            let mut sent = 0usize;
            while Instant::now() < end {
                match s.write(&burst) {
                    Ok(n) => sent += n,
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
            (s, sent)
        }));
    }
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (Arc::clone(&peak), Arc::clone(&sampling));
        thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let conns: Vec<(TcpStream, usize)> = attackers.into_iter().map(|a| a.join().unwrap()).collect();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    let most = conns.iter().map(|c| c.1).max().unwrap();
    eprintln!(
        "8 non-reading flooders sent at most {} KiB each; server RSS {before} KiB, peak {peak} KiB",
        most / 1024
    );
    // The server stops reading a client it cannot answer: what the
    // flooders sent waits in the kernel's socket buffers (before: the
    // server read it all, over 70 MiB each in 3 s, queueing replies).
    assert!(most < 24 << 20, "a flooder got {} KiB in", most / 1024);
    // The server holds at most a frame or two each.
    assert!(
        peak < before + 8 * 1024,
        "RSS peak grew {} KiB",
        peak - before
    );
    // And it still serves others.
    let mut ws = ws_connect(port, "channel=calm", &format!("127.0.0.1:{port}"));
    assert!(pong_rtt(&mut ws, Duration::from_secs(2)).is_some());
}

/// SSE clients that stop reading while large events are published: the
/// output queued for all of them stays within `queue_budget`; the ones
/// holding it are dropped with a log line, and a reading client gets
/// every event.
#[test]
fn queued_output_stays_within_the_server_budget() {
    let server = start_with_token(
        "budget",
        &[
            "--queue-budget",
            "2097152",
            "--retain-bytes",
            "67108864",
            "--max-body",
            "200000",
            "--publish-rate",
            "1000",
        ],
    );
    let pid = server.proc.pid();
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        // A tiny receive buffer: the kernel takes little, the rest queues.
        s.write_all(b"GET /events?channel=big HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        stalled.push(s);
    }
    let (_c, mut reader) = server.get("/events?channel=big", &[]);
    assert!(reader.until("retry:", Duration::from_secs(2)));
    let before = rss_kib(pid);
    let data = "y".repeat(150_000);
    for _ in 0..40 {
        let r = publish(&server, "/events?channel=big", data.as_bytes());
        assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    }
    assert!(
        reader.until_count(&data[..100], 40, Duration::from_secs(20)),
        "the reading client got every event"
    );
    let after = rss_kib(pid);
    let mut dropped = 0;
    while let Ok(line) = server.log.recv_timeout(Duration::from_millis(200)) {
        if line.contains("queue_budget") {
            dropped += 1;
        }
    }
    eprintln!("6 stalled clients, 40 x 150 kB: {dropped} dropped; RSS {before} -> {after} KiB");
    assert!(dropped >= 1, "some stalled client was dropped");
    // 6 x 40 x 150 kB would be 36 MB queued without the budget.
    assert!(
        after < before + 12 * 1024,
        "RSS grew {} KiB",
        after - before
    );
}

/// Large events on many channels are delivered and forgotten: nothing
/// keeps a per-channel log in memory (before: the listener kept the last
/// 1,024 events of every channel it had seen, for ever, about 64 MiB for
/// a channel of 64 KB events).
#[test]
fn large_events_on_many_channels_are_not_kept_in_memory() {
    let server = start_with_token(
        "bigmany",
        &["--max-body", "120000", "--publish-rate", "100000"],
    );
    let pid = server.proc.pid();
    let channels = 40;
    let mut readers: Vec<_> = (0..channels)
        .map(|c| server.get(&format!("/events?channel=big{c}"), &[]))
        .collect();
    for (_, r) in &mut readers {
        assert!(r.until("retry:", Duration::from_secs(2)));
    }
    let before = rss_kib(pid);
    let data = "z".repeat(100_000);
    for round in 0..15 {
        for c in 0..channels {
            let body = format!("{round:02}{data}");
            let r = publish(&server, &format!("/events?channel=big{c}"), body.as_bytes());
            assert!(r.starts_with("HTTP/1.1 201"), "{r}");
        }
    }
    for (_, r) in &mut readers {
        assert!(
            r.until("data: 14zzz", Duration::from_secs(10)),
            "all delivered"
        );
    }
    let after = rss_kib(pid);
    eprintln!("{channels} channels x 15 x 100 kB delivered: server RSS {before} -> {after} KiB");
    // 60 MB went through; what stays is buffers, not a log.
    assert!(
        after < before + 16 * 1024,
        "RSS grew {} KiB",
        after - before
    );
}

/// A resume id no event of the channel ever had (another site's, a forged
/// one) gets the `reset` event and then every new event, over SSE and
/// WebSocket, as the CGI does (before: the listener went silent, and the
/// WebSocket path dropped the reset too).
#[test]
fn resuming_beyond_the_channel_gets_a_reset_then_new_events() {
    let server = start_with_token("beyond", &["--ws"]);
    let publish = |channel: &str, text: &str| {
        let r = publish(
            &server,
            &format!("/events?channel={channel}"),
            text.as_bytes(),
        );
        assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    };
    publish("full", "old");
    let forged = "9999999999999999999";
    for channel in ["full", "empty"] {
        let (_c, mut sse) = server.get(
            &format!("/events?channel={channel}"),
            &[&format!("Last-Event-ID: {forged}")],
        );
        let mut ws = ws_connect(
            server.port,
            &format!("channel={channel}&lastEventId={forged}"),
            &format!("127.0.0.1:{}", server.port),
        );
        assert!(
            sse.until("event: reset", Duration::from_secs(2)),
            "{channel}: SSE reset: {}",
            sse.text()
        );
        let first = support::ws_texts(&mut ws, Duration::from_millis(500));
        assert!(
            first.iter().any(|m| m["event"] == "reset"),
            "{channel}: WebSocket reset: {first:?}"
        );
        publish(channel, &format!("fresh-{channel}"));
        assert!(
            sse.until(&format!("data: fresh-{channel}"), Duration::from_secs(2)),
            "{channel}: SSE went silent: {}",
            sse.text()
        );
        let next = support::ws_texts(&mut ws, Duration::from_millis(600));
        assert!(
            next.iter().any(|m| m["data"] == format!("fresh-{channel}")),
            "{channel}: WebSocket went silent: {next:?}"
        );
    }
}

/// DNS rebinding: a page on a name the attacker points at the server
/// sends matching `Host` and `Origin`. Only the site's own names (and
/// loopback) count as the same origin.
#[test]
fn dns_rebinding_is_refused_unless_the_name_is_the_sites() {
    let handshake = |server: &Listener, host: &str| -> String {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        write!(
            s,
            "GET /events HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 2048];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let server = Listener::start("rebind", &["--ws", "--interval", "0"]);
    let r = handshake(&server, "rebound.example:8080");
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(r.contains("NPH_EVENTS_HOSTS"), "says what to set: {r}");
    let local = format!("127.0.0.1:{}", server.port);
    assert!(handshake(&server, &local).starts_with("HTTP/1.1 101"));
    drop(server);
    let named = Listener::start(
        "rebind2",
        &["--ws", "--interval", "0", "--hosts", "rebound.example"],
    );
    let r = handshake(&named, "rebound.example:8080");
    assert!(r.starts_with("HTTP/1.1 101"), "a configured name: {r}");
}

/// Cross-site request forgery: a page on another site makes a visitor's
/// browser POST a form to the CGI, with the visitor's cached credentials
/// (`REMOTE_USER` set by the web server). Refused, nothing appended; the
/// same POST from the site itself, or from a script, publishes.
#[test]
fn a_cross_site_form_post_with_the_visitors_credentials_is_refused() {
    let spool = std::env::temp_dir().join(format!("nph-csrf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    let spool_s = spool.to_str().unwrap().to_owned();
    let post = |extra: &[(&str, &str)]| -> String {
        let body = b"data=forged";
        let len = body.len().to_string();
        let mut vars = vec![
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("REQUEST_METHOD", "POST"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("QUERY_STRING", "channel=csrf"),
            ("SCRIPT_NAME", "/cgi-bin/nph-events.cgi"),
            // The site as a loopback name: no NPH_EVENTS_HOSTS needed.
            ("HTTP_HOST", "127.0.0.1"),
            ("REMOTE_USER", "alice"),
            ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
            ("CONTENT_LENGTH", &len),
            ("NPH_EVENTS_PUBLISH_USERS", "alice"),
            ("NPH_EVENTS_SPOOL", &spool_s),
        ];
        vars.extend_from_slice(extra);
        let mut p = Proc::spawn(
            cgi_command(bin(), &vars)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        );
        p.child.stdin.take().unwrap().write_all(body).unwrap();
        let mut out = String::new();
        p.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    };
    let forged = [
        vec![("HTTP_ORIGIN", "https://evil.example")],
        vec![("HTTP_ORIGIN", "null")],
        vec![("HTTP_REFERER", "https://evil.example/page")],
        vec![("HTTP_SEC_FETCH_SITE", "cross-site")],
    ];
    for extra in &forged {
        let r = post(extra);
        assert!(r.starts_with("HTTP/1.1 403"), "{extra:?}: {r}");
    }
    let segments = spool.join("channels/csrf");
    assert!(
        !segments.exists() || std::fs::read_dir(&segments).unwrap().count() <= 1,
        "nothing appended"
    );
    let own = post(&[("HTTP_ORIGIN", "http://127.0.0.1")]);
    assert!(own.starts_with("HTTP/1.1 201"), "{own}");
    let script = post(&[]);
    assert!(script.starts_with("HTTP/1.1 201"), "{script}");
    let _ = std::fs::remove_dir_all(&spool);
}

/// Many clients, each within its own limit, together exceed the site's
/// publish rate: the excess is refused with 429 and appends nothing.
#[test]
fn the_site_publish_rate_holds_across_connections() {
    let server = start_with_token("rate", &["--publish-rate", "20"]);
    let mut statuses = Vec::new();
    for i in 0..60 {
        let r = publish(&server, "/events?channel=rate", format!("m{i}").as_bytes());
        statuses.push(r[9..12].to_owned());
        if r.starts_with("HTTP/1.1 429") {
            assert!(r.contains("Retry-After: 1"), "{r}");
        }
    }
    let ok = statuses.iter().filter(|s| *s == "201").count();
    let limited = statuses.iter().filter(|s| *s == "429").count();
    eprintln!("60 quick publishes at publish_rate 20: {ok} accepted, {limited} refused");
    assert_eq!(ok + limited, 60, "{statuses:?}");
    assert!((20..40).contains(&ok), "burst of 20 plus the refill: {ok}");
    // A flood of refusals does not flood the log: one line a second, with
    // the count of those not written before it, which the next second's
    // first refusal brings.
    thread::sleep(Duration::from_millis(1100));
    let more = (0..40)
        .map(|i| publish(&server, "/events?channel=rate", format!("n{i}").as_bytes()))
        .filter(|r| r.starts_with("HTTP/1.1 429"))
        .count();
    assert!(more > 0, "the refill is about 20");
    thread::sleep(Duration::from_millis(300));
    let lines: Vec<String> = server
        .log
        .try_iter()
        .filter(|l| l.contains(" 429"))
        .collect();
    eprintln!("log lines for {limited} refusals: {lines:#?}");
    assert!((2..=4).contains(&lines.len()), "{lines:#?}");
    let counted: u64 = lines
        .iter()
        .filter_map(|l| l.split(" (").nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        counted + 1 >= limited as u64,
        "every refusal is counted in a line: {lines:#?}"
    );
}

/// Anonymous chat clients of an open relay, together over the site's
/// rate, do not spend what publishers with credentials publish with: the
/// two draw from separate buckets.
#[test]
fn an_open_relay_flood_does_not_starve_publishers_with_credentials() {
    let server = start_with_token(
        "relayflood",
        &["--ws", "--ws-relay", "open", "--publish-rate", "20"],
    );
    let port = server.port;
    let stop = Arc::new(AtomicBool::new(false));
    let chatters: Vec<_> = (0..6)
        .map(|i| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut ws = ws_connect(port, "channel=chat", &format!("127.0.0.1:{port}"));
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    // Within each client's own rate (10/s), over the site's.
                    if ws.send(Message::text(format!("chat {i} {sent}"))).is_err() {
                        break;
                    }
                    sent += 1;
                    let _ = ws.read();
                    thread::sleep(Duration::from_millis(110));
                }
                sent
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let mut statuses = Vec::new();
    for i in 0..10 {
        let r = publish(
            &server,
            "/events?channel=news",
            format!("news {i}").as_bytes(),
        );
        statuses.push(r[9..12].to_owned());
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let chatted: usize = chatters.into_iter().map(|c| c.join().unwrap()).sum();
    eprintln!("{chatted} anonymous chat messages; credentialed POSTs: {statuses:?}");
    assert!(chatted > 60, "the chat ran over the site rate: {chatted}");
    assert!(statuses.iter().all(|s| s == "201"), "{statuses:?}");
}

/// A publish from the command line that is killed is not reported as a
/// success (before: any termination signal ended it with status 0).
#[test]
fn a_killed_command_line_publish_does_not_exit_zero() {
    let spool = std::env::temp_dir().join(format!("nph-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    let mut p = Proc::spawn(
        Command::new(bin())
            .args([
                "publish",
                "--channel",
                "k",
                "--spool",
                spool.to_str().unwrap(),
            ])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    // It waits for the data on stdin; stop it there.
    thread::sleep(Duration::from_millis(200));
    p.signal(libc_sigterm());
    let status = p.wait_for(Duration::from_secs(5)).expect("it ended");
    assert!(!status.success(), "{status:?}");
    assert_eq!(status.signal(), Some(libc_sigterm()), "{status:?}");
    let mut out = String::new();
    p.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.is_empty(), "no id printed: {out}");
    let _ = std::fs::remove_dir_all(&spool);
}

fn libc_sigterm() -> i32 {
    15
}
