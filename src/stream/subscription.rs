//! Following a channel: a spool reader plus the wake-up socket publishers
//! notify. A CGI stream follows its channel with one; the listener's
//! reactor follows each channel in use with one for all its clients.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::Source;
use crate::spool::tail::{Start, Tailer};
use crate::spool::wake::WakeSocket;
use crate::spool::Spool;

/// A reader of one channel that sleeps until a publisher wakes it.
#[derive(Debug)]
pub struct Subscription {
    tailer: Tailer,
    wake: WakeSocket,
}

impl Subscription {
    /// Subscribes to `channel` from `start`. The wake-up socket is bound
    /// before the log is read, so nothing published in between is missed.
    /// Anything the client must see first (a `reset`) goes to `out`.
    pub fn open(spool: &Spool, channel: &str, start: Start, out: &mut Vec<u8>) -> io::Result<Self> {
        let wake = WakeSocket::bind(spool, channel)?;
        let tailer = Tailer::open(spool, channel, start, out)?;
        Ok(Subscription { tailer, wake })
    }
}

impl Subscription {
    /// The id of the last event read, or at the end of the channel when
    /// it opened; `None` for a channel with no events.
    pub fn last_id(&self) -> Option<u64> {
        self.tailer.last_id()
    }

    /// The wake-up socket publishers write to.
    pub fn wake_socket(&self) -> &std::os::unix::net::UnixDatagram {
        self.wake.socket()
    }

    /// Where the wake-up socket is bound (removed when this is dropped).
    pub fn wake_path(&self) -> &std::path::Path {
        self.wake.path()
    }
}

impl Source for Subscription {
    fn poll(&mut self, out: &mut Vec<u8>, full_check: bool) -> io::Result<()> {
        self.tailer.poll(out, full_check)
    }
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.wake.socket().as_fd())
    }
    fn woken(&mut self) {
        self.wake.drain();
    }
}
