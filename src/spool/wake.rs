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
    /// Binds `<spool>/wake/<tag>-<pid>` (non-blocking).
    pub fn bind(spool: &Spool, channel: &str) -> io::Result<WakeSocket> {
        let dir = spool.wake_dir();
        DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let path = dir.join(format!("{}-{}", channel_tag(channel), std::process::id()));
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

    /// Empties the queue of wake-up bytes.
    pub fn drain(&self) {
        let mut buf = [0u8; 16];
        while self.socket.recv(&mut buf).is_ok() {}
    }
}

impl Drop for WakeSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Wakes every reader of `channel`; returns how many were reached.
pub fn notify(spool: &Spool, channel: &str) -> usize {
    let Ok(entries) = fs::read_dir(spool.wake_dir()) else {
        return 0;
    };
    let Ok(sender) = UnixDatagram::unbound() else {
        return 0;
    };
    if sender.set_nonblocking(true).is_err() {
        return 0;
    }
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
        match sender.send_to(b"!", &path) {
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
