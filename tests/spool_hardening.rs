//! Regression tests for the spool findings of the security review
//! (issue 10), through the built binary where a user would meet them:
//!
//! * 4: a spool another user could prepare or enter (open modes, another
//!   owner) is refused with the fix; symbolic links planted as a segment,
//!   the lock file, a channel directory or the wake-up directory are never
//!   followed;
//! * 7: a live wake-up socket is never unlinked by another bind of the same
//!   process (colliding channel tags, a counter that went round);
//! * 13: a corrupt spool never makes ids repeat or wrap, and readers of it
//!   end cleanly.
//!
//! The tests run as root in CI (the owner cases need it); elsewhere those
//! cases are skipped with a message.

mod support;

use std::collections::HashMap;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nph_events::spool::wake::{channel_tag, notify, WakeSocket};
use nph_events::spool::{segment_name, Spool};
use support::{bin, cgi_command, get_vars, Chunks, Proc};

/// A fresh path in the temp directory (nothing there).
fn temp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("nph-harden-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// True if the test can act as root; outside CI a missing root skips.
fn root_or_skip(what: &str) -> bool {
    if euid() == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what}: CI runs the tests as root"
    );
    eprintln!("SKIP {what}: needs root");
    false
}

/// A private spool directory of this user with channel `c`'s directory.
fn private_spool(tag: &str) -> PathBuf {
    let root = temp(tag);
    std::fs::create_dir_all(root.join("channels/c")).unwrap();
    for d in [&root, &root.join("channels"), &root.join("channels/c")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    root
}

/// `nph-events publish --spool <spool> --channel <channel> --data <data>`:
/// (exit code, stdout, stderr).
fn publish(spool: &Path, channel: &str, data: &str) -> (i32, String, String) {
    let out = Command::new(bin())
        .env_clear()
        .args(["publish", "--channel", channel, "--data", data, "--spool"])
        .arg(spool)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A CGI stream of channel `c` with extra variables; short heartbeats (a
/// full spool check each) and a one-second life.
fn stream(spool: &Path, extra: &[(&str, &str)]) -> (Proc, Chunks) {
    let spool = spool.to_str().unwrap();
    let mut vars = get_vars();
    vars.retain(|(k, _)| *k != "QUERY_STRING");
    vars.extend_from_slice(&[
        ("QUERY_STRING", "channel=c"),
        ("NPH_EVENTS_SPOOL", spool),
        ("NPH_EVENTS_INTERVAL", "0"),
        ("NPH_EVENTS_HEARTBEAT", "0.05"),
        ("NPH_EVENTS_MAX_DURATION", "1"),
    ]);
    vars.extend_from_slice(extra);
    let mut p = Proc::spawn(&mut cgi_command(bin(), &vars));
    let out = Chunks::new(p.child.stdout.take().unwrap());
    (p, out)
}

/// Finding 4: a configured spool with open permissions is refused (the old
/// code checked only the default location), naming the path, the owner
/// and mode found and the fix; nothing is written into it.
#[test]
fn a_spool_open_to_others_is_refused_with_the_fix() {
    for mode in [0o777, 0o1777, 0o755] {
        let root = temp(&format!("mode{mode:o}"));
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(mode)).unwrap();
        let (code, out, err) = publish(&root, "c", "x");
        assert_eq!((code, out.as_str()), (1, ""), "mode {mode:o}: {err}");
        for want in [
            format!("spool directory {}", root.display()),
            format!("owner uid {}", euid()),
            format!("mode {mode:04o}"),
            "chmod 700".to_owned(),
        ] {
            assert!(err.contains(&want), "{want:?} not in {err}");
        }
        assert_eq!(entries(&root), Vec::<String>::new(), "nothing written");
        // A stream refuses it too (500, the reason in the log).
        let (mut p, mut out) = stream(&root, &[]);
        assert!(p.wait_for(Duration::from_secs(10)).is_some());
        out.until_eof(Duration::from_secs(2));
        assert!(out.text().starts_with("HTTP/1.1 500 "), "{}", out.text());
        assert_eq!(entries(&root), Vec::<String>::new(), "nothing written");
        std::fs::remove_dir(&root).unwrap();
    }
}

/// Finding 4, as issue 13 settled it: a spool that belongs to another
/// user is never taken over. Root publishing into it becomes its owner
/// (everything it creates stays the owner's); a stream running as root
/// refuses it; anyone else is told the command to run as the owner.
#[test]
fn a_spool_owned_by_another_user_is_never_taken_over() {
    if !root_or_skip("a_spool_owned_by_another_user_is_never_taken_over") {
        return;
    }
    let root = temp("foreign");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
    let (code, id, err) = publish(&root, "c", "x");
    assert_eq!(code, 0, "{err}");
    assert!(id.trim().parse::<u64>().is_ok(), "{id}");
    assert!(err.contains("as nobody (the spool's owner)"), "{err}");
    let mut owners = Vec::new();
    for dir in [root.join("channels"), root.join("channels/c")] {
        owners.push(std::fs::metadata(&dir).unwrap().uid());
        for e in std::fs::read_dir(&dir).unwrap() {
            owners.push(e.unwrap().metadata().unwrap().uid());
        }
    }
    assert!(owners.len() >= 4, "{owners:?}");
    assert!(owners.iter().all(|&u| u == 65534), "{owners:?}");

    // A stream as root (no shell, so nobody to become) refuses it.
    let out = Command::new(bin())
        .env_clear()
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", "GET")
        .env("QUERY_STRING", "channel=c")
        .env("NPH_EVENTS_SPOOL", &root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "spool directory {} belongs to nobody (uid 65534, mode 0700), not to root (uid 0)",
            root.display()
        )),
        "{err}"
    );

    // The other way round: nobody (as a CGI would run) against root's.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
        .args(["publish", "--data", "x", "--spool"])
        .arg(&root)
        .env_clear()
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("belongs to root (uid 0), not to you (uid 65534)")
            && err.contains(&format!(
                "Run: sudo -u root {} publish --data x --spool {}",
                bin(),
                root.display()
            )),
        "{err}"
    );
    assert_eq!(entries(&root), Vec::<String>::new(), "nothing written");
    std::fs::remove_dir(&root).unwrap();
}

/// Finding 4: the newest segment planted as a link to another file. The
/// old code "repaired" (truncated) the target back to its last record end
/// and appended the event to it.
#[test]
fn a_planted_segment_link_is_not_followed() {
    let root = temp("seglink");
    assert_eq!(publish(&root, "c", "first").0, 0);
    let chan = root.join("channels/c");
    let seg = chan.join(
        entries(&chan)
            .into_iter()
            .find(|n| n.ends_with(".sse"))
            .unwrap(),
    );
    let victim = temp("seglink-victim");
    std::fs::write(&victim, "precious\n\nno record end").unwrap();
    std::fs::remove_file(&seg).unwrap();
    symlink(&victim, &seg).unwrap();
    let (code, out, err) = publish(&root, "c", "second");
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains(&format!("{} is a symbolic link", seg.display())),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n\nno record end"
    );
    std::fs::remove_file(victim).unwrap();
    std::fs::remove_dir_all(root).unwrap();
}

/// Finding 4: the lock file planted as a link (to a file that does not
/// exist yet): the old code created the target, as the publisher's user.
#[test]
fn a_planted_lock_link_is_not_followed() {
    let root = temp("locklink");
    assert_eq!(publish(&root, "c", "first").0, 0);
    let lock = root.join("channels/c/lock");
    let target = temp("locklink-target");
    std::fs::remove_file(&lock).unwrap();
    symlink(&target, &lock).unwrap();
    let (code, _, err) = publish(&root, "c", "second");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{} is a symbolic link", lock.display())),
        "{err}"
    );
    assert!(!target.exists(), "created through the link");
    std::fs::remove_dir_all(root).unwrap();
}

/// Finding 4: `channels/<name>` planted as a link to another directory: the
/// old code wrote the channel's lock and segments there.
#[test]
fn a_planted_channel_directory_link_is_not_followed() {
    let root = temp("dirlink");
    assert_eq!(publish(&root, "c", "first").0, 0);
    let elsewhere = temp("dirlink-elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let chan = root.join("channels/d");
    symlink(&elsewhere, &chan).unwrap();
    let (code, _, err) = publish(&root, "d", "x");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "channel directory {} is a symbolic link",
            chan.display()
        )),
        "{err}"
    );
    assert_eq!(entries(&elsewhere), Vec::<String>::new());
    // Readers refuse it as well.
    let (mut p, mut out) = stream(&root, &[("QUERY_STRING", "channel=d")]);
    assert!(p.wait_for(Duration::from_secs(10)).is_some());
    out.until_eof(Duration::from_secs(2));
    assert!(out.text().starts_with("HTTP/1.1 500 "), "{}", out.text());
    std::fs::remove_dir(elsewhere).unwrap();
    std::fs::remove_dir_all(root).unwrap();
}

/// The wake-up tag of the old code (FNV-1a, 32 bits), to find collisions
/// and to name files the old code would have acted on.
fn old_tag(channel: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in channel.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Finding 4: `wake/` planted as a link to another directory. A publisher
/// does not send into it, nor delete what refuses there (the old code
/// deleted any file there named like a socket of the channel, since a
/// connect to a regular file is refused); a reader does not bind in it.
#[test]
fn a_planted_wake_directory_link_is_not_followed() {
    let root = temp("wakelink");
    assert_eq!(publish(&root, "c", "first").0, 0);
    let elsewhere = temp("wakelink-elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let precious = [
        format!("{}-precious", old_tag("c")),
        format!("{}-precious", channel_tag("c")),
    ];
    for name in &precious {
        std::fs::write(elsewhere.join(name), "precious").unwrap();
    }
    let _ = std::fs::remove_dir_all(root.join("wake"));
    symlink(&elsewhere, root.join("wake")).unwrap();
    let (code, _, err) = publish(&root, "c", "second");
    assert_eq!(code, 0, "the event is appended; nobody is woken: {err}");
    let (mut p, mut out) = stream(&root, &[]);
    assert!(p.wait_for(Duration::from_secs(10)).is_some());
    out.until_eof(Duration::from_secs(2));
    assert!(out.text().starts_with("HTTP/1.1 500 "), "{}", out.text());
    let mut want = precious.to_vec();
    want.sort();
    assert_eq!(entries(&elsewhere), want);
    std::fs::remove_dir_all(elsewhere).unwrap();
    std::fs::remove_dir_all(root).unwrap();
}

/// Finding 7: two channels whose tags collide under the old 32-bit hash
/// (found here by brute force, in a fraction of a second). A reader of one
/// stays bound and woken while this process binds and drops 65,537 sockets
/// of the other: the old 16-bit counter went round and the bind at the
/// live socket's number unlinked it (its reader then slept until its
/// heartbeat). Now the counter does not wrap, a live socket's name is
/// skipped, and the tags no longer collide.
#[test]
fn a_live_wake_socket_survives_a_colliding_channel_and_counter_wrap() {
    let mut seen: HashMap<String, String> = HashMap::new();
    let (a, b) = (0u64..)
        .find_map(|i| {
            let name = format!("c{i}");
            let tag = old_tag(&name);
            match seen.get(&tag) {
                Some(first) => Some((first.clone(), name)),
                None => {
                    seen.insert(tag, name);
                    None
                }
            }
        })
        .unwrap();
    assert_eq!(old_tag(&a), old_tag(&b));
    assert_ne!(channel_tag(&a), channel_tag(&b), "{a} {b}");

    let root = temp("wrap");
    let spool = Spool::open(&root).unwrap();
    let live = WakeSocket::bind(&spool, &a).unwrap();
    for _ in 0..=65_536 {
        drop(WakeSocket::bind(&spool, &b).unwrap());
    }
    assert!(live.path().exists(), "the live socket was unlinked");
    assert_eq!(notify(&spool, &a), 1);
    let mut buf = [0u8; 4];
    assert_eq!(live.socket().recv(&mut buf).ok(), Some(1), "not woken");
    drop(live);
    std::fs::remove_dir_all(root).unwrap();
}

/// Finding 13: ids below the newest segment's name, an id of u64::MAX and
/// an unparsable last record. Publishes return strictly increasing ids
/// (old: one id over and over, or a debug-build panic on `id - first`),
/// refuse at u64::MAX with a clear error and write nothing (old: a wrap to
/// 0, or a panic), and refuse a corrupt record naming the file (old: the
/// segment's first id again).
#[test]
fn a_corrupt_spool_never_repeats_or_wraps_ids() {
    let root = private_spool("ids");
    let chan = root.join("channels/c");
    std::fs::write(chan.join(segment_name(1000)), "id: 5\ndata: old\n\n").unwrap();
    let ids: Vec<u64> = (0..3)
        .map(|i| {
            let (code, out, err) = publish(&root, "c", &format!("m{i}"));
            assert_eq!(code, 0, "{err}");
            out.trim().parse().unwrap()
        })
        .collect();
    assert_eq!(ids, [1001, 1002, 1003]);
    std::fs::remove_dir_all(&root).unwrap();

    let root = private_spool("max");
    let seg = root.join("channels/c").join(segment_name(u64::MAX - 1));
    let body = format!("id: {}\ndata: last\n\n", u64::MAX);
    std::fs::write(&seg, &body).unwrap();
    for _ in 0..2 {
        let (code, out, err) = publish(&root, "c", "x");
        assert_eq!((code, out.as_str()), (1, ""), "{err}");
        assert!(
            err.contains("channel id space exhausted")
                && err.contains("remove the channel's directory"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&seg).unwrap(), body);
    assert_eq!(
        entries(&root.join("channels/c")),
        ["18446744073709551614.sse", "lock"]
    );
    std::fs::remove_dir_all(&root).unwrap();

    let root = private_spool("garbage");
    let seg = root.join("channels/c").join(segment_name(7));
    let body = "id: 7\ndata: a\n\n\u{fffd}garbage\n\n";
    std::fs::write(&seg, body).unwrap();
    let (code, _, err) = publish(&root, "c", "x");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("spool corrupt: {}", seg.display())),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&seg).unwrap(), body);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Finding 13: streams over each corrupt spool, from every kind of start,
/// end on their own within their one-second life plus a margin (no panic,
/// no endless loop), across many full checks. Old code: an id of u64::MAX
/// panicked (`last + 1`), and ids going backwards across segments sent the
/// reader between two segments forever.
#[test]
fn readers_of_a_corrupt_spool_end_cleanly() {
    let max = u64::MAX;
    let rec = |id: u64| format!("id: {id}\ndata: x\n\n").into_bytes();
    type Case = (&'static str, Vec<(u64, Vec<u8>)>);
    let cases: Vec<Case> = vec![
        (
            "ids backwards across segments",
            vec![(5, rec(5)), (6, rec(4))],
        ),
        (
            "ids backwards inside a segment",
            vec![(10, [rec(10), rec(3), rec(11)].concat())],
        ),
        ("ids below the name", vec![(1000, rec(5))]),
        ("named u64::MAX", vec![(max, rec(max))]),
        (
            "u64::MAX last",
            vec![(max - 1, [rec(max - 1), rec(max)].concat())],
        ),
        (
            "garbage",
            vec![(1, b"\x00\xff\n\n\xfe\n\nno id\n\n\n\n".to_vec())],
        ),
        ("no record end", vec![(1, vec![b'z'; 300_000])]),
    ];
    let starts = [
        "",
        "0",
        "4",
        "5",
        "1000",
        "18446744073709551614",
        "18446744073709551615",
    ];
    let mut running = Vec::new();
    let mut roots = Vec::new();
    for (i, (what, segments)) in cases.into_iter().enumerate() {
        let root = private_spool(&format!("readers{i}"));
        for (first, bytes) in &segments {
            std::fs::write(root.join("channels/c").join(segment_name(*first)), bytes).unwrap();
        }
        for start in starts {
            let extra: Vec<(&str, &str)> = if start.is_empty() {
                vec![]
            } else {
                vec![("HTTP_LAST_EVENT_ID", start)]
            };
            running.push((what, start, stream(&root, &extra)));
        }
        roots.push(root);
    }
    for (what, start, (mut p, mut out)) in running {
        let status = p.wait_for(Duration::from_secs(30));
        out.until_eof(Duration::from_secs(2));
        let text = out.text();
        assert!(
            status.is_some_and(|s| s.code() == Some(0)),
            "{what}, Last-Event-ID {start:?}: {status:?}\n{text}"
        );
        assert!(text.starts_with("HTTP/1.1 "), "{what} {start:?}: {text}");
    }
    for root in roots {
        std::fs::remove_dir_all(root).unwrap();
    }
}
