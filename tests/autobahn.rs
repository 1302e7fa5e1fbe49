//! RFC 6455 conformance: the Autobahn|Testsuite fuzzing-client cases, run
//! by `kosoku` (a Python 3 runner of the Autobahn case files, from PyPI;
//! `.ci/run` installs it into target/autobahn-venv), against the echo mode
//! of the listener and of the CGI behind lighttpd `cgi.upgrade`.
//!
//! By default a fast subset runs. `NPH_AUTOBAHN_FULL=1` runs sections 1–7,
//! 9 and 10 on both and writes docs/conformance-listener.md and
//! docs/conformance-cgi.md. Every case must be strictly OK.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use support::listener::Listener;
use support::servers::{available, repo, Kind, Server};

const FAST: &[&str] = &[
    "1.*", "2.*", "3.*", "4.*", "5.*", "6.1.*", "6.2.*", "6.3.*", "7.1.*", "7.3.*", "7.5.*", "10.*",
];
const FULL: &[&str] = &[
    "1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*",
];

fn kosoku() -> Option<PathBuf> {
    let path = repo().join("target/autobahn-venv/bin/kosoku");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "kosoku missing in CI (bash .ci/run installs it)"
    );
    eprintln!("SKIP: kosoku not installed (bash .ci/run installs it)");
    None
}

/// Runs the cases against `url`; returns case id → (behavior, behaviorClose).
fn run(url: &str, cases: &[&str], tag: &str) -> BTreeMap<String, (String, String)> {
    let tool = kosoku().expect("kosoku");
    let out = std::env::temp_dir().join(format!("nph-autobahn-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new(tool);
    cmd.args(["-p", "2", "-o"]).arg(&out);
    for c in cases {
        cmd.args(["-i", c]);
    }
    let status = cmd.arg(url).output().unwrap();
    let mut results = BTreeMap::new();
    for entry in std::fs::read_dir(&out).unwrap().filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .split("_case_")
            .nth(1)
            .and_then(|r| r.strip_suffix(".json"))
        else {
            continue;
        };
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
        let field = |k: &str| v[k].as_str().unwrap_or("").to_owned();
        results.insert(
            id.replace('_', "."),
            (field("behavior"), field("behaviorClose")),
        );
    }
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        !results.is_empty(),
        "no report: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    results
}

fn strict_failures(results: &BTreeMap<String, (String, String)>) -> Vec<String> {
    let fine = |b: &str| b == "OK" || b == "INFORMATIONAL";
    results
        .iter()
        .filter(|(_, (b, c))| !fine(b) || !fine(c))
        .map(|(id, (b, c))| format!("{id}: {b}/{c}"))
        .collect()
}

#[test]
fn listener_echo_passes_autobahn() {
    if kosoku().is_none() {
        return;
    }
    let flags = [
        "--ws",
        "--ws-mode",
        "echo",
        "--ws-origins",
        "*",
        "--max-body",
        "16777216",
        "--interval",
        "0",
    ];
    let server = Listener::start("autobahn", &flags);
    let url = format!("ws://127.0.0.1:{}/events", server.port);
    let results = run(&url, cases(), "listener");
    check(
        &results,
        "listener",
        "`nph-events serve --ws --ws-mode echo`",
    );
}

fn full() -> bool {
    std::env::var_os("NPH_AUTOBAHN_FULL").is_some()
}

fn cases() -> &'static [&'static str] {
    if full() {
        FULL
    } else {
        FAST
    }
}

/// Every case strictly OK; the full run also writes its report.
fn check(results: &BTreeMap<String, (String, String)>, tag: &str, what: &str) {
    let failures = strict_failures(results);
    if full() {
        write_report(results, &failures, tag, what);
    }
    assert!(failures.is_empty(), "{} cases: {failures:?}", results.len());
}

#[test]
fn cgi_echo_behind_lighttpd_passes_autobahn() {
    if kosoku().is_none() || !available(Kind::Lighttpd) {
        return;
    }
    let settings = [
        ("NPH_EVENTS_WS", "1"),
        ("NPH_EVENTS_WS_MODE", "echo"),
        ("NPH_EVENTS_WS_ORIGINS", "*"),
        ("NPH_EVENTS_MAX_BODY", "16777216"),
        ("NPH_EVENTS_INTERVAL", "0"),
    ];
    let server = Server::start(Kind::Lighttpd, &["nph-events.cgi"], &settings);
    let url = format!("ws://127.0.0.1:{}/cgi-bin/nph-events.cgi", server.port);
    let results = run(&url, cases(), "cgi");
    check(
        &results,
        "cgi",
        "the CGI (`NPH_EVENTS_WS=1`, `NPH_EVENTS_WS_MODE=echo`) behind lighttpd 1.4 \
         `cgi.upgrade` (lighttpd-conf/nph-events.conf)",
    );
}

fn write_report(
    results: &BTreeMap<String, (String, String)>,
    failures: &[String],
    tag: &str,
    what: &str,
) {
    let mut by_section: BTreeMap<u32, BTreeMap<String, usize>> = BTreeMap::new();
    for (id, (b, _)) in results {
        let section: u32 = id.split('.').next().unwrap().parse().unwrap();
        *by_section
            .entry(section)
            .or_default()
            .entry(b.clone())
            .or_default() += 1;
    }
    let mut doc = format!("# WebSocket conformance: {tag} (Autobahn|Testsuite cases)\n\n");
    doc.push_str(&format!(
        "Generated by `NPH_AUTOBAHN_FULL=1 cargo test --release --test autobahn`: the Autobahn \
         fuzzing-client cases of sections 1–7, 9 and 10, run by `kosoku` (a Python 3 runner of \
         the Autobahn case files) against {what}. CI runs a fast subset.\n\n\
         | section | results |\n|---:|---|\n"
    ));
    for (section, counts) in &by_section {
        let list: Vec<String> = counts.iter().map(|(b, n)| format!("{n} {b}")).collect();
        doc.push_str(&format!("| {section} | {} |\n", list.join(", ")));
    }
    doc.push_str(&format!("\n{} cases; not strictly OK: ", results.len()));
    doc.push_str(&if failures.is_empty() {
        "none.\n".to_owned()
    } else {
        format!("{}.\n", failures.join(", "))
    });
    std::fs::write(repo().join(format!("docs/conformance-{tag}.md")), doc).unwrap();
}
