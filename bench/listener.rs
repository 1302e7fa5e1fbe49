//! The built-in listener against CGI behind Apache: memory per idle
//! connected SSE client at 100 and 1,000 clients, side by side in one run,
//! and publish-to-delivery latency at 1,000 listener clients. Idle
//! listener streams at 1,000 and 10,000 (thread count, kernel memory,
//! departures): `cargo bench --bench listener_sse`.
//!
//! `cargo bench --bench listener` (release build). Writes
//! `docs/benchmark-listener.md`. `NPH_BENCH_COUNTS` (default `100,1000`),
//! `NPH_BENCH_ROUNDS` (20).

#[path = "client.rs"]
mod client;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use client::{broadcast, connect, env_or, percentile, post, pss_kib, raise_fd_limit};
use support::listener::Listener;
use support::servers::{repo, Kind, Server};

const TOKEN: &str = "bench-token";

fn pss_sum(pids: &[u32]) -> u64 {
    pids.iter().map(|p| pss_kib(*p)).sum()
}

fn settle() {
    std::thread::sleep(Duration::from_millis(1500));
}

struct Row {
    clients: usize,
    listener_kib: f64,
    cgi_kib: f64,
    cgi_process_kib: f64,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    raise_fd_limit();
    let counts: Vec<usize> = env_or("NPH_BENCH_COUNTS", "100,1000")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds: usize = env_or("NPH_BENCH_ROUNDS", "20").parse().unwrap();
    let max = counts.iter().copied().max().unwrap_or(100);
    let hash = nph_events::auth::token_hash_hex(TOKEN);

    // The listener (heartbeat 2 s, as in earlier runs; an idle stream's
    // memory does not depend on it, and a departed client is freed at once).
    let flags = [
        "--interval",
        "0",
        "--heartbeat",
        "2",
        "--max-connections",
        "20000",
        "--token-sha256",
        &hash,
    ];
    let listener = Listener::start("bench", &flags);
    let lpid = listener.proc.pid();
    let mut listener_rows = Vec::new();
    let mut latency = None;
    for &n in &counts {
        settle();
        let before = pss_kib(lpid);
        let mut clients = connect(listener.port, "/events", n, rounds);
        settle();
        let after = pss_kib(lpid);
        listener_rows.push((n, (after.saturating_sub(before)) as f64 / n as f64));
        eprintln!(
            "listener {n} clients: {:.1} KiB per connection",
            listener_rows.last().unwrap().1
        );
        if n == max {
            let port = listener.port;
            let s = broadcast(&mut clients, rounds, Duration::from_millis(300), |r| {
                post(port, "/events", TOKEN, r)
            });
            eprintln!(
                "listener {n} clients: p50 {:.1} ms, p99 {:.1} ms",
                percentile(&s, 0.5),
                percentile(&s, 0.99)
            );
            latency = Some((
                n,
                s.len(),
                n * rounds - s.len(),
                percentile(&s, 0.5),
                percentile(&s, 0.99),
                *s.last().unwrap(),
            ));
        }
        drop(clients);
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(listener);

    // CGI behind Apache (event MPM, mod_cgid), the same clients, running
    // what a host runs: the static binary cgi-bin/install builds.
    support::servers::install_static_binary();
    let threads = 25;
    let servers = (max + 100).div_ceil(threads);
    let extra = format!(
        "ServerLimit {servers}\nThreadsPerChild {threads}\nMaxRequestWorkers {}\n\
         StartServers {servers}\nMinSpareThreads {threads}\nMaxSpareThreads {}\nListenBacklog 2048\n",
        servers * threads,
        servers * threads
    );
    let settings = [("NPH_EVENTS_INTERVAL", "0"), ("NPH_EVENTS_HEARTBEAT", "2")];
    let apache = Server::start_with(
        Kind::ApacheCgidEvent,
        &["nph-events.cgi"],
        &settings,
        &[],
        &extra,
    );
    let apache_pids = || support::pids_of_exe(std::path::Path::new("/usr/sbin/apache2"));
    let mut rows = Vec::new();
    for (&n, (_, lkib)) in counts.iter().zip(&listener_rows) {
        settle();
        let apache_before = pss_sum(&apache_pids());
        let clients = connect(apache.port, "/cgi-bin/nph-events.cgi", n, 1);
        settle();
        let cgi_pids = apache.cgi_pids(0);
        let cgi = pss_sum(&cgi_pids);
        let apache_after = pss_sum(&apache_pids());
        let per_process = cgi as f64 / cgi_pids.len().max(1) as f64;
        let per_client = (cgi + apache_after.saturating_sub(apache_before)) as f64 / n as f64;
        eprintln!("cgi {n} clients: {per_client:.1} KiB per client ({per_process:.1} KiB the CGI process)");
        rows.push(Row {
            clients: n,
            listener_kib: *lkib,
            cgi_kib: per_client,
            cgi_process_kib: per_process,
        });
        drop(clients);
        let start = Instant::now();
        while !apache.cgi_pids(0).is_empty() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    let mut doc = String::from("# Benchmark: the built-in listener against CGI behind Apache\n\n");
    doc.push_str(&format!(
        "Generated by `cargo bench --bench listener`, one run, side by side. Machine: {} cores, \
         shared. Memory is PSS from `/proc/PID/smaps_rollup` (user-space memory; kernel socket \
         and thread structures are not included for either).\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    doc.push_str("## Memory per idle connected SSE client\n\n");
    doc.push_str("| clients | listener, per connection (KiB) | CGI behind Apache, per client (KiB) | of which the CGI process (KiB) | ratio |\n");
    doc.push_str("|---:|---:|---:|---:|---:|\n");
    for r in &rows {
        doc.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.0}× |\n",
            r.clients,
            r.listener_kib,
            r.cgi_kib,
            r.cgi_process_kib,
            r.cgi_kib / r.listener_kib.max(0.1)
        ));
    }
    if let Some((n, samples, missing, p50, p99, max)) = latency {
        doc.push_str(&format!(
            "\n## Publish-to-delivery latency, {n} listener clients\n\n\
             {samples} deliveries ({missing} missing) of {rounds} events published by POST to the \
             listener, 300 ms apart: **p50 {p50:.1} ms, p99 {p99:.1} ms**, max {max:.1} ms \
             (from just before the POST is written to the arrival at each client).\n"
        ));
    }
    doc.push_str(
        "\n## Method\n\n\
         * Listener: `nph-events serve` on 127.0.0.1; the process's PSS before and after N \
         clients connect and receive the stream's opening, divided by N.\n\
         * CGI: Apache 2.4 (event MPM, mod_cgid, the shipped snippet) with one \
         `nph-events.cgi` process per client (the static binary cgi-bin/install builds); the \
         CGI processes' PSS plus the growth of Apache's own PSS, divided by N.\n\
         * Clients: one thread reading every socket with epoll (bench/client.rs).\n\n\
         Idle listener streams at 1,000 and 10,000 (server threads, kernel memory, how soon a \
         departed client is freed, publish latency): \
         [benchmark-listener-sse.md](benchmark-listener-sse.md).\n",
    );
    let out = repo().join("docs/benchmark-listener.md");
    std::fs::write(&out, &doc).unwrap();
    print!("{doc}");
}
