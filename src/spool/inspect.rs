//! Reading the spool's numbers without changing anything: channels,
//! retained events and bytes, connected readers.
//!
//! Used by `nph-events stats` (the CGI side), the listener's `/metrics`
//! and `/healthz`, and `nph-events check`. Nothing here creates, locks,
//! truncates or removes a file: directories are listed, segment files are
//! opened read-only without following links (`O_NOFOLLOW`), and a wake-up
//! socket is probed with a `connect` that sends nothing. A stale socket
//! (its reader is gone) is counted as such and left for the next
//! publisher to remove. The work is bounded by what is there: one listing
//! per channel and at most a few small reads per segment (the newest
//! non-empty segment's last record is found reading backwards in 64 KiB
//! steps, in constant memory).

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use super::wake::channel_tag;
use super::{check_channel, last_record, list_segments, open_file, record_id_at, segment_name};
use super::{parse_segment_name, Spool};

/// One channel's retained events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStats {
    /// The channel's name (its directory under `channels/`).
    pub name: String,
    /// Segment files.
    pub segments: usize,
    /// Events retained (ids are consecutive within a channel).
    pub events: u64,
    /// Id of the oldest retained event.
    pub first_id: Option<u64>,
    /// Id of the newest event.
    pub last_id: Option<u64>,
    /// Bytes of its segment files (a torn tail included until the next
    /// publish cuts it).
    pub bytes: u64,
}

/// The wake-up sockets in `<spool>/wake/`: one per reader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readers {
    /// Live sockets (a process is bound to them) by channel tag.
    live: HashMap<String, usize>,
    /// Socket files nobody is bound to any more (their process died
    /// without removing them); the next publish to their channel removes
    /// them.
    pub stale: usize,
}

impl Readers {
    /// Live readers of `channel`. Channel tags are 48-bit hashes: a
    /// collision (about 2^-48 per pair) would count another channel's
    /// readers too.
    pub fn of(&self, channel: &str) -> usize {
        self.live.get(&channel_tag(channel)).copied().unwrap_or(0)
    }

    /// Live readers of every channel.
    pub fn total(&self) -> usize {
        self.live.values().sum()
    }

    /// Live readers of channels not among `names` (channels that have no
    /// directory: nothing was published there yet).
    pub fn elsewhere<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> usize {
        let mut left = self.live.clone();
        for name in names {
            left.remove(&channel_tag(name));
        }
        left.values().sum()
    }
}

/// The spool at `root` for reading only: it must exist and be a real
/// directory (not a symbolic link). Unlike [`Spool::open`], nothing is
/// created, and a spool of another user or with open permissions is not
/// refused here (reading it is harmless; [`problems`] names what is
/// wrong).
pub fn open(root: &Path) -> io::Result<Spool> {
    let meta = fs::symlink_metadata(root).map_err(|e| {
        io::Error::new(e.kind(), format!("spool directory {}: {e}", root.display()))
    })?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::other(format!(
            "spool directory {} is a symbolic link; nph-events does not follow links in the spool",
            root.display()
        )));
    }
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "spool directory {} is not a directory",
            root.display()
        )));
    }
    Ok(Spool {
        root: root.to_path_buf(),
    })
}

/// What keeps this user from using the spool (publishing, following a
/// channel), in a few words without paths: a missing, linked or foreign
/// spool directory, one open to other users or not writable by its
/// owner, or a `channels/` or `wake/` directory that is not this user's
/// real directory. Empty when it is usable. Checks metadata only.
pub fn problems(spool: &Spool) -> Vec<String> {
    let euid = crate::sys::effective_uid();
    let mut found = Vec::new();
    let root = spool.root();
    match fs::symlink_metadata(root) {
        Err(e) => found.push(format!("spool directory: {e}")),
        Ok(m) if m.file_type().is_symlink() => {
            found.push("spool directory is a symbolic link".to_owned())
        }
        Ok(m) if !m.is_dir() => found.push("spool directory is not a directory".to_owned()),
        Ok(m) => {
            let mode = m.permissions().mode() & 0o7777;
            if m.uid() != euid {
                found.push(format!(
                    "spool directory is owned by uid {}, not by this user (uid {euid})",
                    m.uid()
                ));
            }
            if mode & 0o077 != 0 {
                found.push(format!(
                    "spool directory is open to other users (mode {mode:04o})"
                ));
            }
            if mode & 0o700 != 0o700 {
                found.push(format!(
                    "spool directory is not usable by its owner (mode {mode:04o})"
                ));
            }
        }
    }
    for (name, what) in [
        ("channels", "channels directory"),
        ("wake", "wake-up directory"),
    ] {
        match fs::symlink_metadata(root.join(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => found.push(format!("{what}: {e}")),
            Ok(m) if m.file_type().is_symlink() => found.push(format!("{what} is a symbolic link")),
            Ok(m) if !m.is_dir() => found.push(format!("{what} is not a directory")),
            Ok(m) if m.uid() != euid => found.push(format!(
                "{what} is owned by uid {}, not by this user (uid {euid})",
                m.uid()
            )),
            Ok(m) if m.permissions().mode() & 0o700 != 0o700 => found.push(format!(
                "{what} is not usable by its owner (mode {:04o})",
                m.permissions().mode() & 0o7777
            )),
            Ok(_) => {}
        }
    }
    found
}

/// Every channel with a directory, sorted by name. Entries of
/// `channels/` that are not real directories with a valid channel name
/// (symbolic links included) are skipped. A missing `channels/` has
/// none.
pub fn channels(spool: &Spool) -> io::Result<Vec<ChannelStats>> {
    let dir = spool.root().join("channels");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        // The entry's own type: a link to a directory is not one.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if check_channel(&name).is_err() {
            continue;
        }
        out.push(channel(spool, &name)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One channel's numbers (all zero when it has no directory).
pub fn channel(spool: &Spool, name: &str) -> io::Result<ChannelStats> {
    let dir = spool.channel_dir(name);
    let mut stats = ChannelStats {
        name: name.to_owned(),
        segments: 0,
        events: 0,
        first_id: None,
        last_id: None,
        bytes: 0,
    };
    if fs::symlink_metadata(&dir).is_ok_and(|m| !m.is_dir()) {
        return Ok(stats); // a link or a file: not followed
    }
    let firsts = list_segments(&dir)?;
    let mut sizes = Vec::with_capacity(firsts.len());
    for first in &firsts {
        // A segment deleted by retention meanwhile is simply gone.
        let size = fs::symlink_metadata(dir.join(segment_name(*first)))
            .ok()
            .filter(|m| m.is_file())
            .map_or(0, |m| m.len());
        sizes.push(size);
    }
    stats.segments = firsts.len();
    stats.bytes = sizes.iter().copied().fold(0, u64::saturating_add);
    // The newest event: the last complete record of the newest segment
    // that has one (a rotation killed before its first write leaves an
    // empty newest segment).
    for (i, first) in firsts.iter().enumerate().rev() {
        if sizes[i] == 0 {
            continue;
        }
        if let Some(id) = last_id_of(&dir, *first, sizes[i])? {
            stats.last_id = Some(id);
            break;
        }
    }
    // The oldest: the first record of the oldest segment with one.
    for (i, first) in firsts.iter().enumerate() {
        if sizes[i] == 0 {
            continue;
        }
        if let Some(id) = first_id_of(&dir, *first)? {
            stats.first_id = Some(id);
            break;
        }
    }
    if let (Some(first), Some(last)) = (stats.first_id, stats.last_id) {
        stats.events = last.saturating_sub(first).saturating_add(1);
    } else {
        stats.first_id = None;
        stats.last_id = None;
    }
    Ok(stats)
}

/// Opens a segment read-only, without following a link. A segment that
/// was deleted meanwhile (retention) is `None`.
fn open_segment(dir: &Path, first: u64) -> io::Result<Option<fs::File>> {
    match open_file(
        OpenOptions::new().read(true),
        &dir.join(segment_name(first)),
    ) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn last_id_of(dir: &Path, first: u64, size: u64) -> io::Result<Option<u64>> {
    let Some(file) = open_segment(dir, first)? else {
        return Ok(None);
    };
    match last_record(&file, size)? {
        Some((start, _)) => record_id_at(&file, start),
        None => Ok(None),
    }
}

fn first_id_of(dir: &Path, first: u64) -> io::Result<Option<u64>> {
    let Some(file) = open_segment(dir, first)? else {
        return Ok(None);
    };
    record_id_at(&file, 0)
}

/// The readers: the socket files in `<spool>/wake/` named
/// `<tag>-<pid>-<n>`, each probed with a `connect` (nothing is sent): a
/// socket some process is bound to is a live reader, one that refuses is
/// stale. Anything else there (links, other files) is ignored. A CGI
/// stream (SSE or WebSocket) is one reader; a listener has one per
/// channel per reactor thread that has clients of it, however many
/// clients that is.
pub fn readers(spool: &Spool) -> io::Result<Readers> {
    let dir = spool.wake_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Readers::default()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    };
    let probe = UnixDatagram::unbound()?;
    let mut readers = Readers::default();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type().is_ok_and(|t| t.is_socket()) {
            continue;
        }
        let name = entry.file_name();
        let Some(tag) = name.to_str().and_then(socket_tag) else {
            continue;
        };
        match probe.connect(entry.path()) {
            Ok(()) => *readers.live.entry(tag.to_owned()).or_default() += 1,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => readers.stale += 1,
            // Gone meanwhile (its reader ended), or not ours to probe.
            Err(_) => {}
        }
    }
    Ok(readers)
}

/// The channel tag of a wake-up socket name `<tag>-<pid>-<n>`: the tag
/// is 8 base64url characters (which may include `-`), pid and `n` are
/// base 62 (which never does).
fn socket_tag(name: &str) -> Option<&str> {
    let tag = name.get(..8)?;
    let rest = name.get(8..)?.strip_prefix('-')?;
    let (pid, n) = rest.split_once('-')?;
    let base62 = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    let base64url = tag
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (base64url && base62(pid) && base62(n)).then_some(tag)
}

/// Whether `name` is a segment file name (for callers listing a channel
/// directory themselves).
pub fn is_segment(name: &str) -> bool {
    parse_segment_name(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::append::{append, NewEvent};
    use crate::spool::wake::WakeSocket;
    use crate::spool::Retention;
    use std::path::PathBuf;

    fn temp_spool(tag: &str) -> (PathBuf, Spool) {
        let dir = std::env::temp_dir().join(format!("nph-inspect-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        (dir, spool)
    }

    fn publish(spool: &Spool, channel: &str, n: usize, retention: &Retention) -> Vec<u64> {
        (0..n)
            .map(|i| {
                let data = format!("event {i}");
                let ev = NewEvent {
                    event: None,
                    data: &data,
                };
                append(spool, channel, ev, retention, 1_000_000).unwrap()
            })
            .collect()
    }

    /// A snapshot of every file and its size and modification time.
    fn tree(dir: &Path) -> Vec<(PathBuf, u64, i64)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let m = fs::symlink_metadata(e.path()).unwrap();
                if m.is_dir() {
                    stack.push(e.path());
                }
                out.push((
                    e.path(),
                    m.len(),
                    m.mtime_nsec() + m.mtime() * 1_000_000_000,
                ));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn counts_events_ids_and_bytes_across_segments() {
        let (root, spool) = temp_spool("count");
        let small = Retention {
            events: 8,
            bytes: 1 << 20,
        };
        let ids = publish(&spool, "news", 20, &small);
        publish(&spool, "other", 3, &Retention::default());
        let stats = channels(&spool).unwrap();
        assert_eq!(
            stats.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["news", "other"]
        );
        let news = &stats[0];
        assert_eq!(news.last_id, Some(ids[19]));
        assert!(news.segments > 1, "rotated: {news:?}");
        // Retention keeps at least 8 and about 1.25 times that.
        assert!((8..=12).contains(&news.events), "{news:?}");
        assert_eq!(news.first_id, Some(ids[19] + 1 - news.events));
        let on_disk: u64 = fs::read_dir(spool.channel_dir("news"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| is_segment(e.file_name().to_str().unwrap()))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert_eq!(news.bytes, on_disk);
        assert_eq!((stats[1].events, stats[1].segments), (3, 1));
        // A channel without a directory: zeros.
        let none = channel(&spool, "nothing").unwrap();
        assert_eq!((none.events, none.first_id, none.bytes), (0, None, 0));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_torn_tail_and_an_empty_newest_segment_do_not_count() {
        let (root, spool) = temp_spool("torn");
        let ids = publish(&spool, "c", 3, &Retention::default());
        let dir = spool.channel_dir("c");
        let seg = dir.join(segment_name(list_segments(&dir).unwrap()[0]));
        let mut bytes = fs::read(&seg).unwrap();
        bytes.extend_from_slice(b"id: 99999\ndata: torn");
        fs::write(&seg, &bytes).unwrap();
        // An empty segment after it (a rotation killed before writing).
        fs::write(dir.join(segment_name(ids[2] + 1)), b"").unwrap();
        let c = channel(&spool, "c").unwrap();
        assert_eq!(
            (c.first_id, c.last_id, c.events),
            (Some(ids[0]), Some(ids[2]), 3)
        );
        assert_eq!(c.segments, 2);
        assert_eq!(c.bytes, bytes.len() as u64);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn readers_are_live_sockets_by_channel_stale_ones_apart() {
        let (root, spool) = temp_spool("readers");
        publish(&spool, "a", 1, &Retention::default());
        let a1 = WakeSocket::bind(&spool, "a").unwrap();
        let a2 = WakeSocket::bind(&spool, "a").unwrap();
        let b = WakeSocket::bind(&spool, "b").unwrap();
        // A stale socket of a reader that died, and things that are not
        // readers.
        let stale = spool.wake_dir().join(format!("{}-zz-1", channel_tag("a")));
        drop(UnixDatagram::bind(&stale).unwrap());
        fs::write(spool.wake_dir().join("not-a-socket"), b"x").unwrap();
        std::os::unix::fs::symlink(a1.path(), spool.wake_dir().join("link-1-1")).unwrap();
        let before = tree(&root);
        let r = readers(&spool).unwrap();
        assert_eq!((r.of("a"), r.of("b"), r.of("c")), (2, 1, 0));
        assert_eq!((r.total(), r.stale), (3, 1));
        assert_eq!(r.elsewhere(["a"]), 1, "b has no directory");
        // Nothing was changed: not even the stale socket removed, and no
        // wake-up was sent.
        assert_eq!(tree(&root), before);
        assert!(a1.socket().recv(&mut [0u8; 4]).is_err());
        drop((a1, a2, b));
        let r = readers(&spool).unwrap();
        assert_eq!((r.total(), r.stale), (0, 1));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn inspection_creates_nothing_and_follows_no_link() {
        let base = std::env::temp_dir().join(format!("nph-inspect-base-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let missing = base.join("spool");
        assert!(open(&missing).is_err());
        assert!(!missing.exists(), "not created");
        // A link to a real spool is refused.
        let (root, spool) = temp_spool("ro");
        publish(&spool, "c", 2, &Retention::default());
        let link = base.join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let e = open(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // A linked channel directory and a linked segment are not read.
        let elsewhere = base.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::copy(
            spool.channel_dir("c").join(segment_name(
                list_segments(&spool.channel_dir("c")).unwrap()[0],
            )),
            elsewhere.join(segment_name(5)),
        )
        .unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("channels").join("linked")).unwrap();
        std::os::unix::fs::symlink(
            elsewhere.join(segment_name(5)),
            spool.channel_dir("c").join(segment_name(u64::MAX - 1)),
        )
        .unwrap();
        let before = tree(&root);
        let spool = open(&root).unwrap();
        let list = channels(&spool).unwrap();
        assert_eq!(list.len(), 1, "{list:?}");
        // The linked segment is listed (a name) but not read: its size is
        // not counted, and the events are those of the real segment.
        assert_eq!(list[0].segments, 2);
        assert_eq!(list[0].events, 2);
        assert!(channel(&spool, "linked").unwrap().segments == 0);
        assert_eq!(tree(&root), before, "nothing changed");
        assert!(problems(&spool).is_empty(), "{:?}", problems(&spool));
        fs::remove_dir_all(root).unwrap();
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn problems_name_what_keeps_the_spool_unusable() {
        let (root, spool) = temp_spool("problems");
        assert!(problems(&spool).is_empty());
        fs::set_permissions(&root, fs::Permissions::from_mode(0o750)).unwrap();
        let p = problems(&spool);
        assert!(p.iter().any(|p| p.contains("open to other users")), "{p:?}");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(root.join("wake"), b"x").unwrap();
        let p = problems(&spool);
        assert_eq!(p, ["wake-up directory is not a directory"]);
        fs::remove_dir_all(&root).unwrap();
        let p = problems(&spool);
        assert!(p[0].starts_with("spool directory: "), "{p:?}");
    }

    #[test]
    fn socket_names() {
        assert_eq!(socket_tag("AbCdEfGh-1z-0"), Some("AbCdEfGh"));
        assert_eq!(socket_tag("Ab-d_fGh-1z-0"), Some("Ab-d_fGh"));
        assert_eq!(socket_tag("AbCdEfG.-1z-0"), None);
        assert_eq!(socket_tag("AbCdEfGh-1z"), None);
        assert_eq!(socket_tag("AbCdEfGh-1z-0-1"), None);
        assert_eq!(socket_tag("short-1-1"), None);
    }
}
