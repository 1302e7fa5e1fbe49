//! Attacks against a real `nph-events serve` (issue 10): under each attack
//! running at full speed, the p99 of event delivery and of a WebSocket
//! pong round trip for well-behaved clients on the same listener, beside
//! the same figures with no attack; and the server's memory against its
//! `--queue-budget`.
//!
//! One server, one run: the well-behaved clients (`NPH_BENCH_ATTACK_SSE`
//! SSE + `NPH_BENCH_ATTACK_WS` WebSocket clients, 500 + 500, on channel
//! `calm`, connected from 127.0.0.1 and read by one epoll thread) stay
//! connected through every phase: two baselines, a CPU-only control, each
//! attack alone, a last baseline. In each phase, `NPH_BENCH_ROUNDS` (30)
//! events are published on `calm` (delivery: publish to arrival, every
//! client) and `NPH_BENCH_PONG_SAMPLE` (50) WebSocket clients send a ping
//! `NPH_BENCH_PONGS` (30) times (pong round trip). The attackers connect
//! from other loopback addresses (127.0.1.x, `NPH_BENCH_ADDRS` of them),
//! so the per-address limits apply to them; the well-behaved clients stand
//! for a reverse proxy on this host.
//!
//! The measuring rounds are published in-process with the library's
//! `stream::publish` (what `nph-events publish --spool` does, without a
//! process start): not through the server's POST path, so they take no
//! token from the site publish rate that the publish flood empties, and
//! need no connection slot. A legitimate POST publisher is probed
//! separately in each phase (5 POSTs, their answers reported).
//!
//! `cargo bench --bench attacks` (release; about 6 minutes, writes
//! docs/benchmark-attacks.md). `NPH_BENCH_QUICK=1`: 100 clients, short
//! phases, each attack once (under a minute). Other knobs (full, quick):
//! `NPH_BENCH_GAP_MS` (250, between rounds), `NPH_BENCH_WARMUP_MS` (2000,
//! attack running before measuring), `NPH_BENCH_ATTACKERS` (4: churn
//! threads, ping flooders, WebSocket publish flooders), `NPH_BENCH_POSTERS`
//! (4), `NPH_BENCH_BURN` (2 spinning threads for the CPU control),
//! `NPH_BENCH_NONREAD_WS` (8), `NPH_BENCH_NONREAD_SSE` (200),
//! `NPH_BENCH_NONREAD_CYCLE_MS` (6000: each non-reader is replaced after
//! this long), `NPH_BENCH_BIG_BYTES` (100000), `NPH_BENCH_BIG_RATE` (10
//! per second), `NPH_BENCH_SLOW` (768 slow connections, half heads, half
//! bodies), `NPH_BENCH_SLOW_WARMUP_MS` (11000: past the server's 10 s head
//! and body deadlines), `NPH_BENCH_QUEUE_BUDGET` (16 MiB),
//! `NPH_BENCH_MAX_CONNECTIONS` (4096), `NPH_BENCH_PHASES` (a comma list of
//! burn, churn, ping, nonread, slow, publish, publish-calm; default all),
//! `NPH_BENCH_NICE` (each attack runs once per niceness of its threads
//! listed: `0,19`, quick `0`), `NPH_BENCH_PONG_GAP_MS` (100), `NPH_BENCH_WAIT_MS` (5000, for
//! a round to arrive), `NPH_BENCH_SETTLE_MS` (3000, after each attack),
//! `NPH_BENCH_QUIET_WAIT_MS` (60000: wait this long at most for other
//! processes to leave the machine mostly idle), `NPH_BENCH_LOG` (a file
//! to copy the server's log to), `NPH_BENCH_OUT` (the report; default
//! docs/benchmark-attacks.md, in quick mode a file in the temp directory),
//! `NPH_BENCH_COMMIT`.

#[path = "client.rs"]
mod client;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use client::{
    connect_from, cpu_ns, env_or, forget, hung_up, linger_zero, machine_busy_ns, meminfo_kib, open,
    percentile, pss_kib, raise_fd_limit, rss_kib, status_value, thread_cpu_ns, threads, wait_ready,
    ws_frame, Client, Poller,
};
use nph_events::clock::SystemClock;
use nph_events::config::Config;
use nph_events::message::Message;
use support::listener::Listener;
use support::servers::repo;

const TOKEN: &str = "bench-token";
/// The well-behaved clients' channel.
const CALM: &str = "calm";
const SSE_READY: &[u8] = b"retry:";
const WS_READY: &[u8] = b"101 Switching";
/// Legitimate newcomers and POSTs probed per phase.
const PROBES: usize = 5;

/// What the run is told (environment, or the quick defaults).
struct Settings {
    quick: bool,
    sse: usize,
    ws: usize,
    rounds: usize,
    pongs: usize,
    sample: usize,
    gap: Duration,
    pong_gap: Duration,
    warmup: Duration,
    settle: Duration,
    wait: Duration,
    attackers: usize,
    posters: usize,
    burn: usize,
    nonread_ws: usize,
    nonread_sse: usize,
    nonread_cycle: Duration,
    big_bytes: usize,
    big_rate: f64,
    slow: usize,
    addrs: usize,
    budget: usize,
    max_connections: usize,
    phases: Vec<String>,
    /// Each attack runs once per niceness of its threads listed here.
    nice: Vec<i32>,
    slow_warmup: Duration,
    quiet_wait: Duration,
    log: Option<PathBuf>,
}

fn setting<T: std::str::FromStr>(name: &str, full: &str, quick_value: &str, quick: bool) -> T
where
    T::Err: std::fmt::Debug,
{
    env_or(name, if quick { quick_value } else { full })
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

impl Settings {
    fn from_env() -> Settings {
        let quick = env_or("NPH_BENCH_QUICK", "0") != "0";
        let ms = |name: &str, full: &str, q: &str| {
            Duration::from_millis(setting::<u64>(name, full, q, quick))
        };
        let all = "burn,churn,ping,nonread,slow,publish,publish-calm";
        Settings {
            quick,
            sse: setting("NPH_BENCH_ATTACK_SSE", "500", "50", quick),
            ws: setting("NPH_BENCH_ATTACK_WS", "500", "50", quick),
            rounds: setting("NPH_BENCH_ROUNDS", "30", "5", quick),
            pongs: setting("NPH_BENCH_PONGS", "30", "5", quick),
            sample: setting("NPH_BENCH_PONG_SAMPLE", "50", "10", quick),
            gap: ms("NPH_BENCH_GAP_MS", "250", "150"),
            pong_gap: ms("NPH_BENCH_PONG_GAP_MS", "100", "50"),
            warmup: ms("NPH_BENCH_WARMUP_MS", "2000", "500"),
            settle: ms("NPH_BENCH_SETTLE_MS", "3000", "500"),
            wait: ms("NPH_BENCH_WAIT_MS", "5000", "3000"),
            attackers: setting("NPH_BENCH_ATTACKERS", "4", "2", quick),
            posters: setting("NPH_BENCH_POSTERS", "4", "2", quick),
            burn: setting("NPH_BENCH_BURN", "2", "2", quick),
            nonread_ws: setting("NPH_BENCH_NONREAD_WS", "8", "2", quick),
            nonread_sse: setting("NPH_BENCH_NONREAD_SSE", "200", "20", quick),
            nonread_cycle: ms("NPH_BENCH_NONREAD_CYCLE_MS", "6000", "2000"),
            big_bytes: setting("NPH_BENCH_BIG_BYTES", "100000", "100000", quick),
            big_rate: setting("NPH_BENCH_BIG_RATE", "10", "10", quick),
            slow: setting("NPH_BENCH_SLOW", "768", "96", quick),
            addrs: setting::<usize>("NPH_BENCH_ADDRS", "16", "16", quick).clamp(1, 250),
            budget: setting("NPH_BENCH_QUEUE_BUDGET", "16777216", "16777216", quick),
            max_connections: setting("NPH_BENCH_MAX_CONNECTIONS", "4096", "4096", quick),
            phases: env_or("NPH_BENCH_PHASES", all)
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
            nice: env_or("NPH_BENCH_NICE", if quick { "0" } else { "0,19" })
                .split(',')
                .map(|n| n.trim().parse().expect("NPH_BENCH_NICE: numbers"))
                .collect(),
            slow_warmup: ms("NPH_BENCH_SLOW_WARMUP_MS", "11000", "1000"),
            quiet_wait: ms("NPH_BENCH_QUIET_WAIT_MS", "60000", "0"),
            log: std::env::var("NPH_BENCH_LOG").ok().map(PathBuf::from),
        }
    }
}

/// What runs against the server during a phase.
#[derive(Clone)]
enum Attack {
    None,
    /// Threads spinning in the benchmark process: the CPU an attacker
    /// takes, with no network at all (the control).
    Burn,
    Churn,
    PingFlood,
    NonReaders,
    Slowloris,
    /// WebSocket messages and POSTs at full speed on this channel.
    PublishFlood(&'static str),
}

struct Phase {
    name: String,
    attack: Attack,
    /// Niceness of the attacking threads (0: as the server and the
    /// measuring client).
    nice: i32,
}

fn phases(s: &Settings) -> Vec<Phase> {
    let plain = |name: &str| Phase {
        name: name.to_owned(),
        attack: Attack::None,
        nice: 0,
    };
    let mut list = vec![plain("baseline 1"), plain("baseline 2")];
    let chosen = [
        ("burn", "control: CPU burn", Attack::Burn),
        ("churn", "1. channel-name churn", Attack::Churn),
        ("ping", "2. ping flood", Attack::PingFlood),
        ("nonread", "3. non-reading clients", Attack::NonReaders),
        ("slow", "4. slow heads and bodies", Attack::Slowloris),
        (
            "publish",
            "5. publish flood (own channel)",
            Attack::PublishFlood("flood"),
        ),
        (
            "publish-calm",
            "5b. publish flood into `calm`",
            Attack::PublishFlood(CALM),
        ),
    ];
    for (key, name, attack) in chosen {
        if !s.phases.iter().any(|p| p == key) {
            continue;
        }
        for &nice in &s.nice {
            list.push(Phase {
                name: if nice == 0 {
                    name.to_owned()
                } else {
                    format!("{name}, attackers nice {nice}")
                },
                attack: attack.clone(),
                nice,
            });
        }
    }
    list.push(plain("baseline end"));
    list
}

/// Niceness for attacking threads, set by each one when it starts.
static NICE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Gives the calling thread the attackers' niceness (Linux: per thread).
fn apply_nice() {
    let nice = NICE.load(Ordering::Relaxed);
    if nice != 0 {
        // SAFETY: setpriority(2) on the calling thread; no memory effects.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    }
}

/// The attackers' counters (all threads together).
#[derive(Default)]
struct Stats {
    /// Connections opened.
    conns: AtomicU64,
    /// Frames, messages or requests sent.
    frames: AtomicU64,
    bytes_out: AtomicU64,
    bytes_in: AtomicU64,
    /// Streams established (churn); 201 answers (POST).
    ok: AtomicU64,
    /// Events the publish flood got published (seen by an observer).
    events: AtomicU64,
    s408: AtomicU64,
    s429: AtomicU64,
    s503: AtomicU64,
    other: AtomicU64,
    /// Connections the server closed.
    drops: AtomicU64,
    /// Failed connects.
    errors: AtomicU64,
    /// CPU time of the attacking threads (ns).
    cpu_ns: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Stats {
    /// Counts an HTTP answer by its status.
    fn status(&self, code: u16) {
        match code {
            200 | 201 | 101 => add(&self.ok, 1),
            408 => add(&self.s408, 1),
            429 => add(&self.s429, 1),
            503 => add(&self.s503, 1),
            _ => add(&self.other, 1),
        }
    }
}

/// Where the attackers aim, and from where.
#[derive(Clone)]
struct Target {
    port: u16,
    spool: PathBuf,
    addrs: usize,
}

impl Target {
    /// The `i`th attacker address: 127.0.1.1, 127.0.1.2, …
    fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 1, (1 + i % self.addrs) as u8)
    }
}

/// A running attack.
struct Running {
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    handles: Vec<JoinHandle<()>>,
    start: Instant,
}

impl Running {
    fn new() -> Running {
        Running {
            stop: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(Stats::default()),
            handles: Vec::new(),
            start: Instant::now(),
        }
    }

    /// Starts an attacking thread; its CPU time is counted when it ends.
    fn spawn(&mut self, f: impl FnOnce(&AtomicBool, &Stats) + Send + 'static) {
        let (stop, stats) = (Arc::clone(&self.stop), Arc::clone(&self.stats));
        self.handles.push(
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    apply_nice();
                    f(&stop, &stats);
                    add(&stats.cpu_ns, thread_cpu_ns());
                })
                .expect("attacker thread"),
        );
    }

    /// Stops every thread; returns the counters and how long it ran.
    fn stop(self) -> (Arc<Stats>, Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let ran = self.start.elapsed();
        for h in self.handles {
            let _ = h.join();
        }
        (self.stats, ran)
    }
}

fn start(attack: &Attack, t: &Target, s: &Settings) -> Running {
    let mut run = Running::new();
    match attack {
        Attack::None => {}
        Attack::Burn => {
            for _ in 0..s.burn {
                run.spawn(|stop, _| {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for i in 0..100_000u64 {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                        }
                    }
                });
            }
        }
        Attack::Churn => {
            for i in 0..s.attackers {
                let t = t.clone();
                run.spawn(move |stop, st| churn(&t, i, stop, st));
            }
        }
        Attack::PingFlood => {
            let burst: Arc<Vec<u8>> =
                Arc::new((0..256).flat_map(|_| ws_frame(9, b"ping")).collect());
            for i in 0..s.attackers {
                let (t, burst) = (t.clone(), Arc::clone(&burst));
                run.spawn(move |stop, st| {
                    flood_ws(&t, i, "attack", &burst, 256, stop, st);
                });
            }
        }
        Attack::NonReaders => {
            for i in 0..s.nonread_ws {
                let t = t.clone();
                run.spawn(move |stop, st| never_read_ws(&t, i, stop, st));
            }
            let (t2, n, cycle) = (t.clone(), s.nonread_sse, s.nonread_cycle);
            run.spawn(move |stop, st| never_read_sse(&t2, n, cycle, stop, st));
            let (t3, bytes, rate) = (t.clone(), s.big_bytes, s.big_rate);
            run.spawn(move |stop, st| publish_big(&t3, bytes, rate, stop, st));
        }
        Attack::Slowloris => {
            let heads = s.slow / 2;
            let bodies = s.slow - heads;
            let t1 = t.clone();
            run.spawn(move |stop, st| slowloris(&t1, 0, heads, false, stop, st));
            let t2 = t.clone();
            run.spawn(move |stop, st| slowloris(&t2, heads, bodies, true, stop, st));
        }
        Attack::PublishFlood(channel) => {
            let burst: Arc<Vec<u8>> =
                Arc::new((0..64).flat_map(|_| ws_frame(1, b"flood")).collect());
            for i in 0..s.attackers {
                let (t, burst, ch) = (t.clone(), Arc::clone(&burst), *channel);
                run.spawn(move |stop, st| flood_ws(&t, i, ch, &burst, 64, stop, st));
            }
            for i in 0..s.posters {
                let (t, ch, first) = (t.clone(), *channel, s.attackers);
                run.spawn(move |stop, st| post_flood(&t, first + i, ch, stop, st));
            }
            let (t, ch) = (t.clone(), *channel);
            run.spawn(move |stop, st| observe(&t, ch, stop, st));
        }
    }
    run
}

/// Reads an HTTP head (up to a blank line) one byte at a time, so nothing
/// after it is consumed; returns its status (0: none).
fn read_head(s: &mut TcpStream) -> io::Result<u16> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
        if head.len() > 16384 {
            break;
        }
    }
    Ok(status_of(&head))
}

fn status_of(head: &[u8]) -> u16 {
    head.get(9..12)
        .and_then(|d| std::str::from_utf8(d).ok())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

/// A WebSocket connection from attacker address `i` on `channel`, the
/// handshake done (counted in `st`).
fn ws_open(t: &Target, i: usize, channel: &str, st: &Stats) -> Option<TcpStream> {
    let Ok(mut s) = connect_from(t.addr(i), t.port, None) else {
        add(&st.errors, 1);
        return None;
    };
    add(&st.conns, 1);
    let req = format!(
        "GET /events?channel={channel} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        t.port
    );
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(req.as_bytes()).ok()?;
    let status = read_head(&mut s).unwrap_or(0);
    if status != 101 {
        st.status(status);
        linger_zero(&s);
        return None;
    }
    s.set_read_timeout(None).ok()?;
    Some(s)
}

/// Back off a little after a refused or failed connection.
fn pause(stop: &AtomicBool) {
    if !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(20));
    }
}

/// Attack 1: opens SSE streams on fresh channel names and closes them (with a
/// reset) as fast as the server answers.
fn churn(t: &Target, i: usize, stop: &AtomicBool, st: &Stats) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let Ok(mut s) = connect_from(t.addr(i), t.port, None) else {
            add(&st.errors, 1);
            pause(stop);
            continue;
        };
        add(&st.conns, 1);
        let req = format!("GET /events?channel=churn-{i}-{n} HTTP/1.1\r\nHost: bench\r\n\r\n");
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(req.as_bytes());
        add(&st.bytes_out, req.len() as u64);
        buf.clear();
        let status = loop {
            match s.read(&mut chunk) {
                Ok(k) if k > 0 => {
                    buf.extend_from_slice(&chunk[..k]);
                    add(&st.bytes_in, k as u64);
                    let status = status_of(&buf);
                    if status != 0 && status != 200 {
                        break status;
                    }
                    if buf.windows(SSE_READY.len()).any(|w| w == SSE_READY) {
                        break 200;
                    }
                }
                _ => break 0,
            }
        };
        st.status(status);
        linger_zero(&s);
        if status != 200 {
            pause(stop);
        }
    }
}

/// Attacks 2 and 5: writes `burst` (`frames` frames) on a WebSocket as fast as
/// the socket takes it, reading (and dropping) what comes back on another
/// thread; reconnects when the server closes.
fn flood_ws(
    t: &Target,
    i: usize,
    channel: &str,
    burst: &[u8],
    frames: u64,
    stop: &AtomicBool,
    st: &Stats,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(mut s) = ws_open(t, i, channel, st) else {
            pause(stop);
            continue;
        };
        let mut reader = s.try_clone().expect("clone");
        let drain = thread::spawn(move || {
            apply_nice();
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0u64;
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                got += n as u64;
            }
            (got, thread_cpu_ns())
        });
        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
        let mut closed = false;
        while !stop.load(Ordering::Relaxed) {
            match s.write_all(burst) {
                Ok(()) => {
                    add(&st.frames, frames);
                    add(&st.bytes_out, burst.len() as u64);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            add(&st.drops, 1);
        }
        linger_zero(&s);
        let _ = s.shutdown(Shutdown::Both);
        if let Ok((got, cpu)) = drain.join() {
            add(&st.bytes_in, got);
            add(&st.cpu_ns, cpu);
        }
    }
}

/// Attack 3: a WebSocket client that writes pings and messages as fast as the
/// socket takes them and never reads.
fn never_read_ws(t: &Target, i: usize, stop: &AtomicBool, st: &Stats) {
    let burst: Vec<u8> = (0..256)
        .flat_map(|k| ws_frame(if k % 2 == 0 { 9 } else { 1 }, &[b'p'; 120]))
        .collect();
    let frame_len = burst.len() as u64 / 256;
    while !stop.load(Ordering::Relaxed) {
        let Some(mut s) = ws_open(t, 1000 + i, "attack", st) else {
            pause(stop);
            continue;
        };
        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
        let mut at = 0;
        while !stop.load(Ordering::Relaxed) {
            match s.write(&burst[at..]) {
                Ok(n) => {
                    add(&st.bytes_out, n as u64);
                    at = (at + n) % burst.len();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if hung_up(&s) {
                        add(&st.drops, 1);
                        break;
                    }
                }
                Err(_) => {
                    add(&st.drops, 1);
                    break;
                }
            }
        }
        linger_zero(&s);
    }
    st.frames
        .fetch_max(get(&st.bytes_out) / frame_len, Ordering::Relaxed);
}

/// Attack 3: `n` SSE clients of channel `big` with a small receive buffer that
/// never read. A client that never reads cannot see that the server
/// dropped it (the end waits behind the data it does not read), so each
/// one is replaced by a fresh one after `cycle` (or at once when it does
/// see an end).
fn never_read_sse(t: &Target, n: usize, cycle: Duration, stop: &AtomicBool, st: &Stats) {
    let req = b"GET /events?channel=big HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut slots: Vec<Option<(TcpStream, Instant)>> = (0..n).map(|_| None).collect();
    // Spread the first replacements over one cycle.
    let spread = cycle / n.max(1) as u32;
    let first = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        for (k, slot) in slots.iter_mut().enumerate() {
            if slot
                .as_ref()
                .is_some_and(|(s, since)| hung_up(s) || since.elapsed() >= cycle)
            {
                add(&st.drops, 1);
                if let Some((s, _)) = slot.take() {
                    linger_zero(&s);
                }
            }
            if slot.is_none() {
                match connect_from(t.addr(k), t.port, Some(4096)) {
                    Ok(mut s) => {
                        add(&st.conns, 1);
                        let _ = s.write_all(req);
                        let born = if first.elapsed() < cycle {
                            // The first round: staggered ages.
                            Instant::now() - spread * k as u32
                        } else {
                            Instant::now()
                        };
                        *slot = Some((s, born));
                    }
                    Err(_) => add(&st.errors, 1),
                }
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    for (s, _) in slots.into_iter().flatten() {
        linger_zero(&s);
    }
}

/// The spool publisher (in-process, as `nph-events publish` does).
fn publisher(t: &Target) -> Config {
    Config {
        spool: Some(t.spool.clone()),
        ..Config::default()
    }
}

/// Attack 3: events of `bytes` on channel `big`, `rate` a second.
fn publish_big(t: &Target, bytes: usize, rate: f64, stop: &AtomicBool, st: &Stats) {
    let config = publisher(t);
    let clock = SystemClock::new();
    let message = Message {
        event: None,
        data: "b".repeat(bytes),
        sender: None,
    };
    let every = Duration::from_secs_f64(1.0 / rate.max(0.01));
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if nph_events::stream::publish(&config, "big", &message, &clock).is_ok() {
            add(&st.ok, 1);
        }
        next += every;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// Attack 4: `n` connections (slots `first`…) that send one byte a second of a
/// request head that never ends, or (`body`) of the body of an
/// authenticated POST; each one answered or closed is reopened.
fn slowloris(t: &Target, first: usize, n: usize, body: bool, stop: &AtomicBool, st: &Stats) {
    let head_prefix = b"GET /events?channel=slow HTTP/1.1\r\nHost: bench\r\nX-Slow: ";
    let post_head = format!(
        "POST /events?channel=slow HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: text/plain\r\nContent-Length: 60000\r\n\r\n"
    );
    let mut slots: Vec<Option<(TcpStream, usize)>> = (0..n).map(|_| None).collect();
    let mut answer = [0u8; 512];
    let mut tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        for (k, slot) in slots.iter_mut().enumerate() {
            if let Some((s, sent)) = slot.as_mut() {
                let alive = match s.read(&mut answer) {
                    Ok(0) => {
                        add(&st.drops, 1);
                        false
                    }
                    Ok(m) => {
                        st.status(status_of(&answer[..m]));
                        false
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let byte = if body {
                            b'a'
                        } else {
                            head_prefix.get(*sent).copied().unwrap_or(b'a')
                        };
                        match s.write(&[byte]) {
                            Ok(1) => {
                                *sent += 1;
                                add(&st.bytes_out, 1);
                                true
                            }
                            _ => {
                                add(&st.drops, 1);
                                false
                            }
                        }
                    }
                    Err(_) => {
                        add(&st.drops, 1);
                        false
                    }
                };
                if !alive {
                    if let Some((s, _)) = slot.take() {
                        linger_zero(&s);
                    }
                }
            }
            if slot.is_none() {
                match connect_from(t.addr(first + k), t.port, None) {
                    Ok(mut s) => {
                        add(&st.conns, 1);
                        if body {
                            let _ = s.write_all(post_head.as_bytes());
                        }
                        let _ = s.set_nonblocking(true);
                        *slot = Some((s, 0));
                    }
                    Err(_) => add(&st.errors, 1),
                }
            }
        }
        tick += Duration::from_secs(1);
        while !stop.load(Ordering::Relaxed) && Instant::now() < tick {
            thread::sleep(Duration::from_millis(20));
        }
    }
    for (s, _) in slots.into_iter().flatten() {
        linger_zero(&s);
    }
}

/// Reads one HTTP answer with a `Content-Length` body from a keep-alive
/// connection; returns its status and whether the server closes.
fn read_answer(s: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(u16, bool)> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = status_of(buf);
                let close = head.contains("connection: close");
                buf.drain(..end + 4 + len);
                return Ok((status, close));
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Attack 5: authenticated POSTs on `channel` as fast as they are answered, on a
/// kept-alive connection (reopened when the server closes it).
fn post_flood(t: &Target, i: usize, channel: &str, stop: &AtomicBool, st: &Stats) {
    let req = format!(
        "POST /events?channel={channel} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nflood"
    );
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = connect_from(t.addr(i), t.port, None) else {
            add(&st.errors, 1);
            pause(stop);
            continue;
        };
        add(&st.conns, 1);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        buf.clear();
        while !stop.load(Ordering::Relaxed) {
            if s.write_all(req.as_bytes()).is_err() {
                break;
            }
            add(&st.frames, 1);
            add(&st.bytes_out, req.len() as u64);
            match read_answer(&mut s, &mut buf) {
                Ok((status, close)) => {
                    st.status(status);
                    if close {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        linger_zero(&s);
    }
}

/// Attack 5: an SSE client of the flooded channel (from 127.0.0.1, like the
/// well-behaved ones) that counts the flood's events that got published.
fn observe(t: &Target, channel: &str, stop: &AtomicBool, st: &Stats) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", t.port)) else {
        return;
    };
    let req = format!("GET /events?channel={channel} HTTP/1.1\r\nHost: bench\r\n\r\n");
    let _ = s.write_all(req.as_bytes());
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let needle = b"data: flood";
    let mut carry: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                carry.extend_from_slice(&chunk[..n]);
                let found = carry.windows(needle.len()).filter(|w| w == needle).count();
                add(&st.events, found as u64);
                let keep = carry.len().min(needle.len() - 1);
                carry.drain(..carry.len() - keep);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    linger_zero(&s);
}

/// Peak server memory and threads while a phase runs (sampled every
/// 20 ms; PSS every 200 ms; `VmHWM` reset at the start and read at the
/// end for the exact RSS peak).
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Peaks>,
    pid: u32,
}

/// Peaks while a phase ran (KiB; threads).
#[derive(Default)]
struct Peaks {
    rss: u64,
    pss: u64,
    threads: u64,
    /// TCP buffer memory of the whole machine (`/proc/net/sockstat`).
    tcp: u64,
}

/// Memory held by every TCP socket's buffers on the machine (KiB): the
/// kernel's side of queued output, which no process's RSS shows.
fn tcp_mem_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let pages: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("TCP:"))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "mem")?;
            words.get(at + 1)?.parse().ok()
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page / 1024
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut p = Peaks::default();
            let mut i = 0u64;
            while !flag.load(Ordering::Relaxed) {
                p.rss = p.rss.max(rss_kib(pid));
                p.threads = p.threads.max(threads(pid));
                p.tcp = p.tcp.max(tcp_mem_kib());
                if i.is_multiple_of(10) {
                    p.pss = p.pss.max(pss_kib(pid));
                }
                i += 1;
                thread::sleep(Duration::from_millis(20));
            }
            p.pss = p.pss.max(pss_kib(pid));
            p
        });
        Sampler { stop, handle, pid }
    }

    fn stop(self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        let mut p = self.handle.join().unwrap_or_default();
        p.rss = p.rss.max(status_value(self.pid, "VmHWM:").unwrap_or(0));
        p
    }
}

/// What the server logged during a phase.
#[derive(Default)]
struct LogCounts {
    lines: usize,
    budget: usize,
    refused: usize,
}

fn drain_log(log: &Receiver<String>, copy: Option<&Path>, phase: &str) -> LogCounts {
    let mut c = LogCounts::default();
    let mut file = copy.and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    while let Ok(line) = log.try_recv() {
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "[{phase}] {line}");
        }
        c.lines += 1;
        if line.contains("queue_budget") {
            c.budget += 1;
        }
        if line.contains("refused") {
            c.refused += 1;
        }
    }
    c
}

/// One phase's figures.
struct Row {
    name: String,
    delivery: Vec<f64>,
    /// Each round's p99 over the clients, sorted.
    round_p99: Vec<f64>,
    missing: usize,
    pong: Vec<f64>,
    pong_missing: usize,
    joins: Vec<f64>,
    join_failed: usize,
    posts: Vec<u16>,
    peaks: Peaks,
    /// Server RSS (KiB) when the phase started and after it settled.
    rss_before: u64,
    rss_after: u64,
    server_cpu: f64,
    /// Other processes' CPU, % of all cores.
    others: f64,
    attack_cpu: f64,
    measurer_cpu: f64,
    calm_dropped: usize,
    log: LogCounts,
    achieved: String,
    spool: (usize, usize),
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        percentile(v, p)
    }
}

/// The server and the well-behaved clients.
struct Bench {
    s: Settings,
    server: Listener,
    target: Target,
    clients: Vec<Client>,
    /// Arrival slots per phase: delivery rounds, then pongs.
    per_phase: usize,
    slots: usize,
    config: Config,
    clock: SystemClock,
}

fn calm_request(ws: bool, port: u16) -> String {
    if ws {
        format!(
            "GET /events?channel={CALM} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
    } else {
        format!("GET /events?channel={CALM} HTTP/1.1\r\nHost: bench\r\n\r\n")
    }
}

impl Bench {
    fn is_ws(&self, i: usize) -> bool {
        i >= self.s.sse
    }

    /// Replaces the well-behaved clients the server closed; returns how
    /// many were replaced.
    fn refill(&mut self) -> usize {
        let gone: Vec<usize> = (0..self.clients.len())
            .filter(|&i| self.clients[i].closed)
            .collect();
        for &i in &gone {
            let ws = self.is_ws(i);
            let req = calm_request(ws, self.target.port);
            let mut fresh = open(self.target.port, &req, 1, self.slots);
            let ready = if ws { WS_READY } else { SSE_READY };
            wait_ready(&mut fresh, ready, Duration::from_secs(10));
            self.clients[i] = fresh.pop().unwrap();
        }
        gone.len()
    }

    fn publish(&self, data: &str) {
        let message = Message {
            event: None,
            data: data.to_owned(),
            sender: None,
        };
        nph_events::stream::publish(&self.config, CALM, &message, &self.clock)
            .expect("publish a round");
    }

    fn run(&mut self, index: usize, phase: &Phase) -> Row {
        let refilled = self.refill();
        let pid = self.server.proc.pid();
        let _ = drain_log(&self.server.log, self.s.log.as_deref(), "before");
        NICE.store(phase.nice, Ordering::Relaxed);
        let warmup = match phase.attack {
            Attack::Slowloris => self.s.slow_warmup.max(self.s.warmup),
            _ => self.s.warmup,
        };
        let poller = Poller::new(&self.clients);
        poller.pump(&mut self.clients, Duration::from_millis(200), |_| false);
        let rss_before = rss_kib(pid);
        let sampler = Sampler::start(pid);
        let me = std::process::id();
        let (cpu0, busy0, me0, bench0) =
            (cpu_ns(pid), machine_busy_ns(), thread_cpu_ns(), cpu_ns(me));
        let t0 = Instant::now();
        let running = start(&phase.attack, &self.target, &self.s);
        poller.pump(&mut self.clients, warmup, |_| false);

        // (a) Delivery: one event on `calm`, every client's arrival.
        let base = index * self.per_phase;
        let mut delivery = Vec::new();
        let mut missing = 0;
        // Each round's p99 over the clients; each round's slowest SSE and
        // WebSocket arrival (for the log).
        let mut round_p99 = Vec::new();
        let mut rounds_seen = Vec::new();
        for r in 0..self.s.rounds {
            let slot = base + r;
            poller.pump(&mut self.clients, self.s.gap, |_| false);
            self.clients.iter_mut().for_each(forget);
            let sent = Instant::now();
            self.publish(&format!("round-{slot}"));
            let mut next = 0;
            poller.pump(&mut self.clients, self.s.wait, |cs| {
                while next < cs.len() && (cs[next].closed || cs[next].arrivals[slot].is_some()) {
                    next += 1;
                }
                next == cs.len()
            });
            let mut round = Vec::new();
            let mut worst = (0.0f64, 0.0f64);
            for (i, c) in self.clients.iter().enumerate() {
                match c.arrivals[slot] {
                    Some(at) => {
                        let ms = (at - sent).as_secs_f64() * 1e3;
                        round.push(ms);
                        if self.is_ws(i) {
                            worst.1 = worst.1.max(ms);
                        } else {
                            worst.0 = worst.0.max(ms);
                        }
                    }
                    None => missing += 1,
                }
            }
            round.sort_by(f64::total_cmp);
            round_p99.push(pct(&round, 0.99));
            rounds_seen.push(format!("{:.0}/{:.0}", worst.0, worst.1));
            delivery.extend(round);
        }
        round_p99.sort_by(f64::total_cmp);

        // (b) Pong round trip: a ping from each sampled WebSocket client,
        // its payload a marker the pong carries back.
        let sample: Vec<usize> = (self.s.sse..self.clients.len())
            .take(self.s.sample)
            .collect();
        let mut pong = Vec::new();
        let mut pong_missing = 0;
        for q in 0..self.s.pongs {
            let slot = base + self.s.rounds + q;
            poller.pump(&mut self.clients, self.s.pong_gap, |_| false);
            self.clients.iter_mut().for_each(forget);
            let ping = ws_frame(9, format!("round-{slot}").as_bytes());
            let mut sent = Vec::new();
            for &i in &sample {
                let c = &mut self.clients[i];
                if !c.closed {
                    sent.push((i, Instant::now()));
                    let _ = c.stream.write_all(&ping);
                }
            }
            poller.pump(&mut self.clients, self.s.wait, |cs| {
                sent.iter()
                    .all(|&(i, _)| cs[i].closed || cs[i].arrivals[slot].is_some())
            });
            for &(i, at) in &sent {
                match self.clients[i].arrivals[slot] {
                    Some(t) => pong.push((t - at).as_secs_f64() * 1e3),
                    None => pong_missing += 1,
                }
            }
        }
        let measure_cpu = thread_cpu_ns() - me0;

        // Newcomers and a legitimate publisher during the attack.
        let (mut joins, mut join_failed, mut posts) = (Vec::new(), 0, Vec::new());
        for _ in 0..PROBES {
            poller.pump(&mut self.clients, Duration::from_millis(20), |_| false);
            match join_time(self.target.port) {
                Some(ms) => joins.push(ms),
                None => join_failed += 1,
            }
            posts.push(legit_post(self.target.port));
        }
        let wall = t0.elapsed().as_secs_f64();
        let server_ns = cpu_ns(pid) - cpu0;
        let bench_ns = cpu_ns(me).saturating_sub(bench0);
        let busy_ns = machine_busy_ns().saturating_sub(busy0);
        let server_cpu = server_ns as f64 / 1e9 / wall * 100.0;
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
        let others =
            busy_ns.saturating_sub(server_ns + bench_ns) as f64 / 1e9 / wall / cores * 100.0;
        let (stats, ran) = running.stop();
        NICE.store(0, Ordering::Relaxed);
        let peaks = sampler.stop();
        let calm_dropped = self.clients.iter().filter(|c| c.closed).count();
        poller.pump(&mut self.clients, self.s.settle, |_| false);
        self.clients.iter_mut().for_each(forget);
        let rss_after = rss_kib(pid);
        let log = drain_log(&self.server.log, self.s.log.as_deref(), &phase.name);
        delivery.sort_by(f64::total_cmp);
        pong.sort_by(f64::total_cmp);
        joins.sort_by(f64::total_cmp);
        let spool = (
            count_entries(&self.target.spool.join("channels")),
            count_entries(&self.target.spool.join("wake")),
        );
        let row = Row {
            name: phase.name.clone(),
            missing,
            pong_missing,
            joins,
            join_failed,
            posts,
            peaks,
            rss_before,
            rss_after,
            server_cpu,
            others,
            attack_cpu: get(&stats.cpu_ns) as f64 / 1e9 / ran.as_secs_f64() * 100.0,
            measurer_cpu: measure_cpu as f64 / 1e9 / wall * 100.0,
            calm_dropped,
            log,
            achieved: achieved(&phase.attack, &stats, ran, &self.s),
            spool,
            delivery,
            round_p99,
            pong,
        };
        eprintln!(
            "{}: delivery p50 {:.1} p99 {:.1} max {:.1} ms ({} missing), pong p50 {:.2} p99 {:.2} ms; \
             RSS peak {} KiB, server CPU {:.0} %, attackers {:.0} %; {}; {} calm clients dropped \
             ({refilled} replaced before)",
            row.name,
            pct(&row.delivery, 0.5),
            pct(&row.delivery, 0.99),
            pct(&row.delivery, 1.0),
            row.missing,
            pct(&row.pong, 0.5),
            pct(&row.pong, 0.99),
            row.peaks.rss,
            row.server_cpu,
            row.attack_cpu,
            row.achieved,
            row.calm_dropped,
        );
        eprintln!(
            "  slowest arrival per round, SSE/WebSocket (ms): {}",
            rounds_seen.join(" ")
        );
        row
    }
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// A new SSE client (from 127.0.0.1): ms from connect to its `retry:`.
fn join_time(port: u16) -> Option<f64> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /events?channel=probe HTTP/1.1\r\nHost: bench\r\n\r\n")
        .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let ok = loop {
        match s.read(&mut chunk) {
            Ok(n) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(SSE_READY.len()).any(|w| w == SSE_READY) {
                    break true;
                }
            }
            _ => break false,
        }
    };
    let ms = start.elapsed().as_secs_f64() * 1e3;
    linger_zero(&s);
    ok.then_some(ms)
}

/// A legitimate POST (from 127.0.0.1, with the token): its status.
fn legit_post(port: u16) -> u16 {
    let body = "probe";
    let req = format!(
        "POST /events?channel=probe HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(req.as_bytes());
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    status_of(&answer)
}

/// The attack's own rate, in words.
fn achieved(attack: &Attack, st: &Stats, ran: Duration, s: &Settings) -> String {
    let secs = ran.as_secs_f64().max(1e-9);
    let per = |v: u64| v as f64 / secs;
    let mib = |v: u64| v as f64 / secs / (1 << 20) as f64;
    let refused = format!(
        "{} × 429, {} × 503, {} × 408",
        get(&st.s429),
        get(&st.s503),
        get(&st.s408)
    );
    match attack {
        Attack::None => "–".into(),
        Attack::Burn => format!("{} threads spinning", s.burn),
        Attack::Churn => format!(
            "{:.0} streams/s opened and reset on fresh channels ({} threads; {refused}, {} other)",
            per(get(&st.ok)),
            s.attackers,
            get(&st.other)
        ),
        // What the server answered (a 6-byte pong per ping it took) and
        // how often it closed a flooder (1008): bytes written by the
        // attackers mostly went into sockets the server no longer read.
        Attack::PingFlood => format!(
            "{} connections: {:.0}k pongs/s back ({:.2} MiB/s), {:.0} sessions/s closed by \
             the server (1008 past 20 pings/s) and reopened",
            s.attackers,
            per(get(&st.bytes_in)) / 6e3,
            mib(get(&st.bytes_in)),
            per(get(&st.drops)),
        ),
        Attack::NonReaders => format!(
            "{} WS writing {:.2} MiB/s in all (then stalled); {} SSE never reading, each \
             replaced after {:.1} s ({:.0} new per s); {:.1} × {} kB events/s on their channel \
             ({:.0} MiB/s offered to them)",
            s.nonread_ws,
            mib(get(&st.bytes_out)),
            s.nonread_sse,
            s.nonread_cycle.as_secs_f64(),
            per(get(&st.conns).saturating_sub(s.nonread_ws as u64)),
            per(get(&st.ok)),
            s.big_bytes / 1000,
            per(get(&st.ok)) * s.big_bytes as f64 * s.nonread_sse as f64 / (1 << 20) as f64
        ),
        Attack::Slowloris => format!(
            "{} connections at 1 byte/s: {:.0} connects/s, {:.0} bytes/s; answers {refused}; \
             {} closed without answer",
            s.slow,
            per(get(&st.conns)),
            per(get(&st.bytes_out)),
            get(&st.drops)
        ),
        Attack::PublishFlood(_) => format!(
            "{:.0}k WS messages/s written by {} clients (most into sockets the server closed with 1008) + {:.0} POSTs/s ({} threads: {:.0} × 201/s, \
             {:.0} × 429/s); {:.0} events/s published",
            per(get(&st.frames)) / 1e3,
            s.attackers,
            per(get(&st.ok) + get(&st.s429) + get(&st.other)),
            s.posters,
            per(get(&st.ok)),
            per(get(&st.s429)),
            per(get(&st.events))
        ),
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The commit, and whether the server's sources differ from it (looked
/// at when the run starts, just after the build), and when the server
/// binary was built.
fn commit() -> String {
    let built = std::fs::metadata(support::bin())
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| {
            let out = Command::new("date")
                .args(["-u", "-d", &format!("@{}", d.as_secs()), "+%H:%M UTC"])
                .output()
                .ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .map_or(String::new(), |t| format!("; server binary built {t}"));
    format!("{}{built}", source_state())
}

fn source_state() -> String {
    if let Ok(c) = std::env::var("NPH_BENCH_COMMIT") {
        return c;
    }
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    match git(&["status", "--porcelain", "--", "src", "Cargo.lock"]) {
        Some(s) if s.is_empty() => format!("{head} (src/ as committed)"),
        Some(s) => format!(
            "{head} with uncommitted changes in {}",
            s.lines()
                .filter_map(|l| l.split_whitespace().last())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => head,
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} cores ({cpu}), {:.1} GiB, Linux {}, shared with other work",
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        meminfo_kib(&["MemTotal:"]) as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

fn command() -> String {
    let mut vars: Vec<String> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("NPH_BENCH_") && !matches!(k.as_str(), "NPH_BENCH_LOG" | "NPH_BENCH_OUT")
        })
        .map(|(k, v)| format!("{k}={v} "))
        .collect();
    vars.sort();
    format!("{}cargo bench --bench attacks", vars.concat())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn report(
    s: &Settings,
    rows: &[Row],
    flags: &str,
    idle_rss: u64,
    (wall, load): (Duration, f64),
    source: &str,
) -> String {
    // The reference: the lower of the two opening baselines' figures
    // (the stricter one; a burst of other work on the shared machine
    // only ever raises a baseline).
    let opening: Vec<&Row> = rows.iter().take(2).collect();
    let reference =
        |f: &dyn Fn(&Row) -> f64| opening.iter().map(|r| f(r)).fold(f64::INFINITY, f64::min);
    let ref_delivery = reference(&|r| pct(&r.delivery, 0.99));
    let ref_round = reference(&|r| pct(&r.round_p99, 0.5));
    let ref_pong = reference(&|r| pct(&r.pong, 0.99));
    let budget_kib = (s.budget / 1024) as u64;
    let mut doc = String::from("# Benchmark: well-behaved clients under attack\n\n");
    doc.push_str(&format!(
        "Generated by `{}` ({} mode, {:.0} s) on {} — commit {}.\n\n\
         Machine: {} (other processes used {load:.0} % of it when the run began; per phase in \
         the *others* column below). **Everything shares its cores**: the server, the attackers (threads of \
         the benchmark process) and the measuring client (one epoll thread reading every \
         well-behaved client) compete for the same two CPUs, so an attack that burns CPU slows \
         the measurement and the server alike; the *control: CPU burn* phase (threads that \
         only spin, no network) shows how much of a slowdown is that alone. Ratios are \
         comparable within this one run, not across machines. To reproduce: `cargo bench \
         --bench attacks` (about 6 minutes; `NPH_BENCH_QUICK=1` for a check in under a \
         minute, written to the temp directory).\n\n",
        command(),
        if s.quick { "quick" } else { "full" },
        wall.as_secs_f64(),
        date(),
        source,
        machine()
    ));
    doc.push_str(&format!(
        "Server: `nph-events serve {flags}` (release build), one server for the whole run. \
         Well-behaved clients: {} SSE + {} WebSocket on channel `calm`, from 127.0.0.1 (a \
         reverse proxy's address: not limited per address), connected before the first phase \
         and kept; any the server closes are counted and replaced before the next phase. \
         Attackers connect from {} other loopback addresses (127.0.1.x), so \
         `--max-per-client` applies to them.\n\n\
         Per phase: the attack starts, runs {:.1} s ({:.1} s for slow heads and bodies, to \
         pass the server's head and body deadlines), then (a) **delivery**: {} events published \
         on `calm`, {} ms apart, each from just before the publish to its arrival at every \
         client ({} samples a phase); (b) **pong**: {} WebSocket clients each send a ping \
         (a masked frame carrying a marker) and time its pong, {} times ({} samples); then {PROBES} newcomers \
         (time from connect to the stream's `retry:`) and {PROBES} legitimate POSTs (with the \
         token, from 127.0.0.1). The measuring events are published in-process with the \
         library's `stream::publish`, what `nph-events publish --spool` does, so they are not \
         counted against the site publish rate, which the publish flood empties on purpose \
         (`--publish-rate` stays at its default, 200/s, so the flood meets the real limit; a \
         legitimate POST publisher shares that bucket and its answers are in the *POSTs* \
         column). The reference for the ratios is the lower of the two opening baselines' \
         figures, the stricter choice (delivery p99 {ref_delivery:.1} ms, median round's p99 \
         {ref_round:.1} ms, pong p99 {ref_pong:.2} ms); *baseline end* shows the drift over \
         the run. The p99 over all samples is set by the slowest round or two (each round is \
         1/{} of a phase's samples): a burst of other work on the machine during one round \
         moves it; the *median round's p99* (each round's p99 over the clients, the median \
         over the rounds) is the steadier figure. The verdict is on the p99 over all samples, \
         delivery and pong, as the issue asks.\n\n",
        s.sse,
        s.ws,
        s.addrs,
        s.warmup.as_secs_f64(),
        s.slow_warmup.max(s.warmup).as_secs_f64(),
        s.rounds,
        s.gap.as_millis(),
        s.rounds * (s.sse + s.ws),
        s.sample,
        s.pongs,
        s.sample * s.pongs,
        s.rounds,
    ));
    if s.nice.iter().any(|&n| n != 0) {
        doc.push_str(&format!(
            "Each attack runs once per niceness of its threads ({}): at 0, the niceness of the \
             server and of the measuring client, the attackers run at full speed and take their \
             share of the two cores; at a higher niceness they get mostly the CPU time the \
             server and the measuring client leave, as attackers on other machines would (their \
             rate is then what that leaves them: see the last table).\n\n",
            s.nice
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    doc.push_str(
        "## Latency of the well-behaved clients\n\n\
         | phase | delivery p50 / p99 / max (ms) | missing | p99 × ref | median round's p99 \
         (ms) | × ref | pong p50 / p99 / max (ms) | pong p99 × ref | newcomer p50 / max (ms) \
         | POSTs 201 of 5 | others % | p99 ≤ 2× ref |\n\
         |---|---|---:|---:|---:|---:|---|---:|---|---:|---:|---|\n",
    );
    for r in rows {
        let d = pct(&r.delivery, 0.99) / ref_delivery;
        let p = pct(&r.pong, 0.99) / ref_pong;
        let met = d <= 2.0 && p <= 2.0 && r.missing == 0 && r.pong_missing == 0;
        let joins = if r.joins.is_empty() {
            "none".to_owned()
        } else {
            format!("{:.1} / {:.1}", pct(&r.joins, 0.5), pct(&r.joins, 1.0))
        };
        let failed = if r.join_failed > 0 {
            format!(" ({} failed)", r.join_failed)
        } else {
            String::new()
        };
        let created = r.posts.iter().filter(|&&c| c == 201).count();
        let other: Vec<String> = r
            .posts
            .iter()
            .filter(|&&c| c != 201)
            .map(|c| c.to_string())
            .collect();
        let others = if other.is_empty() {
            String::new()
        } else {
            format!(" ({})", other.join(", "))
        };
        doc.push_str(&format!(
            "| {} | {:.1} / {:.1} / {:.1} | {} | {:.2} | {:.1} | {:.2} | {:.2} / {:.2} / {:.2} | {:.2} \
             | {joins}{failed} | {created}{others} | {:.0} | {} |\n",
            r.name,
            pct(&r.delivery, 0.5),
            pct(&r.delivery, 0.99),
            pct(&r.delivery, 1.0),
            r.missing,
            d,
            pct(&r.round_p99, 0.5),
            pct(&r.round_p99, 0.5) / ref_round,
            pct(&r.pong, 0.5),
            pct(&r.pong, 0.99),
            pct(&r.pong, 1.0),
            p,
            r.others,
            if met { "yes" } else { "**no**" },
        ));
    }
    doc.push_str(&format!(
        "\n## The server's resources\n\n\
         RSS and PSS: peaks while the phase ran (RSS sampled every 20 ms and `VmHWM`, reset at \
         the start of each phase; PSS every 200 ms). *Growth*: the peak over the RSS when the \
         phase began, against the queue budget ({1:.0} MiB: it bounds output queued for slow \
         clients, not thread stacks); *after*: the RSS once the attack stopped and the server \
         settled (memory freed but kept by the allocator stays in it; with every well-behaved \
         client connected and idle, before the first phase, it was {0:.1} MiB). TCP \
         buffers: the peak of every TCP socket's buffer memory on the machine \
         (`/proc/net/sockstat`, both ends of every connection): output the kernel holds for \
         clients, which no RSS shows. CPU: % of one core over the phase (server: all its \
         threads; attackers: their threads in the benchmark process; measurer: the thread \
         reading the well-behaved clients); *others*: every other process on the machine, % of \
         all cores (the machine is shared). *Calm dropped*: well-behaved clients the server \
         closed during the phase. Server log: lines, of which queue-budget drops / refusals \
         (503, 429).\n\n\
         | phase | server RSS peak MiB (growth; after) | PSS peak MiB | TCP buffers peak MiB \
         | server threads | server CPU % | attackers CPU % | measurer CPU % | others % \
         | calm dropped | server log: lines / budget drops / refused \
         | spool channels / wake sockets | RSS growth ≤ budget |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n",
        mib(idle_rss),
        s.budget as f64 / (1 << 20) as f64,
    ));
    for r in rows {
        let growth = r.peaks.rss.saturating_sub(r.rss_before);
        doc.push_str(&format!(
            "| {} | {:.1} ({:+.1}; {:.1}) | {:.1} | {:.1} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} \
             | {} / {} / {} | {} / {} | {} |\n",
            r.name,
            mib(r.peaks.rss),
            mib(r.peaks.rss) - mib(r.rss_before),
            mib(r.rss_after),
            mib(r.peaks.pss),
            mib(r.peaks.tcp),
            r.peaks.threads,
            r.server_cpu,
            r.attack_cpu,
            r.measurer_cpu,
            r.others,
            r.calm_dropped,
            r.log.lines,
            r.log.budget,
            r.log.refused,
            r.spool.0,
            r.spool.1,
            if growth <= budget_kib {
                "yes"
            } else {
                "**no**"
            },
        ));
    }
    doc.push_str("\n## What the attackers achieved\n\n| phase | rate |\n|---|---|\n");
    for r in rows.iter().filter(|r| r.achieved != "–") {
        doc.push_str(&format!("| {} | {} |\n", r.name, r.achieved));
    }
    // The reading is of the full run committed in docs/.
    if !s.quick {
        doc.push_str(READING);
    }
    doc
}

/// The reading of the committed run (docs/benchmark-attacks.md); rerun
/// results differ in the numbers, and this text names the run it read.
const READING: &str = r#"
## Reading (the run of 2026-11-26 02:58 UTC above, commit 4ba1fc7)

Setup notes. The attackers connect from 16 addresses other than the well-behaved
clients', so `--max-per-client` (32) and `--connect-rate` (50 new connections a
second) apply to them and not to the 1,000 measured clients (which stand for a
reverse proxy on this host). `--max-connections` is 4096 here, not the default
1024: with 1,000 well-behaved clients the default leaves 24 slots. `--heartbeat
600`: the measuring WebSocket clients do not answer the server's pings, and a run
must not drop them as silent peers.

**What changed since the run on 90a0300** (same benchmark, same machine):
the publish-rate bucket file is rewritten in place instead of truncated (ext4
flushed a truncated-and-rewritten file on close: every rate check was a disk
write, and the reactor waited on it), a bucket found empty is refused from memory
until a token can be due, connection threads run five steps nicer than the
reactor, and 429s are logged once a second.

**What this machine allows.** Everything shares two cores. Two threads that only
spin (no network) take the pong p99 from 0.70 ms to 4.9 ms (7.1×) and the delivery
p99 to 2.0×: an attack that spends CPU on this box at the server's niceness breaks
the 2× pong target by that alone. At nice 19 the same spinning costs nothing
measurable (0.95× / 1.29×). The references are low in this run (delivery 6.6 ms,
pong 0.70 ms, against 8.1 / 0.82 last run), which makes every ratio stricter; the
last baseline is within 1.27× (delivery) and 1.62× (pong) of them.

**Per attack** (attackers at full speed / at nice 19):

* *1. Channel-name churn*: delivery 1.30× / 1.54×, pong 1.45× / 2.15× (1.0 /
  1.5 ms). Server CPU 6–7 %. Met at full speed; pong 0.1 ms over at nice 19.
* *2. Ping flood*: the server answers 20 pings a second (40 at once) and closes a
  flooder with 1008 past that (3,055 closes logged a phase). Delivery 1.61× /
  1.73×: **met**. Pong 3.2× (2.3 ms) both ways: **missed** by about 0.9 ms, the
  cost of 230 flooding sessions a second being closed and reopened on the same
  cores as the measured ones.
* *3. Non-reading clients* (200 SSE clients never reading, 10 events of 100 kB a
  second to their channel, 8 WebSocket clients writing without reading): delivery
  1.38× / 1.66×, pong 3.4× (2.4 ms) / 1.85×. Was 3.4× / 3.7× delivery and 25× pong:
  the reactor no longer waits on the rate file's disk flush. Delivery **met**, pong
  met at nice 19. **Memory**: RSS grew 18.1–19.1 MiB against the 16 MiB budget.
  Sampled from /proc/PID/smaps at the peak (separate run): the queues' large
  allocations held 14.6 MiB (under the budget: they are what it counts), the
  connection threads' stacks 1.2 MiB (up to 160 short-lived threads for about 890
  new connections a second) and the small-allocation heap 2.4 MiB more; after the
  attack the RSS is 1.7–2.3 MiB above its start. The budget bounds queued output,
  not the threads that accept newcomers: **missed by 2–3 MiB**, which does not
  grow with the attack's queued bytes.
* *4. Slow heads and bodies* (768 connections at a byte a second): 512 held (32
  per address), the rest 429, the held ones 408 at the deadlines. Delivery 1.35× /
  1.53×: **met**. Pong 4.3× / 2.3×: the p99 is 3.0 ms with a single 11.7 ms round
  (the median round's delivery p99 is 1.14×); missed.
* *5. Publish flood on the attackers' own channel* (4 open-relay WebSocket
  clients + 4 POST loops with the token on kept-alive connections): the site rate
  holds (214 events a second). The server now answers 36–40 thousand refused POSTs
  a second (2–4 thousand before: each refusal was a disk write) at 94–113 % CPU.
  Delivery 3.4× / 2.1× and pong 4.5× (3.2 ms) / 1.8×, from 4.1× / 2.9× and 31× /
  28×. **Missed at full speed**, near the CPU control; met on pong at nice 19.
  The legitimate publisher with the same token gets 429 while the flood spends
  the bucket, as designed (anonymous clients alone cannot: `tests/attacks.rs`).
* *5b. The same flood into the measured clients' channel*: the 212 accepted
  events a second each go to all 1,000 clients (212 thousand deliveries a second
  on top of the measured ones): delivery 7.1× / 3.2×, pong 250× / 35×. This is the
  configured rate's own fan-out on two cores, not unfairness: `publish_rate` must
  be sized for what the machine can deliver.

**Verdict.** Delivery p99 within 2× under every attack except the publish
floods (3.4× on its own channel at full speed, 2.1× niced), where the server's
bounded work for tens of thousands of refused requests a second and the
attackers' own CPU share the two cores; pong within 2× at nice 19 for churn
(2.15×), non-readers and the publish flood, missed by 0.5–1 ms elsewhere, below
what the CPU control alone costs (7.1×). Memory: queued output within the budget;
2–3 MiB of connection threads and small allocations above it under 890 new
connections a second. No well-behaved client was dropped and no event missed in
any phase.
"#;

fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The share of all cores (%) other processes used over one second.
fn machine_load() -> f64 {
    let (busy0, t0) = (machine_busy_ns(), Instant::now());
    thread::sleep(Duration::from_secs(1));
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    machine_busy_ns().saturating_sub(busy0) as f64 / 1e9 / t0.elapsed().as_secs_f64() / cores
        * 100.0
}

/// Waits up to `limit` for the shared machine to be mostly idle (other
/// processes under 25 % of it); returns the load when starting.
fn wait_quiet(limit: Duration) -> f64 {
    let start = Instant::now();
    loop {
        let load = machine_load();
        if load < 25.0 || start.elapsed() >= limit {
            return load;
        }
        eprintln!("machine {load:.0} % busy with other work; waiting");
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    raise_fd_limit();
    let began = Instant::now();
    let s = Settings::from_env();
    let source = commit();
    let load = wait_quiet(s.quiet_wait);
    let hash = nph_events::auth::token_hash_hex(TOKEN);
    let budget = s.budget.to_string();
    let max_connections = s.max_connections.to_string();
    let flags: Vec<&str> = vec![
        "--ws",
        "--ws-relay",
        "open",
        "--interval",
        "0",
        "--heartbeat",
        "600",
        "--token-sha256",
        &hash,
        "--queue-budget",
        &budget,
        "--max-connections",
        &max_connections,
    ];
    let server = Listener::start("attacks", &flags);
    let shown = flags.join(" ").replace(&hash, "<sha256 of the token>");
    let target = Target {
        port: server.port,
        spool: PathBuf::from(&server.spool),
        addrs: s.addrs,
    };
    let list = phases(&s);
    let per_phase = s.rounds + s.pongs;
    let slots = per_phase * list.len();
    let pid = server.proc.pid();
    eprintln!(
        "server {pid} on port {}; connecting {} + {} clients",
        target.port, s.sse, s.ws
    );
    let mut clients = open(target.port, &calm_request(false, target.port), s.sse, slots);
    let sse_ready = wait_ready(&mut clients, SSE_READY, Duration::from_secs(60));
    let mut ws = open(target.port, &calm_request(true, target.port), s.ws, slots);
    let ws_ready = wait_ready(&mut ws, WS_READY, Duration::from_secs(60));
    assert_eq!(
        (sse_ready, ws_ready),
        (s.sse, s.ws),
        "all clients streaming"
    );
    clients.extend(ws);
    let config = publisher(&target);
    let mut bench = Bench {
        s,
        server,
        target,
        clients,
        per_phase,
        slots,
        config,
        clock: SystemClock::new(),
    };
    // Idle, every client connected: the memory reference.
    let poller = Poller::new(&bench.clients);
    poller.pump(&mut bench.clients, Duration::from_secs(2), |_| false);
    drop(poller);
    let idle_rss = rss_kib(pid);
    let rows: Vec<Row> = list
        .iter()
        .enumerate()
        .map(|(i, phase)| bench.run(i, phase))
        .collect();
    let doc = report(
        &bench.s,
        &rows,
        &shown,
        idle_rss,
        (began.elapsed(), load),
        &source,
    );
    let out = std::env::var("NPH_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            if bench.s.quick {
                std::env::temp_dir().join("benchmark-attacks-quick.md")
            } else {
                repo().join("docs/benchmark-attacks.md")
            }
        });
    std::fs::write(&out, &doc).unwrap();
    print!("{doc}");
    eprintln!("written to {}", out.display());
}
