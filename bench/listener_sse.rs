//! Idle SSE connections on the listener, at 1,000 and 10,000 (issue 9):
//! the server's memory and threads per connection, the machine's memory
//! per connection (both socket ends), how soon a departed client's
//! descriptor and connection slot are freed, and one publish to all of
//! them (p50/p99). Every configuration runs on a fresh server, each one
//! `NPH_BENCH_RUNS` times.
//!
//! `cargo bench --bench listener_sse` (release). `NPH_BENCH_SSE_CLIENTS`
//! (`1000,10000`), `NPH_BENCH_RUNS` (2), `NPH_BENCH_ROUNDS` (publishes, 20),
//! `NPH_BENCH_DEPART` (clients that leave at once, 100),
//! `NPH_BENCH_DEPART_ROUNDS` (10), `NPH_BENCH_FREE_WAIT` (seconds to wait
//! for them to be freed, 60), `NPH_BENCH_OUT` (the report, default
//! docs/benchmark-listener-sse.md), `NPH_BENCH_COMMIT` (the commit to name
//! when the tree is not a git checkout).

#[path = "client.rs"]
mod client;
#[path = "../tests/support/mod.rs"]
mod support;

use std::net::Shutdown;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use client::{
    broadcast, connect, cpu_ns, env_or, fd_count, is_ready, kernel_kib, machine_busy_ns,
    meminfo_kib, open, percentile, post, pss_kib, pump, quiet_memory, raise_fd_limit, reset,
    sse_request, threads, wait_ready,
};
use support::listener::Listener;
use support::servers::repo;

const TOKEN: &str = "bench-token";
const READY: &[u8] = b"retry:";
/// Between publishes.
const GAP: Duration = Duration::from_millis(300);
/// For the server to settle after clients connect.
const SETTLE: Duration = Duration::from_secs(2);

/// What a run is told.
struct Settings {
    rounds: usize,
    depart: usize,
    depart_rounds: usize,
    free_wait: Duration,
    hash: String,
}

/// One configuration, one run.
struct Run {
    clients: usize,
    run: usize,
    /// Server PSS growth per connection (KiB).
    server_kib: f64,
    /// Server descriptors per connection.
    fds_per_client: f64,
    /// Server threads: before, with every client connected, at the end.
    threads: (u64, u64, u64),
    /// Growth of the machine's KernelStack (KiB, all of it).
    kernel_stack_kib: i64,
    /// MemAvailable drop per connection (KiB).
    available_kib: f64,
    /// Of which the benchmark process's own PSS growth per connection.
    bench_kib: f64,
    /// KernelStack + PageTables + SUnreclaim growth per connection (KiB).
    kernel_kib: f64,
    /// Per departure round: time until every departed client's descriptor
    /// was closed (None: not within the wait).
    freed: Vec<Option<f64>>,
    /// One listing of the server's descriptors (ms): the resolution.
    fd_poll_ms: f64,
    /// Departure rounds in which the first listing after the hang-ups
    /// already showed every descriptor closed.
    first_listing: usize,
    /// New clients, as many as left, not streaming at the connection
    /// limit (none if the slots were freed).
    refused: usize,
    samples: Vec<f64>,
    missing: usize,
    /// Share of the machine's CPU used by other processes while publishing
    /// (%).
    other_load: f64,
    /// CPU time per publish (ms): the server's, the benchmark's.
    cpu_per_publish: (f64, f64),
}

fn kib_diff(after: u64, before: u64) -> i64 {
    after as i64 - before as i64
}

/// Connects `n` idle clients to a fresh server and measures.
fn measure(n: usize, run: usize, s: &Settings) -> Run {
    // Exactly one slot beyond the clients (for the publishing POST): the
    // new clients after each departure get in only if the departed ones'
    // slots were freed.
    let limit = (n + 1).to_string();
    let flags = [
        "--interval",
        "0",
        "--max-connections",
        &limit,
        "--token-sha256",
        &s.hash,
    ];
    let listener = Listener::start("sse-bench", &flags);
    let (pid, port, me) = (listener.proc.pid(), listener.port, std::process::id());
    quiet_memory();

    let threads0 = threads(pid);
    let fds0 = fd_count(pid);
    let (pss0, bench0) = (pss_kib(pid), pss_kib(me));
    let stack0 = meminfo_kib(&["KernelStack:"]);
    let available0 = meminfo_kib(&["MemAvailable:"]);
    let kernel0 = kernel_kib();
    let mut clients = connect(port, "/events", n, s.rounds);
    std::thread::sleep(SETTLE);
    let threads1 = threads(pid);
    let (pss1, bench1) = (pss_kib(pid), pss_kib(me));
    let stack1 = meminfo_kib(&["KernelStack:"]);
    let available1 = meminfo_kib(&["MemAvailable:"]);
    let kernel1 = kernel_kib();
    // Last: listing /proc/PID/fd makes kernel objects of its own.
    let fds1 = fd_count(pid);
    let per = |d: i64| d as f64 / n as f64;
    eprintln!(
        "{n} clients, run {run}: server {:.2} KiB/conn, threads {threads0} -> {threads1}",
        per(kib_diff(pss1, pss0))
    );

    // One publish to all, `rounds` times.
    let (busy0, server0, self0, t0) = (machine_busy_ns(), cpu_ns(pid), cpu_ns(me), Instant::now());
    let samples = broadcast(&mut clients, s.rounds, GAP, |r| {
        post(port, "/events", TOKEN, r)
    });
    let wall = t0.elapsed().as_nanos() as f64;
    let (server_cpu, self_cpu) = (cpu_ns(pid) - server0, cpu_ns(me) - self0);
    let ours = server_cpu + self_cpu;
    let per_publish = |ns: u64| ns as f64 / 1e6 / s.rounds.max(1) as f64;
    let others = machine_busy_ns().saturating_sub(busy0).saturating_sub(ours) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    let missing = n * s.rounds - samples.len();
    eprintln!(
        "{n} clients, run {run}: p50 {:.1} ms, p99 {:.1} ms, {missing} missing",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99)
    );

    // Departures: `depart` clients hang up at once; how long until the
    // server has closed their descriptors? Then as many new clients.
    let poll_start = Instant::now();
    fd_count(pid);
    let fd_poll_ms = poll_start.elapsed().as_secs_f64() * 1e3;
    let mut freed = Vec::new();
    let mut first_listing = 0;
    let mut refused = 0;
    let request = sse_request("/events");
    for _ in 0..s.depart_rounds {
        pump(&mut clients, Duration::from_millis(200), |_| false);
        let before = fd_count(pid);
        let gone = clients.split_off(clients.len() - s.depart.min(clients.len()));
        let left = gone.len();
        let t = Instant::now();
        for c in &gone {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        drop(gone);
        let mut listings = 0;
        let done = loop {
            listings += 1;
            if fd_count(pid) + left <= before {
                first_listing += usize::from(listings == 1);
                break Some(t.elapsed().as_secs_f64() * 1e3);
            }
            if t.elapsed() > s.free_wait {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        freed.push(done);
        let mut fresh = open(port, &request, left, s.rounds);
        refused += left - wait_ready(&mut fresh, READY, Duration::from_secs(10));
        clients.extend(fresh.into_iter().filter(|c| is_ready(c, READY)));
    }
    let threads2 = threads(pid);
    eprintln!("{n} clients, run {run}: freed after {freed:.1?} ms, {refused} refused");
    reset(clients);
    drop(listener);
    std::thread::sleep(SETTLE);

    Run {
        clients: n,
        run,
        server_kib: per(kib_diff(pss1, pss0)),
        fds_per_client: per(fds1 as i64 - fds0 as i64),
        threads: (threads0, threads1, threads2),
        kernel_stack_kib: kib_diff(stack1, stack0),
        available_kib: per(kib_diff(available0, available1)),
        bench_kib: per(kib_diff(bench1, bench0)),
        kernel_kib: per(kib_diff(kernel1, kernel0)),
        freed,
        fd_poll_ms,
        first_listing,
        refused,
        samples,
        missing,
        other_load: 100.0 * others / (wall * cores),
        cpu_per_publish: (per_publish(server_cpu), per_publish(self_cpu)),
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

/// The commit, and whether the server's sources differ from it.
fn commit() -> String {
    if let Ok(c) = std::env::var("NPH_BENCH_COMMIT") {
        return c;
    }
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    match git(&["status", "--porcelain", "--", "src", "Cargo.lock"]) {
        Some(s) if s.is_empty() => format!("{head} (src/ as committed)"),
        _ => format!("{head} with uncommitted changes in src/ or Cargo.lock"),
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

/// The command as run, with the settings given.
fn command() -> String {
    let mut vars: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("NPH_BENCH_"))
        .map(|(k, v)| format!("{k}={v} "))
        .collect();
    vars.sort();
    format!("{}cargo bench --bench listener_sse", vars.concat())
}

fn ms(v: Option<f64>) -> String {
    v.map_or("not freed".into(), |v| format!("{v:.1}"))
}

fn report(runs: &[Run], s: &Settings) -> String {
    let mut doc = String::from("# Benchmark: idle SSE connections on the listener\n\n");
    doc.push_str(&format!(
        "Generated by `{}` on {} at commit {}. Machine: {}. Every configuration on a fresh \
         `nph-events serve` (release build, `--interval 0`, default heartbeat, \
         `--max-connections` one above the clients), each run separately.\n\n",
        command(),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        commit(),
        machine()
    ));

    doc.push_str("## Memory and threads per idle connection\n\n");
    doc.push_str(
        "| connections | run | server PSS KiB per connection | server descriptors per \
         connection | server threads: before / connected / at the end | KernelStack growth \
         (KiB, whole machine) | kernel KiB per connection | MemAvailable drop KiB per \
         connection | the benchmark's own PSS growth per connection | server + kernel + \
         benchmark |\n\
         |---:|---:|---:|---:|---|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        doc.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {} / {} / {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            r.clients,
            r.run,
            r.server_kib,
            r.fds_per_client,
            r.threads.0,
            r.threads.1,
            r.threads.2,
            r.kernel_stack_kib,
            r.kernel_kib,
            r.available_kib,
            r.bench_kib,
            r.server_kib + r.kernel_kib + r.bench_kib
        ));
    }

    let mut split = Vec::new();
    for run in 1..=runs.iter().map(|r| r.run).max().unwrap_or(0) {
        let of_run: Vec<&Run> = runs.iter().filter(|r| r.run == run).collect();
        let (Some(a), Some(b)) = (
            of_run.iter().min_by_key(|r| r.clients),
            of_run.iter().max_by_key(|r| r.clients),
        ) else {
            continue;
        };
        if a.clients < b.clients {
            let total = |r: &Run| r.server_kib * r.clients as f64;
            let slope = (total(b) - total(a)) / (b.clients - a.clients) as f64;
            split.push(format!(
                "run {run}: {:.0} KiB + {slope:.2} KiB per connection",
                total(a) - slope * a.clients as f64
            ));
        }
    }
    if !split.is_empty() {
        doc.push_str(&format!(
            "\nThe server's growth as a fixed part plus a part per connection (a line through \
             the smallest and the largest count): {}.\n",
            split.join("; ")
        ));
    }

    doc.push_str(&format!(
        "\n## Departed clients, and one publish to all\n\n\
         Departures: {} rounds of {} clients hanging up at once (`shutdown`, then close); the \
         time until the server's descriptor count (`/proc/PID/fd`) has dropped by as many. \
         Then as many new clients connect, at the connection limit. Publish: {} events by \
         POST, {} ms apart, from just before the POST is written to the arrival at each \
         client.\n\n",
        s.depart_rounds,
        s.depart,
        s.rounds,
        GAP.as_millis()
    ));
    doc.push_str(
        "| connections | run | freed after: median / max (ms) | one /proc/PID/fd listing (ms) \
         | rounds the first listing found freed | new clients refused | publish p50 (ms) | p99 \
         (ms) | max (ms) | missing | CPU per publish (ms): server / benchmark | other \
         processes' CPU while publishing |\n\
         |---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n",
    );
    for r in runs {
        let mut freed: Vec<f64> = r.freed.iter().map(|f| f.unwrap_or(f64::INFINITY)).collect();
        freed.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let finite = |v: f64| v.is_finite().then_some(v);
        let (median, max) = if freed.is_empty() {
            (None, None)
        } else {
            (
                finite(percentile(&freed, 0.5)),
                finite(*freed.last().unwrap()),
            )
        };
        doc.push_str(&format!(
            "| {} | {} | {} / {} | {:.1} | {} of {} | {} | {:.1} | {:.1} | {:.1} | {} | {:.1} / {:.1} \
             | {:.0} % |\n",
            r.clients,
            r.run,
            ms(median),
            ms(max),
            r.fd_poll_ms,
            r.first_listing,
            r.freed.len(),
            r.refused,
            percentile(&r.samples, 0.5),
            percentile(&r.samples, 0.99),
            r.samples.last().copied().unwrap_or(0.0),
            r.missing,
            r.cpu_per_publish.0,
            r.cpu_per_publish.1,
            r.other_load
        ));
    }

    // Each target, per count: the runs' values and whether every run met it.
    let mut counts: Vec<usize> = runs.iter().map(|r| r.clients).collect();
    counts.sort_unstable();
    counts.dedup();
    let target = |name: &str, value: &dyn Fn(&Run) -> String, ok: &dyn Fn(&Run) -> bool| {
        let per_count: Vec<String> = counts
            .iter()
            .map(|&n| {
                let of_n: Vec<&Run> = runs.iter().filter(|r| r.clients == n).collect();
                let values: Vec<String> = of_n.iter().map(|r| value(r)).collect();
                let met = of_n.iter().filter(|r| ok(r)).count();
                let verdict = if met == of_n.len() {
                    "met".to_owned()
                } else {
                    format!("**not met** in {} of {}", of_n.len() - met, of_n.len())
                };
                format!("{n}: {} ({verdict})", values.join(", "))
            })
            .collect();
        format!("* {name}: {}.\n", per_count.join("; "))
    };
    doc.push_str("\n## Targets (issue 9), per count, every run\n\n");
    doc.push_str(&target(
        "Server memory ≤ 2 KiB per connection",
        &|r| format!("{:.2} KiB", r.server_kib),
        &|r| r.server_kib <= 2.0,
    ));
    doc.push_str(&target(
        "No kernel stack per connection: the server's threads the same before, with every \
         client connected, and at the end",
        &|r| format!("{} / {} / {}", r.threads.0, r.threads.1, r.threads.2),
        &|r| r.threads.1 == r.threads.0 && r.threads.2 == r.threads.0,
    ));
    doc.push_str(&target(
        "A departed client's descriptor and slot freed in < 1 s (the slowest round)",
        &|r| {
            let slowest = r
                .freed
                .iter()
                .map(|f| f.unwrap_or(f64::INFINITY))
                .fold(0.0, f64::max);
            let refused = match r.refused {
                0 => String::new(),
                n => format!(" ({n} new clients refused)"),
            };
            format!("{} ms{refused}", ms(slowest.is_finite().then_some(slowest)))
        },
        &|r| r.refused == 0 && r.freed.iter().all(|f| f.is_some_and(|v| v < 1000.0)),
    ));
    doc.push_str(&target(
        "Publish to all, p99 ≤ 50 ms (the issue's target is at 10,000)",
        &|r| format!("{:.1} ms", percentile(&r.samples, 0.99)),
        &|r| percentile(&r.samples, 0.99) <= 50.0,
    ));

    doc.push_str(
        "\n## The previous design: a thread per SSE stream\n\n\
         Until commit 32405a9 every listener SSE stream had its own thread, and a departed \
         client was noticed when a heartbeat write failed. Its figures: from \
         docs/benchmark-listener.md (`cargo bench --bench listener` before 32405a9, static \
         build), from the independent measurements (Python clients, commit 46b1d4e), and \
         through this benchmark on this machine at 46b1d4e \
         ([benchmark-listener-sse-previous.md](benchmark-listener-sse-previous.md), two runs, \
         dynamically linked like the runs above).\n\n\
         | figure | docs/benchmark-listener.md | independent | this benchmark, 46b1d4e |\n\
         |---|---|---|---|\n\
         | server PSS per connection | 13.6 KiB (100), 12.2 KiB (1,000) | 14.0 kB (1,000 and \
         5,000) | 17.5 KiB (1,000 and 10,000); 13.5 KiB built static as then |\n\
         | server threads | one per stream | one per stream | 2 → 1,002 and 2 → 10,002 |\n\
         | kernel memory per connection, both ends | – | 29.3 kB, of which 16.0 kernel stack \
         (5,000) | 27.9–30.0 KiB; KernelStack +16 KiB per connection |\n\
         | departed client's descriptor and slot freed after | – | 27–30 s (two heartbeats) \
         | 29.7–29.8 s |\n\
         | publish to all, p50 / p99, 1,000 | 9.6 / 13.4 ms | 13.4 / 25.0 ms | 9.3–10.2 / \
         13.9–14.7 ms |\n\
         | publish to all, p50 / p99, 5,000 | – | 64.5 / 120.8 ms | – |\n\
         | publish to all, p50 / p99, 10,000 | – | – | 65.3–77.3 / 156.0–166.5 ms |\n",
    );

    doc.push_str(
        "\n## Notes\n\n\
         * Publish latency at 10,000 follows the server's CPU time per publish (the column \
         above): every client's socket gets one write, and on loopback each write also runs \
         the receiving end's TCP and wakes the reader. A profile of the server during the \
         rounds (`perf record`) found about 90 % of it in the kernel: the TCP send path, the \
         loopback receive path and the reader's wake-up; the server's own code is the rest. \
         Since commit 134b965 the listener runs one reactor thread per core (two here) and \
         the writes are spread over both: p99 at 10,000 went from 97–128 ms with one \
         reactor thread (same benchmark, 25 Nov 2026) to the figures above; the benchmark's \
         own reader shares the two cores. The WebSocket side of the same reactors is in \
         docs/benchmark-ws.md.\n\
         * The server's fixed part (about 1 MiB) is mostly the stacks of the connection \
         threads that read the request heads: glibc keeps the stacks of ended threads for \
         reuse, as many as were alive at once while the clients connected (each thread gives \
         back the pages below its last frame before it ends, since 134b965). It is why the \
         figure per connection at 1,000 is about twice that at 10,000, and why it moves \
         between runs.\n\
         * MemAvailable moves by several MiB within seconds with other work on the machine; at \
         1,000 connections that is several KiB per connection, so read the machine-wide \
         figure at 10,000 (and the kernel column, which moves less).\n\
         * Against the independent measurements (Python clients, 46b1d4e): the previous \
         design's server PSS is 17.5 KiB per connection here dynamically linked and 13.5 KiB \
         built static as they measured it (their 14.0 kB); its departure time (29.7–29.8 s \
         against their 27–30 s) and kernel memory (28–30 KiB against 29.3 kB) agree. Its \
         publish p99 at 1,000 is 14–15 ms here against their 25.0 ms (p50 9–10 against 13.4 \
         ms), as in docs/benchmark-listener.md (13.4 ms): most likely their Python readers \
         take the 1,000 deliveries more slowly than one epoll thread in Rust. WebSocket at \
         10,000, both designs: p99 108–119 ms here against their 99.6 ms at 46b1d4e.\n",
    );

    doc.push_str(
        "\n## Method\n\n\
         * Server memory: growth of the server's PSS (`/proc/PID/smaps_rollup`) from before the \
         clients connect to 2 s after the last has received the stream's opening, divided by \
         the connections. Threads: `Threads` in `/proc/PID/status`.\n\
         * Machine memory: the drop of `MemAvailable` (/proc/meminfo, median of five readings), \
         divided by the connections: both ends of each socket (the clients are in the \
         benchmark process), the server, and the benchmark's own buffers (its PSS growth, \
         given beside). Kernel: growth of `KernelStack` + `PageTables` + `SUnreclaim`, as in \
         docs/benchmark-ws.md. Other work on the machine moves these readings.\n\
         * Clients: one thread reading every socket with epoll (bench/client.rs).\n\
         * Other processes' CPU: the machine's user and system time while publishing, less the \
         server's and the benchmark's, as a share of all cores: other work on the shared \
         machine.\n",
    );
    doc
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    raise_fd_limit();
    let counts: Vec<usize> = env_or("NPH_BENCH_SSE_CLIENTS", "1000,10000")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runs: usize = env_or("NPH_BENCH_RUNS", "2").parse().unwrap();
    let settings = Settings {
        rounds: env_or("NPH_BENCH_ROUNDS", "20").parse().unwrap(),
        depart: env_or("NPH_BENCH_DEPART", "100").parse().unwrap(),
        depart_rounds: env_or("NPH_BENCH_DEPART_ROUNDS", "10").parse().unwrap(),
        free_wait: Duration::from_secs(env_or("NPH_BENCH_FREE_WAIT", "60").parse().unwrap()),
        hash: nph_events::auth::token_hash_hex(TOKEN),
    };
    let mut results = Vec::new();
    for run in 1..=runs {
        for &n in &counts {
            results.push(measure(n, run, &settings));
        }
    }
    let doc = report(&results, &settings);
    let out = std::env::var("NPH_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("docs/benchmark-listener-sse.md"));
    std::fs::write(&out, &doc).unwrap();
    print!("{doc}");
}
