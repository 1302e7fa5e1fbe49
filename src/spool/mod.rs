//! The spool: an append-only event log per channel, shared by every process
//! of the site through the file system. No daemon.
//!
//! ```text
//! <spool>/channels/<channel>/lock                  flock(2) taken by publishers
//! <spool>/channels/<channel>/<first-id:020>.sse    segments, oldest first
//! <spool>/wake/<channel-tag>-<pid>-<n>             one datagram socket per reader
//! ```
//!
//! A segment is itself a valid event stream: each record is one SSE event
//! whose first line is `id: N`, ending with its blank line. Readers copy
//! complete records to their client as they are; a record is complete when
//! its terminating `\n\n` is in the file. Ids are consecutive within a
//! channel and start at the channel's creation time in microseconds, so a
//! spool that was wiped never hands out an id a client already holds.
//!
//! See `DESIGN.md` for why: flock + single appends, truncation repair of a
//! publisher killed mid-write, segment rotation for retention, and datagram
//! wake-ups instead of polling or inotify.

pub mod append;
pub mod inspect;
pub mod tail;
pub mod wake;

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Channel used when the request names none.
pub const DEFAULT_CHANNEL: &str = "default";

/// The position "before the channel's first event": the id a stream of a
/// channel with no events yet hands its client (`id: 0`), and the previous
/// id of a channel's first event for GRIP proxies. Real ids start at the
/// channel's creation time in microseconds, so 0 is never one. Resuming
/// after it gets every retained event, with no `reset`.
pub const BEFORE_FIRST: u64 = 0;

/// Longest channel name.
pub const MAX_CHANNEL: usize = 64;

/// Why a channel name is refused (400; nothing is created).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChannel;

impl fmt::Display for BadChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "channel names are 1 to {MAX_CHANNEL} characters of A-Z a-z 0-9 _ -"
        )
    }
}

/// Checks a channel name: a small alphabet that is safe as a file name
/// everywhere (no `.`, `/`, NUL, spaces), bounded in length.
pub fn check_channel(name: &str) -> Result<(), BadChannel> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CHANNEL
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BadChannel)
    }
}

/// Retention per channel, bounded by both measures. Segments rotate at a
/// quarter of either limit, and the oldest whole segment is deleted while
/// the newer ones alone still reach a limit: a channel keeps up to about
/// 1.25 times the limit, and at least the limit of whichever measure is
/// reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events retained per channel. Default 1000.
    pub events: u64,
    /// Bytes retained per channel. Default 1 MiB.
    pub bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            events: 1000,
            bytes: 1 << 20,
        }
    }
}

impl Retention {
    /// Events after which a segment is rotated.
    pub fn segment_events(&self) -> u64 {
        (self.events / 4).max(1)
    }
    /// Bytes after which a segment is rotated.
    pub fn segment_bytes(&self) -> u64 {
        (self.bytes / 4).max(4096)
    }
}

/// An opened spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

/// The longest spool path that still leaves room for wake-up socket names
/// (`sun_path` holds 107 bytes plus NUL).
pub const MAX_ROOT_LEN: usize = 80;

impl Spool {
    /// Uses `root` as the spool, creating it (mode 0700) if missing.
    ///
    /// Whether it is the default location or a configured one, the spool
    /// must be a real directory (not a symbolic link) owned by this user
    /// and closed to group and others: whoever can write into it can read
    /// and inject events, and a directory another user prepared may hold
    /// links that make our writes land elsewhere. Anything else is refused
    /// with an error naming the path, what was found and the fix.
    pub fn open(root: &Path) -> io::Result<Spool> {
        check_root_len(root)?;
        ensure_dir(root, SPOOL_DIR)?;
        check_root(root)?;
        Ok(Spool {
            root: root.to_path_buf(),
        })
    }

    /// The spool directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of a (validated) channel; it may not exist yet. Only a
    /// path: [`Spool::create_channel_dir`] and [`Spool::check_channel_dir`]
    /// check what is there.
    pub fn channel_dir(&self, channel: &str) -> PathBuf {
        self.root.join("channels").join(channel)
    }

    /// The channel's directory (and `channels/`), created with mode 0700 if
    /// missing, refused if either is a symbolic link, not a directory or
    /// not ours: a planted link would carry the channel's files elsewhere.
    pub fn create_channel_dir(&self, channel: &str) -> io::Result<PathBuf> {
        ensure_dir(&self.root.join("channels"), "channels directory")?;
        let dir = self.channel_dir(channel);
        ensure_dir(&dir, "channel directory")?;
        Ok(dir)
    }

    /// Checks the channel's directory (and `channels/`) as
    /// [`Spool::create_channel_dir`] does, for a reader: a missing one is
    /// fine (the channel has no events yet), nothing is created.
    pub fn check_channel_dir(&self, channel: &str) -> io::Result<()> {
        check_channel_dirs(&self.channel_dir(channel))
    }

    /// Directory of the readers' wake-up sockets.
    pub fn wake_dir(&self) -> PathBuf {
        self.root.join("wake")
    }

    /// The wake-up directory, created with mode 0700 if missing, checked
    /// like a channel directory otherwise.
    pub fn create_wake_dir(&self) -> io::Result<PathBuf> {
        let dir = self.wake_dir();
        ensure_dir(&dir, "wake-up directory")?;
        Ok(dir)
    }
}

const SPOOL_DIR: &str = "spool directory";

fn check_root_len(root: &Path) -> io::Result<()> {
    let len = root.as_os_str().len();
    if len > MAX_ROOT_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "spool path is {len} bytes; at most {MAX_ROOT_LEN} leave room for wake-up sockets"
            ),
        ));
    }
    Ok(())
}

/// Checks an existing spool directory without changing anything: what
/// [`Spool::open`] requires (a short enough path to a real directory of
/// this user, closed to group and others), each failure with the fix.
pub fn check_root(root: &Path) -> io::Result<()> {
    check_root_len(root)?;
    check_existing_dir(root, SPOOL_DIR)?;
    let meta = fs::symlink_metadata(root)?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        let euid = crate::sys::effective_uid();
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "spool directory {} is open to other users (owner uid {}, mode {:04o}); \
                 it must be owned by uid {euid} with no access for group or others: \
                 `chmod 700 {}`, or remove it and let nph-events create it",
                root.display(),
                meta.uid(),
                mode & 0o7777,
                root.display()
            ),
        ));
    }
    Ok(())
}

/// Creates `dir` with mode 0700 unless it exists, then checks that it is a
/// real directory owned by this user ([`check_dir`]).
fn ensure_dir(dir: &Path, what: &str) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create {what} {}: {e}", dir.display()),
            ))
        }
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| with_path(e, dir))?;
    check_dir(dir, what, &meta)
}

/// Refuses a symbolic link, a non-directory, or a directory owned by
/// another user, with an error that says what was found and what to do.
fn check_dir(dir: &Path, what: &str, meta: &fs::Metadata) -> io::Result<()> {
    let d = dir.display();
    if meta.file_type().is_symlink() {
        let target = fs::read_link(dir).map_or_else(|_| "?".into(), |t| t.display().to_string());
        return Err(io::Error::other(format!(
            "{what} {d} is a symbolic link (to {target}); nph-events does not follow links \
             in the spool: remove it{}",
            if what == SPOOL_DIR {
                ", or name the real directory"
            } else {
                ""
            }
        )));
    }
    if !meta.is_dir() {
        return Err(io::Error::other(format!("{what} {d} is not a directory")));
    }
    let euid = crate::sys::effective_uid();
    if meta.uid() != euid {
        let (owner, me) = (
            crate::sys::user_name(meta.uid()),
            crate::sys::user_name(euid),
        );
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{what} {d} belongs to {owner} (uid {}, mode {:04o}), not to {me} (uid {euid}) \
                 that nph-events runs as here; another user could read and inject events, \
                 so it is not used. If another user made it by mistake (a shell publishing \
                 as {owner}), give it back: `chown -R {euid}: {d}`; else remove it and let \
                 nph-events create it",
                meta.uid(),
                meta.permissions().mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Checks that `dir` exists and is a real directory owned by this user.
pub(crate) fn check_existing_dir(dir: &Path, what: &str) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir).map_err(|e| with_path(e, dir))?;
    check_dir(dir, what, &meta)
}

/// Checks a channel directory and the `channels/` directory above it where
/// they exist (see [`Spool::check_channel_dir`]).
pub(crate) fn check_channel_dirs(dir: &Path) -> io::Result<()> {
    let channels = dir.parent().unwrap_or(dir);
    for (dir, what) in [(channels, "channels directory"), (dir, "channel directory")] {
        match fs::symlink_metadata(dir) {
            Ok(meta) => check_dir(dir, what, &meta)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(with_path(e, dir)),
        }
    }
    Ok(())
}

/// The error with the path it is about in its message.
fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Opens a file of the spool (a segment or a lock file) without following
/// a symbolic link (`O_NOFOLLOW`) and without blocking on a FIFO
/// (`O_NONBLOCK`, no effect on regular files), and refuses anything but a
/// regular file. Errors name the path. (`O_CLOEXEC` is std's default.)
pub(crate) fn open_file(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(io::Error::other(format!(
                "{} is a symbolic link; nph-events does not follow links in the spool \
                 (remove it)",
                path.display()
            )))
        }
        Err(e) => return Err(with_path(e, path)),
    };
    if !file.metadata().map_err(|e| with_path(e, path))?.is_file() {
        return Err(io::Error::other(format!(
            "spool corrupt: {} is not a regular file (remove it)",
            path.display()
        )));
    }
    Ok(file)
}

/// The default spool for this user: `/dev/shm/nph-events-<uid>` where
/// `/dev/shm` exists, else `/tmp/nph-events-<uid>`. `/dev/shm` is shared
/// with a systemd service that has `PrivateTmp=true` (Debian's Apache),
/// while `/tmp` is not, so a CLI publisher and the CGIs meet there.
pub fn default_root() -> PathBuf {
    let uid = crate::sys::effective_uid();
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    PathBuf::from(format!("{base}/nph-events-{uid}"))
}

/// File name of the segment whose first id is `first`.
pub fn segment_name(first: u64) -> String {
    format!("{first:020}.sse")
}

/// The first id of a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".sse")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// First ids of a channel's segments, oldest first. A missing channel
/// directory has none.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut firsts: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_segment_name(e.file_name().to_str()?))
        .collect();
    firsts.sort_unstable();
    Ok(firsts)
}

/// Length of the complete records at the start of `buf`: the index just
/// after the last `\n\n`, or 0. Records contain no blank line inside.
pub fn complete_len(buf: &[u8]) -> usize {
    buf.windows(2)
        .rposition(|w| w == b"\n\n")
        .map(|i| i + 2)
        .unwrap_or(0)
}

/// Splits complete records (each with its `\n\n`). The pieces always add
/// up to [`complete_len`]: stray newlines between records (only a damaged
/// segment has them) come out as a piece of their own, with no id.
pub fn records(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = &buf[..complete_len(buf)];
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .windows(2)
            .position(|w| w == b"\n\n")
            .map_or(rest.len(), |i| i + 2);
        let (rec, tail) = rest.split_at(end);
        rest = tail;
        Some(rec)
    })
}

/// The id of a record (its first line is `id: N`).
pub fn record_id(record: &[u8]) -> Option<u64> {
    let line = record.split(|b| *b == b'\n').next()?;
    let digits = line.strip_prefix(b"id: ")?;
    parse_id(std::str::from_utf8(digits).ok()?)
}

pub use crate::sse::parse_id;

/// Reads into `buf` from `offset` until it is full or the file ends;
/// returns how many bytes were read.
fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        let Some(at) = offset.checked_add(done as u64) else {
            break;
        };
        match file.read_at(&mut buf[done..], at) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Where the last record boundary of `file` before `end` is: the position
/// just after the last `\n\n` that ends at or before `end`, or None if
/// there is none. Reads backwards in 64 KiB steps, so memory stays constant
/// whatever the file holds (a huge torn tail, a huge garbage file).
pub(crate) fn last_boundary(file: &File, end: u64) -> io::Result<Option<u64>> {
    const STEP: u64 = 64 * 1024;
    let mut buf = vec![0u8; STEP as usize + 1];
    let mut hi = end;
    while hi >= 2 {
        let lo = hi.saturating_sub(STEP + 1);
        let want = (hi - lo) as usize;
        let got = read_up_to(file, &mut buf[..want], lo)?;
        if let Some(i) = buf[..got].windows(2).rposition(|w| w == b"\n\n") {
            return Ok(Some(lo + i as u64 + 2));
        }
        if lo == 0 {
            break;
        }
        // Overlap by one byte: a `\n\n` across the step boundary is found.
        hi = lo + 1;
    }
    Ok(None)
}

/// The complete records of a file of `size` bytes: the end of the last
/// complete record and where that record starts (0 or just after the
/// previous boundary); None if the file holds no complete record.
pub(crate) fn last_record(file: &File, size: u64) -> io::Result<Option<(u64, u64)>> {
    let Some(end) = last_boundary(file, size)? else {
        return Ok(None);
    };
    // The boundary before the last record ends at or before the last
    // record's own `\n\n` starts.
    let start = last_boundary(file, end - 2)?.unwrap_or(0);
    Ok(Some((start, end)))
}

/// The id of the record that starts at `start` in `file` (its first line is
/// `id: N`), reading one small block; None if the first line is not that.
pub(crate) fn record_id_at(file: &File, start: u64) -> io::Result<Option<u64>> {
    // "id: " + 20 digits + "\n" fits; a longer first line is no id line.
    let mut buf = [0u8; 32];
    let got = read_up_to(file, &mut buf, start)?;
    let head = &buf[..got];
    Ok(match head.iter().position(|b| *b == b'\n') {
        Some(nl) => record_id(&head[..=nl]),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        for ok in ["default", "news", "a", "A-b_9", &"x".repeat(64)] {
            assert_eq!(check_channel(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "a.b",
            ".",
            "a\0b",
            "é",
            "a b",
            &"x".repeat(65),
        ] {
            assert_eq!(check_channel(bad), Err(BadChannel), "{bad:?}");
        }
    }

    #[test]
    fn segment_names_sort_and_parse() {
        assert_eq!(segment_name(42), "00000000000000000042.sse");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("42.sse"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.sse"), None);
        assert_eq!(parse_segment_name("lock"), None);
    }

    #[test]
    fn record_splitting_and_ids() {
        let buf = b"id: 7\ndata: a\n\nid: 8\nevent: e\ndata: b\ndata: c\n\nid: 9\ndata: partial";
        assert_eq!(complete_len(buf), 47);
        let recs: Vec<_> = records(buf).collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(record_id(recs[0]), Some(7));
        assert_eq!(record_id(recs[1]), Some(8));
        assert_eq!(complete_len(b"id: 1\ndata: x\n"), 0);
        assert_eq!(record_id(b"data: x\n\n"), None);
        // A stray newline after a record is a piece of its own.
        let damaged = b"id: 1\ndata: a\n\n\n";
        let pieces: Vec<_> = records(damaged).collect();
        assert_eq!(pieces, [&damaged[..15], &b"\n"[..]]);
        assert_eq!(pieces.concat().len(), complete_len(damaged));
    }

    /// A fresh path under the temp dir (nothing there yet).
    fn temp_path(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("nph-spool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        let _ = fs::remove_file(&p);
        p
    }

    #[test]
    fn open_creates_a_private_directory() {
        let root = temp_path("create");
        Spool::open(&root).unwrap();
        let meta = fs::symlink_metadata(&root).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert_eq!(meta.uid(), crate::sys::effective_uid());
        // And opens it again.
        Spool::open(&root).unwrap();
        fs::remove_dir_all(root).unwrap();
    }

    /// A spool open to group or others, or owned by someone else, is
    /// refused with the path, the owner and mode found, and the fix; the
    /// check applies to every spool (there is no "configured" exemption).
    #[test]
    fn open_refuses_shared_or_foreign_directories() {
        let euid = crate::sys::effective_uid();
        for mode in [0o777, 0o1777, 0o750, 0o701] {
            let root = temp_path(&format!("mode{mode:o}"));
            fs::create_dir(&root).unwrap();
            fs::set_permissions(&root, fs::Permissions::from_mode(mode)).unwrap();
            let e = Spool::open(&root).unwrap_err().to_string();
            let d = root.display().to_string();
            for want in [
                d.as_str(),
                &format!("owner uid {euid}"),
                &format!("mode {mode:04o}"),
                "chmod 700",
                "let nph-events create it",
            ] {
                assert!(e.contains(want), "{want:?} not in {e}");
            }
            assert_eq!(fs::read_dir(&root).unwrap().count(), 0, "nothing created");
            fs::remove_dir(&root).unwrap();
        }
        if euid == 0 {
            let root = temp_path("foreign");
            fs::create_dir(&root).unwrap();
            fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
            let e = Spool::open(&root).unwrap_err().to_string();
            assert!(
                e.contains(&root.display().to_string())
                    && e.contains("belongs to nobody (uid 65534, mode 0700), not to root (uid 0)")
                    && e.contains("chown -R 0:"),
                "{e}"
            );
            assert_eq!(fs::read_dir(&root).unwrap().count(), 0, "nothing created");
            fs::remove_dir(&root).unwrap();
        }
    }

    #[test]
    fn open_refuses_links_and_files() {
        let real = temp_path("real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
        let link = temp_path("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = Spool::open(&link).unwrap_err().to_string();
        assert!(
            e.contains("is a symbolic link") && e.contains(&link.display().to_string()),
            "{e}"
        );
        fs::remove_file(&link).unwrap();
        fs::remove_dir(&real).unwrap();
        let file = temp_path("file");
        fs::write(&file, "x").unwrap();
        let e = Spool::open(&file).unwrap_err().to_string();
        assert!(e.contains("is not a directory"), "{e}");
        fs::remove_file(&file).unwrap();
    }

    /// `channels/<name>`, `channels/` and `wake/` planted as symbolic links
    /// (or as files) are refused, never followed: nothing lands in the
    /// link's target.
    #[test]
    fn channel_and_wake_links_are_refused() {
        let root = temp_path("links");
        let spool = Spool::open(&root).unwrap();
        let target = temp_path("links-target");
        fs::create_dir(&target).unwrap();
        fs::create_dir(root.join("channels")).unwrap();
        std::os::unix::fs::symlink(&target, spool.channel_dir("c")).unwrap();
        let e = spool.create_channel_dir("c").unwrap_err().to_string();
        assert!(
            e.contains("channel directory") && e.contains("symbolic link"),
            "{e}"
        );
        assert!(spool.check_channel_dir("c").is_err());
        fs::write(spool.channel_dir("f"), "").unwrap();
        assert!(spool.create_channel_dir("f").is_err());
        fs::remove_dir_all(root.join("channels")).unwrap();
        std::os::unix::fs::symlink(&target, root.join("channels")).unwrap();
        assert!(spool.create_channel_dir("c").is_err());
        assert!(spool.check_channel_dir("c").is_err());
        std::os::unix::fs::symlink(&target, spool.wake_dir()).unwrap();
        let e = spool.create_wake_dir().unwrap_err().to_string();
        assert!(
            e.contains("wake-up directory") && e.contains("symbolic link"),
            "{e}"
        );
        assert_eq!(
            fs::read_dir(&target).unwrap().count(),
            0,
            "nothing followed"
        );
        // A missing channel is fine for a reader, and created for a writer.
        fs::remove_file(root.join("channels")).unwrap();
        spool.check_channel_dir("new").unwrap();
        let dir = spool.create_channel_dir("new").unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        fs::remove_dir_all(root).unwrap();
        fs::remove_dir(target).unwrap();
    }

    /// Spool files are opened without following links, and only regular
    /// files are accepted.
    #[test]
    fn spool_files_do_not_follow_links() {
        let root = temp_path("nofollow");
        fs::create_dir(&root).unwrap();
        let victim = root.join("victim");
        fs::write(&victim, "precious\n").unwrap();
        let link = root.join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = open_file(OpenOptions::new().append(true), &link)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("symbolic link") && e.contains(&link.display().to_string()),
            "{e}"
        );
        let dangling = root.join("dangling");
        std::os::unix::fs::symlink(root.join("new"), &dangling).unwrap();
        assert!(open_file(OpenOptions::new().write(true).create(true), &dangling).is_err());
        assert!(
            !root.join("new").exists(),
            "no file created through the link"
        );
        let fifo = root.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo");
        let e = open_file(OpenOptions::new().read(true), &fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        fs::remove_dir_all(root).unwrap();
    }

    /// The backward boundary search finds a `\n\n` anywhere, also across
    /// its 64 KiB steps, and reads constant memory.
    #[test]
    fn boundaries_found_across_read_steps() {
        let root = temp_path("bounds");
        fs::create_dir(&root).unwrap();
        let path = root.join("f");
        for at in [0usize, 1, 65_535, 65_536, 65_537, 131_072, 200_000] {
            let mut bytes = vec![b'x'; 300_000];
            bytes[at] = b'\n';
            bytes[at + 1] = b'\n';
            fs::write(&path, &bytes).unwrap();
            let f = File::open(&path).unwrap();
            assert_eq!(
                last_boundary(&f, 300_000).unwrap(),
                Some(at as u64 + 2),
                "{at}"
            );
            assert_eq!(last_boundary(&f, at as u64 + 1).unwrap(), None, "{at}");
        }
        fs::write(&path, "id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: to").unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(last_record(&f, 36).unwrap(), Some((15, 30)));
        assert_eq!(record_id_at(&f, 15).unwrap(), Some(2));
        assert_eq!(record_id_at(&f, 0).unwrap(), Some(1));
        assert_eq!(record_id_at(&f, 1).unwrap(), None);
        fs::write(
            &path,
            format!("id: {}{}\n\n", "1".repeat(20), "9".repeat(20)),
        )
        .unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(
            record_id_at(&f, 0).unwrap(),
            None,
            "a long first line is no id"
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn ids() {
        assert_eq!(parse_id("0"), Some(0));
        assert_eq!(parse_id("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "-1",
            "1.5",
            " 1",
            "18446744073709551616",
            "abc",
            "1\r\n",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }
}
