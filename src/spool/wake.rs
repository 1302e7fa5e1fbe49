//! Wake-ups: each reader binds a Unix datagram socket in `<spool>/wake/`;
//! a publisher sends one byte to every socket of the channel.
//!
//! An idle reader sleeps in `poll(2)` and costs no CPU (no timer wake-ups
//! beyond its heartbeat). Unlike inotify there is no per-user instance limit
//! (`fs.inotify.max_user_instances` is 128 by default, and every CGI runs as
//! the same user). Sends are non-blocking: a full queue means the reader
//! already has a wake-up pending. A socket nobody is bound to any more
//! (its reader was killed) refuses the send and is deleted by the sender.
//!
//! A live socket is never removed: a name is taken only if nothing is
//! there, or if what is there is a socket nobody is bound to any more
//! (a connect is refused); otherwise the next number is tried. Channel tags
//! may collide (48 bits): that costs a spurious wake-up, nothing more.

use std::fs;
use std::io;
use std::os::unix::fs::{DirEntryExt, FileTypeExt, MetadataExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::Spool;

/// A short tag of a channel name that keeps socket paths within
/// `sun_path`: the first 48 bits of its SHA-256 in unpadded base64url,
/// always 8 characters. A collision only causes a spurious wake-up.
pub fn channel_tag(channel: &str) -> String {
    let digest = Sha256::digest(channel.as_bytes());
    data_encoding::BASE64URL_NOPAD.encode(&digest[..6])
}

/// `n` in base 62 (`0-9A-Za-z`, no `-`, so `<tag>-<pid>-<n>` names are
/// unambiguous): a pid (below 2^22 on Linux) takes at most 4 characters,
/// a socket number below 62^7 (3.5 * 10^12) at most 7.
fn base62(mut n: u64) -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut buf = [0u8; 11];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n % 62) as usize];
        n /= 62;
        if n == 0 {
            break;
        }
    }
    buf[i..].iter().map(|b| char::from(*b)).collect()
}

/// The socket name of this process's `n`th socket for a channel tag.
///
/// `<tag>-<pid>-<n>`: 8 + 1 + 4 + 1 + at most 7 characters for a pid
/// below 2^22 (Linux's limit) and `n` below 62^7, so with the longest
/// spool path ([`super::MAX_ROOT_LEN`], 80 bytes) and `/wake/` the path
/// is at most 107 bytes, what `sun_path` holds. Beyond that `n` (a
/// process binding a socket every microsecond for 40 days) a bind fails
/// with an error rather than reusing a name.
fn socket_name(tag: &str, pid: u32, n: u64) -> String {
    format!("{tag}-{}-{}", base62(u64::from(pid)), base62(n))
}

/// How many taken names a bind skips before it gives up (each is a live
/// socket of a process with our pid in another pid namespace, or a file
/// that is not a socket).
const MAX_SKIPPED: usize = 4096;

/// A reader's bound wake-up socket; the file is removed on drop.
#[derive(Debug)]
pub struct WakeSocket {
    socket: UnixDatagram,
    path: PathBuf,
    /// The socket file's inode, so drop removes only our own file.
    ino: Option<u64>,
}

impl WakeSocket {
    /// Binds `<spool>/wake/<tag>-<pid>-<n>` (non-blocking), `n` counting
    /// this process's sockets (it never wraps): a process may follow one
    /// channel more than once (one follower per reactor thread), or two
    /// channels whose tags collide. A name that is taken by a live socket
    /// is skipped, never unlinked; a stale socket file (its process is
    /// gone; our pid was its pid) is replaced.
    pub fn bind(spool: &Spool, channel: &str) -> io::Result<WakeSocket> {
        static SOCKETS: AtomicU64 = AtomicU64::new(0);
        Self::bind_numbered(spool, channel, || SOCKETS.fetch_add(1, Ordering::Relaxed))
    }

    /// [`WakeSocket::bind`] taking socket numbers from `next` (tests force
    /// a number that is in use).
    fn bind_numbered(
        spool: &Spool,
        channel: &str,
        mut next: impl FnMut() -> u64,
    ) -> io::Result<WakeSocket> {
        let dir = spool.create_wake_dir()?;
        let tag = channel_tag(channel);
        let pid = std::process::id();
        for _ in 0..MAX_SKIPPED {
            let path = dir.join(socket_name(&tag, pid, next()));
            // At most twice: once more after removing a stale file.
            for _ in 0..2 {
                match UnixDatagram::bind(&path) {
                    Ok(socket) => {
                        socket.set_nonblocking(true)?;
                        let ino = fs::symlink_metadata(&path).ok().map(|m| m.ino());
                        return Ok(WakeSocket { socket, path, ino });
                    }
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                        if !remove_if_stale(&path, None) {
                            break; // live, or not a socket: next number
                        }
                    }
                    Err(e) => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("cannot bind the wake-up socket {}: {e}", path.display()),
                        ))
                    }
                }
            }
        }
        Err(io::Error::other(format!(
            "no free wake-up socket name in {} after {MAX_SKIPPED} tries",
            dir.display()
        )))
    }

    /// The socket, for `poll`.
    pub fn socket(&self) -> &UnixDatagram {
        &self.socket
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Consumes one wake-up. Usually there is only one; if more are
    /// queued, the next `poll` returns at once and consumes the next, which
    /// costs less than a second `recv` on every wake-up.
    pub fn drain(&self) {
        let mut buf = [0u8; 16];
        let _ = self.socket.recv(&mut buf);
    }
}

impl Drop for WakeSocket {
    fn drop(&mut self) {
        // Only our own file: had it been replaced (it should not be), the
        // new one belongs to someone else.
        let ours = fs::symlink_metadata(&self.path)
            .is_ok_and(|m| self.ino.is_none_or(|ino| m.ino() == ino));
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Removes `path` if it is a socket file nobody is bound to (a connect is
/// refused) and, when given, still the inode `ino`; true if the name is
/// free now. A live socket, or anything but a socket, is left alone.
fn remove_if_stale(path: &Path, ino: Option<u64>) -> bool {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return e.kind() == io::ErrorKind::NotFound,
    };
    if !meta.file_type().is_socket() || ino.is_some_and(|ino| ino != meta.ino()) {
        return false;
    }
    let refused = UnixDatagram::unbound().is_ok_and(|probe| {
        probe
            .connect(path)
            .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused)
    });
    // The same file still (a reader that bound the name meanwhile would
    // have made a new one).
    refused
        && fs::symlink_metadata(path).is_ok_and(|m| m.ino() == meta.ino())
        && fs::remove_file(path).is_ok()
}

/// Wakes every reader of `channel`; returns how many were reached.
///
/// A datagram in flight is charged to the *sender's* socket buffer until
/// its reader takes it, so after a few hundred sends to sleeping readers a
/// sender gets EAGAIN although those readers' queues are empty. On EAGAIN
/// the send is retried from a fresh socket; only if that fails too is the
/// reader's own queue full, which means it has wake-ups pending anyway.
///
/// Only socket files are sent to (a symbolic link is not followed), and
/// only in a wake-up directory that is ours; a socket that refuses is
/// removed only if it is still the file that refused.
pub fn notify(spool: &Spool, channel: &str) -> usize {
    let dir = spool.wake_dir();
    if super::check_existing_dir(&dir, "wake-up directory").is_err() {
        return 0;
    }
    let Ok(entries) = fs::read_dir(&dir) else {
        return 0;
    };
    let Ok(mut sender) = sender() else {
        return 0;
    };
    let prefix = format!("{}-", channel_tag(channel));
    let mut woken = 0;
    for entry in entries.filter_map(|e| e.ok()) {
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
            || !entry.file_type().is_ok_and(|t| t.is_socket())
        {
            continue;
        }
        let path = entry.path();
        let mut result = sender.send_to(b"!", &path);
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            match self::sender() {
                Ok(fresh) => sender = fresh,
                Err(_) => return woken,
            }
            result = sender.send_to(b"!", &path);
        }
        match result {
            Ok(_) => woken += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => woken += 1,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                remove_if_stale(&path, Some(entry.ino()));
            }
            Err(_) => {}
        }
    }
    woken
}

fn sender() -> io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.set_nonblocking(true)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_spool(tag: &str) -> (PathBuf, Spool) {
        let root = std::env::temp_dir().join(format!("nph-wake-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let spool = Spool::open(&root).unwrap();
        (root, spool)
    }

    fn woken(s: &WakeSocket) -> bool {
        s.socket().recv(&mut [0u8; 4]).is_ok()
    }

    /// Binding a name that a live socket holds (here: forced, as a wrapped
    /// counter or a colliding tag would produce) skips to the next number
    /// and leaves the live socket in place; its reader still gets its
    /// wake-up. The old code unlinked whatever was at the path.
    #[test]
    fn a_live_socket_is_never_replaced() {
        let (root, spool) = temp_spool("live");
        let live = WakeSocket::bind_numbered(&spool, "c", || 5).unwrap();
        let mut n = 4;
        let other = WakeSocket::bind_numbered(&spool, "c", || {
            n += 1;
            n
        })
        .unwrap();
        assert_eq!(n, 6, "number 5 was skipped");
        assert_ne!(other.path(), live.path());
        assert!(live.path().exists());
        assert_eq!(notify(&spool, "c"), 2);
        assert!(woken(&live) && woken(&other));
        // Dropping the second leaves the first.
        drop(other);
        assert!(live.path().exists());
        assert_eq!(notify(&spool, "c"), 1);
        assert!(woken(&live));
        // A number whose every candidate is live fails, and still removes
        // nothing.
        let e = WakeSocket::bind_numbered(&spool, "c", || 5).unwrap_err();
        assert!(e.to_string().contains("no free wake-up socket name"), "{e}");
        assert!(live.path().exists());
        drop(live);
        fs::remove_dir_all(root).unwrap();
    }

    /// A stale socket file (its process is gone) at our name is replaced;
    /// a file that is not a socket is left alone and skipped.
    #[test]
    fn stale_sockets_are_replaced_other_files_kept() {
        let (root, spool) = temp_spool("stale");
        let dir = spool.create_wake_dir().unwrap();
        let tag = channel_tag("c");
        let pid = std::process::id();
        let stale = dir.join(socket_name(&tag, pid, 7));
        drop(UnixDatagram::bind(&stale).unwrap());
        let s = WakeSocket::bind_numbered(&spool, "c", || 7).unwrap();
        assert_eq!(s.path(), stale);
        assert_eq!(notify(&spool, "c"), 1);
        drop(s);
        let file = dir.join(socket_name(&tag, pid, 8));
        fs::write(&file, "not a socket").unwrap();
        let mut n = 7;
        let s = WakeSocket::bind_numbered(&spool, "c", || {
            n += 1;
            n
        })
        .unwrap();
        assert_eq!(s.path(), dir.join(socket_name(&tag, pid, 9)));
        // notify neither sends to nor removes what is not a socket.
        assert_eq!(notify(&spool, "c"), 1);
        assert_eq!(fs::read_to_string(&file).unwrap(), "not a socket");
        drop(s);
        fs::remove_dir_all(root).unwrap();
    }

    /// Tags are 8 base64url characters; the longest name (largest pid
    /// Linux allows, a socket number past 3.5 * 10^12) under the longest
    /// spool path fits `sun_path`, and binds.
    #[test]
    fn longest_socket_path_fits() {
        assert_eq!(channel_tag("c").len(), 8);
        assert_ne!(channel_tag("c"), channel_tag("d"));
        assert_eq!(base62(0), "0");
        assert_eq!(base62(61), "z");
        assert_eq!(base62(62), "10");
        assert_eq!(base62(u64::MAX).len(), 11);
        let pid_max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max")
            .map_or(4_194_304, |s| s.trim().parse().unwrap());
        // PID_MAX_LIMIT on 64-bit Linux: pids are below 2^22.
        for pid in [pid_max - 1, 4_194_303] {
            let n = 62u64.pow(7) - 1;
            let name = socket_name(&channel_tag(&"x".repeat(64)), pid, n);
            assert!(name.len() <= 21, "{name}");
            assert!(pid < 4_194_303 || name.len() == 21, "{name}");
            assert!(super::super::MAX_ROOT_LEN + "/wake/".len() + name.len() <= 107);
        }
        // And the kernel takes it: a spool path of exactly MAX_ROOT_LEN.
        let base = std::env::temp_dir().join(format!("nph-wake-len-{}-", std::process::id()));
        let pad = super::super::MAX_ROOT_LEN - base.as_os_str().len();
        let root = PathBuf::from(format!("{}{}", base.display(), "p".repeat(pad)));
        assert_eq!(root.as_os_str().len(), super::super::MAX_ROOT_LEN);
        let spool = Spool::open(&root).unwrap();
        let big = 62u64.pow(7) - 1;
        let s = WakeSocket::bind_numbered(&spool, "c", || big).unwrap();
        assert_eq!(
            s.path().as_os_str().len(),
            80 + 6 + 8 + 1 + base62(std::process::id().into()).len() + 1 + 7
        );
        drop(s);
        // Past what fits: a clear error, not a wrapped (reused) name.
        let e = WakeSocket::bind_numbered(&spool, "c", || u64::MAX).unwrap_err();
        assert!(
            e.to_string().contains("cannot bind the wake-up socket"),
            "{e}"
        );
        fs::remove_dir_all(root).unwrap();
    }

    /// More sleeping readers than one socket's send buffer covers: every
    /// one must get its wake-up.
    #[test]
    fn wakes_more_readers_than_one_send_buffer_holds() {
        let (root, spool) = temp_spool("many");
        let dir = spool.create_wake_dir().unwrap();
        let tag = channel_tag("c");
        let readers: Vec<UnixDatagram> = (0..700)
            .map(|i| UnixDatagram::bind(dir.join(format!("{tag}-{i}"))).unwrap())
            .collect();
        let other = UnixDatagram::bind(dir.join(format!("{}-1", channel_tag("other")))).unwrap();
        other.set_nonblocking(true).unwrap();
        // A stale socket file (its reader is gone) is removed.
        let stale = dir.join(format!("{tag}-stale"));
        drop(UnixDatagram::bind(&stale).unwrap());
        assert_eq!(notify(&spool, "c"), 700);
        for (i, r) in readers.iter().enumerate() {
            r.set_nonblocking(true).unwrap();
            let mut b = [0u8; 4];
            assert_eq!(r.recv(&mut b).ok(), Some(1), "reader {i} not woken");
        }
        assert!(other.recv(&mut [0u8; 4]).is_err(), "other channel woken");
        assert!(!stale.exists(), "stale socket removed");
        fs::remove_dir_all(root).unwrap();
    }
}
