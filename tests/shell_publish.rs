//! Publishing from a shell on a real host (issue 13): the site's CGIs run
//! as the web server's user under real Apache; a root shell that publishes
//! with no settings at all reaches their clients, as that user, and the
//! spool stays theirs; a user who is neither gets the command to run.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::servers::{available, Kind, Server};
use support::{bin, parse_sse, Chunks};

fn uid_of(user: &str) -> Option<u32> {
    let out = Command::new("id").args(["-u", user]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn root() -> bool {
    nph_events::sys::effective_uid() == 0
}

/// `nph-events publish` with a clean environment, as a root shell would
/// run it straight after install (no NPH_EVENTS_* anywhere).
fn publish(prefix: &[&str], args: &[&str]) -> Output {
    let mut cmd = match prefix {
        [] => Command::new(bin()),
        [first, rest @ ..] => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin());
            c
        }
    };
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("publish")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file and directory under `dir` with its owner.
fn owners(dir: &Path) -> Vec<(String, u32)> {
    let mut all = vec![(
        dir.display().to_string(),
        std::fs::symlink_metadata(dir).unwrap().uid(),
    )];
    if dir.is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                all.extend(owners(&p));
            } else {
                all.push((
                    p.display().to_string(),
                    std::fs::symlink_metadata(&p).unwrap().uid(),
                ));
            }
        }
    }
    all
}

/// The event with `data` arrives on `reader` within a few seconds.
fn arrives(reader: &mut Chunks, data: &str, server: &Server) {
    assert!(
        reader.until(&format!("data: {data}\n"), Duration::from_secs(5)),
        "{data:?} did not arrive:\n{}\n{}",
        reader.text(),
        server.logs()
    );
}

fn root_shell_reaches_the_sites_clients(kind: Kind) {
    if !available(kind) || !root() {
        eprintln!("skipped: needs root and {kind:?}");
        return;
    }
    let Some(www) = uid_of("www-data") else {
        eprintln!("skipped: no www-data user");
        return;
    };
    // Where the CGIs make their spool when nothing is configured: the
    // test names that same place so the server runs as a default install.
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let spool = format!("{base}/nph-events-{www}");
    let server = Server::start(
        kind,
        &["nph-events.cgi"],
        &[
            ("NPH_EVENTS_SPOOL", &spool),
            ("NPH_EVENTS_INTERVAL", "0"),
            ("NPH_EVENTS_HEARTBEAT", "1"),
        ],
    );
    let channel = format!("shell-{}-{kind:?}", std::process::id()).to_lowercase();
    let path = format!("/cgi-bin/nph-events.cgi?channel={channel}");
    let (_conn, mut reader) = server.request("GET", &path, &[]);
    assert!(
        reader.until("retry:", Duration::from_secs(5)),
        "{}\n{}",
        reader.text(),
        server.logs()
    );

    // Root, no settings: finds the site's spool and publishes as its owner.
    let out = publish(&[], &["--channel", &channel, "--data", "from root"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let id: u64 = text(&out.stdout).trim().parse().expect("an id on stdout");
    assert!(
        err.contains(&format!(
            "event {id} on channel {channel:?} in {spool} as www-data (the spool's owner): 1 reader connected"
        )),
        "{err}"
    );
    arrives(&mut reader, "from root", &server);
    let channel_dir = Path::new(&spool).join("channels").join(&channel);
    let foreign: Vec<_> = owners(&channel_dir)
        .into_iter()
        .chain(
            owners(&Path::new(&spool).join("channels"))
                .into_iter()
                .take(1),
        )
        .filter(|(_, uid)| *uid != www)
        .collect();
    assert!(foreign.is_empty(), "not www-data's: {foreign:?}");

    // The web server's user still publishes into it, and the live stream
    // (which root's publish did not disturb) gets that too, in order.
    let id_str = id.to_string();
    let reuid = format!("--reuid={www}");
    let regid = format!("--regid={www}");
    let out = publish(
        &["setpriv", &reuid, &regid, "--clear-groups"],
        &["--channel", &channel, "--data", "from www-data", "--quiet"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "--quiet says nothing on success");
    arrives(&mut reader, "from www-data", &server);
    let body = reader.text();
    let body = body
        .split_once("\r\n\r\n")
        .map_or(body.as_str(), |(_, b)| b);
    let (events, _) = parse_sse(body);
    let ids: Vec<&str> = events
        .iter()
        .filter(|e| e.data.starts_with("from "))
        .map(|e| e.last_event_id.as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{events:?}");
    assert_eq!(ids[0], id_str);
    assert!(
        !server.logs().contains("Permission denied"),
        "{}",
        server.logs()
    );

    // Someone who is neither root nor the owner is told what to run, and
    // nothing is written.
    let before = owners(&channel_dir).len();
    let out = publish(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &["--spool", &spool, "--channel", &channel, "--data", "x"],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "Run: sudo -u www-data {} publish --spool {spool} --channel {channel} --data x",
            bin()
        )),
        "{err}"
    );
    assert_eq!(owners(&channel_dir).len(), before, "nothing written");
    let _ = std::fs::remove_dir_all(&channel_dir);
}

#[test]
fn root_shell_reaches_apache_cgid_clients() {
    root_shell_reaches_the_sites_clients(Kind::ApacheCgidEvent);
}

#[test]
fn root_shell_reaches_apache_prefork_cgi_clients() {
    root_shell_reaches_the_sites_clients(Kind::ApacheCgiPrefork);
}

/// A stream whose spool holds a directory another user made (as a root
/// shell did before publishing learnt to become the owner) says so in the
/// error log, naming the path and both users: a new request at once, a
/// running stream at its next heartbeat, instead of a misleading write
/// error.
#[test]
fn a_cgi_that_cannot_use_its_spool_names_the_path_and_the_owner() {
    let kind = Kind::ApacheCgidEvent;
    if !available(kind) || !root() {
        eprintln!("skipped: needs root and {kind:?}");
        return;
    }
    let server = Server::start(
        kind,
        &["nph-events.cgi"],
        &[("NPH_EVENTS_INTERVAL", "0"), ("NPH_EVENTS_HEARTBEAT", "1")],
    );
    let Some(www) = uid_of("www-data") else {
        eprintln!("skipped: no www-data user");
        return;
    };
    // A stream already running when the directory appears.
    let (_live, mut running) = server.request("GET", "/cgi-bin/nph-events.cgi?channel=b", &[]);
    assert!(
        running.until("retry:", Duration::from_secs(5)),
        "{}",
        running.text()
    );
    let channels = server.spool().join("channels");
    std::fs::create_dir(&channels).unwrap();
    std::fs::set_permissions(&channels, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (_conn, mut reader) = server.request("GET", "/cgi-bin/nph-events.cgi?channel=a", &[]);
    assert!(
        reader.until("500 Internal Server Error", Duration::from_secs(5)),
        "{}",
        reader.text()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let want = format!(
        "channels directory {} belongs to root (uid 0, mode 0700), not to www-data (uid {www})",
        channels.display()
    );
    while !server.logs().contains(&want) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = format!("the stream stopped: cannot read the channel from the spool: {want}");
    while !server.logs().contains(&stopped) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = server.logs();
    assert!(logs.contains(&want), "{logs}");
    assert!(
        logs.contains(&stopped),
        "the running stream says why: {logs}"
    );
    assert!(!logs.contains("cannot write the response"), "{logs}");
    assert!(
        logs.contains(&format!("chown -R {www}: {}", channels.display())),
        "{logs}"
    );
}
