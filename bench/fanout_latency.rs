//! Publish-to-delivery latency through a real Apache, and the idle cost of
//! connected clients.
//!
//! `cargo bench --bench fanout_latency` (release build). For each client
//! count (`NPH_BENCH_COUNTS`, default `10,100,1000`): N SSE clients connect
//! to `nph-events.cgi` (one CGI process each) behind Apache (event MPM,
//! mod_cgid, the shipped snippet); then `NPH_BENCH_ROUNDS` (20) events are
//! published by an authenticated POST to the same URL, one every 300 ms.
//! The latency of one delivery is the time from just before the POST is
//! sent to the arrival of the event at one client, so it includes starting
//! the publishing CGI. At the largest count the clients then stay idle for
//! `NPH_BENCH_IDLE_SECS` (60) while the CPU time and context switches of
//! every CGI process are measured. Writes `docs/benchmark-fanout.md`.

#[path = "client.rs"]
mod client;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use client::{connect, cpu_ns, env_or, percentile, post, proc_cost, pump, raise_fd_limit, Client};
use support::servers::{repo, Kind, Server};

const TOKEN: &str = "bench-token";
const CGI_PATH: &str = "/cgi-bin/nph-events.cgi";

struct Latency {
    /// CPU µs per delivery: streaming CGIs, Apache, the measuring client.
    cpu_us: (f64, f64, f64),
    clients: usize,
    samples: usize,
    missing: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

/// Sum of CPU ms of processes whose exe is `exe`.
fn cpu_ticks_of(exe: &std::path::Path) -> u64 {
    support::pids_of_exe(exe)
        .iter()
        .map(|p| cpu_ns(*p))
        .sum::<u64>()
        / 1_000_000
}

fn measure(server: &Server, n: usize, rounds: usize) -> (Latency, Vec<Client>) {
    let mut clients = connect(server.port, CGI_PATH, n, rounds);
    let mut samples = Vec::new();
    let cgi0 = cpu_ticks_of(&server.installed[0]);
    let apache0 = cpu_ticks_of(std::path::Path::new("/usr/sbin/apache2"));
    let self0 = cpu_ns(std::process::id()) / 1_000_000;
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        // The POST runs on its own thread so the clients are read while it
        // is in flight (deliveries can beat the 201).
        std::thread::scope(|s| {
            s.spawn(|| post(server.port, CGI_PATH, TOKEN, round));
            pump(&mut clients, Duration::from_secs(10), |cs| {
                cs.iter().all(|c| c.arrivals[round].is_some())
            });
        });
        let mut missed = 0;
        for c in &clients {
            match c.arrivals[round] {
                Some(t) => samples.push((t - t0).as_secs_f64() * 1e3),
                None => missed += 1,
            }
        }
        if missed > 0 {
            let closed = clients.iter().filter(|c| c.closed).count();
            eprintln!(
                "round {round}: {missed} clients missed the event ({closed} connections closed)"
            );
        }
    }
    let cgi = cpu_ticks_of(&server.installed[0]) - cgi0;
    let apache = cpu_ticks_of(std::path::Path::new("/usr/sbin/apache2")).saturating_sub(apache0);
    let me = cpu_ns(std::process::id()) / 1_000_000 - self0;
    eprintln!("CPU ms during {rounds} rounds at {n} clients: streaming CGIs {cgi}, apache {apache}, bench {me}");
    let missing = n * rounds - samples.len();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let per = (n * rounds) as f64 / 1000.0;
    let lat = Latency {
        cpu_us: (cgi as f64 / per, apache as f64 / per, me as f64 / per),
        clients: n,
        samples: samples.len(),
        missing,
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
        max: *samples.last().unwrap(),
    };
    (lat, clients)
}

struct Idle {
    clients: usize,
    secs: u64,
    cpu_ms_per_client_min: f64,
    wakeups_per_client_sec: f64,
}

fn idle_cost(server: &Server, clients: &mut [Client], secs: u64) -> Idle {
    let pids = server.cgi_pids(0);
    let before: Vec<(u32, (u64, u64), u64)> = pids
        .iter()
        .filter_map(|p| Some((*p, proc_cost(*p)?, cpu_ns(*p))))
        .collect();
    // Keep reading (heartbeats) so the clients stay healthy.
    pump(clients, Duration::from_secs(secs), |_| false);
    let (mut ns, mut switches, mut counted) = (0u64, 0u64, 0usize);
    for (pid, (_, s0), ns0) in &before {
        if let Some((_, s1)) = proc_cost(*pid) {
            ns += cpu_ns(*pid).saturating_sub(*ns0);
            switches += s1 - s0;
            counted += 1;
        }
    }
    let per = counted.max(1) as f64;
    Idle {
        clients: counted,
        secs,
        cpu_ms_per_client_min: ns as f64 / 1e6 / per / (secs as f64 / 60.0),
        wakeups_per_client_sec: switches as f64 / per / secs as f64,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    raise_fd_limit();
    // What a host runs: the static binary cgi-bin/install builds.
    support::servers::install_static_binary();
    let counts: Vec<usize> = env_or("NPH_BENCH_COUNTS", "10,100,1000")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds: usize = env_or("NPH_BENCH_ROUNDS", "20").parse().unwrap();
    let idle_secs: u64 = env_or("NPH_BENCH_IDLE_SECS", "60").parse().unwrap();
    let hash = nph_events::auth::token_hash_hex(TOKEN);
    let settings = [
        ("NPH_EVENTS_INTERVAL", "0"),
        ("NPH_EVENTS_TOKEN_SHA256", hash.as_str()),
    ];
    let max = counts.iter().max().copied().unwrap_or(10);
    let threads = 25;
    let servers = (max + 100).div_ceil(threads);
    let extra = format!(
        "ServerLimit {servers}\nThreadsPerChild {threads}\nMaxRequestWorkers {}\n\
         StartServers {servers}\nMinSpareThreads {threads}\nMaxSpareThreads {}\n\
         ListenBacklog 2048\n",
        servers * threads,
        servers * threads
    );
    let server = Server::start_with(
        Kind::ApacheCgidEvent,
        &["nph-events.cgi"],
        &settings,
        &[],
        &extra,
    );
    let mut results = Vec::new();
    let mut idle = None;
    for &n in &counts {
        let (lat, mut clients) = measure(&server, n, rounds);
        eprintln!(
            "{n} clients: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples, {} missing)",
            lat.p50, lat.p99, lat.max, lat.samples, lat.missing
        );
        if n == max && idle_secs > 0 {
            let i = idle_cost(&server, &mut clients, idle_secs);
            eprintln!(
                "idle {} clients for {} s: {:.3} ms CPU per client per minute, {:.3} wake-ups per client per second",
                i.clients, i.secs, i.cpu_ms_per_client_min, i.wakeups_per_client_sec
            );
            idle = Some(i);
        }
        results.push(lat);
        drop(clients);
        // Let the departed clients' processes go (two heartbeats at most).
        let start = Instant::now();
        while !server.cgi_pids(0).is_empty() && start.elapsed() < Duration::from_secs(40) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut doc = String::from("# Benchmark: publish-to-delivery latency and idle cost\n\n");
    doc.push_str(&format!(
        "Generated by `cargo bench --bench fanout_latency`: Apache 2.4 (event MPM, mod_cgid, the \
         shipped snippet) on 127.0.0.1, one `nph-events.cgi` process per connected client, \
         {rounds} events per client count published by authenticated POST to the same URL, \
         300 ms apart. Machine: {} cores, shared; heartbeat at its default (15 s).\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    doc.push_str(
        "| clients | deliveries | missing | p50 (ms) | p99 (ms) | max (ms) | CPU µs per delivery: CGI / Apache / client |\n",
    );
    doc.push_str("|---:|---:|---:|---:|---:|---:|---|\n");
    for r in &results {
        doc.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.0} / {:.0} / {:.0} |\n",
            r.clients,
            r.samples,
            r.missing,
            r.p50,
            r.p99,
            r.max,
            r.cpu_us.0,
            r.cpu_us.1,
            r.cpu_us.2
        ));
    }
    if let Some(i) = idle {
        doc.push_str(&format!(
            "\n## Idle cost\n\n{} connected, quiet clients observed for {} s: \
             **{:.3} ms CPU per client per minute** (schedstat run time) and **{:.3} wake-ups (context switches) per \
             client per second** (the heartbeat every 15 s accounts for about 0.07/s: the \
             write, and Apache's read of it).\n",
            i.clients, i.secs, i.cpu_ms_per_client_min, i.wakeups_per_client_sec
        ));
    }
    doc.push_str(
        "\n## Method\n\n\
         * Latency of one delivery: from just before the POST request is written to the \
         arrival of the event's `data:` line at one client; it includes Apache starting the \
         publishing CGI, the append under the channel lock, the wake-up datagrams, every \
         reader's read and write, and Apache relaying the bytes. The clients are read by \
         one thread with epoll over all sockets.\n\
         * CPU per delivery: the growth of `/proc/PID/task/*/schedstat` run time over the \
         rounds, summed over the streaming CGI processes, over Apache's processes, and for \
         the measuring client, divided by the deliveries.\n\
         * Idle cost: run time from `/proc/PID/task/*/schedstat` and voluntary plus \
         involuntary context switches from `/proc/PID/status` of every CGI process, before \
         and after the quiet period.\n",
    );
    let out = repo().join("docs/benchmark-fanout.md");
    std::fs::write(&out, &doc).unwrap();
    print!("{doc}");
}
