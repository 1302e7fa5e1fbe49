//! `nph-events check`: validates what the site's CGI would run with, from
//! a shell on the server: the settings, the spool, the keys. Each finding
//! is one line, `ok`, `warn` or `FAIL`, with the fix where there is one;
//! the exit status is 1 when something would fail.
//!
//! It changes nothing: the spool is inspected, never created or repaired.
//! Run as root it checks as the spool's owner, as publishing does
//! ([`crate::site`]), so permission findings are the CGI's.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::access::Policy;
use crate::cli::Overrides;
use crate::config::{self, Config};
use crate::grip::endpoint;
use crate::spool::{self, inspect};
use crate::sys::{self, user_name};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but probably not as meant, or fragile.
    Warn,
    /// Something will fail.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How bad.
    pub level: Level,
    /// What was checked and found, with the fix.
    pub text: String,
}

/// The findings, in the order they are printed.
#[derive(Debug, Default)]
pub struct Report {
    /// Every finding.
    pub findings: Vec<Finding>,
}

impl Report {
    fn ok(&mut self, text: impl Into<String>) {
        self.push(Level::Ok, text);
    }
    fn warn(&mut self, text: impl Into<String>) {
        self.push(Level::Warn, text);
    }
    fn fail(&mut self, text: impl Into<String>) {
        self.push(Level::Fail, text);
    }
    fn push(&mut self, level: Level, text: impl Into<String>) {
        self.findings.push(Finding {
            level,
            text: text.into(),
        });
    }
    /// The worst level found.
    pub fn worst(&self) -> Level {
        self.findings
            .iter()
            .map(|f| f.level)
            .max()
            .unwrap_or(Level::Ok)
    }
}

/// Loads the settings as the CGI would and checks them and the spool;
/// returns the exit status (0: nothing would fail).
pub fn main<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    overrides: &Overrides,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let vars: Vec<(&str, &str)> = vars.into_iter().collect();
    let report = run(&vars, overrides);
    for f in &report.findings {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        let _ = writeln!(out, "{tag}  {}", f.text);
    }
    match report.worst() {
        Level::Fail => {
            let _ = writeln!(
                err,
                "nph-events check: something would fail (FAIL lines above)"
            );
            1
        }
        _ => 0,
    }
}

/// All the checks.
pub fn run(vars: &[(&str, &str)], overrides: &Overrides) -> Report {
    let mut r = Report::default();
    let file = config::file_in_use(
        vars.iter().copied(),
        overrides.config_file.as_deref(),
        config::SITE_FILE,
    );
    let mut config = match config::load(
        vars.iter().copied(),
        overrides.config_file.as_deref(),
        &overrides.values,
    ) {
        Ok(c) => {
            let from = match &file {
                Some(f) => format!("defaults, {f}, the environment and flags"),
                None => "defaults, the environment and flags (no config file)".to_owned(),
            };
            r.ok(format!("settings load from {from}"));
            c
        }
        Err(e) => {
            r.fail(format!("settings: {e}"));
            return r;
        }
    };
    if let Some(f) = &file {
        config_file(&mut r, Path::new(f), &config);
    }
    let argv = ["nph-events".to_owned(), "check".to_owned()];
    match crate::site::settle_for_writing(&mut config, &argv) {
        Ok(reached) => {
            let me = sys::effective_uid();
            let how = if reached.became_owner {
                " (root checks as the spool's owner)"
            } else {
                ""
            };
            r.ok(format!("checking as {} (uid {me}){how}", user_name(me)));
        }
        Err(e) => {
            r.fail(e);
            return r;
        }
    }
    spool_checks(&mut r, &config);
    publishing(&mut r, &config);
    reading(&mut r, &config);
    grip(&mut r, &config);
    stream(&mut r, &config);
    r
}

/// A config file others can read must not hold keys.
fn config_file(r: &mut Report, path: &Path, config: &Config) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    let keys = config.subscribe_secret.is_some() || config.grip_key.is_some();
    if keys && mode & 0o004 != 0 {
        r.warn(format!(
            "{} holds keys and every user can read it (mode {mode:04o}): \
             `chmod 640 {0}` and give its group to the web server's user",
            path.display()
        ));
    }
}

fn spool_checks(r: &mut Report, config: &Config) {
    let root = config.spool.clone().unwrap_or_else(spool::default_root);
    let d = root.display();
    if root.starts_with("/tmp") || root.starts_with("/var/tmp") {
        r.warn(format!(
            "spool {d} is under /tmp: a web server started by systemd with PrivateTmp=true \
             (Debian's Apache) sees its own /tmp, so a shell and the CGIs would not meet; \
             /dev/shm is shared"
        ));
    }
    match std::fs::symlink_metadata(&root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            r.warn(format!(
                "spool {d} does not exist yet: the first stream or publish creates it \
                 (mode 0700, owned by whoever runs it)"
            ));
            return;
        }
        Err(e) => {
            r.fail(format!("spool {d}: {e}"));
            return;
        }
        Ok(_) => {}
    }
    if let Err(e) = spool::check_root(&root) {
        r.fail(e.to_string());
        return;
    }
    let owner = std::fs::symlink_metadata(&root).map_or(0, |m| m.uid());
    r.ok(format!(
        "spool {d}: a private directory of {} (mode 0700 or stricter)",
        user_name(owner)
    ));
    for (name, what) in [
        ("channels", "channels directory"),
        ("wake", "wake-up directory"),
    ] {
        let dir = root.join(name);
        if dir.symlink_metadata().is_ok() {
            if let Err(e) = spool::check_existing_dir(&dir, what) {
                r.fail(e.to_string());
                return;
            }
        }
    }
    let spool = match inspect::open(&root) {
        Ok(s) => s,
        Err(e) => {
            r.fail(e.to_string());
            return;
        }
    };
    match inspect::channels(&spool) {
        Ok(channels) => {
            let mut bad = 0;
            for c in &channels {
                if let Err(e) = spool::check_channel_dirs(&root.join("channels").join(&c.name)) {
                    r.fail(e.to_string());
                    bad += 1;
                }
            }
            let bytes: u64 = channels.iter().map(|c| c.bytes).sum();
            let events: u64 = channels.iter().map(|c| c.events).sum();
            if bad == 0 {
                r.ok(format!(
                    "{} channels, {events} events retained, {} on disk",
                    channels.len(),
                    human(bytes)
                ));
            }
        }
        Err(e) => r.fail(format!("cannot read the channels of {d}: {e}")),
    }
    let readers = inspect::readers(&spool).map_or(0, |r| r.total());
    if crate::site::ever_read(&root) {
        let s = if readers == 1 { "" } else { "s" };
        r.ok(format!("{readers} reader{s} connected now"));
    } else {
        r.warn(format!(
            "no stream has ever read {d}: if the web server's streams use another spool, \
             publishing here reaches no one (compare NPH_EVENTS_SPOOL in the server's \
             configuration)"
        ));
    }
    free_space(r, &root, config);
}

fn free_space(r: &mut Report, root: &Path, config: &Config) {
    let Ok(free) = sys::free_space(root) else {
        return;
    };
    // Each channel keeps up to 1.25 times retain_bytes.
    let per_channel = config.retention.bytes + config.retention.bytes / 4;
    if free < per_channel * 4 {
        r.fail(format!(
            "{} free where the spool is, less than four channels' retention ({} each): \
             publishing will fail with ENOSPC",
            human(free),
            human(per_channel)
        ));
    } else {
        r.ok(format!(
            "{} free: room for {} channels at full retention ({} each)",
            human(free),
            free / per_channel.max(1),
            human(per_channel)
        ));
    }
}

fn publishing(r: &mut Report, config: &Config) {
    let token = config.token_sha256.is_some();
    let users = !config.publish_users.is_empty();
    match (token, users) {
        (false, false) => r.warn(
            "nobody may publish by POST (no token_sha256, no publish_users): only \
             `nph-events publish` on this host",
        ),
        _ => r.ok(format!(
            "publishing by POST: {}{}{}",
            if token { "bearer token" } else { "" },
            if token && users { ", " } else { "" },
            if users {
                format!("users {}", config.publish_users.join(", "))
            } else {
                String::new()
            }
        )),
    }
}

fn reading(r: &mut Report, config: &Config) {
    let policies: Vec<Policy> = config.channels.iter().map(|c| c.policy()).collect();
    if policies.is_empty() {
        r.ok("every channel is public (no channel rules)");
    }
    if policies.contains(&Policy::Signed) && config.subscribe_secret.is_none() {
        r.fail(
            "a channel rule asks for signed URLs but no subscribe_secret is set: those \
             channels refuse everyone (set NPH_EVENTS_SUBSCRIBE_SECRET)",
        );
    } else if config.subscribe_secret.is_some() {
        r.ok("signed subscribe URLs: a key is set");
    }
    if policies.contains(&Policy::User) {
        r.ok(
            "`user` channels need the web server to authenticate readers (REMOTE_USER); \
             without it only signed URLs open them",
        );
    }
    if config.origins.iter().any(|o| o == "*") {
        r.warn("origins has `*`: any page may read public channels (without credentials)");
    }
}

fn grip(r: &mut Report, config: &Config) {
    match (config.grip_key.is_some(), config.grip_publish.is_empty()) {
        (false, true) => return,
        (true, true) => r.warn(
            "grip_key is set but grip_publish is not: a proxy holds clients, but events \
             published here never reach it (set NPH_EVENTS_GRIP_PUBLISH)",
        ),
        (false, false) => r.warn(
            "grip_publish is set but grip_key is not: events reach the proxy, but no \
             request is held by it (set NPH_EVENTS_GRIP_KEY to the proxy's sig_key)",
        ),
        (true, false) => r.ok("GRIP: a key and publish endpoints are set"),
    }
    for url in &config.grip_publish {
        let Ok(ep) = endpoint::Endpoint::parse(url) else {
            continue;
        };
        let reachable = (ep.host.as_str(), ep.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok());
        if reachable {
            r.ok(format!("GRIP publish endpoint {url} accepts connections"));
        } else {
            r.warn(format!(
                "GRIP publish endpoint {url} does not accept connections: publishes will \
                 log an error per event (events stay in the spool)"
            ));
        }
    }
}

fn stream(r: &mut Report, config: &Config) {
    let hb = config.heartbeat.as_secs_f64();
    if hb == 0.0 || hb > 55.0 {
        r.warn(format!(
            "heartbeat {hb} s: proxies and servers commonly close a connection silent \
             for 60 s (nginx proxy_read_timeout, Apache Timeout); keep it below"
        ));
    } else {
        r.ok(format!("heartbeat every {hb} s"));
    }
}

/// Bytes for people.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
