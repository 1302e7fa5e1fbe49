//! nph-events against the classic Perl NPH script, side by side in one run.
//!
//! `cargo bench --bench cgi_vs_perl` (release build). Measures:
//! 1. process start to first byte, exec'd directly with CGI variables;
//! 2. request to first event through a real Apache (mod_cgid, event MPM:
//!    Debian's default), alternating the two scripts request by request;
//! 3. memory (PSS) per connected idle client with N clients through Apache.
//!
//! Writes `docs/benchmark-cgi.md`. Environment: `NPH_BENCH_CLIENTS` (100),
//! `NPH_BENCH_STARTS` (41).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::servers::{install_static_binary, repo, Kind, Server};
use support::{cgi_command, get_vars, static_bin, Chunks, Proc};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Exec to first stdout byte, in milliseconds.
fn direct_first_byte(program: &Path) -> f64 {
    let mut cmd = cgi_command(program.to_str().unwrap(), &get_vars());
    cmd.stderr(Stdio::null());
    let t0 = Instant::now();
    let mut p = Proc::spawn(&mut cmd);
    let mut byte = [0u8; 1];
    p.child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut byte)
        .unwrap();
    t0.elapsed().as_secs_f64() * 1e3
}

/// Request to first `data:` line through the server, in milliseconds.
fn apache_first_event(server: &Server, script: &str) -> f64 {
    let t0 = Instant::now();
    let (conn, mut r) = server.request("GET", &format!("/cgi-bin/{script}"), &[]);
    assert!(r.until("data:", Duration::from_secs(5)), "{}", r.text());
    let ms = (r.arrivals("data:")[0] - t0).as_secs_f64() * 1e3;
    support::servers::disconnect(&conn);
    ms
}

/// PIDs running `script` (by executable path or interpreter argument).
fn pids_running(script: &Path) -> Vec<u32> {
    let needle = script.to_str().unwrap();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            exe.as_deref() == Some(script)
                || cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == needle.as_bytes())
        })
        .collect()
}

/// Waits until no process runs `path`. A CGI learns that its client left
/// only when it next writes (heartbeat or event), so this takes up to two
/// heartbeats (Perl: two 10 s sleeps).
fn wait_gone(path: &Path) {
    let start = Instant::now();
    while !pids_running(path).is_empty() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `(Pss, Rss)` in KiB from smaps_rollup.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("Pss:")?, field("Rss:")?))
}

struct MemResult {
    clients: usize,
    pss_kib: f64,
    rss_kib: f64,
}

/// Connects `n` idle clients to `script`, measures every CGI process, then
/// disconnects them and waits until the processes are gone.
fn memory_per_client(server: &Server, script: &str, path: &Path, n: usize) -> MemResult {
    wait_gone(path);
    let mut conns: Vec<(TcpStream, Chunks)> = Vec::with_capacity(n);
    for _ in 0..n {
        let c = server.request("GET", &format!("/cgi-bin/{script}"), &[]);
        conns.push(c);
    }
    for (_, r) in conns.iter_mut() {
        assert!(r.until("data:", Duration::from_secs(30)), "{}", r.text());
    }
    std::thread::sleep(Duration::from_secs(1));
    let pids = pids_running(path);
    assert_eq!(pids.len(), n, "one CGI process per client");
    let mems: Vec<(u64, u64)> = pids.iter().filter_map(|p| memory_kib(*p)).collect();
    let pss = mems.iter().map(|m| m.0).sum::<u64>() as f64 / mems.len() as f64;
    let rss = mems.iter().map(|m| m.1).sum::<u64>() as f64 / mems.len() as f64;
    for (c, _) in &conns {
        support::servers::disconnect(c);
    }
    drop(conns);
    wait_gone(path);
    MemResult {
        clients: mems.len(),
        pss_kib: pss,
        rss_kib: rss,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let clients = env_usize("NPH_BENCH_CLIENTS", 100);
    let starts = env_usize("NPH_BENCH_STARTS", 41);
    // What a host runs: the static binary cgi-bin/install builds.
    install_static_binary();
    let ours = PathBuf::from(static_bin());
    let perl = repo().join("bench/nph-classic.pl");
    assert!(Path::new("/usr/sbin/apache2").exists(), "apache2 is needed");

    // 1. Direct exec to first byte, alternating.
    let (mut d_ours, mut d_perl) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        d_ours.push(direct_first_byte(&ours));
        d_perl.push(direct_first_byte(&perl));
    }

    // 2 and 3 through Apache (mod_cgid, event MPM). Timeout and heartbeat
    // stay at their defaults: clients are idle, as in real use.
    let extra = "MaxRequestWorkers 400\nServerLimit 16\nThreadsPerChild 25\n";
    let server = Server::start_with(
        Kind::ApacheCgidEvent,
        &["nph-events.cgi"],
        &[],
        &[("nph-classic.cgi", &perl)],
        extra,
    );
    let (mut a_ours, mut a_perl) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        a_ours.push(apache_first_event(&server, "nph-events.cgi"));
        a_perl.push(apache_first_event(&server, "nph-classic.cgi"));
    }
    wait_gone(&server.installed[0]);
    wait_gone(&server.installed[1]);
    let m_ours = memory_per_client(&server, "nph-events.cgi", &server.installed[0], clients);
    let m_perl = memory_per_client(&server, "nph-classic.cgi", &server.installed[1], clients);

    let size = std::fs::metadata(&ours).map(|m| m.len()).unwrap_or(0);
    let perl_v = std::process::Command::new("perl")
        .arg("-e")
        .arg("print $^V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let apache_v = std::process::Command::new("/usr/sbin/apache2")
        .arg("-v")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();

    let row = |name: &str, ours: &mut [f64], perl: &mut [f64]| {
        let (mo, mp) = (median(ours), median(perl));
        format!(
            "| {name} | {mo:.2} | {:.2} | {mp:.2} | {:.2} | {:.2}× |\n",
            pct(ours, 0.9),
            pct(perl, 0.9),
            mp / mo
        )
    };
    let mut doc = String::new();
    doc.push_str("# Benchmark: nph-events against the classic Perl NPH script\n\n");
    doc.push_str(&format!(
        "Generated by `cargo bench --bench cgi_vs_perl` ({} runs each, alternating; {} idle \
         clients each). Machine: {} cores, shared and noisy, so compare the two columns \
         of one run, not absolute numbers across runs. {apache_v}; perl {perl_v}; \
         nph-events release binary {size} bytes.\n\n",
        starts,
        clients,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    ));
    doc.push_str("## Start to first byte (ms; lower is better)\n\n");
    doc.push_str("| path | nph-events median | p90 | Perl median | p90 | Perl ÷ nph-events |\n");
    doc.push_str("|---|---:|---:|---:|---:|---:|\n");
    doc.push_str(&row("exec to first stdout byte", &mut d_ours, &mut d_perl));
    doc.push_str(&row(
        "Apache request to first event",
        &mut a_ours,
        &mut a_perl,
    ));
    doc.push_str(&format!(
        "\n## Memory per connected idle client through Apache ({} clients)\n\n",
        clients
    ));
    doc.push_str("| script | processes | PSS per process (KiB) | RSS per process (KiB) |\n");
    doc.push_str("|---|---:|---:|---:|\n");
    for (name, m) in [("nph-events", &m_ours), ("classic Perl", &m_perl)] {
        doc.push_str(&format!(
            "| {name} | {} | {:.0} | {:.0} |\n",
            m.clients, m.pss_kib, m.rss_kib
        ));
    }
    doc.push_str(&format!(
        "\nPSS ratio Perl ÷ nph-events: **{:.1}×** (target ≥ 4×).\n",
        m_perl.pss_kib / m_ours.pss_kib
    ));
    doc.push_str(
        "\n## Method\n\n\
         * *exec to first stdout byte*: the program is spawned with a cleared environment \
         and CGI variables of a GET; the clock runs from `spawn` to the first byte read \
         from its stdout pipe.\n\
         * *Apache request to first event*: a private Apache 2.4 (event MPM, mod_cgid, the \
         shipped `apache-conf/nph-events.conf`) on 127.0.0.1; a raw TCP client sends a GET and \
         the clock runs to the arrival of the first `data:` line. The two scripts alternate, \
         request by request, so both see the same machine load.\n\
         * *memory*: N clients connect to one script and receive the first event; after \
         1 s every CGI process of that script is found in /proc and its `Pss` and `Rss` \
         read from `/proc/PID/smaps_rollup`; the mean per process is reported. Apache's \
         own per-connection memory is the same for both and not included. Then all \
         clients disconnect and the bench waits until the processes are gone.\n\
         * Perl baseline: `bench/nph-classic.pl` (`$| = 1`, status line, headers, a \
         `data:` line every 10 s).\n",
    );
    let out = repo().join("docs/benchmark-cgi.md");
    std::fs::write(&out, &doc).unwrap();
    print!("{doc}");
    println!("\nwritten to {}", out.display());
}
