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
pub mod tail;
pub mod wake;

use std::fmt;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Channel used when the request names none.
pub const DEFAULT_CHANNEL: &str = "default";

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
    /// Uses `root` as the spool, creating it (mode 0700) if missing. With
    /// `private`, an existing directory must be owned by this user and
    /// closed to others: a default location in a shared directory must not
    /// be one another user prepared.
    pub fn open(root: &Path, private: bool) -> io::Result<Spool> {
        let len = root.as_os_str().len();
        if len > MAX_ROOT_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("spool path is {len} bytes; at most {MAX_ROOT_LEN} leave room for wake-up sockets"),
            ));
        }
        match DirBuilder::new().mode(0o700).create(root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let meta = fs::symlink_metadata(root)?;
        if !meta.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        if private {
            let mode = meta.permissions().mode();
            if meta.uid() != crate::sys::effective_uid() || mode & 0o077 != 0 {
                return Err(io::Error::other(format!(
                    "{} must be owned by this user with mode 0700 (found uid {}, mode {:o})",
                    root.display(),
                    meta.uid(),
                    mode & 0o777
                )));
            }
        }
        Ok(Spool {
            root: root.to_path_buf(),
        })
    }

    /// The spool directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of a (validated) channel; it may not exist yet.
    pub fn channel_dir(&self, channel: &str) -> PathBuf {
        self.root.join("channels").join(channel)
    }

    /// Directory of the readers' wake-up sockets.
    pub fn wake_dir(&self) -> PathBuf {
        self.root.join("wake")
    }
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

/// Splits complete records (each with its `\n\n`).
pub fn records(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = &buf[..complete_len(buf)];
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.windows(2).position(|w| w == b"\n\n")? + 2;
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
