//! What stream recycling costs at steady state: CGI streams that end by
//! themselves (`max_duration`, jitter 0.5, `retry: 500`) and clients that
//! come back with `Last-Event-ID`, against the same clients on streams that
//! never end, side by side in one run through one Apache.
//!
//! `cargo bench --bench recycling` (release build). One private Apache
//! (event MPM, mod_cgid, the shipped snippet) runs the static CGI that
//! `cgi-bin/install` builds. `NPH_BENCH_CLIENTS` (1000; `NPH_BENCH_QUICK=1`:
//! 100) clients, read by one epoll thread, behave as `EventSource` does: on
//! the end of a stream they wait the last `retry:` and reconnect with
//! `Last-Event-ID`. Phases, alternating A B B A A B … (`NPH_BENCH_REPS`
//! pairs, default 3):
//!
//! * A, recycling: `NPH_EVENTS_MAX_DURATION` = `NPH_BENCH_LIFETIME` (30 s,
//!   a tenth of the 300 s default: ten times its reconnect rate, so the
//!   cost stands out of the noise), jitter 0.5;
//! * B, no recycling: `NPH_EVENTS_MAX_DURATION=0`.
//!
//! Both phases are served by the same Apache: `SetEnvIfExpr` on the channel
//! name (`recycleN` or `steadyN`, a fresh channel per phase) sets the
//! lifetime. Each phase connects its clients, warms up for
//! `NPH_BENCH_WARMUP_SECS` (30: one whole lifetime, so that in A the
//! streams' ages have spread), then for `NPH_BENCH_PHASE_SECS` (60) an
//! event is published every 500 ms with the CLI (`nph-events publish`, run
//! as root, which writes as the spool's owner) while it measures: CPU of
//! Apache and every CGI process (a cpuacct cgroup holding Apache's whole
//! process tree, which keeps the time of processes that have exited;
//! cross-checked by sampling /proc), reconnects per second seen by the
//! clients, publish-to-delivery latency, and that every client got every
//! event exactly once. Writes `docs/benchmark-recycling.md`.

#[path = "client.rs"]
mod client;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{cpu_ns, linger_zero, percentile, raise_fd_limit};
use support::servers::{install_static_binary, Kind, Server};

const CGI_PATH: &str = "/cgi-bin/nph-events.cgi";
/// Mean lifetime of a stream at the 300 s default with jitter 0.5: each is
/// cut short by a uniform fraction of up to a half, so 300 × 0.75.
const DEFAULT_MEAN_LIFETIME: f64 = 225.0;

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory effects.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64
}

// ---------------------------------------------------------------- CPU ---

/// A cpuacct cgroup (v1) holding Apache's process tree. The kernel charges
/// every task's run time to its cgroup as it runs, and a task that exits
/// keeps its charge there: the CGI processes that ended within a phase are
/// counted whole, which per-process /proc readings cannot do (see
/// [`ProcSampler`]). Removed when dropped (once empty).
struct CpuGroup {
    dir: PathBuf,
}

impl CpuGroup {
    fn create() -> Option<CpuGroup> {
        let root = Path::new("/sys/fs/cgroup/cpuacct");
        let root = if root.join("cpuacct.usage").exists() {
            root.to_path_buf()
        } else {
            let alt = Path::new("/sys/fs/cgroup/cpu,cpuacct");
            if !alt.join("cpuacct.usage").exists() {
                return None;
            }
            alt.to_path_buf()
        };
        let dir = root.join(format!("nph-bench-recycling-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        Some(CpuGroup { dir })
    }

    /// Moves every process of the tree under `root` into the group
    /// (repeated until none is left outside: Apache may still be forking).
    fn adopt_tree(&self, root: u32) -> bool {
        let name = self.dir.file_name().unwrap().to_str().unwrap().to_owned();
        for _ in 0..20 {
            let outside: Vec<u32> = tree(root)
                .into_keys()
                .filter(|p| {
                    !std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                        .unwrap_or_default()
                        .lines()
                        .any(|l| l.contains("cpuacct") && l.ends_with(&format!("/{name}")))
                })
                .collect();
            if outside.is_empty() {
                return true;
            }
            for p in outside {
                let _ = std::fs::write(self.dir.join("cgroup.procs"), p.to_string());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// (total, user, system) CPU seconds charged to the group so far.
    fn read(&self) -> (f64, f64, f64) {
        let total = std::fs::read_to_string(self.dir.join("cpuacct.usage"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0) as f64
            / 1e9;
        let stat = std::fs::read_to_string(self.dir.join("cpuacct.stat")).unwrap_or_default();
        let field = |k: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0) as f64
                / clock_ticks() as f64
        };
        (total, field("user "), field("system "))
    }
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        // The group can be removed once its last task has gone (Apache is
        // stopped before this runs; its CGIs follow within moments).
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove {}", self.dir.display());
    }
}

/// One process's line of /proc/PID/stat: (ppid, utime + stime, cutime +
/// cstime), in clock ticks.
fn stat_of(pid: u32) -> Option<(u32, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((n(1)? as u32, n(11)? + n(12)?, n(13)? + n(14)?))
}

/// Every process descended from `root` (and `root`): pid → stat line.
fn tree(root: u32) -> HashMap<u32, (u32, u64, u64)> {
    let all: HashMap<u32, (u32, u64, u64)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, stat_of(p)?)))
        .collect();
    let mut keep: HashMap<u32, (u32, u64, u64)> = HashMap::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        if let Some(s) = all.get(&p) {
            keep.insert(p, *s);
            frontier.extend(all.iter().filter(|(_, s)| s.0 == p).map(|(c, _)| *c));
        }
    }
    keep
}

/// The cross-check: Apache's process tree read from /proc every 500 ms.
/// Two readings of each process: the scheduler's exact run time of its
/// threads (/proc/PID/task/*/schedstat, [`cpu_ns`]) and utime + stime of
/// /proc/PID/stat (clock ticks). Each one's growth since first
/// seen is summed (a process not there at the first reading is counted
/// from zero: it was born in the phase). What a process uses between its
/// last reading and its exit is lost, so both undercount where processes
/// exit; and the parents' cutime + cstime, the other place an exited
/// child's time can show, is reported apart.
struct ProcSampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<ProcCpu>>,
}

/// CPU seconds of Apache's tree as [`ProcSampler`] saw them.
#[derive(Clone, Copy, Default)]
struct ProcCpu {
    sched: f64,
    stat: f64,
    cutime: f64,
}

impl ProcSampler {
    fn start(root: u32) -> ProcSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let first = tree(root);
            let mut last: HashMap<u32, u64> = first.iter().map(|(p, s)| (*p, s.1)).collect();
            let mut last_ns: HashMap<u32, u64> = first.keys().map(|p| (*p, cpu_ns(*p))).collect();
            let child0: u64 = first.values().map(|s| s.2).sum();
            let (mut grown, mut grown_ns, mut child1) = (0u64, 0u64, child0);
            loop {
                let done = flag.load(Ordering::Relaxed);
                let now = tree(root);
                for (p, s) in &now {
                    let before = last.insert(*p, s.1).unwrap_or(0);
                    grown += s.1.saturating_sub(before);
                    let ns = cpu_ns(*p);
                    let before = last_ns.insert(*p, ns).unwrap_or(0);
                    grown_ns += ns.saturating_sub(before);
                }
                child1 = now.values().map(|s| s.2).sum::<u64>().max(child1);
                if done {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            let hz = clock_ticks() as f64;
            ProcCpu {
                sched: grown_ns as f64 / 1e9,
                stat: grown as f64 / hz,
                cutime: child1.saturating_sub(child0) as f64 / hz,
            }
        });
        ProcSampler {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> ProcCpu {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

/// CPU seconds the benchmark process itself has used (all its threads).
fn self_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// ------------------------------------------------------------ clients ---

/// An `EventSource`: one stream at a time, reconnecting after `retry` with
/// the last event id.
struct Es {
    sock: Option<TcpStream>,
    buf: Vec<u8>,
    head_done: bool,
    last_id: String,
    retry_ms: u64,
    /// The round named by the `data:` of the event being read.
    pending: Option<usize>,
    /// When the current stream was opened.
    opened: Instant,
    reconnect_at: Option<Instant>,
    /// How many times each round arrived; the first arrival's time and
    /// whether it came on a stream opened after the publish (a resume).
    counts: Vec<u16>,
    first: Vec<Option<(Instant, Instant)>>,
    /// Reconnection times, and how long each ended stream had lasted.
    reconnects: Vec<Instant>,
    lifetimes: Vec<f64>,
    /// For diagnosing a miss: when each stream ended, the id each
    /// reconnection sent, and the id each round arrived with.
    ends: Vec<Instant>,
    sent_ids: Vec<String>,
    ids: Vec<String>,
    bad_heads: usize,
}

fn open_stream(port: u16, channel: &str, last_id: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    let mut req = format!(
        "GET {CGI_PATH}?channel={channel} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\
         Cache-Control: no-cache\r\n"
    );
    if !last_id.is_empty() {
        req.push_str(&format!("Last-Event-ID: {last_id}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl Es {
    fn new(sock: TcpStream, rounds: usize) -> Es {
        Es {
            sock: Some(sock),
            buf: Vec::new(),
            head_done: false,
            last_id: String::new(),
            retry_ms: 3000,
            pending: None,
            opened: Instant::now(),
            reconnect_at: None,
            counts: vec![0; rounds],
            first: vec![None; rounds],
            reconnects: Vec::new(),
            lifetimes: Vec::new(),
            ends: Vec::new(),
            sent_ids: Vec::new(),
            ids: vec![String::new(); rounds],
            bad_heads: 0,
        }
    }

    /// Parses what has arrived, as the WHATWG algorithm does for the
    /// fields used here (id, data, retry, comments, blank-line dispatch).
    fn feed(&mut self, now: Instant) {
        let mut pos = 0;
        if !self.head_done {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") || head.contains("transfer-encoding: chunked") {
                self.bad_heads += 1;
                eprintln!("unexpected head: {head}");
            }
            self.head_done = true;
            pos = end + 4;
        }
        while let Some(nl) = self.buf[pos..].iter().position(|b| *b == b'\n') {
            let mut line = &self.buf[pos..pos + nl];
            pos += nl + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.is_empty() {
                if let Some(r) = self.pending.take() {
                    if r < self.counts.len() {
                        self.counts[r] = self.counts[r].saturating_add(1);
                        if self.first[r].is_none() {
                            self.first[r] = Some((now, self.opened));
                            self.ids[r] = self.last_id.clone();
                        }
                    }
                }
                continue;
            }
            if line[0] == b':' {
                continue;
            }
            let line = String::from_utf8_lossy(line);
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (&*line, ""),
            };
            match field {
                "id" => self.last_id = value.to_owned(),
                "data" => {
                    self.pending = value.strip_prefix("round-").and_then(|d| d.parse().ok());
                }
                "retry" => {
                    if let Ok(ms) = value.parse() {
                        self.retry_ms = ms;
                    }
                }
                _ => {}
            }
        }
        self.buf.drain(..pos);
    }
}

/// All clients of one phase, read by one thread with epoll.
struct Clients {
    es: Vec<Es>,
    ep: i32,
    port: u16,
    channel: String,
    errors: usize,
}

impl Clients {
    fn connect(port: u16, channel: &str, n: usize, rounds: usize) -> Clients {
        // SAFETY: epoll_create1 has no memory preconditions.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(ep >= 0, "epoll_create1");
        let mut c = Clients {
            es: Vec::with_capacity(n),
            ep,
            port,
            channel: channel.to_owned(),
            errors: 0,
        };
        for i in 0..n {
            let s = open_stream(port, channel, "").expect("connect");
            c.watch(&s, i);
            c.es.push(Es::new(s, rounds));
        }
        c
    }

    fn watch(&self, s: &TcpStream, i: usize) {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: valid epoll fd and socket fd; `ev` lives on this frame.
        unsafe { libc::epoll_ctl(self.ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
    }

    /// Reads, parses and reconnects for `wait`, or until `done`.
    fn pump(&mut self, wait: Duration, mut done: impl FnMut(&[Es]) -> bool) {
        let deadline = Instant::now() + wait;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut chunk = vec![0u8; 64 * 1024];
        while Instant::now() < deadline && !done(&self.es) {
            // SAFETY: `events` has room for the given count.
            let n = unsafe { libc::epoll_wait(self.ep, events.as_mut_ptr(), 1024, 10) };
            let now = Instant::now();
            for ev in events.iter().take(n.max(0) as usize) {
                let i = ev.u64 as usize;
                let e = &mut self.es[i];
                let Some(s) = e.sock.as_mut() else { continue };
                match s.read(&mut chunk) {
                    Ok(k) if k > 0 => {
                        e.buf.extend_from_slice(&chunk[..k]);
                        e.feed(now);
                    }
                    Err(err)
                        if matches!(
                            err.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                        ) => {}
                    end => {
                        if end.is_err() {
                            self.errors += 1;
                        }
                        // The stream ended: as EventSource, wait `retry`
                        // and come back with the last id. Closing the
                        // socket takes it out of the epoll set.
                        e.sock = None;
                        e.lifetimes.push((now - e.opened).as_secs_f64());
                        e.ends.push(now);
                        e.reconnect_at = Some(now + Duration::from_millis(e.retry_ms));
                    }
                }
            }
            for i in 0..self.es.len() {
                let due = matches!(self.es[i].reconnect_at, Some(t) if t <= now);
                if !due {
                    continue;
                }
                let (last_id, retry) = (self.es[i].last_id.clone(), self.es[i].retry_ms);
                self.es[i].reconnect_at = None;
                match open_stream(self.port, &self.channel, &last_id) {
                    Ok(s) => {
                        self.watch(&s, i);
                        let e = &mut self.es[i];
                        let opened = Instant::now();
                        e.reconnects.push(opened);
                        e.sent_ids.push(last_id);
                        e.opened = opened;
                        e.buf.clear();
                        e.head_done = false;
                        e.pending = None;
                        e.sock = Some(s);
                    }
                    Err(_) => {
                        self.errors += 1;
                        self.es[i].reconnect_at = Some(now + Duration::from_millis(retry));
                    }
                }
            }
        }
    }

    /// Closes every stream with a reset, as a tab closing.
    fn close(self) {
        for e in &self.es {
            if let Some(s) = &e.sock {
                linger_zero(s);
            }
        }
        drop(self.es);
        // SAFETY: closing the epoll fd we created.
        unsafe { libc::close(self.ep) };
    }
}

// ------------------------------------------------------------- phases ---

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Recycle,
    Steady,
}

struct Phase {
    mode: Mode,
    rep: usize,
    secs: f64,
    cpu: f64,
    cpu_user: f64,
    cpu_sys: f64,
    /// The /proc cross-check.
    proc: ProcCpu,
    bench_cpu: f64,
    reconnects: usize,
    mean_lifetime: f64,
    deliveries: usize,
    resumed: usize,
    missing: usize,
    /// Misses by a client whose reconnection after the publish carried no
    /// `Last-Event-ID` (it had not had an event on this channel yet).
    missing_noid: usize,
    dupes: usize,
    p50: f64,
    p99: f64,
    max: f64,
    publish_ms: f64,
    errors: usize,
    cgis_at_end: usize,
}

impl Phase {
    fn cpu_per_sec(&self) -> f64 {
        self.cpu / self.secs
    }
    fn reconnect_rate(&self) -> f64 {
        self.reconnects as f64 / self.secs
    }
}

struct Setup<'a> {
    server: &'a Server,
    group: Option<&'a CpuGroup>,
    n: usize,
    warmup: u64,
    secs: u64,
    lifetime: u64,
    publisher: &'a str,
}

fn publish(program: &str, spool: &Path, channel: &str, round: usize) -> String {
    let out = Command::new(program)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .arg("publish")
        .arg("--spool")
        .arg(spool)
        .args(["--channel", channel, "--quiet", "--data"])
        .arg(format!("round-{round}"))
        .stdin(Stdio::null())
        .output()
        .expect("nph-events publish");
    assert!(
        out.status.success(),
        "publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn wait_no_cgis(server: &Server) {
    let start = Instant::now();
    while !server.cgi_pids(0).is_empty() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run_phase(s: &Setup, mode: Mode, rep: usize) -> Phase {
    let channel = match mode {
        Mode::Recycle => format!("recycle{rep}"),
        Mode::Steady => format!("steady{rep}"),
    };
    let rounds = (s.secs * 2) as usize;
    wait_no_cgis(s.server);
    eprintln!("phase {mode:?} {rep}: connecting {} clients", s.n);
    let mut clients = Clients::connect(s.server.port, &channel, s.n, rounds);
    clients.pump(Duration::from_secs(120), |es| {
        es.iter().all(|e| e.head_done)
    });
    let ready = clients.es.iter().filter(|e| e.head_done).count();
    assert_eq!(ready, s.n, "every client streaming");
    // The lifetime each phase means to test is what the CGIs were given.
    let want = match mode {
        Mode::Recycle => format!("NPH_EVENTS_MAX_DURATION={}", s.lifetime),
        Mode::Steady => "NPH_EVENTS_MAX_DURATION=0".to_owned(),
    };
    for pid in s.server.cgi_pids(0).iter().take(5) {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        assert!(
            env.split(|b| *b == 0).any(|v| v == want.as_bytes()),
            "a CGI of phase {mode:?} runs without {want}"
        );
    }
    clients.pump(Duration::from_secs(s.warmup), |_| false);

    // The measured window: `rounds` publishes, 500 ms apart.
    let times: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let publish_ms: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let ids: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let sampler = ProcSampler::start(s.server.pid());
    let cpu0 = s.group.map(|g| g.read());
    let bench0 = self_cpu();
    let t_start = Instant::now();
    let spool = s.server.spool();
    let pub_thread = {
        let (times, publish_ms, channel) = (times.clone(), publish_ms.clone(), channel.clone());
        let ids = ids.clone();
        let program = s.publisher.to_owned();
        std::thread::spawn(move || {
            for round in 0..rounds {
                let due = t_start + Duration::from_millis(500 * round as u64 + 250);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let t0 = Instant::now();
                times.lock().unwrap().push(t0);
                let id = publish(&program, &spool, &channel, round);
                ids.lock().unwrap().push(id);
                publish_ms
                    .lock()
                    .unwrap()
                    .push(t0.elapsed().as_secs_f64() * 1e3);
            }
        })
    };
    clients.pump(Duration::from_secs(s.secs), |_| false);
    let secs = t_start.elapsed().as_secs_f64();
    let cpu1 = s.group.map(|g| g.read());
    let bench1 = self_cpu();
    let proc = sampler.finish();
    pub_thread.join().unwrap();
    // Late deliveries (a client in its reconnect gap at the last publish).
    clients.pump(Duration::from_secs(5), |es| {
        es.iter().all(|e| e.counts.iter().all(|c| *c > 0))
    });

    let times = times.lock().unwrap().clone();
    let window_end = t_start + Duration::from_secs_f64(secs);
    let (mut lat, mut resumed, mut missing, mut dupes) = (Vec::new(), 0, 0, 0);
    let mut missing_noid = 0;
    let (mut reconnects, mut lives) = (0, Vec::new());
    let published = ids.lock().unwrap().clone();
    for (ci, e) in clients.es.iter().enumerate() {
        for (r, t0) in times.iter().enumerate() {
            match e.counts[r] {
                0 => {
                    missing += 1;
                    let next = e.reconnects.iter().position(|t| t > t0);
                    if next.is_some_and(|k| e.sent_ids[k].is_empty()) {
                        missing_noid += 1;
                    }
                    if missing > 10 {
                        continue;
                    }
                    let rel = |t: &Instant| {
                        t.saturating_duration_since(t_start).as_secs_f64()
                            - t_start.saturating_duration_since(*t).as_secs_f64()
                    };
                    eprintln!(
                        "MISS client {ci} round {r} (id {}, published at {:.3} s); its streams \
                         ended at {:?}, reopened at {:?} with ids {:?}; ids of the rounds \
                         around: {:?}",
                        published.get(r).map_or("?", |s| s.as_str()),
                        rel(t0),
                        e.ends.iter().map(rel).collect::<Vec<_>>(),
                        e.reconnects.iter().map(rel).collect::<Vec<_>>(),
                        e.sent_ids,
                        &e.ids[r.saturating_sub(2)..(r + 3).min(e.ids.len())],
                    );
                }
                c => dupes += c as usize - 1,
            }
            if let Some((at, opened)) = e.first[r] {
                lat.push((at - *t0).as_secs_f64() * 1e3);
                if opened > *t0 {
                    resumed += 1;
                }
            }
        }
        reconnects += e
            .reconnects
            .iter()
            .filter(|t| **t >= t_start && **t < window_end)
            .count();
        lives.extend_from_slice(&e.lifetimes);
    }
    lat.sort_by(f64::total_cmp);
    let mut pm = publish_ms.lock().unwrap().clone();
    pm.sort_by(f64::total_cmp);
    let ((c0, u0, s0), (c1, u1, s1)) = (
        cpu0.unwrap_or((0.0, 0.0, 0.0)),
        cpu1.unwrap_or((0.0, 0.0, 0.0)),
    );
    let cgis_at_end = s.server.cgi_pids(0).len();
    let bad_heads: usize = clients.es.iter().map(|e| e.bad_heads).sum();
    let phase = Phase {
        mode,
        rep,
        secs,
        cpu: if s.group.is_some() {
            c1 - c0
        } else {
            proc.sched
        },
        cpu_user: u1 - u0,
        cpu_sys: s1 - s0,
        proc,
        bench_cpu: bench1 - bench0,
        reconnects,
        mean_lifetime: if lives.is_empty() {
            0.0
        } else {
            lives.iter().sum::<f64>() / lives.len() as f64
        },
        deliveries: lat.len(),
        resumed,
        missing,
        missing_noid,
        dupes,
        p50: if lat.is_empty() {
            0.0
        } else {
            percentile(&lat, 0.5)
        },
        p99: if lat.is_empty() {
            0.0
        } else {
            percentile(&lat, 0.99)
        },
        max: lat.last().copied().unwrap_or(0.0),
        publish_ms: if pm.is_empty() {
            0.0
        } else {
            percentile(&pm, 0.5)
        },
        errors: clients.errors + bad_heads,
        cgis_at_end,
    };
    eprintln!(
        "phase {mode:?} {rep}: {:.1} s, CPU {:.3} s ({:.1} % of a core; user {:.2} sys {:.2}; \
         /proc sched {:.3} stat {:.3}, cutime growth {:.3}), bench {:.2} s, {} reconnects ({:.2}/s, \
         mean stream {:.1} s), {} deliveries ({} by resume), {} missing ({} without an id), {} dupes, \
         p50 {:.1} ms p99 {:.1} ms max {:.1} ms, publish {:.1} ms, errors {}, CGIs {}",
        phase.secs,
        phase.cpu,
        phase.cpu_per_sec() * 100.0,
        phase.cpu_user,
        phase.cpu_sys,
        phase.proc.sched,
        phase.proc.stat,
        phase.proc.cutime,
        phase.bench_cpu,
        phase.reconnects,
        phase.reconnect_rate(),
        phase.mean_lifetime,
        phase.deliveries,
        phase.resumed,
        phase.missing,
        phase.missing_noid,
        phase.dupes,
        phase.p50,
        phase.p99,
        phase.max,
        phase.publish_ms,
        phase.errors,
        phase.cgis_at_end
    );
    clients.close();
    phase
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::var_os("NPH_BENCH_QUICK").is_some_and(|v| v != "0");
    let n: usize = env_num("NPH_BENCH_CLIENTS", if quick { 100 } else { 1000 });
    let reps: usize = env_num("NPH_BENCH_REPS", if quick { 1 } else { 3 });
    let secs: u64 = env_num("NPH_BENCH_PHASE_SECS", if quick { 20 } else { 60 });
    let warmup: u64 = env_num("NPH_BENCH_WARMUP_SECS", 30);
    let lifetime: u64 = env_num("NPH_BENCH_LIFETIME", 30);
    raise_fd_limit();
    // What a host runs: the static binary cgi-bin/install builds.
    install_static_binary();
    let publisher = support::static_bin();

    let threads = 25;
    let servers = (n + 200).div_ceil(threads);
    let m = "/usr/lib/apache2/modules";
    let extra = format!(
        "ServerLimit {servers}\nThreadsPerChild {threads}\nMaxRequestWorkers {}\n\
         StartServers {servers}\nMinSpareThreads {threads}\nMaxSpareThreads {}\n\
         ListenBacklog 4096\n\
         LoadModule setenvif_module {m}/mod_setenvif.so\n\
         SetEnvIfExpr \"%{{QUERY_STRING}} =~ /(^|&)channel=recycle/\" \
         NPH_EVENTS_MAX_DURATION={lifetime}\n\
         SetEnvIfExpr \"%{{QUERY_STRING}} =~ /(^|&)channel=steady/\" NPH_EVENTS_MAX_DURATION=0\n",
        servers * threads,
        servers * threads
    );
    let settings = [
        ("NPH_EVENTS_INTERVAL", "0"),
        ("NPH_EVENTS_MAX_DURATION_JITTER", "0.5"),
    ];
    let server = Server::start_with(
        Kind::ApacheCgidEvent,
        &["nph-events.cgi"],
        &settings,
        &[],
        &extra,
    );
    // Let Apache finish starting its children, then put its whole tree in
    // the group: every process it forks from now on is born inside.
    std::thread::sleep(Duration::from_secs(2));
    let group = CpuGroup::create();
    let group = group.filter(|g| g.adopt_tree(server.pid()));
    if group.is_none() {
        eprintln!("no cpuacct cgroup: CPU from /proc sampling only (undercounts exits)");
    }
    let setup = Setup {
        server: &server,
        group: group.as_ref(),
        n,
        warmup,
        secs,
        lifetime,
        publisher,
    };
    let mut phases = Vec::new();
    for rep in 0..reps {
        let order = if rep % 2 == 0 {
            [Mode::Recycle, Mode::Steady]
        } else {
            [Mode::Steady, Mode::Recycle]
        };
        for mode in order {
            phases.push(run_phase(&setup, mode, rep));
        }
    }
    wait_no_cgis(&server);
    let apache = std::process::Command::new("/usr/sbin/apache2")
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("Server version: ")
                .to_owned()
        })
        .unwrap_or_default();
    let cpu_source = if group.is_some() {
        "cpuacct cgroup"
    } else {
        "/proc sampling"
    };
    drop(server);
    drop(group);
    let doc = report(
        &phases, n, reps, secs, warmup, lifetime, quick, &apache, cpu_source,
    );
    let out = support::servers::repo().join("docs/benchmark-recycling.md");
    std::fs::write(&out, &doc).unwrap();
    print!("{doc}");
}

// ------------------------------------------------------------- report ---

#[allow(clippy::too_many_arguments)]
fn report(
    phases: &[Phase],
    n: usize,
    reps: usize,
    secs: u64,
    warmup: u64,
    lifetime: u64,
    quick: bool,
    apache: &str,
    cpu_source: &str,
) -> String {
    let of = |m: Mode| phases.iter().filter(move |p| p.mode == m);
    let med = |m: Mode, f: &dyn Fn(&Phase) -> f64| median(of(m).map(f).collect());
    let sum = |m: Mode, f: &dyn Fn(&Phase) -> usize| of(m).map(f).sum::<usize>();
    let (a, b) = (Mode::Recycle, Mode::Steady);
    // Extra CPU per reconnect, per repetition (A and B of the same pair),
    // then the median of those.
    let per_rep: Vec<(f64, f64, f64)> = (0..reps)
        .filter_map(|r| {
            let pa = phases.iter().find(|p| p.rep == r && p.mode == a)?;
            let pb = phases.iter().find(|p| p.rep == r && p.mode == b)?;
            let extra = pa.cpu_per_sec() - pb.cpu_per_sec();
            let rate = pa.reconnect_rate() - pb.reconnect_rate();
            Some((extra, rate, extra / rate.max(1e-9)))
        })
        .collect();
    let extra_med = median(per_rep.iter().map(|x| x.0).collect());
    let rate_med = med(a, &|p| p.reconnect_rate());
    let per_reconnect_ms = median(per_rep.iter().map(|x| x.2).collect()) * 1e3;
    let pooled_ms = {
        let (ca, cb) = (
            of(a).map(|p| p.cpu).sum::<f64>() / of(a).map(|p| p.secs).sum::<f64>(),
            of(b).map(|p| p.cpu).sum::<f64>() / of(b).map(|p| p.secs).sum::<f64>(),
        );
        let ra =
            of(a).map(|p| p.reconnects).sum::<usize>() as f64 / of(a).map(|p| p.secs).sum::<f64>();
        (ca - cb) / ra * 1e3
    };
    let default_rate = n as f64 / DEFAULT_MEAN_LIFETIME;
    let default_rate_1000 = 1000.0 / DEFAULT_MEAN_LIFETIME;
    let core_pct = |rate: f64, ms: f64| rate * ms / 1e3 * 100.0;
    let cpu_a = med(a, &|p| p.cpu_per_sec());
    let cpu_b = med(b, &|p| p.cpu_per_sec());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let expected_rate = n as f64 / (lifetime as f64 * 0.75);

    let commit = Command::new("git")
        .args(["-C", support::servers::repo().to_str().unwrap()])
        .args(["describe", "--always", "--dirty"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let commit = format!("commit {commit}");
    let mut d = String::from("# Benchmark: what stream recycling costs at steady state\n\n");
    d.push_str(&format!(
        "Generated by `cargo bench --bench recycling`{}: {apache}, event MPM, mod_cgid, the \
         shipped `apache-conf/nph-events.conf`, on 127.0.0.1; the static CGI that \
         `cgi-bin/install` builds from {commit}; **{n} clients**, each one CGI process, read by one epoll \
         thread that behaves as `EventSource` (at the end of a stream it waits the last \
         `retry:` and reconnects with `Last-Event-ID`). Machine: {cores} cores, shared with \
         other work (compare the ratios; single numbers move between runs).\n\n",
        if quick {
            " with `NPH_BENCH_QUICK=1`"
        } else {
            ""
        }
    ));
    d.push_str(&format!(
        "Two phases with the same clients and the same load, {reps} of each, alternating \
         (A B, B A, A B, …) through the same Apache:\n\n\
         * **A, recycling**: `NPH_EVENTS_MAX_DURATION={lifetime}`, jitter 0.5 (lifetimes \
         uniform in {:.0}–{lifetime} s, mean {:.1} s). That is **{:.0}× the reconnect rate of \
         the 300 s default**, chosen so the cost of reconnecting stands out of the noise; \
         it is scaled back to 300 s below.\n\
         * **B, no recycling**: `NPH_EVENTS_MAX_DURATION=0`.\n\n\
         Each phase opens its {n} clients on a fresh channel, lets them run {warmup} s \
         (in A one whole lifetime, so the streams' ages have spread and reconnects come at \
         their steady rate), then measures for {secs} s while an event is published every \
         500 ms with the CLI (`nph-events publish --spool … --channel … --data round-K`, run \
         as root, which writes as the spool's owner, www-data): {} events per phase. \
         Heartbeat at its default (15 s), no ticker.\n\n",
        lifetime as f64 / 2.0,
        lifetime as f64 * 0.75,
        300.0 / lifetime as f64,
        secs * 2,
    ));
    d.push_str(
        "## Results\n\nMedians over the repetitions (each phase's own values are below).\n\n",
    );
    d.push_str("| | A: recycling | B: no recycling | A / B |\n|---|---:|---:|---:|\n");
    let row = |d: &mut String, name: &str, va: f64, vb: f64, prec: usize| {
        let ratio = if vb.abs() > 1e-12 {
            format!("{:.2}", va / vb)
        } else {
            "–".into()
        };
        d.push_str(&format!(
            "| {name} | {va:.prec$} | {vb:.prec$} | {ratio} |\n"
        ));
    };
    row(
        &mut d,
        "CPU of Apache + all CGIs, % of one core",
        cpu_a * 100.0,
        cpu_b * 100.0,
        2,
    );
    row(
        &mut d,
        "  of which user, % of one core",
        med(a, &|p| p.cpu_user / p.secs * 100.0),
        med(b, &|p| p.cpu_user / p.secs * 100.0),
        2,
    );
    d.push_str(&format!(
        "|   of which system, % of one core | {:.2} | {:.2} | |\n",
        med(a, &|p| p.cpu_sys / p.secs * 100.0),
        med(b, &|p| p.cpu_sys / p.secs * 100.0)
    ));
    row(
        &mut d,
        "reconnects per second (clients saw)",
        rate_med,
        med(b, &|p| p.reconnect_rate()),
        2,
    );
    d.push_str(&format!(
        "| mean stream lifetime seen, s | {:.1} | (none ended) | |\n",
        med(a, &|p| p.mean_lifetime)
    ));
    row(
        &mut d,
        "publish-to-delivery p50, ms",
        med(a, &|p| p.p50),
        med(b, &|p| p.p50),
        1,
    );
    row(
        &mut d,
        "publish-to-delivery p99, ms",
        med(a, &|p| p.p99),
        med(b, &|p| p.p99),
        1,
    );
    row(
        &mut d,
        "publish-to-delivery max, ms",
        med(a, &|p| p.max),
        med(b, &|p| p.max),
        1,
    );
    d.push_str(&format!(
        "| deliveries (all phases) | {} | {} | |\n| of which on a resumed stream (Last-Event-ID) | {} | {} | |\n\
         | **missing** (client × event never delivered) | **{}** | **{}** | |\n\
         | of which the client reconnected without `Last-Event-ID` (no event yet) | {} | {} | |\n\
         | **duplicates** | **{}** | **{}** | |\n\
         | connect/read errors | {} | {} | |\n",
        sum(a, &|p| p.deliveries),
        sum(b, &|p| p.deliveries),
        sum(a, &|p| p.resumed),
        sum(b, &|p| p.resumed),
        sum(a, &|p| p.missing),
        sum(b, &|p| p.missing),
        sum(a, &|p| p.missing_noid),
        sum(b, &|p| p.missing_noid),
        sum(a, &|p| p.dupes),
        sum(b, &|p| p.dupes),
        sum(a, &|p| p.errors),
        sum(b, &|p| p.errors),
    ));
    row(
        &mut d,
        "measuring client's own CPU, % of one core",
        med(a, &|p| p.bench_cpu / p.secs * 100.0),
        med(b, &|p| p.bench_cpu / p.secs * 100.0),
        2,
    );
    d.push_str(&format!(
        "\n(The expected reconnect rate in A is N / mean lifetime = {n} / {:.1} s = {:.1}/s; \
         each reconnect is a stream ended with `retry: 500`, a 500 ms wait, then a new \
         request.)\n\n",
        lifetime as f64 * 0.75,
        expected_rate
    ));

    d.push_str("### Each phase\n\n| phase | s | CPU s ({cpu_source}) | % core | /proc sched sampled s | /proc stat sampled s | tree cutime+cstime growth s | reconnects/s | p50 ms | p99 ms | max ms | missing (no id) | dupes | publish CLI ms (p50) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n".replace("{cpu_source}", cpu_source).as_str());
    for p in phases {
        d.push_str(&format!(
            "| {} {} | {:.1} | {:.3} | {:.2} | {:.3} | {:.3} | {:.3} | {:.2} | {:.1} | {:.1} | {:.1} | {} ({}) | {} | {:.1} |\n",
            if p.mode == a { "A" } else { "B" },
            p.rep + 1,
            p.secs,
            p.cpu,
            p.cpu_per_sec() * 100.0,
            p.proc.sched,
            p.proc.stat,
            p.proc.cutime,
            p.reconnect_rate(),
            p.p50,
            p.p99,
            p.max,
            p.missing,
            p.missing_noid,
            p.dupes,
            p.publish_ms
        ));
    }

    d.push_str("\n## Extra CPU per reconnect, and the 300 s default\n\n");
    d.push_str("| pair | extra CPU, % of one core (A − B) | extra reconnects/s | CPU ms per reconnect |\n|---|---:|---:|---:|\n");
    for (i, (extra, rate, per)) in per_rep.iter().enumerate() {
        d.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} |\n",
            i + 1,
            extra * 100.0,
            rate,
            per * 1e3
        ));
    }
    d.push_str(&format!(
        "\nExtra CPU of A over B, median of the pairs: {:.2} % of one core. \
         **Extra CPU per reconnect: {per_reconnect_ms:.2} ms** (median of the pairs; \
         pooled over all phases: {pooled_ms:.2} ms), counted in Apache and the CGI \
         processes. A reconnect there is: Apache accepting a connection and handing the \
         request to mod_cgid, the daemon forking, the CGI starting, reading the channel's \
         events after its `Last-Event-ID`, and, at the end of the stream before, the CGI \
         exiting and Apache closing the connection (not broken down here).\n\n",
        extra_med * 100.0
    ));
    d.push_str(&format!(
        "Scaled to the default (`max_duration` auto = 300 s, jitter 0.5, mean lifetime \
         {DEFAULT_MEAN_LIFETIME:.0} s): reconnects/s = N / {DEFAULT_MEAN_LIFETIME:.0}.\n\n\
         | clients | reconnects/s at 300 s | extra CPU, % of one core |\n|---:|---:|---:|\n\
         | {n} (measured here) | {default_rate:.2} | **{:.2} %** |\n",
        core_pct(default_rate, per_reconnect_ms)
    ));
    if n != 1000 {
        d.push_str(&format!(
            "| 1000 | {default_rate_1000:.2} | {:.2} % |\n",
            core_pct(default_rate_1000, per_reconnect_ms)
        ));
    }
    d.push_str(&format!(
        "| 10000 | {:.1} | {:.2} % |\n",
        10000.0 / DEFAULT_MEAN_LIFETIME,
        core_pct(10000.0 / DEFAULT_MEAN_LIFETIME, per_reconnect_ms)
    ));

    d.push_str("\n## Reading\n\n");
    let noise = {
        let spread = |m: Mode| {
            let v: Vec<f64> = of(m).map(|p| p.cpu_per_sec() * 100.0).collect();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo, hi)
        };
        (spread(a), spread(b))
    };
    d.push_str(&format!(
        "* At {lifetime} s the recycling phase used {:.2} % of one core against {:.2} % \
         without (A / B = {:.2}), at {rate_med:.1} reconnects a second. Per reconnect that \
         is {per_reconnect_ms:.2} ms of CPU. At the 300 s default and {n} clients \
         ({default_rate:.2} reconnects a second) the same cost is **{:.2} % of one core**, \
         i.e. {:.1} ms of CPU per second. DESIGN.md's estimate was \"about 4.4 reconnects a \
         second, a few milliseconds of CPU a second\" at 1,000 clients: the rate holds, \
         the CPU is {:.1} ms a second at 1,000 clients ({:.2} % of one core).\n",
        cpu_a * 100.0,
        cpu_b * 100.0,
        cpu_a / cpu_b,
        core_pct(default_rate, per_reconnect_ms),
        default_rate * per_reconnect_ms,
        default_rate_1000 * per_reconnect_ms,
        core_pct(default_rate_1000, per_reconnect_ms),
    ));
    let (miss, noid) = (
        sum(a, &|p| p.missing) + sum(b, &|p| p.missing),
        sum(a, &|p| p.missing_noid) + sum(b, &|p| p.missing_noid),
    );
    let dupes = sum(a, &|p| p.dupes) + sum(b, &|p| p.dupes);
    let deliveries = sum(a, &|p| p.deliveries) + sum(b, &|p| p.deliveries);
    let delivery = if miss == 0 && dupes == 0 {
        format!(
            "every client got every event exactly once: {deliveries} deliveries, 0 \
             missing, 0 duplicates. That includes clients whose stream recycled before \
             they had any event (each phase's warm-up is silent): they resume from the \
             `id: N` a fresh stream starts with. (Runs of this benchmark before commit \
             a475628, when a fresh stream sent no id, lost events exactly that way: 2 of \
             4,000 deliveries at 100 clients, 7 of 360,000 in three A phases at 1,000, \
             every one by a client that reconnected without `Last-Event-ID` and so \
             started at the channel's present, past the event published in its gap.)"
        )
    } else {
        format!(
            "{miss} missing and {dupes} duplicates over all phases; {noid} of the misses \
             were by a client that had not yet had any event on its channel when its \
             stream recycled, so its reconnection carried no `Last-Event-ID` and started \
             at the channel's present, past the event published in its 500 ms gap (a \
             browser's EventSource does the same: it sends `Last-Event-ID` only once it \
             has seen an `id:`); {} otherwise.",
            miss - noid
        )
    };
    d.push_str(&format!(
        "* Delivery: {delivery} Recycling shows in the latency tail, not the median: an \
         event published while a client is in its reconnect gap arrives on the next \
         stream, by resume ({} such deliveries in A); at {rate_med:.1} reconnects a second \
         about {:.1} % of the clients are in that gap at any moment, which is what moves \
         p99. At the 300 s default that share is a tenth as large.\n",
        sum(a, &|p| p.resumed),
        rate_med * 0.5 / n as f64 * 100.0,
    ));
    let p99 = |m: Mode| {
        let v: Vec<f64> = of(m).map(|p| p.p99).collect();
        (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    let effect = core_pct(default_rate, per_reconnect_ms);
    d.push_str(&format!(
        "* Noise: CPU per phase ranged {:.2}–{:.2} % of a core in A and {:.2}–{:.2} % in B \
         over the repetitions; the machine is shared, so other work is in neither number \
         but slows what is measured. The difference A − B per pair is the measurement; \
         the table of pairs shows how far it moves. The effect at the 300 s default \
         ({effect:.2} % of a core) is {:.1}× the spread of B alone between repetitions \
         ({:.2} points): too close to the noise to measure directly in a run this long, \
         which is why the lifetime was scaled down. Latency tails are noisier still: p99 \
         per phase ranged {:.0}–{:.0} ms in B, where nothing reconnects, and {:.0}–{:.0} ms \
         in A; compare medians.\n",
        noise.0 .0,
        noise.0 .1,
        noise.1 .0,
        noise.1 .1,
        effect / (noise.1 .1 - noise.1 .0).max(1e-9),
        noise.1 .1 - noise.1 .0,
        p99(b).0,
        p99(b).1,
        p99(a).0,
        p99(a).1,
    ));
    d.push_str(
        "* The B phase is not free either: its CPU is the idle heartbeats of every stream \
         and the fan-out of two events a second to every client, through one process per \
         client. Recycling adds to that; it does not replace it.\n\
         * Not counted: the client side of each reconnect (a browser's, here the \
         benchmark's own CPU, shown apart) and the publishing CLI (not part of Apache's \
         tree; the same in both phases).\n",
    );

    d.push_str(&format!(
        "\n## Method\n\n\
         * CPU: the whole Apache process tree (parent, mod_cgid's daemon, the worker \
         processes, every CGI) is moved into a cpuacct cgroup (v1) after start; everything \
         forked later is born inside. `cpuacct.usage` (ns) is read at the start and end of \
         the measured window. The kernel charges run time to the cgroup as tasks run, and \
         the charge stays when a task exits, so the CGIs that ended within the window \
         count whole. Per-process /proc readings cannot give that: a process's time \
         vanishes with it, and reaches its parent's cutime + cstime only if the parent \
         waits for it; the column 'tree cutime+cstime growth' shows that under mod_cgid \
         it does not grow (the daemon does not wait for its CGIs; the kernel reaps them). \
         Cross-checks, the tree read every 500 ms with each process's growth summed (new \
         processes from zero): 'sched sampled' from the scheduler's run time of its \
         threads (/proc/PID/task/*/schedstat, exact while the process lives; \
         it loses what a process used after its last reading, so it falls short in A), \
         and 'stat sampled' from utime + stime of /proc/PID/stat. In B, where no \
         process exits, the cgroup and 'sched sampled' agree ({:.0} % of the cgroup, \
         median) while 'stat sampled' reads {:.0} %: on this kernel utime + stime fall \
         well short of the scheduler's run time for these short, frequent bursts, so \
         they are shown, not used.\n\
         * Reconnects per second: reconnections the clients made inside the window, \
         divided by its length.\n\
         * Latency: from just before the publishing CLI is started to the arrival of the \
         event at a client (the epoll wake-up that brought its blank line), every client \
         × every event; it includes starting the CLI ({:.1} ms median). An event that \
         reaches a client after a reconnect counts from its publish, gap included.\n\
         * Exactly once: each client counts every `round-K` it is dispatched; after the \
         window the clients are read 5 s more (a client in its reconnect gap at the last \
         publish); then a count of 0 is a miss, more than 1 a duplicate.\n\
         * Apache: `ServerLimit`/`MaxRequestWorkers` sized for the clients plus \
         reconnect overlap, `ListenBacklog 4096`; `SetEnvIfExpr` on the channel name sets \
         `NPH_EVENTS_MAX_DURATION` per phase (the snippet itself unchanged).\n\
         * Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench recycling` \
         (`NPH_BENCH_CLIENTS`, `NPH_BENCH_REPS`, `NPH_BENCH_PHASE_SECS`, \
         `NPH_BENCH_WARMUP_SECS`, `NPH_BENCH_LIFETIME`; `NPH_BENCH_QUICK=1`: 100 clients, \
         one pair of 20 s phases). Needs root (the cgroup, `www-data`).\n",
        med(b, &|p| p.proc.sched / p.cpu.max(1e-9) * 100.0),
        med(b, &|p| p.proc.stat / p.cpu.max(1e-9) * 100.0),
        med(a, &|p| p.publish_ms),
    ));
    d
}
