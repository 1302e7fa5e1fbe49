//! Wake-ups: each reader binds a Unix datagram socket in `<spool>/wake/`;
//! a publisher sends one byte to every socket of the channel.
//!
//! An idle reader sleeps in `poll(2)` and costs no CPU (no timer wake-ups
//! beyond its heartbeat). Unlike inotify there is no per-user instance limit
//! (`fs.inotify.max_user_instances` is 128 by default, and every CGI runs as
//! the same user). Sends are non-blocking: a full queue means the reader
//! already has a wake-up pending. A socket nobody is bound to any more
//! (its reader was killed) refuses the send and is deleted by the sender.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};

use super::Spool;

/// A short tag of a channel name (FNV-1a, 32 bits) that keeps socket paths
/// within `sun_path`. A collision only causes a spurious wake-up.
pub fn channel_tag(channel: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in channel.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// A reader's bound wake-up socket; the file is removed on drop.
#[derive(Debug)]
pub struct WakeSocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl WakeSocket {
    /// Binds `<spool>/wake/<tag>-<pid>-<n>` (non-blocking), `n` counting
    /// this process's sockets in four hex digits: a process may follow one
    /// channel more than once (one follower per reactor thread), or two
    /// channels whose tags collide. (The longest spool path still leaves
    /// room in `sun_path`; `n` wraps after 65,536 sockets.)
    pub fn bind(spool: &Spool, channel: &str) -> io::Result<WakeSocket> {
        static SOCKETS: AtomicU16 = AtomicU16::new(0);
        let dir = spool.wake_dir();
        DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let n = SOCKETS.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{}-{n:x}", channel_tag(channel), std::process::id());
        let path = dir.join(name);
        // A leftover of a killed process that had our PID.
        let _ = fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        socket.set_nonblocking(true)?;
        Ok(WakeSocket { socket, path })
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
        let _ = fs::remove_file(&self.path);
    }
}

/// Wakes every reader of `channel`; returns how many were reached.
///
/// A datagram in flight is charged to the *sender's* socket buffer until
/// its reader takes it, so after a few hundred sends to sleeping readers a
/// sender gets EAGAIN although those readers' queues are empty. On EAGAIN
/// the send is retried from a fresh socket; only if that fails too is the
/// reader's own queue full, which means it has wake-ups pending anyway.
pub fn notify(spool: &Spool, channel: &str) -> usize {
    let Ok(entries) = fs::read_dir(spool.wake_dir()) else {
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
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
                ) =>
            {
                let _ = fs::remove_file(&path);
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

    /// More sleeping readers than one socket's send buffer covers: every
    /// one must get its wake-up.
    #[test]
    fn wakes_more_readers_than_one_send_buffer_holds() {
        let root = std::env::temp_dir().join(format!("nph-wake-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let spool = Spool::open(&root, true).unwrap();
        let dir = spool.wake_dir();
        fs::create_dir_all(&dir).unwrap();
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
