//! Running `nph-events doctor` in tests and reading its report.

use std::process::{Command, Stdio};
use std::time::Instant;

use super::bin;

/// Runs `nph-events doctor ARGS`; its exit status, report (stdout) and
/// stderr. Both are printed, for failures.
pub fn run(args: &[&str]) -> (i32, String, String) {
    let t0 = Instant::now();
    let out = Command::new(bin())
        .arg("doctor")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run nph-events doctor");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let status = out.status.code().unwrap_or(-1);
    eprintln!(
        "--- doctor {} (exit {status}, {:.1} s)\n{text}{err}",
        args.join(" "),
        t0.elapsed().as_secs_f64()
    );
    (status, text, err)
}

/// The report's line for check `name`.
pub fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no {name} line in:\n{report}"))
}

/// The verdict (ok, warn, FAIL, …) of check `name`.
pub fn verdict<'a>(report: &'a str, name: &str) -> &'a str {
    line(report, name).split_whitespace().next().unwrap()
}

/// What the doctor must say of an NPH stream over HTTP/2: held until the
/// program exits, with the fix for Apache.
pub fn assert_buffered_by_http2(status: i32, report: &str, logs: &str) {
    assert_eq!(status, 1, "{report}\n{logs}");
    assert_eq!(verdict(report, "live"), "FAIL", "{report}");
    assert!(
        line(report, "live").contains("buffered to the end"),
        "{report}"
    );
    assert!(line(report, "http").contains("HTTP/2"), "{report}");
    assert!(
        report.contains("parsed-header name") && report.contains("Protocols http/1.1"),
        "{report}"
    );
}
