//! Behind Pushpin (GRIP): idle SSE clients held by a real Pushpin 1.36 in
//! front of a real Apache (event MPM, mod_cgid) running the CGI, side by
//! side in the same run with the same Pushpin configuration in front of a
//! minimal native GRIP origin, and with the direct CGI stream (no proxy).
//!
//! For each count in `NPH_BENCH_GRIP_CLIENTS` (full `400,1000,10000`,
//! quick `50,200`), everything fresh:
//!
//! * stack A: Apache + the CGI (`NPH_EVENTS_GRIP_KEY`, `NPH_EVENTS_INTERVAL=0`,
//!   an access log to count CGI runs) and a Pushpin started from the
//!   shipped `pushpin-conf/` (tests/support/pushpin.rs) routing to it;
//! * stack B: a second Pushpin, same files, in front of an origin in this
//!   process (a thread on a `TcpListener`) that answers every request with
//!   `Grip-Hold: stream`, `Grip-Channel: native`, the same keep-alive and a
//!   short body, and holds nothing.
//!
//! N SSE clients connect to each Pushpin (in batches of `NPH_BENCH_BATCH`,
//! 100: with 200 at once, Pushpin answered up to 100 of each batch with
//! `502 Error while proxying to origin`, with either origin; refusals are
//! counted and made again), read by one epoll thread each (bench/client.rs;
//! the native origin's clients in a child process, see [`Holder`]).
//! Memory: PSS and RSS of every process of each stack (Pushpin's runner and
//! its four children; Apache's processes; the CGI processes) before and 2 s
//! after the clients connected, divided by N; and the machine's
//! `MemAvailable` drop. At rest (clients connected, nothing published;
//! `NPH_BENCH_REST_SECS`, full 30, quick 5, and at the largest count
//! `NPH_BENCH_REST_LARGEST_SECS`, full 130: longer than the 120 s a
//! `Grip-Link` asks Pushpin to check back after): the number of nph-events
//! processes, sampled every 100 ms, the CGI runs Apache logged, and the CPU
//! time of each stack's processes. Then `NPH_BENCH_ROUNDS` (20, quick 5)
//! rounds of three publishes, `NPH_BENCH_GAP_MS` (250, quick 150) apart:
//!
//! * A, as a site publishes: the real command, `nph-events publish --spool
//!   <Apache's spool> --grip-publish <url>`, as the spool's owner. The URL
//!   is a relay in this process that notes when the publish request
//!   arrives and passes it on to Pushpin: two latencies, from just before
//!   the command starts, and from the publish request reaching the proxy
//!   (the command still running);
//! * A, re-sent: the same command, the relay keeping its request (and
//!   answering it as Pushpin would); once the command has exited, this
//!   process sends the request to Pushpin, timed from just before it is
//!   written: the comparison with B, the origin the only difference;
//! * B: a `POST /publish/` from this process with the item nph-events would
//!   send (`nph_events::grip::publish::body`: id, prev-id, http-stream and
//!   ws-message formats), timed from just before it is written.
//!
//! Direct, first: a fresh Apache (same settings, no proxy) with
//! `NPH_BENCH_DIRECT` clients (full 400: the MaxRequestWorkers of Apache's
//! event MPM as the test support runs it, compiled defaults 16 × 25;
//! quick 50; a batch not answered within 10 s ends the connecting), one CGI
//! process each, the same rounds with the same command (no GRIP URL); then
//! one more client, to see whether Apache serves it.
//!
//! `cargo bench --bench grip` writes docs/benchmark-grip.md (quick: a temp
//! file; `NPH_BENCH_OUT` to choose). `NPH_BENCH_COMMIT` names the commit
//! when the tree is not a git checkout.

#[path = "client.rs"]
mod client;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use client::{
    cpu_ns, env_or, is_ready, meminfo_kib, open, percentile, pss_kib, pump, quiet_memory,
    raise_fd_limit, reset, rss_kib, wait_ready, Client, Poller,
};
use nph_events::grip::publish::{body as item_body, Item};
use support::pushpin::{self, Pushpin};
use support::servers::{self, repo, Kind, Server};

/// Pushpin's `sig_key`, the CGI's `NPH_EVENTS_GRIP_KEY`.
const KEY: &str = "grip-bench-key-5e1d0c9a7b3f4821";
const SCRIPT: &str = "nph-events.cgi";
const CGI_PATH: &str = "/cgi-bin/nph-events.cgi";
/// The CGI's channel, through Pushpin and direct.
const CHANNEL: &str = "bench";
/// The native origin's channel.
const NATIVE_CHANNEL: &str = "native";
/// In the body of every stream's opening, from either origin.
const READY: &[u8] = b"retry:";
/// After the clients connect, before reading memory.
const SETTLE: Duration = Duration::from_secs(2);
/// For one round to reach every client.
const ROUND_WAIT: Duration = Duration::from_secs(10);

/// The knobs (module docs).
struct Settings {
    quick: bool,
    counts: Vec<usize>,
    direct: usize,
    rounds: usize,
    gap: Duration,
    rest: Duration,
    rest_largest: Duration,
    batch: usize,
    /// Access logs and the like, removed at the end.
    tmp: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        let quick = env_or("NPH_BENCH_QUICK", "0") != "0";
        let pick = |name: &str, full: &str, q: &str| env_or(name, if quick { q } else { full });
        let num = |name: &str, full: &str, q: &str| -> u64 {
            pick(name, full, q)
                .parse()
                .unwrap_or_else(|e| panic!("{name}: {e:?}"))
        };
        let tmp = std::env::temp_dir().join(format!("nph-gripbench-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        Settings {
            quick,
            counts: pick("NPH_BENCH_GRIP_CLIENTS", "400,1000,10000", "50,200")
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect(),
            direct: num("NPH_BENCH_DIRECT", "400", "50") as usize,
            rounds: num("NPH_BENCH_ROUNDS", "20", "5") as usize,
            gap: Duration::from_millis(num("NPH_BENCH_GAP_MS", "250", "150")),
            rest: Duration::from_secs(num("NPH_BENCH_REST_SECS", "30", "5")),
            rest_largest: Duration::from_secs(num("NPH_BENCH_REST_LARGEST_SECS", "130", "5")),
            batch: num("NPH_BENCH_BATCH", "100", "100").max(1) as usize,
            tmp,
        }
    }
}

// ---------------------------------------------------------------- processes

/// (pid, parent) of every process.
fn processes() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let ppid = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))?
                .trim()
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// `root` and all its descendants.
fn descendants(root: u32) -> Vec<u32> {
    let table = processes();
    let mut all = vec![root];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        all.extend(
            table
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    all
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn exe(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The runner of a Pushpin instance: the `/usr/bin/pushpin` process whose
/// command line names the instance's configuration.
fn runner_of(p: &Pushpin) -> u32 {
    let conf = p.dir.join("pushpin.conf").display().to_string();
    processes()
        .into_iter()
        .map(|(pid, _)| pid)
        .find(|&pid| {
            exe(pid).is_some_and(|e| e == Path::new(pushpin::PROGRAM))
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&conf))
        })
        .expect("the Pushpin runner is running")
}

/// The Apache parent process of a server (its PidFile).
fn apache_parent(server: &Server) -> u32 {
    let file = server.dir.join("run/httpd.pid");
    let t0 = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no {}",
            file.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The process groups whose memory is counted.
const GROUPS: [&str; 7] = [
    "condure",
    "zurl",
    "pushpin-proxy",
    "pushpin-handler",
    "pushpin (runner)",
    "apache2",
    "nph-events",
];

/// PSS and RSS (KiB) and the number of processes, per group.
#[derive(Clone, Copy, Default, Debug)]
struct Mem {
    pss: [u64; 7],
    rss: [u64; 7],
    procs: [usize; 7],
}

impl Mem {
    /// The processes of a Pushpin instance (by its runner) and of an Apache
    /// with its CGIs.
    fn of(runner: Option<u32>, apache: Option<&Server>) -> Mem {
        let mut m = Mem::default();
        let mut add = |g: usize, pid: u32| {
            m.pss[g] += pss_kib(pid);
            m.rss[g] += rss_kib(pid);
            m.procs[g] += 1;
        };
        if let Some(r) = runner {
            for pid in descendants(r) {
                let g = match comm(pid).as_str() {
                    _ if pid == r => 4,
                    "condure" => 0,
                    "zurl" => 1,
                    "pushpin-proxy" => 2,
                    "pushpin-handler" => 3,
                    _ => 4,
                };
                add(g, pid);
            }
        }
        if let Some(s) = apache {
            let cgi = &s.installed[0];
            for pid in descendants(apache_parent(s)) {
                let g = if exe(pid).as_deref() == Some(cgi.as_path()) {
                    6
                } else {
                    5
                };
                add(g, pid);
            }
        }
        m
    }

    fn pss_total(&self) -> u64 {
        self.pss.iter().sum()
    }

    fn rss_total(&self) -> u64 {
        self.rss.iter().sum()
    }
}

/// Memory growth per client while `n` clients connected.
#[derive(Clone, Debug)]
struct Growth {
    before: Mem,
    after: Mem,
    n: usize,
    /// MemAvailable drop per client (KiB): the whole machine, both socket
    /// ends included.
    available: f64,
    /// This process's PSS growth per client (KiB): the clients' buffers.
    bench: f64,
}

impl Growth {
    fn per(&self, g: usize) -> f64 {
        (self.after.pss[g] as f64 - self.before.pss[g] as f64) / self.n as f64
    }
    fn pss(&self) -> f64 {
        (self.after.pss_total() as f64 - self.before.pss_total() as f64) / self.n as f64
    }
    fn rss(&self) -> f64 {
        (self.after.rss_total() as f64 - self.before.rss_total() as f64) / self.n as f64
    }
}

// ------------------------------------------------------------- native origin

/// Requests the native origin has answered.
static NATIVE_REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// A minimal GRIP origin: every request is answered with a stream hold on
/// the channel its query names (default `native`), the same keep-alive as
/// the CGI's, and a short body; HTTP/1.1 keep-alive. Returns its port.
fn native_origin() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            let _ = thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || serve_origin(s));
        }
    });
    port
}

fn serve_origin(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() < end + 4 + length {
                break;
            }
            buf.drain(..end + 4 + length);
            let target = head.split_whitespace().nth(1).unwrap_or("/");
            let channel = target
                .split_once('?')
                .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("channel=")))
                .unwrap_or(NATIVE_CHANNEL);
            let body = ": native GRIP origin\nretry: 3000\n\n";
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nGrip-Hold: stream\r\n\
                 Grip-Channel: {channel}\r\nGrip-Keep-Alive: :\\n\\n; format=cstring; timeout=15\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            NATIVE_REQUESTS.fetch_add(1, Ordering::Relaxed);
            if s.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

// ---------------------------------------------------------------- the relay

/// Between `nph-events publish` and Pushpin's publish API: notes when each
/// publish request has arrived whole (just before it is passed on, as the
/// native case's clock starts just before its POST is written), passes it
/// on and the answer back. Or, while `defer` is set, keeps the request and
/// answers the command itself as Pushpin would (`200 Published`): the
/// benchmark sends it on later, once the command has exited.
struct Relay {
    port: u16,
    shared: Arc<RelayShared>,
}

#[derive(Default)]
struct RelayShared {
    arrived: Mutex<Vec<Instant>>,
    defer: std::sync::atomic::AtomicBool,
    held: Mutex<Option<Vec<u8>>>,
}

impl Relay {
    fn start(target: u16) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let shared = Arc::new(RelayShared::default());
        let sh = shared.clone();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                let sh = sh.clone();
                thread::spawn(move || relay_one(s, target, &sh));
            }
        });
        Relay { port, shared }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/publish/", self.port)
    }

    /// When the last request arrived, if any arrived since the last call.
    fn take(&self) -> Option<Instant> {
        let mut v = self.shared.arrived.lock().unwrap();
        let last = v.last().copied();
        v.clear();
        last
    }

    fn defer(&self, on: bool) {
        self.shared.defer.store(on, Ordering::SeqCst);
    }

    /// The request kept while deferring.
    fn held(&self) -> Option<Vec<u8>> {
        self.shared.held.lock().unwrap().take()
    }
}

fn relay_one(mut s: TcpStream, target: u16, sh: &RelayShared) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let whole = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:")?.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break true;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break false,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    };
    if !whole {
        return;
    }
    if sh.defer.load(Ordering::SeqCst) {
        *sh.held.lock().unwrap() = Some(buf);
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\
              Connection: close\r\n\r\nPublished\n",
        );
        return;
    }
    sh.arrived.lock().unwrap().push(Instant::now());
    let _ = s.write_all(&forward(target, &buf));
}

/// Sends a whole publish request to Pushpin's publish API; the answer.
fn forward(target: u16, request: &[u8]) -> Vec<u8> {
    let mut answer = Vec::new();
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", target)) else {
        return answer;
    };
    let _ = up.set_nodelay(true);
    if up.write_all(request).is_ok() {
        let _ = up.read_to_end(&mut answer);
    }
    answer
}

// ------------------------------------------------------------------ publish

/// What one `nph-events publish` did.
struct Cli {
    ok: bool,
    took: Duration,
    stderr: String,
}

/// `nph-events publish` of `data` on the CGI's channel into `spool`, as the
/// spool's owner (Apache runs the CGI as www-data when this runs as root),
/// with `--grip-publish url` if given.
fn cli_publish(spool: &Path, data: &str, grip: Option<&str>) -> Cli {
    let meta = std::fs::metadata(spool).unwrap();
    let mut cmd = Command::new(support::bin());
    cmd.env_clear()
        .args(["publish", "--channel", CHANNEL, "--data", data, "--spool"])
        .arg(spool)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(url) = grip {
        cmd.args(["--grip-publish", url]);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(meta.uid()).gid(meta.gid());
    }
    let t0 = Instant::now();
    let out = cmd.output().expect("run nph-events publish");
    Cli {
        ok: out.status.success(),
        took: t0.elapsed(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One `POST /publish/` to Pushpin; true on 200.
fn post_publish(port: u16, body: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_nodelay(true);
    let req = format!(
        "POST /publish/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// The item nph-events sends for event `id` with data `data` on the native
/// channel.
fn native_item(id: u64, data: &str) -> String {
    let sse = format!("id: {id}\ndata: {data}\n\n");
    let ws =
        serde_json::json!({"data": data, "event": "message", "id": id.to_string()}).to_string();
    item_body(&Item {
        channel: NATIVE_CHANNEL,
        id,
        prev_id: (id > 1).then(|| id - 1),
        sse: sse.as_bytes(),
        ws_text: &ws,
        sender: None,
    })
}

// ------------------------------------------------------------------ clients

/// The status code of a client's answer, once its first line is in.
fn status(c: &Client) -> Option<u16> {
    let line = c.buf.split(|&b| b == b'\n').next()?;
    if line.len() == c.buf.len() {
        return None;
    }
    std::str::from_utf8(line)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Connected clients, and the answers other than a stream on the way.
struct Connected {
    clients: Vec<Client>,
    /// Requests answered with another status (counted per status), each
    /// retried after 100 ms.
    refused: Vec<(u16, usize)>,
    /// Example of a refusal, as received.
    example: Option<String>,
    /// Requests that got no answer at all within the wait (only with a
    /// `give_up` wait: connecting then stops there).
    unserved: usize,
}

/// `n` SSE clients of `path` on `channel`, connected `batch` at a time (each
/// batch streaming before the next), with room for `marks` round markers.
/// A request answered with another status than 200 is counted and made
/// again (what a page's script would do; EventSource itself gives up).
fn connect(
    port: u16,
    path: &str,
    channel: &str,
    n: usize,
    batch: usize,
    marks: usize,
    give_up: Option<Duration>,
) -> Connected {
    let req = format!(
        "GET {path}?channel={channel} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
    );
    let mut out = Connected {
        clients: Vec::with_capacity(n),
        refused: Vec::new(),
        example: None,
        unserved: 0,
    };
    let t0 = Instant::now();
    while out.clients.len() < n {
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "{path}: {} of {n} connected in 15 minutes; refused {:?}",
            out.clients.len(),
            out.refused
        );
        let k = batch.min(n - out.clients.len());
        let mut b = open(port, &req, k, marks);
        pump(&mut b, give_up.unwrap_or(Duration::from_secs(120)), |cs| {
            cs.iter()
                .all(|c| c.closed || is_ready(c, READY) || status(c).is_some_and(|s| s != 200))
        });
        let (ok, mut failed): (Vec<Client>, Vec<Client>) =
            b.into_iter().partition(|c| is_ready(c, READY));
        out.clients.extend(ok);
        if give_up.is_some() {
            let (silent, answered): (Vec<Client>, Vec<Client>) = failed
                .into_iter()
                .partition(|c| !c.closed && status(c).is_none());
            failed = answered;
            if !silent.is_empty() {
                out.unserved = silent.len();
                eprintln!(
                    "{path}: {} of a batch of {k} not answered within {give_up:?} ({} streaming): \
                     no more",
                    silent.len(),
                    out.clients.len()
                );
                reset(silent);
                reset(failed);
                break;
            }
        }
        for c in &failed {
            let code = status(c).unwrap_or(0);
            match out.refused.iter_mut().find(|(s, _)| *s == code) {
                Some((_, k)) => *k += 1,
                None => out.refused.push((code, 1)),
            }
            if out.example.is_none() {
                out.example = Some(String::from_utf8_lossy(&c.buf).into_owned());
            }
        }
        if !failed.is_empty() {
            eprintln!(
                "{path}: {} of a batch of {k} refused ({} connected before): {:?}",
                failed.len(),
                out.clients.len(),
                out.example
            );
            reset(failed);
            thread::sleep(Duration::from_millis(100));
        }
    }
    out
}

/// Reads until every client in `range` has round marker `mark` (or closed),
/// for up to [`ROUND_WAIT`].
fn wait_mark(poller: &Poller, clients: &mut [Client], range: Range<usize>, mark: usize) {
    let mut next = range.start;
    poller.pump(clients, ROUND_WAIT, |cs| {
        while next < range.end && (cs[next].closed || cs[next].arrivals[mark].is_some()) {
            next += 1;
        }
        next == range.end
    });
}

/// Latencies (ms) from `t0` to the arrival of `mark` at each client in
/// `range`, and how many did not get it.
fn latencies(
    clients: &[Client],
    range: Range<usize>,
    mark: usize,
    t0: Instant,
) -> (Vec<f64>, usize) {
    let mut got = Vec::new();
    let mut missing = 0;
    for c in &clients[range] {
        match c.arrivals[mark] {
            Some(t) => got.push(t.saturating_duration_since(t0).as_secs_f64() * 1e3),
            None => missing += 1,
        }
    }
    (got, missing)
}

/// Lines of an access log naming the CGI (one per CGI run).
fn cgi_runs(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(CGI_PATH))
        .count()
}

/// How long Apache took for each CGI run after the first `skip` (ms, from
/// the access log's `%D`), sorted.
fn cgi_times(log: &Path, skip: usize) -> Vec<f64> {
    let mut v: Vec<f64> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(CGI_PATH))
        .skip(skip)
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(|us| us / 1e3)
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

/// Apache configuration: an access log of its own (mod_log_config is built
/// into Debian's apache2).
fn access_log_conf(log: &Path) -> String {
    format!(
        "LogFormat \"%{{%s}}t %m %U %>s %D\" nphbench\nCustomLog \"{}\" nphbench\n",
        log.display()
    )
}

// ------------------------------------------------------------------- holder

/// The environment variable that makes this program a holder:
/// `port|path|channel|n|batch|marks`.
const HOLDER_ENV: &str = "NPH_GRIPBENCH_HOLD";

/// CLOCK_MONOTONIC in ns: what `Instant` reads on Linux, comparable across
/// processes.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The native origin's clients live in a child process of their own (this
/// program again, see [`holder_main`]): each process may hold at most
/// RLIMIT_NOFILE descriptors (a hard limit of 20,000 here, not raisable
/// without CAP_SYS_RESOURCE), and 10,000 clients of each stack at once do
/// not fit in one. Same client code; arrival times on CLOCK_MONOTONIC.
struct Holder {
    proc: support::Proc,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
}

impl Holder {
    fn start(port: u16, path: &str, channel: &str, n: usize, batch: usize, marks: usize) -> Holder {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(
            HOLDER_ENV,
            format!("{port}|{path}|{channel}|{n}|{batch}|{marks}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut proc = support::Proc::spawn(&mut cmd);
        let input = proc.child.stdin.take().unwrap();
        let output = std::io::BufReader::new(proc.child.stdout.take().unwrap());
        let mut h = Holder {
            proc,
            input,
            output,
        };
        assert_eq!(h.line(), "started");
        h
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn send(&mut self, command: &str) {
        writeln!(self.input, "{command}").unwrap();
        self.input.flush().unwrap();
    }

    fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut l = String::new();
        self.output.read_line(&mut l).unwrap();
        assert!(!l.is_empty(), "the holder process ended");
        l.trim_end().to_owned()
    }

    /// Connects the clients; what was refused on the way.
    fn connect(&mut self) -> Refused {
        self.send("connect");
        let l = self.line();
        let rest = l.strip_prefix("ready").expect("ready");
        let mut refused = Vec::new();
        let (codes, example) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
        for kv in codes.split(',').filter(|kv| !kv.is_empty() && *kv != "-") {
            let (c, k) = kv.split_once(':').unwrap();
            refused.push((c.parse().unwrap(), k.parse().unwrap()));
        }
        let example = (!example.is_empty()).then(|| example.replace('_', " "));
        (refused, example)
    }

    /// Starts reading every client for `wait` (answered by [`Holder::done`]).
    fn pump(&mut self, wait: Duration) {
        self.send(&format!("pump {}", wait.as_millis()));
    }

    fn done(&mut self) {
        assert_eq!(self.line(), "ok");
    }

    /// Starts reading until every client has `mark` (answered by
    /// [`Holder::arrivals`]).
    fn watch(&mut self, mark: usize) {
        self.send(&format!("mark {mark}"));
        assert_eq!(self.line(), "watching");
    }

    /// The arrival times (CLOCK_MONOTONIC ns) of the watched mark, and how
    /// many clients did not get it.
    fn arrivals(&mut self) -> (Vec<u64>, usize) {
        let l = self.line();
        let mut it = l.strip_prefix("arrivals ").expect("arrivals").split(' ');
        let missing = it.next().unwrap().parse().unwrap();
        (it.filter_map(|v| v.parse().ok()).collect(), missing)
    }

    fn closed(&mut self) -> usize {
        self.send("closed");
        self.line().parse().unwrap()
    }

    fn quit(mut self) {
        self.send("quit");
        let _ = self.proc.wait_for(Duration::from_secs(30));
    }
}

/// A holder: connects when told, reads, reports arrival times; commands on
/// stdin, answers on stdout.
fn holder_main(spec: &str) {
    use std::io::BufRead;
    raise_fd_limit();
    let f: Vec<&str> = spec.split('|').collect();
    let (port, path, channel): (u16, &str, &str) = (f[0].parse().unwrap(), f[1], f[2]);
    let (n, batch, marks): (usize, usize, usize) = (
        f[3].parse().unwrap(),
        f[4].parse().unwrap(),
        f[5].parse().unwrap(),
    );
    let base = (Instant::now(), mono_ns());
    let ns = |t: Instant| base.1 + t.duration_since(base.0).as_nanos() as u64;
    let mut out = std::io::stdout();
    let mut say = |l: &str| {
        writeln!(out, "{l}").unwrap();
        out.flush().unwrap();
    };
    say("started");
    let mut clients: Vec<Client> = Vec::new();
    let mut poller: Option<Poller> = None;
    for l in std::io::stdin().lock().lines() {
        let l = l.unwrap();
        let mut words = l.split_whitespace();
        match words.next() {
            Some("connect") => {
                let c = connect(port, path, channel, n, batch, marks, None);
                clients = c.clients;
                poller = Some(Poller::new(&clients));
                let codes: Vec<String> =
                    c.refused.iter().map(|(c, k)| format!("{c}:{k}")).collect();
                let example = c
                    .example
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .replace(' ', "_");
                let codes = if codes.is_empty() {
                    "-".to_owned()
                } else {
                    codes.join(",")
                };
                say(&format!("ready {codes} {example}"));
            }
            Some("pump") => {
                let ms: u64 = words.next().unwrap().parse().unwrap();
                let p = poller.as_ref().unwrap();
                p.pump(&mut clients, Duration::from_millis(ms), |_| false);
                say("ok");
            }
            Some("mark") => {
                let mark: usize = words.next().unwrap().parse().unwrap();
                say("watching");
                let p = poller.as_ref().unwrap();
                wait_mark(p, &mut clients, 0..n, mark);
                let mut line = String::from("arrivals ");
                let missing = clients
                    .iter()
                    .filter(|c| c.arrivals[mark].is_none())
                    .count();
                line.push_str(&missing.to_string());
                for c in &clients {
                    if let Some(t) = c.arrivals[mark] {
                        line.push(' ');
                        line.push_str(&ns(t).to_string());
                    }
                }
                say(&line);
            }
            Some("closed") => say(&clients.iter().filter(|c| c.closed).count().to_string()),
            Some("quit") | None => break,
            Some(other) => panic!("holder: unknown command {other:?}"),
        }
    }
    drop(poller);
    reset(clients);
}

// ------------------------------------------------------------------ results

#[derive(Default, Clone)]
struct Lat {
    samples: Vec<f64>,
    missing: usize,
}

impl Lat {
    fn add(&mut self, (samples, missing): (Vec<f64>, usize)) {
        self.samples.extend(samples);
        self.missing += missing;
    }
    fn sorted(mut self) -> Lat {
        self.samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
        self
    }
    fn p(&self, q: f64) -> f64 {
        if self.samples.is_empty() {
            f64::NAN
        } else {
            percentile(&self.samples, q)
        }
    }
    fn max(&self) -> f64 {
        self.samples.last().copied().unwrap_or(f64::NAN)
    }
}

/// One count through both Pushpins.
struct GripRun {
    n: usize,
    /// Time to connect all clients: stack A, stack B.
    connect: (Duration, Duration),
    /// Requests refused while connecting (status, count; an example): A, B.
    refused: (Refused, Refused),
    mem_cgi: Growth,
    mem_native: Growth,
    /// CGI runs Apache logged while the clients connected.
    runs_connect: usize,
    /// Apache's time for each of those requests (ms), sorted.
    hold_ms: Vec<f64>,
    /// nph-events processes right after connecting (settled).
    procs_connected: usize,
    rest: Rest,
    /// CGI runs Apache logged during the publishing rounds.
    runs_rounds: usize,
    /// Native origin requests during the rounds.
    native_rounds: usize,
    /// nph-events processes sampled during the rounds: max.
    procs_rounds_max: usize,
    /// CGI origin: from the command's start; from the request at the proxy.
    cgi_site: Lat,
    cgi_proxy: Lat,
    /// CGI origin: the command's request sent on after it exited.
    cgi_resent: Lat,
    resend_failures: usize,
    native: Lat,
    /// The command's own wall time (ms), sorted.
    cli_ms: Vec<f64>,
    cli_failures: Vec<String>,
    native_failures: usize,
    /// Clients the server closed by the end: A, B.
    closed: (usize, usize),
}

/// At rest: clients connected, nothing published.
#[derive(Default)]
struct Rest {
    secs: f64,
    samples: usize,
    max: usize,
    mean: f64,
    /// CGI runs Apache logged.
    runs: usize,
    /// Native origin requests.
    native: usize,
    /// CPU time of each stack's processes (ms per minute): A, B.
    cpu: (f64, f64),
}

/// Refusals while connecting: (status, count) and one answer as received.
type Refused = (Vec<(u16, usize)>, Option<String>);

struct DirectRun {
    /// Clients asked for, and those Apache served.
    requested: usize,
    n: usize,
    /// Requests Apache left unanswered (connecting stopped there).
    unserved: usize,
    connect: Duration,
    refused: Refused,
    mem: Growth,
    lat: Lat,
    cli_ms: Vec<f64>,
    cli_failures: Vec<String>,
    /// The client one past `n`: streaming within 5 s?
    one_more_served: bool,
    closed: usize,
}

// -------------------------------------------------------------------- phases

fn grip_run(n: usize, s: &Settings, native_port: u16) -> GripRun {
    let marks = 3 * s.rounds;
    let log = s.tmp.join(format!("access-{n}.log"));
    let mut pp_cgi = Pushpin::new(KEY);
    let relay = Relay::start(pp_cgi.publish_port);
    let grip_url = relay.url();
    let settings = [
        ("NPH_EVENTS_INTERVAL", "0"),
        ("NPH_EVENTS_GRIP_KEY", KEY),
        ("NPH_EVENTS_GRIP_PUBLISH", grip_url.as_str()),
    ];
    let server = Server::start_with(
        Kind::ApacheCgidEvent,
        &[SCRIPT],
        &settings,
        &[],
        &access_log_conf(&log),
    );
    pp_cgi.start(server.port);
    let pp_native = Pushpin::launch(KEY, native_port);
    let (runner_cgi, runner_native) = (runner_of(&pp_cgi), runner_of(&pp_native));
    let spool = server.spool();
    // One event before anyone connects: every hold then names a last id.
    let seed = cli_publish(&spool, "seed", Some(&grip_url));
    assert!(seed.ok, "seed publish failed: {}", seed.stderr);
    relay.take();
    let me = std::process::id();

    // Stack A: Pushpin + Apache + CGI.
    quiet_memory();
    let before = Mem::of(Some(runner_cgi), Some(&server));
    let (avail0, bench0) = (meminfo_kib(&["MemAvailable:"]), pss_kib(me));
    let runs0 = cgi_runs(&log);
    let t0 = Instant::now();
    let connected = connect(
        pp_cgi.front_port,
        CGI_PATH,
        CHANNEL,
        n,
        s.batch,
        marks,
        None,
    );
    let connect_cgi = t0.elapsed();
    let refused_cgi = (connected.refused, connected.example);
    let mut clients = connected.clients;
    assert!(
        pp_cgi.wait_subscribed(CHANNEL, n, Duration::from_secs(120)),
        "Pushpin subscribed fewer than {n} to {CHANNEL}:\n{}",
        pp_cgi.logs()
    );
    pump(&mut clients, SETTLE, |_| false);
    let after = Mem::of(Some(runner_cgi), Some(&server));
    let (avail1, bench1) = (meminfo_kib(&["MemAvailable:"]), pss_kib(me));
    let runs_connect = cgi_runs(&log) - runs0;
    let hold_ms = cgi_times(&log, runs0);
    let procs_connected = support::pids_of_exe(&server.installed[0]).len();
    let mem_cgi = Growth {
        before,
        after,
        n,
        available: (avail0 as f64 - avail1 as f64) / n as f64,
        bench: (bench1 as f64 - bench0 as f64) / n as f64,
    };
    eprintln!(
        "{n}: CGI stack connected in {:.1} s, {:.2} KiB PSS per client, {runs_connect} CGI runs, \
         {procs_connected} nph-events processes",
        connect_cgi.as_secs_f64(),
        mem_cgi.pss()
    );

    // Stack B: Pushpin + the native origin, its clients in the holder.
    let mut holder = Holder::start(
        pp_native.front_port,
        "/native",
        NATIVE_CHANNEL,
        n,
        s.batch,
        marks,
    );
    quiet_memory();
    let before = Mem::of(Some(runner_native), None);
    let (avail0, bench0) = (meminfo_kib(&["MemAvailable:"]), pss_kib(holder.pid()));
    let t0 = Instant::now();
    let refused_native = holder.connect();
    let connect_native = t0.elapsed();
    assert!(
        pp_native.wait_subscribed(NATIVE_CHANNEL, n, Duration::from_secs(120)),
        "Pushpin subscribed fewer than {n} to {NATIVE_CHANNEL}:\n{}",
        pp_native.logs()
    );
    holder.pump(SETTLE);
    pump(&mut clients, SETTLE, |_| false);
    holder.done();
    let after = Mem::of(Some(runner_native), None);
    let (avail1, bench1) = (meminfo_kib(&["MemAvailable:"]), pss_kib(holder.pid()));
    let mem_native = Growth {
        before,
        after,
        n,
        available: (avail0 as f64 - avail1 as f64) / n as f64,
        bench: (bench1 as f64 - bench0 as f64) / n as f64,
    };
    eprintln!(
        "{n}: native stack connected in {:.1} s, {:.2} KiB PSS per client",
        connect_native.as_secs_f64(),
        mem_native.pss()
    );

    // At rest: both stacks, every client connected.
    let poller = Poller::new(&clients);
    let runs0 = cgi_runs(&log);
    let native0 = NATIVE_REQUESTS.load(Ordering::Relaxed);
    let mut rest = Rest::default();
    let largest = s.counts.iter().max() == Some(&n);
    let rest_for = if largest { s.rest_largest } else { s.rest };
    let stack_cpu = |runner: u32, apache: Option<&Server>| -> u64 {
        let mut pids = descendants(runner);
        if let Some(a) = apache {
            pids.extend(descendants(apache_parent(a)));
        }
        pids.iter().map(|p| cpu_ns(*p)).sum()
    };
    let cpu0 = (
        stack_cpu(runner_cgi, Some(&server)),
        stack_cpu(runner_native, None),
    );
    holder.pump(rest_for);
    let (t0, mut sum) = (Instant::now(), 0usize);
    while t0.elapsed() < rest_for {
        poller.pump(&mut clients, Duration::from_millis(100), |_| false);
        let k = support::pids_of_exe(&server.installed[0]).len();
        rest.max = rest.max.max(k);
        sum += k;
        rest.samples += 1;
    }
    holder.done();
    rest.secs = t0.elapsed().as_secs_f64();
    rest.mean = sum as f64 / rest.samples.max(1) as f64;
    rest.runs = cgi_runs(&log) - runs0;
    rest.native = NATIVE_REQUESTS.load(Ordering::Relaxed) - native0;
    let per_min = |ns: u64| ns as f64 / 1e6 * 60.0 / rest.secs;
    rest.cpu = (
        per_min(stack_cpu(runner_cgi, Some(&server)).saturating_sub(cpu0.0)),
        per_min(stack_cpu(runner_native, None).saturating_sub(cpu0.1)),
    );
    eprintln!(
        "{n}: at rest {:.0} s: nph-events processes max {} mean {:.2}, {} CGI runs, {} native \
         origin requests",
        rest.secs, rest.max, rest.mean, rest.runs, rest.native
    );

    // Publishing rounds, A then B.
    let runs0 = cgi_runs(&log);
    let native0 = NATIVE_REQUESTS.load(Ordering::Relaxed);
    let (mut cgi_site, mut cgi_proxy, mut cgi_resent, mut native_lat) = (
        Lat::default(),
        Lat::default(),
        Lat::default(),
        Lat::default(),
    );
    let mut resend_failures = 0;
    let (mut cli_ms, mut cli_failures, mut native_failures) = (Vec::new(), Vec::new(), 0);
    let mut procs_rounds_max = 0;
    for r in 0..s.rounds {
        thread::sleep(s.gap);
        let mark = 3 * r;
        let t0 = Instant::now();
        let cli = thread::scope(|sc| {
            let h = sc.spawn(|| cli_publish(&spool, &format!("round-{mark}"), Some(&grip_url)));
            wait_mark(&poller, &mut clients, 0..n, mark);
            h.join().unwrap()
        });
        procs_rounds_max = procs_rounds_max.max(support::pids_of_exe(&server.installed[0]).len());
        cli_ms.push(cli.took.as_secs_f64() * 1e3);
        if !cli.ok || !cli.stderr.is_empty() {
            cli_failures.push(cli.stderr.trim().to_owned());
        }
        cgi_site.add(latencies(&clients, 0..n, mark, t0));
        match relay.take() {
            Some(at) => cgi_proxy.add(latencies(&clients, 0..n, mark, at)),
            None => cgi_proxy.missing += n,
        }

        // The same command, its request kept by the relay and sent on by
        // the benchmark once the command has exited: Pushpin and the
        // clients alone on the machine, as in the native case.
        thread::sleep(s.gap);
        let mark = 3 * r + 1;
        relay.defer(true);
        let cli = cli_publish(&spool, &format!("round-{mark}"), Some(&grip_url));
        relay.defer(false);
        if !cli.ok || !cli.stderr.is_empty() {
            cli_failures.push(cli.stderr.trim().to_owned());
        }
        let request = relay.held().expect("the command's publish request");
        let port = pp_cgi.publish_port;
        let t0 = Instant::now();
        let answer = thread::scope(|sc| {
            let h = sc.spawn(|| forward(port, &request));
            wait_mark(&poller, &mut clients, 0..n, mark);
            h.join().unwrap()
        });
        resend_failures += usize::from(!answer.starts_with(b"HTTP/1.1 200"));
        cgi_resent.add(latencies(&clients, 0..n, mark, t0));

        thread::sleep(s.gap);
        let mark = 3 * r + 2;
        let body = native_item(r as u64 + 1, &format!("round-{mark}"));
        holder.watch(mark);
        let t0 = mono_ns();
        let ok = post_publish(pp_native.publish_port, &body);
        native_failures += usize::from(!ok);
        let (arrived, missing) = holder.arrivals();
        native_lat.add((
            arrived
                .iter()
                .map(|&t| t.saturating_sub(t0) as f64 / 1e6)
                .collect(),
            missing,
        ));
    }
    let runs_rounds = cgi_runs(&log) - runs0;
    let native_rounds = NATIVE_REQUESTS.load(Ordering::Relaxed) - native0;
    cli_ms.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let (cgi_site, cgi_proxy, cgi_resent, native_lat) = (
        cgi_site.sorted(),
        cgi_proxy.sorted(),
        cgi_resent.sorted(),
        native_lat.sorted(),
    );
    eprintln!(
        "{n}: CGI origin p50/p99 {:.1}/{:.1} ms from the command ({:.1}/{:.1} from the proxy, \
         {:.1}/{:.1} re-sent), native {:.1}/{:.1} ms; command {:.1} ms p50; {runs_rounds} CGI \
         runs during the rounds",
        cgi_site.p(0.5),
        cgi_site.p(0.99),
        cgi_proxy.p(0.5),
        cgi_proxy.p(0.99),
        cgi_resent.p(0.5),
        cgi_resent.p(0.99),
        native_lat.p(0.5),
        native_lat.p(0.99),
        percentile(&cli_ms, 0.5)
    );
    let closed = (clients.iter().filter(|c| c.closed).count(), holder.closed());
    holder.quit();
    reset(clients);
    drop(poller);
    drop(pp_native);
    drop(pp_cgi);
    drop(server);
    let _ = std::fs::remove_file(&log);
    GripRun {
        n,
        connect: (connect_cgi, connect_native),
        refused: (refused_cgi, refused_native),
        mem_cgi,
        mem_native,
        runs_connect,
        hold_ms,
        procs_connected,
        rest,
        runs_rounds,
        native_rounds,
        procs_rounds_max,
        cgi_site,
        cgi_proxy,
        cgi_resent,
        resend_failures,
        native: native_lat,
        cli_ms,
        cli_failures,
        native_failures,
        closed,
    }
}

fn direct_run(s: &Settings) -> DirectRun {
    let requested = s.direct;
    let marks = s.rounds;
    let log = s.tmp.join("access-direct.log");
    let server = Server::start_with(
        Kind::ApacheCgidEvent,
        &[SCRIPT],
        &[("NPH_EVENTS_INTERVAL", "0")],
        &[],
        &access_log_conf(&log),
    );
    let spool = server.spool();
    let seed = cli_publish(&spool, "seed", None);
    assert!(seed.ok, "seed publish failed: {}", seed.stderr);
    let me = std::process::id();
    quiet_memory();
    let before = Mem::of(None, Some(&server));
    let (avail0, bench0) = (meminfo_kib(&["MemAvailable:"]), pss_kib(me));
    let t0 = Instant::now();
    // Apache answers a direct client at once or not at all (every worker
    // busy): a batch not streaming within 10 s ends the connecting.
    let connected = connect(
        server.port,
        CGI_PATH,
        CHANNEL,
        requested,
        s.batch,
        marks,
        Some(Duration::from_secs(10)),
    );
    let connect_time = t0.elapsed();
    let refused = (connected.refused, connected.example);
    let unserved = connected.unserved;
    let mut clients = connected.clients;
    let n = clients.len();
    pump(&mut clients, SETTLE, |_| false);
    let after = Mem::of(None, Some(&server));
    let (avail1, bench1) = (meminfo_kib(&["MemAvailable:"]), pss_kib(me));
    let mem = Growth {
        before,
        after,
        n,
        available: (avail0 as f64 - avail1 as f64) / n as f64,
        bench: (bench1 as f64 - bench0 as f64) / n as f64,
    };
    eprintln!(
        "direct {n}: connected in {:.1} s, {:.2} KiB PSS per client ({} nph-events processes)",
        connect_time.as_secs_f64(),
        mem.pss(),
        after.procs[6]
    );
    let poller = Poller::new(&clients);
    let (mut lat, mut cli_ms, mut cli_failures) = (Lat::default(), Vec::new(), Vec::new());
    for r in 0..s.rounds {
        thread::sleep(s.gap);
        let t0 = Instant::now();
        let cli = thread::scope(|sc| {
            let h = sc.spawn(|| cli_publish(&spool, &format!("round-{r}"), None));
            wait_mark(&poller, &mut clients, 0..n, r);
            h.join().unwrap()
        });
        cli_ms.push(cli.took.as_secs_f64() * 1e3);
        if !cli.ok || !cli.stderr.is_empty() {
            cli_failures.push(cli.stderr.trim().to_owned());
        }
        lat.add(latencies(&clients, 0..n, r, t0));
    }
    cli_ms.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let lat = lat.sorted();
    eprintln!(
        "direct {n}: p50/p99 {:.1}/{:.1} ms from the command",
        lat.p(0.5),
        lat.p(0.99)
    );
    // One more client: does Apache serve it? (Not asked when some were
    // left unanswered already.)
    let one_more_served = unserved == 0 && {
        let mut extra = open(
            server.port,
            &format!("GET {CGI_PATH}?channel={CHANNEL} HTTP/1.1\r\nHost: bench\r\n\r\n"),
            1,
            1,
        );
        let served = wait_ready(&mut extra, READY, Duration::from_secs(5)) == 1;
        reset(extra);
        served
    };
    eprintln!("direct {n}: one more client served: {one_more_served}");
    let closed = clients.iter().filter(|c| c.closed).count();
    reset(clients);
    drop(poller);
    drop(server);
    let _ = std::fs::remove_file(&log);
    DirectRun {
        requested,
        n,
        unserved,
        connect: connect_time,
        refused,
        mem,
        lat,
        cli_ms,
        cli_failures,
        one_more_served,
        closed,
    }
}

// ------------------------------------------------------------------- report

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

/// The commit, and whether the program's sources differ from it.
fn commit() -> String {
    if let Ok(c) = std::env::var("NPH_BENCH_COMMIT") {
        return c;
    }
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    match git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "Cargo.lock",
        "pushpin-conf",
    ]) {
        Some(s) if s.is_empty() => format!("{head} (src/ and pushpin-conf/ as committed)"),
        _ => format!("{head} with uncommitted changes in src/, pushpin-conf/ or Cargo.lock"),
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
        "{} cores ({cpu}), {:.0} GiB, Linux {}, shared with other work",
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        meminfo_kib(&["MemTotal:"]) as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

fn version(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The command as run, with the settings given.
fn command() -> String {
    let mut vars: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("NPH_BENCH_") && k != "NPH_BENCH_OUT")
        .map(|(k, v)| format!("{k}={v} "))
        .collect();
    vars.sort();
    format!("{}cargo bench --bench grip", vars.concat())
}

fn f1(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.1}")
    }
}

fn f2(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.2}")
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn report(
    runs: &[GripRun],
    direct: Option<&DirectRun>,
    s: &Settings,
    began: (Instant, String),
) -> String {
    let mut doc = String::from("# Benchmark: behind Pushpin (GRIP)\n\n");
    doc.push_str(&format!(
        "Generated by `{}` on {} at commit {}, in {:.0} s. Machine: {}; load average {} at the \
         start, {} at the end. {}, {}, the CGI as `cgi-bin/install` builds it (static), \
         `nph-events publish` from the release build.\n\n",
        command(),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        commit(),
        began.0.elapsed().as_secs_f64(),
        machine(),
        began.1,
        loadavg(),
        version(pushpin::PROGRAM, "--version"),
        version("/usr/sbin/apache2", "-v").trim_start_matches("Server version: "),
    ));
    doc.push_str(&format!(
        "What ran, for each client count, everything fresh: **CGI origin**: Pushpin started from \
         the shipped `pushpin-conf/` in front of Apache (event MPM, mod_cgid, the shipped \
         snippet) running `{SCRIPT}` with `NPH_EVENTS_GRIP_KEY` and `NPH_EVENTS_INTERVAL=0` \
         (heartbeat at its default, 15 s); every client's request reaches the CGI, which answers \
         with a hold (reliable mode: `prev-id` and `Grip-Link`) and exits. **Native origin**: a \
         second Pushpin, same files, in front of a minimal origin in the benchmark process that \
         answers every request with `Grip-Hold: stream`, `Grip-Channel: native`, the same \
         keep-alive and a short body (no `prev-id`, no link). The same client code (one epoll \
         thread, bench/client.rs) holds N SSE clients on each, both at once (the native \
         origin's in a child process: one process may not hold 20,000 descriptors here). \
         **Direct**: Apache \
         and the CGI without a proxy, one CGI process per client. {} rounds of three publishes \
         {} ms apart (two to the CGI origin's channel, one to the native one: below); clients \
         connected \
         {} at a time.{}\n\n",
        s.rounds,
        s.gap.as_millis(),
        s.batch,
        if s.quick {
            " **Quick run** (`NPH_BENCH_QUICK=1`): small counts, a check of the benchmark, not \
             figures to quote."
        } else {
            ""
        }
    ));

    // Memory.
    doc.push_str("## Memory per idle client, the whole stack\n\n");
    doc.push_str(
        "Growth of the PSS of every process of the stack, from before the clients connect to 2 s \
         after the last one streams (and Pushpin has logged its subscription), divided by the \
         clients; KiB. RSS total and the machine's `MemAvailable` drop (both socket ends, the \
         benchmark's own buffers, other work on the machine) beside.\n\n\
         | clients | stack | connect time (s) | condure | zurl | pushpin-proxy | pushpin-handler \
         | runner | Apache | nph-events | **PSS total** | RSS total | MemAvailable drop | the \
         client process's own PSS |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let row = |n: usize, name: &str, t: Duration, g: &Growth, apache: bool| {
        let cell = |i: usize| {
            if !apache && i >= 5 {
                "–".to_owned()
            } else {
                f2(g.per(i))
            }
        };
        format!(
            "| {} | {name} | {:.1} | {} | {} | {} | {} | {} | {} | {} | **{}** | {} | {} | {} |\n",
            thousands(n),
            t.as_secs_f64(),
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            cell(4),
            cell(5),
            cell(6),
            f2(g.pss()),
            f2(g.rss()),
            f2(g.available),
            f2(g.bench),
        )
    };
    for r in runs {
        doc.push_str(&row(
            r.n,
            "Pushpin + Apache + CGI",
            r.connect.0,
            &r.mem_cgi,
            true,
        ));
        doc.push_str(&row(
            r.n,
            "Pushpin + native origin",
            r.connect.1,
            &r.mem_native,
            false,
        ));
    }
    if let Some(d) = direct {
        doc.push_str(&row(
            d.n,
            "direct: Apache + CGI, no proxy",
            d.connect,
            &d.mem,
            true,
        ));
    }
    let mut refusals = Vec::new();
    let mut note = |n: usize, name: &str, r: &Refused| {
        if !r.0.is_empty() {
            let codes: Vec<String> = r.0.iter().map(|(c, k)| format!("{k} × {c}")).collect();
            let example =
                r.1.as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned();
            refusals.push(format!(
                "{} through the {name}: {} (first line: `{example}`)",
                thousands(n),
                codes.join(", ")
            ));
        }
    };
    for r in runs {
        note(r.n, "CGI origin's Pushpin", &r.refused.0);
        note(r.n, "native origin's Pushpin", &r.refused.1);
    }
    if let Some(d) = direct {
        note(d.n, "direct Apache", &d.refused);
    }
    doc.push_str(&format!(
        "\nRequests answered with another status than a stream while connecting (each one made \
         again 100 ms later; counted in the connect time): {}.\n",
        if refusals.is_empty() {
            "none".to_owned()
        } else {
            refusals.join("; ")
        }
    ));
    doc.push_str("\nProcesses and totals before → with the clients (PSS, MiB):\n\n");
    let mib = |k: u64| k as f64 / 1024.0;
    for r in runs {
        for (name, g) in [("CGI origin", &r.mem_cgi), ("native origin", &r.mem_native)] {
            let parts: Vec<String> = GROUPS
                .iter()
                .enumerate()
                .filter(|(i, _)| g.before.procs[*i] + g.after.procs[*i] > 0)
                .map(|(i, name)| {
                    format!(
                        "{name} {}→{} ({:.1}→{:.1})",
                        g.before.procs[i],
                        g.after.procs[i],
                        mib(g.before.pss[i]),
                        mib(g.after.pss[i])
                    )
                })
                .collect();
            doc.push_str(&format!(
                "* {}, {name}: {:.1} → {:.1} MiB; {}.\n",
                thousands(r.n),
                mib(g.before.pss_total()),
                mib(g.after.pss_total()),
                parts.join(", ")
            ));
        }
    }
    if let Some(d) = direct {
        let g = &d.mem;
        doc.push_str(&format!(
            "* {}, direct: {:.1} → {:.1} MiB; apache2 processes {}→{}, nph-events {}→{}.\n",
            thousands(d.n),
            mib(g.before.pss_total()),
            mib(g.after.pss_total()),
            g.before.procs[5],
            g.after.procs[5],
            g.before.procs[6],
            g.after.procs[6]
        ));
    }

    // At rest.
    doc.push_str(&format!(
        "\n## nph-events processes at rest (target 0)\n\n\
         Through Pushpin, with every client connected and nothing published (the rest column \
         gives how long): the nph-events processes (`/proc/*/exe` is the installed CGI) sampled \
         every 100 ms, the CGI runs Apache logged (its access log), and the CPU time of each \
         stack's processes (Pushpin's, and Apache's with its CGIs; schedstat); then the same \
         during the {} publishing rounds (a publish is one `nph-events publish` process, not \
         counted: it is not the CGI).\n\n\
         | clients | CGI runs while connecting | nph-events processes once connected | rest (s) \
         | at rest: processes max / mean | CGI runs at rest | CPU at rest, ms per minute: CGI \
         origin stack / native origin stack | during the rounds: max processes | CGI runs during \
         the rounds | native origin requests at rest / during the rounds |\n\
         |---:|---:|---:|---:|---|---:|---|---:|---:|---|\n",
        s.rounds
    ));
    for r in runs {
        doc.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} / {:.2} | {} | {:.0} / {:.0} | {} | {} | {} / {} |\n",
            thousands(r.n),
            thousands(r.runs_connect),
            r.procs_connected,
            r.rest.secs,
            r.rest.max,
            r.rest.mean,
            r.rest.runs,
            r.rest.cpu.0,
            r.rest.cpu.1,
            r.procs_rounds_max,
            r.runs_rounds,
            r.rest.native,
            r.native_rounds
        ));
    }
    if let Some(d) = direct {
        doc.push_str(&format!(
            "\nDirect, for comparison: {} clients hold {} nph-events processes for as long as \
             they stay.\n",
            d.n, d.mem.after.procs[6]
        ));
    }

    // Latency.
    doc.push_str(&format!(
        "\n## Publish to delivery\n\n\
         Each delivery: from the clock's start to the arrival of the event's `data:` line at one \
         client. CGI origin: the real command, `nph-events publish --spool <Apache's spool> \
         --grip-publish <url>` run as the spool's owner, timed from just before it is started \
         (what a site sees), and from its publish request arriving whole at a relay in the \
         benchmark that then passes it to Pushpin (one relay hop included; the command is still \
         running then, waiting for Pushpin's answer and exiting, on the same two cores). And \
         **re-sent**: the same command, its request kept by the relay (which answers it as \
         Pushpin would) and sent to Pushpin by the benchmark once the command has exited, timed \
         from just before it is written: the same item nph-events makes, with nothing else \
         running, as in the native case. Native origin: a `POST /publish/` from the benchmark \
         of the item nph-events would make (`nph_events::grip::publish::body`), timed from just \
         before it is written. Direct: the same command without a GRIP URL. {} rounds each, \
         the three publishes of a round 2 × {} ms apart, to the CGI origin's channel twice \
         then to the native one.\n\n\
         | clients | path | deliveries | missing | p50 (ms) | p99 (ms) | max (ms) |\n\
         |---:|---|---:|---:|---:|---:|---:|\n",
        s.rounds,
        s.gap.as_millis()
    ));
    let lat_row = |n: usize, name: &str, l: &Lat| {
        format!(
            "| {} | {name} | {} | {} | {} | {} | {} |\n",
            thousands(n),
            thousands(l.samples.len()),
            l.missing,
            f1(l.p(0.5)),
            f1(l.p(0.99)),
            f1(l.max())
        )
    };
    for r in runs {
        doc.push_str(&lat_row(
            r.n,
            "CGI origin, from the command's start",
            &r.cgi_site,
        ));
        doc.push_str(&lat_row(
            r.n,
            "CGI origin, from the request at the proxy",
            &r.cgi_proxy,
        ));
        doc.push_str(&lat_row(
            r.n,
            "CGI origin, re-sent after the command exited",
            &r.cgi_resent,
        ));
        doc.push_str(&lat_row(r.n, "native origin, from the POST", &r.native));
    }
    if let Some(d) = direct {
        doc.push_str(&lat_row(
            d.n,
            "direct CGI (no proxy), from the command's start",
            &d.lat,
        ));
    }
    doc.push_str(
        "\nThe command's own run time (start to exit: process start, spool append, the publish \
         request and its answer), ms:\n\n",
    );
    for r in runs {
        doc.push_str(&format!(
            "* {}, through Pushpin: p50 {}, p99 {}, max {}{}.\n",
            thousands(r.n),
            f1(percentile(&r.cli_ms, 0.5)),
            f1(percentile(&r.cli_ms, 0.99)),
            f1(*r.cli_ms.last().unwrap()),
            if r.cli_failures.is_empty() && r.native_failures == 0 && r.resend_failures == 0 {
                String::new()
            } else {
                format!(
                    "; **{} command(s) failed or complained** ({:?}), {} re-sent and {} native \
                     POST(s) failed",
                    r.cli_failures.len(),
                    r.cli_failures.first().map(String::as_str).unwrap_or(""),
                    r.resend_failures,
                    r.native_failures
                )
            }
        ));
    }
    if let Some(d) = direct {
        doc.push_str(&format!(
            "* {}, direct: p50 {}, p99 {}, max {}{}.\n",
            thousands(d.n),
            f1(percentile(&d.cli_ms, 0.5)),
            f1(percentile(&d.cli_ms, 0.99)),
            f1(*d.cli_ms.last().unwrap()),
            if d.cli_failures.is_empty() {
                String::new()
            } else {
                format!(
                    "; **{} command(s) failed or complained**",
                    d.cli_failures.len()
                )
            }
        ));
    }

    // Ratios.
    doc.push_str(
        "\n## CGI origin against native origin (target: within 1.2×)\n\n\
         CGI origin's latency divided by the native origin's, within this run: same clients, \
         same Pushpin configuration, publishes alternating. The target is read on the re-sent \
         publishes: the same item, published the same way, the origin the only difference.\n\n\
         | clients | **re-sent: p50** | **p99** | within 1.2× | from the request at the proxy \
         (command still running): p50 | p99 | from the command's start: p50 | p99 |\n\
         |---:|---:|---:|---|---:|---:|---:|---:|\n",
    );
    for r in runs {
        let q = |a: &Lat, p: f64| a.p(p) / r.native.p(p);
        let (p50, p99) = (q(&r.cgi_resent, 0.5), q(&r.cgi_resent, 0.99));
        let ok = p50 <= 1.2 && p99 <= 1.2;
        doc.push_str(&format!(
            "| {} | **{}×** | **{}×** | {} | {}× | {}× | {}× | {}× |\n",
            thousands(r.n),
            f2(p50),
            f2(p99),
            if ok { "met" } else { "**not met**" },
            f2(q(&r.cgi_proxy, 0.5)),
            f2(q(&r.cgi_proxy, 0.99)),
            f2(q(&r.cgi_site, 0.5)),
            f2(q(&r.cgi_site, 0.99)),
        ));
    }
    if let Some(d) = direct {
        if let Some(r) = runs.iter().find(|r| r.n == d.requested) {
            doc.push_str(&format!(
                "\nDirect at {} clients{} against Pushpin at {}: from the command's start, p50 / \
                 p99 {} / {} ms direct against {} / {} ms through Pushpin (CGI origin); memory \
                 {} KiB per client direct against {} through Pushpin (PSS, whole stack).\n",
                d.n,
                if d.one_more_served {
                    " (the direct count; not Apache's limit, see below)"
                } else {
                    ", the most the test Apache served directly,"
                },
                r.n,
                f1(d.lat.p(0.5)),
                f1(d.lat.p(0.99)),
                f1(r.cgi_site.p(0.5)),
                f1(r.cgi_site.p(0.99)),
                f2(d.mem.pss()),
                f2(r.mem_cgi.pss())
            ));
        }
        doc.push_str(&format!(
            "\nDirect limit (the test Apache: event MPM, compiled defaults, MaxRequestWorkers \
             16 × 25 = 400): {}.\n",
            if d.unserved > 0 {
                format!(
                    "{} clients asked for, {} streaming; the next {} got no answer within 10 s \
                     (every worker busy, or held), so connecting stopped there",
                    d.requested, d.n, d.unserved
                )
            } else if d.one_more_served {
                format!(
                    "with {} clients streaming one more was served within 5 s: this count is \
                     not Apache's limit",
                    d.n
                )
            } else {
                format!(
                    "with {} clients streaming one more got nothing within 5 s: every Apache \
                     worker holds a stream",
                    d.n
                )
            }
        ));
    }
    let closed: Vec<String> = runs
        .iter()
        .filter(|r| r.closed != (0, 0))
        .map(|r| format!("{}: {} / {}", r.n, r.closed.0, r.closed.1))
        .chain(
            direct
                .filter(|d| d.closed > 0)
                .map(|d| format!("direct {}: {}", d.n, d.closed)),
        )
        .collect();
    doc.push_str(&format!(
        "\nClients closed by the server before the end (CGI origin / native): {}.\n",
        if closed.is_empty() {
            "none".to_owned()
        } else {
            closed.join("; ")
        }
    ));
    doc.push_str(&reading(runs, direct));
    doc.push_str(NOTES);
    doc
}

/// The reading of this run's figures.
fn reading(runs: &[GripRun], direct: Option<&DirectRun>) -> String {
    let mut out = String::from("\n## Reading\n\n");
    let Some(big) = runs.iter().max_by_key(|r| r.n) else {
        return out;
    };
    let share = |g: &Growth, i: usize| 100.0 * g.per(i) / g.pss();
    out.push_str(&format!(
        "* **Memory.** At {} idle clients the whole stack in front of the CGI grows by {} KiB \
         PSS per client ({} RSS), against {} KiB with the native origin: Pushpin holds the \
         clients either way, and its condure alone is {} KiB of it ({:.0} %). Apache and the \
         CGIs add {} and {} KiB per client{}.",
        thousands(big.n),
        f1(big.mem_cgi.pss()),
        f1(big.mem_cgi.rss()),
        f1(big.mem_native.pss()),
        f1(big.mem_cgi.per(0)),
        share(&big.mem_cgi, 0),
        f2(big.mem_cgi.per(5)),
        f2(big.mem_cgi.per(6)),
        match direct {
            Some(d) => format!(
                "; the direct stream costs {} KiB per client (one CGI process and one Apache \
                 worker each) and stops at {} clients{}",
                f1(d.mem.pss()),
                d.n,
                if d.one_more_served {
                    " here (not Apache's limit)"
                } else {
                    ", the most this Apache served"
                }
            ),
            None => String::new(),
        }
    ));
    out.push_str(
        " Small counts carry the stack's fixed growth (allocator arenas, Apache starting \
         workers for the burst of holds): read the largest count.\n",
    );

    let rest_max = runs.iter().map(|r| r.rest.max).max().unwrap_or(0);
    let rest_runs: usize = runs.iter().map(|r| r.rest.runs).sum();
    let connected = runs.iter().map(|r| r.procs_connected).max().unwrap_or(0);
    let mean = runs.iter().map(|r| r.rest.mean).fold(0.0, f64::max);
    let with_runs: Vec<String> = runs
        .iter()
        .filter(|r| r.rest.runs > 0)
        .map(|r| {
            format!(
                "{}: {} in {:.0} s",
                thousands(r.n),
                r.rest.runs,
                r.rest.secs
            )
        })
        .collect();
    let hold_p = |q: f64| {
        if big.hold_ms.is_empty() {
            f64::NAN
        } else {
            percentile(&big.hold_ms, q)
        }
    };
    out.push_str(&format!(
        "* **nph-events at rest: {}.** Once connected, {} nph-events processes; at rest, \
         sampled every 100 ms, at most {} at once (mean {:.3}){}. Each client cost one CGI run \
         when it connected ({} runs for {} clients at the largest count; Apache's time per run \
         p50 {} ms, p99 {} ms, the clients connecting in batches).\n",
        if connected == 0 && rest_max == 0 && rest_runs == 0 {
            "0, target met"
        } else if connected == 0 {
            "none held per client, but not strictly 0"
        } else {
            "**not 0**"
        },
        connected,
        rest_max,
        mean,
        if rest_runs > 0 {
            format!(
                "; but Apache logged {rest_runs} CGI runs during the rest periods ({}): Pushpin \
                 asking holds' `Grip-Link`, each a short run like the hold itself",
                with_runs.join("; ")
            )
        } else {
            String::new()
        },
        thousands(big.runs_connect),
        thousands(big.n),
        f1(hold_p(0.5)),
        f1(hold_p(0.99)),
    ));

    out.push_str(&format!(
        "* **CPU at rest** at {} clients: {:.0} ms a minute for the CGI origin's stack (Pushpin, \
         Apache, the CGI runs), {:.0} for the native origin's Pushpin: {:.1} % and {:.1} % of \
         one core: Pushpin's own upkeep of the held clients (a keep-alive to each at least every \
         15 s, its internal session refreshes){}.\n",
        thousands(big.n),
        big.rest.cpu.0,
        big.rest.cpu.1,
        big.rest.cpu.0 / 600.0,
        big.rest.cpu.1 / 600.0,
        if big.rest.runs > 0 {
            format!(
                "; on the CGI side also Apache and {} CGI runs (link checks) in {:.0} s",
                big.rest.runs, big.rest.secs
            )
        } else {
            String::new()
        }
    ));

    let ratio = |r: &GripRun, l: &Lat, p: f64| l.p(p) / r.native.p(p);
    let verdicts: Vec<String> = runs
        .iter()
        .map(|r| {
            let (a, b) = (ratio(r, &r.cgi_resent, 0.5), ratio(r, &r.cgi_resent, 0.99));
            format!(
                "{}: {}× / {}× ({})",
                thousands(r.n),
                f2(a),
                f2(b),
                if a <= 1.2 && b <= 1.2 {
                    "met"
                } else {
                    "**not met**"
                }
            )
        })
        .collect();
    let running: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "{}: {}× / {}×",
                thousands(r.n),
                f2(ratio(r, &r.cgi_proxy, 0.5)),
                f2(ratio(r, &r.cgi_proxy, 0.99))
            )
        })
        .collect();
    let cli: Vec<f64> = runs.iter().map(|r| percentile(&r.cli_ms, 0.5)).collect();
    let all_met = runs
        .iter()
        .all(|r| ratio(r, &r.cgi_resent, 0.5) <= 1.2 && ratio(r, &r.cgi_resent, 0.99) <= 1.2);
    let worst = runs
        .iter()
        .flat_map(|r| [ratio(r, &r.cgi_resent, 0.5), ratio(r, &r.cgi_resent, 0.99)])
        .fold(0.0, f64::max);
    let slower = runs
        .iter()
        .filter(|r| ratio(r, &r.cgi_resent, 0.99) > 1.0)
        .count();
    let round_runs: usize = runs.iter().map(|r| r.runs_rounds).sum();
    out.push_str(&format!(
        "* **Delivery.** The same item published the same way (re-sent), CGI origin against \
         native origin, p50 / p99 ratio: {}. {} {} Timed from the command's request reaching \
         the proxy while the command is still running (it waits for Pushpin's answer, then \
         exits, on the same two cores as Pushpin): {}. From the start of the command a site \
         runs, the command itself comes first (p50 {} ms: a process start, the spool append, \
         the publish request), which a native origin publishing from a long-lived process does \
         not pay.\n",
        verdicts.join("; "),
        if !all_met {
            "**Not within 1.2× at every count.**".to_owned()
        } else if worst <= 1.05 {
            "Within 1.2× at every count, and within 5 %: no measurable difference.".to_owned()
        } else {
            format!(
                "Within 1.2× at every count (target met), but not nothing: up to {:.0} % later, \
                 and the p99 later at {slower} of {} counts. This benchmark does not separate \
                 the causes: the CGI origin's holds are reliable ones (`prev-id` and \
                 `Grip-Link`: Pushpin checks each item against each session's last id) and the \
                 native origin's are not; and the publishes of a round come in a fixed order.",
                (worst - 1.0) * 100.0,
                runs.len()
            )
        },
        if round_runs == 0 {
            "No CGI ran during the rounds: Pushpin delivers from its own subscriptions (each \
             item's prev-id matched) and does not ask the origin per event."
                .to_owned()
        } else {
            format!(
                "{round_runs} CGI runs during the rounds in all: Pushpin asked the origin's \
                 `Grip-Link` (an item's prev-id not matching, or its own check)."
            )
        },
        running.join("; "),
        cli.iter().map(|v| f1(*v)).collect::<Vec<_>>().join(" / ")
    ));
    if let Some(d) = direct {
        if let Some(r) = runs.iter().find(|r| r.n == d.requested) {
            out.push_str(&format!(
                "* **Against the direct stream** ({} clients direct, {} through Pushpin): p50 / \
                 p99 {} / {} ms direct, {} / {} ms through Pushpin, both from the command's start; \
                 {} KiB against {} KiB per client. Through Pushpin the count is no longer bounded \
                 by Apache's workers: {} clients were held with {} nph-events processes.\n",
                thousands(d.n),
                thousands(r.n),
                f1(d.lat.p(0.5)),
                f1(d.lat.p(0.99)),
                f1(r.cgi_site.p(0.5)),
                f1(r.cgi_site.p(0.99)),
                f1(d.mem.pss()),
                f1(r.mem_cgi.pss()),
                thousands(big.n),
                big.procs_connected
            ));
        }
    }
    out
}

/// Written after reading the figures of full runs; the tables above are
/// this run's.
const NOTES: &str = "\n## Method\n\n\
* Memory: PSS (`/proc/PID/smaps_rollup`) and RSS of the Pushpin runner and the processes it \
started (found from the runner, whose command line names the instance's configuration), of \
Apache's parent and all its descendants (cgid daemon, worker processes), and of the CGI \
processes (`/proc/PID/exe` is the installed CGI). The native origin is a thread in the \
benchmark and holds nothing per client. Pushpin does not give memory back to the system after \
clients leave, so every count runs on fresh instances.\n\
* CGI runs: Apache's access log, one line per request to the CGI.\n\
* Latency: one epoll thread reads every client of a stack (bench/client.rs; the native \
origin's clients in a child process, so that neither process holds more than the 20,000 \
descriptors this machine allows one process), the publish runs on a thread of its own \
meanwhile; arrival times on CLOCK_MONOTONIC. The relay adds a loopback connection and a copy to \
the \"from the request at the proxy\" measure, not to the native one nor to the re-sent one.\n\
* Connecting: with 200 new clients at once, Pushpin 1.36 answered up to 100 of each batch with \
`502 Error while proxying to origin` within about 60 ms, with either origin, and zurl never saw \
those requests: most likely the proxy's queue to zurl (a ZeroMQ socket with a high-water mark of \
100, `OUT_HWM` in Pushpin's zhttpmanager.cpp; read, not verified on this build). A browser's \
EventSource does not retry after a 502. Clients here connect 100 at a time; any refusal is \
counted above and the request made again.\n\
* The machine is shared (another session runs tests on the same two cores): compare figures \
within one run, and read the ratios rather than the absolute milliseconds.\n";

/// Removes a directory when dropped (also when the benchmark panics).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() {
    if let Ok(spec) = std::env::var(HOLDER_ENV) {
        return holder_main(&spec);
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !servers::available(Kind::ApacheCgidEvent) || !pushpin::available() {
        return;
    }
    let began = (Instant::now(), loadavg());
    raise_fd_limit();
    // What a host runs: the static binary cgi-bin/install builds.
    servers::install_static_binary();
    let s = Settings::from_env();
    let _tmp = RemoveOnDrop(s.tmp.clone());
    let native_port = native_origin();
    // The direct stream first: short, and where Apache's limit shows.
    let direct = (s.direct > 0).then(|| direct_run(&s));
    let mut runs = Vec::new();
    for &n in &s.counts {
        runs.push(grip_run(n, &s, native_port));
    }
    let doc = report(&runs, direct.as_ref(), &s, began);
    let out = std::env::var("NPH_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            if s.quick {
                std::env::temp_dir().join("benchmark-grip-quick.md")
            } else {
                repo().join("docs/benchmark-grip.md")
            }
        });
    std::fs::write(&out, &doc).unwrap();
    print!("{doc}");
    eprintln!("written to {}", out.display());
}
