//! `nph-events check`, run as a site operator would: the settings and the
//! spool the CGIs use, findings as `ok`/`warn`/`FAIL` lines, exit 1 when
//! something would fail. Run as root, it checks as the spool's owner.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{bin, cgi_command, get_vars, Chunks, Proc};

fn root() -> bool {
    nph_events::sys::effective_uid() == 0
}

fn www() -> Option<u32> {
    let out = Command::new("id").args(["-u", "www-data"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A spool of the web server's user, as its first stream would leave it.
fn site_spool(tag: &str, uid: u32) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nph-check-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
    dir
}

/// `nph-events check` with exactly `vars` in its environment.
fn check(vars: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(bin())
        .arg("check")
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn line<'a>(report: &'a str, level: &str, needle: &str) -> Option<&'a str> {
    report
        .lines()
        .find(|l| l.starts_with(level) && l.contains(needle))
}

/// A CGI stream of `channel` running as `uid`, so the spool has a reader.
fn reader(spool: &Path, uid: u32, channel: &str) -> (Proc, Chunks) {
    let query = format!("channel={channel}");
    let mut vars = get_vars();
    vars.retain(|(k, _)| *k != "QUERY_STRING");
    vars.extend_from_slice(&[
        ("QUERY_STRING", query.as_str()),
        ("NPH_EVENTS_SPOOL", spool.to_str().unwrap()),
        ("NPH_EVENTS_INTERVAL", "0"),
        ("NPH_EVENTS_MAX_DURATION", "20"),
    ]);
    let mut cmd = cgi_command("setpriv", &vars);
    cmd.args([
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".to_owned(),
        bin().to_owned(),
    ]);
    let mut p = Proc::spawn(&mut cmd);
    let mut out = Chunks::new(p.child.stdout.take().unwrap());
    assert!(
        out.until("retry:", Duration::from_secs(5)),
        "{}",
        out.text()
    );
    (p, out)
}

#[test]
fn a_healthy_site_passes_and_root_checks_as_the_owner() {
    let (true, Some(uid)) = (root(), www()) else {
        eprintln!("skipped: needs root and www-data");
        return;
    };
    let spool = site_spool("healthy", uid);
    let s = spool.to_str().unwrap();
    let (_p, _out) = reader(&spool, uid, "news");
    let publish = Command::new(bin())
        .args(["publish", "--channel", "news", "--data", "x", "--spool", s])
        .env_clear()
        .output()
        .unwrap();
    assert!(publish.status.success());
    let hash = nph_events::auth::token_hash_hex("a-token-for-check");
    let (code, report) = check(&[("NPH_EVENTS_SPOOL", s), ("NPH_EVENTS_TOKEN_SHA256", &hash)]);
    assert_eq!(code, 0, "{report}");
    assert!(!report.contains("FAIL"), "{report}");
    for needle in [
        "checking as www-data",
        "a private directory of www-data",
        "1 channels, 1 events retained",
        "1 reader connected now",
        "publishing by POST: bearer token",
        "heartbeat every 15 s",
    ] {
        assert!(
            line(&report, "ok", needle).is_some(),
            "{needle:?}:\n{report}"
        );
    }
    std::fs::remove_dir_all(&spool).unwrap();
}

#[test]
fn what_would_break_the_site_is_a_fail_with_the_fix() {
    let (true, Some(uid)) = (root(), www()) else {
        eprintln!("skipped: needs root and www-data");
        return;
    };
    let spool = site_spool("broken", uid);
    let s = spool.to_str().unwrap();
    // A channels directory a root shell made: the CGIs cannot use it.
    let channels = spool.join("channels");
    std::fs::create_dir(&channels).unwrap();
    std::fs::set_permissions(&channels, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (code, report) = check(&[("NPH_EVENTS_SPOOL", s)]);
    assert_eq!(code, 1, "{report}");
    let fail = line(&report, "FAIL", "channels directory").unwrap_or_else(|| panic!("{report}"));
    assert!(
        fail.contains("belongs to root (uid 0") && fail.contains(&format!("chown -R {uid}: ")),
        "{fail}"
    );
    std::fs::remove_dir(&channels).unwrap();

    // Signed channels without a key refuse everyone.
    let (code, report) = check(&[("NPH_EVENTS_SPOOL", s), ("NPH_EVENTS_CHANNELS", "*=signed")]);
    assert_eq!(code, 1, "{report}");
    assert!(
        line(&report, "FAIL", "no subscribe_secret is set").is_some(),
        "{report}"
    );

    // A bad value names the setting.
    let (code, report) = check(&[("NPH_EVENTS_SPOOL", s), ("NPH_EVENTS_HEARTBEAT", "soon")]);
    assert_eq!(code, 1, "{report}");
    assert!(
        line(&report, "FAIL", "invalid setting NPH_EVENTS_HEARTBEAT").is_some(),
        "{report}"
    );
    std::fs::remove_dir_all(&spool).unwrap();
}

#[test]
fn fragile_settings_are_warnings() {
    let dir = std::env::temp_dir().join(format!("nph-check-warn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let spool = dir.join("spool");
    // A config file every user can read, holding a key.
    let conf = dir.join("site.json");
    std::fs::write(
        &conf,
        r#"{"subscribe_secret": "sixteen-or-more-bytes", "heartbeat": 90}"#,
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A GRIP proxy that is not there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let grip = format!("http://127.0.0.1:{port}/publish/");
    let (code, report) = check(&[
        ("NPH_EVENTS_SPOOL", spool.to_str().unwrap()),
        ("NPH_EVENTS_CONFIG", conf.to_str().unwrap()),
        ("NPH_EVENTS_GRIP_PUBLISH", &grip),
    ]);
    assert_eq!(code, 0, "warnings only:\n{report}");
    for needle in [
        "holds keys and every user can read it (mode 0644)",
        "does not exist yet",
        "nobody may publish by POST",
        "heartbeat 90 s",
        "grip_publish is set but grip_key is not",
        &format!("GRIP publish endpoint {grip} does not accept connections"),
    ] {
        assert!(
            line(&report, "warn", needle).is_some(),
            "{needle:?}:\n{report}"
        );
    }
    assert!(!spool.exists(), "check creates nothing");
    std::fs::remove_dir_all(&dir).unwrap();
}
