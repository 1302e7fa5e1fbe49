//! Many publisher processes against many streaming reader processes.
//!
//! Publishers are this test binary re-started as a worker (the ignored test
//! `publisher_worker`), appending through the library: separate processes,
//! so the spool's flock is exercised for real. Readers are the nph-events
//! binary streaming as a CGI. Sizes: `STRESS_PUBLISHERS` (8),
//! `STRESS_EVENTS` (2000 each), `STRESS_READERS` (50).

mod support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nph_events::spool::append::{append_and_wake, NewEvent};
use nph_events::spool::{Retention, Spool};
use support::{bin, cgi_command, get_vars, parse_sse, Chunks, Dispatched, Proc};

const CHANNEL: &str = "load";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// The payload of event `seq` of publisher `p`: self-checking, so a torn
/// or mixed record cannot pass for a whole one.
fn payload(p: usize, seq: usize, fill: usize) -> String {
    format!("p{p}-s{seq}-{}-end{}", "x".repeat(fill), fill)
}

/// Parses a payload back; None if it is not exactly a whole one.
fn check_payload(data: &str) -> Option<(usize, usize)> {
    let mut parts = data.splitn(3, '-');
    let p = parts.next()?.strip_prefix('p')?.parse().ok()?;
    let seq = parts.next()?.strip_prefix('s')?.parse().ok()?;
    let rest = parts.next()?;
    let (xs, fill) = rest.rsplit_once("-end")?;
    let fill: usize = fill.parse().ok()?;
    (xs.len() == fill && xs.bytes().all(|b| b == b'x')).then_some((p, seq))
}

/// Worker entry point (run only when started by the tests below).
#[test]
#[ignore = "publisher process started by the stress tests"]
fn publisher_worker() {
    let Ok(root) = std::env::var("STRESS_SPOOL") else {
        return;
    };
    let p: usize = std::env::var("STRESS_ID").unwrap().parse().unwrap();
    let count: usize = std::env::var("STRESS_COUNT").unwrap().parse().unwrap();
    let fill: usize = std::env::var("STRESS_FILL").unwrap().parse().unwrap();
    let retain: u64 = std::env::var("STRESS_RETAIN").unwrap().parse().unwrap();
    let retain_bytes: u64 =
        std::env::var("STRESS_RETAIN_BYTES").map_or(1 << 34, |v| v.parse().unwrap());
    let spool = Spool::open(&PathBuf::from(root)).unwrap();
    let retention = Retention {
        events: retain,
        bytes: retain_bytes,
    };
    for seq in 0..count {
        let data = payload(p, seq, fill);
        let event = NewEvent {
            event: None,
            data: &data,
        };
        append_and_wake(&spool, CHANNEL, event, &retention, now_micros()).unwrap();
    }
}

fn worker(spool: &str, p: usize, count: usize, fill: usize, retain: usize) -> Proc {
    worker_with(spool, p, count, fill, retain, &[])
}

fn worker_with(
    spool: &str,
    p: usize,
    count: usize,
    fill: usize,
    retain: usize,
    env: &[(&str, &str)],
) -> Proc {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.envs(env.iter().copied());
    cmd.args([
        "--ignored",
        "--exact",
        "publisher_worker",
        "--test-threads=1",
        "-q",
    ])
    .env("STRESS_SPOOL", spool)
    .env("STRESS_ID", p.to_string())
    .env("STRESS_COUNT", count.to_string())
    .env("STRESS_FILL", fill.to_string())
    .env("STRESS_RETAIN", retain.to_string())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    Proc::spawn(&mut cmd)
}

fn temp_spool(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("nph-stress-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.to_str().unwrap().to_owned()
}

/// Starts `n` streaming readers and waits until each has its head.
fn readers(spool: &str, n: usize, retain: usize) -> Vec<(Proc, Chunks)> {
    let retain = retain.to_string();
    let mut all = Vec::new();
    for _ in 0..n {
        let mut vars = get_vars();
        vars.retain(|(k, _)| *k != "QUERY_STRING");
        vars.extend_from_slice(&[
            ("QUERY_STRING", "channel=load"),
            ("NPH_EVENTS_SPOOL", spool),
            ("NPH_EVENTS_INTERVAL", "0"),
            ("NPH_EVENTS_HEARTBEAT", "1"),
            ("NPH_EVENTS_RETAIN_EVENTS", &retain),
        ]);
        let mut p = Proc::spawn(&mut cgi_command(bin(), &vars));
        let out = Chunks::new(p.child.stdout.take().unwrap());
        all.push((p, out));
    }
    for (_, out) in all.iter_mut() {
        assert!(
            out.until("retry:", Duration::from_secs(10)),
            "reader did not start"
        );
    }
    all
}

fn events_of(out: &Chunks) -> Vec<Dispatched> {
    let text = out.text();
    parse_sse(text.split_once("\r\n\r\n").map_or("", |(_, b)| b)).0
}

/// Ids consecutive, every payload whole, each (publisher, seq) at most once
/// and in order per publisher. Returns the set of (publisher, seq) seen.
fn verify(events: &[Dispatched], reader: usize) -> HashSet<(usize, usize)> {
    let mut seen = HashSet::new();
    let mut last_seq = std::collections::HashMap::new();
    let mut prev_id: Option<u64> = None;
    for e in events {
        assert_eq!(e.event, "message", "reader {reader}: unexpected {e:?}");
        let id: u64 = e.last_event_id.parse().expect("numeric id");
        if let Some(prev) = prev_id {
            assert_eq!(id, prev + 1, "reader {reader}: ids not consecutive");
        }
        prev_id = Some(id);
        let (p, seq) = check_payload(&e.data).unwrap_or_else(|| {
            panic!(
                "reader {reader}: torn or mixed payload {:?}",
                &e.data[..e.data.len().min(80)]
            )
        });
        assert!(
            seen.insert((p, seq)),
            "reader {reader}: duplicate p{p} s{seq}"
        );
        if let Some(prev) = last_seq.insert(p, seq) {
            assert!(seq > prev, "reader {reader}: p{p} out of order");
        }
    }
    seen
}

#[test]
fn publishers_times_readers_every_event_exactly_once() {
    let publishers = env_or("STRESS_PUBLISHERS", 8);
    let count = env_or("STRESS_EVENTS", 2000);
    let n_readers = env_or("STRESS_READERS", 50);
    let total = publishers * count;
    // Rotation happens (segments of total/8 events) while readers read.
    let retain = total / 2;
    let spool = temp_spool("load");
    let mut rs = readers(&spool, n_readers, retain);
    let t0 = Instant::now();
    let mut ws: Vec<Proc> = (0..publishers)
        .map(|p| worker(&spool, p, count, 40, retain))
        .collect();
    for w in ws.iter_mut() {
        let status = w
            .wait_for(Duration::from_secs(120))
            .expect("publisher finished");
        assert!(status.success(), "publisher failed");
    }
    for (i, (_, out)) in rs.iter_mut().enumerate() {
        // Every event's id line, and the stream's starting position (an
        // `id:` line alone, before any event).
        let done = out.until_count("\nid: ", total + 1, Duration::from_secs(60));
        assert!(
            done,
            "reader {i} got {} of {total}",
            out.text().matches("\nid: ").count().saturating_sub(1)
        );
    }
    eprintln!(
        "{publishers} publishers x {count} events -> {n_readers} readers in {:?}",
        t0.elapsed()
    );
    for (i, (_, out)) in rs.iter().enumerate() {
        let events = events_of(out);
        assert_eq!(events.len(), total, "reader {i}");
        assert_eq!(verify(&events, i).len(), total);
    }
    drop(rs);
    let _ = std::fs::remove_dir_all(&spool);
}

/// Tiny deterministic generator (no dependency): xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// True when the newest segment ends inside a record (a torn write).
fn tail_is_torn(spool: &str) -> bool {
    let dir = PathBuf::from(spool).join("channels").join(CHANNEL);
    let newest = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sse"))
        .max();
    newest
        .and_then(|p| std::fs::read(p).ok())
        .is_some_and(|b| !b.is_empty() && !b.ends_with(b"\n\n"))
}

#[test]
fn publishers_killed_mid_write_leave_no_torn_event() {
    let seed = now_micros() | 1;
    let mut rng = Rng(seed);
    let spool = temp_spool("crash");
    let retain = 1_000_000;
    let mut rs = readers(&spool, 5, retain);
    // 128 KiB payloads span 32 pages, so a SIGKILL can land inside a write;
    // retention by bytes keeps the disk use small.
    let fill = 128 * 1024;
    let bytes = [("STRESS_RETAIN_BYTES", "16777216")];
    let (mut kills, mut torn_seen, mut next_p) = (0, 0, 0);
    let mut ws: Vec<Proc> = Vec::new();
    for _ in 0..2 {
        ws.push(worker_with(&spool, next_p, 8, fill, retain, &bytes));
        next_p += 1;
    }
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(2 + rng.next(14)));
        let victim = rng.next(ws.len() as u64) as usize;
        ws[victim].signal(libc::SIGKILL);
        let _ = ws[victim].wait_for(Duration::from_secs(5));
        kills += 1;
        torn_seen += usize::from(tail_is_torn(&spool));
        ws[victim] = worker_with(&spool, next_p, 8, fill, retain, &bytes);
        next_p += 1;
    }
    for w in ws.iter_mut() {
        w.signal(libc::SIGKILL);
        let _ = w.wait_for(Duration::from_secs(5));
    }
    // A later publish succeeds and reaches everyone.
    let mut last = worker(&spool, 9999, 1, 10, retain);
    assert!(last.wait_for(Duration::from_secs(10)).unwrap().success());
    let mut total = 0;
    for (i, (_, out)) in rs.iter_mut().enumerate() {
        assert!(
            out.until("p9999-s0-", Duration::from_secs(20)),
            "reader {i} missed the final event"
        );
        let events = events_of(out);
        let seen = verify(&events, i);
        assert!(seen.contains(&(9999, 0)));
        total = events.len();
    }
    assert!(!tail_is_torn(&spool), "the final publish repaired the tail");
    eprintln!(
        "seed {seed}: {kills} publishers killed, {torn_seen} torn tails seen, \
         {total} whole events delivered to each reader"
    );
    assert!(total > 10, "the test exercised too little");
    let _ = std::fs::remove_dir_all(&spool);
}
