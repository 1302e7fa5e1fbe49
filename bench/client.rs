//! Shared by the benchmarks: many SSE clients read by one epoll thread,
//! publishing by POST, and per-process CPU and memory readings.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        // As root, go beyond the default hard limit (10,000 WebSocket
        // connections need three descriptors each in the server); children
        // (the servers under test) inherit it.
        let want = libc::rlimit {
            rlim_cur: 65536,
            rlim_max: 65536,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// One connected SSE client.
pub struct Client {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    /// Arrival time of each round's marker.
    pub arrivals: Vec<Option<Instant>>,
    scanned: usize,
    /// The server closed the connection.
    pub closed: bool,
}

/// Reads whatever is available on every client, for up to `wait`, until
/// `done` says stop. One thread, epoll over all sockets: the measuring
/// client must cost little next to what it measures.
pub fn pump(clients: &mut [Client], wait: Duration, mut done: impl FnMut(&[Client]) -> bool) {
    let deadline = Instant::now() + wait;
    // SAFETY: epoll_create1 has no memory preconditions.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    for (i, c) in clients.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: valid epoll fd, valid socket fd, `ev` lives on this frame.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c.stream.as_raw_fd(), &mut ev) };
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut chunk = vec![0u8; 64 * 1024];
    while !done(clients) && Instant::now() < deadline {
        // SAFETY: `events` has room for the given count.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 20) };
        let now = Instant::now();
        for ev in events.iter().take(n.max(0) as usize) {
            let c = &mut clients[ev.u64 as usize];
            match c.stream.read(&mut chunk) {
                Ok(0) => c.closed = true,
                Ok(k) => {
                    c.buf.extend_from_slice(&chunk[..k]);
                    scan(c, now);
                }
                Err(_) => {}
            }
        }
    }
    // SAFETY: closing the epoll fd we created.
    unsafe { libc::close(ep) };
}

/// Records the arrival of any `round-N` marker not seen yet.
pub fn scan(c: &mut Client, now: Instant) {
    let text = &c.buf[c.scanned.saturating_sub(16)..];
    let s = String::from_utf8_lossy(text);
    // "data: round-N" (SSE) or "\"data\":\"round-N\"" (WebSocket JSON).
    for part in s.split("round-").skip(1) {
        let digits: String = part.chars().take_while(|ch| ch.is_ascii_digit()).collect();
        if let Ok(round) = digits.parse::<usize>() {
            if round < c.arrivals.len() && c.arrivals[round].is_none() {
                c.arrivals[round] = Some(now);
            }
        }
    }
    c.scanned = c.buf.len();
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// CPU time in ns (schedstat, exact) of a process and all its threads.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// (utime + stime in clock ticks, voluntary + involuntary switches).
pub fn proc_cost(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let switches: u64 = status
        .lines()
        .filter(|l| {
            l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt_switches")
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Some((ticks, switches))
}

pub fn connect(port: u16, path: &str, n: usize, rounds: usize) -> Vec<Client> {
    let req = format!("GET {path}?channel=bench HTTP/1.1\r\nHost: bench\r\n\r\n");
    connect_with(port, &req, b"retry:", n, rounds)
}

/// WebSocket clients (the handshake by hand; frames are only scanned).
pub fn connect_ws(port: u16, path: &str, n: usize, rounds: usize) -> Vec<Client> {
    let req = format!(
        "GET {path}?channel=bench HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    connect_with(port, &req, b"101 Switching", n, rounds)
}

/// Opens `n` connections sending `request`, until each has shown `ready`.
pub fn connect_with(
    port: u16,
    request: &str,
    ready: &[u8],
    n: usize,
    rounds: usize,
) -> Vec<Client> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(request.as_bytes()).unwrap();
        s.set_nonblocking(true).unwrap();
        clients.push(Client {
            stream: s,
            buf: Vec::new(),
            arrivals: vec![None; rounds],
            scanned: 0,
            closed: false,
        });
    }
    let is_ready = |c: &Client| c.buf.windows(ready.len()).any(|w| w == ready);
    pump(&mut clients, Duration::from_secs(300), |cs| {
        cs.iter().all(is_ready)
    });
    let count = clients.iter().filter(|c| is_ready(c)).count();
    assert_eq!(count, n, "all clients streaming");
    clients
}

/// Publishes `round-N` by an authenticated POST and checks the 201.
pub fn post(port: u16, path: &str, token: &str, round: usize) {
    let body = format!("round-{round}");
    let req = format!(
        "POST {path}?channel=bench HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "publish failed: {answer}"
    );
}

/// PSS of a process (all its threads), KiB.
pub fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Pss:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
