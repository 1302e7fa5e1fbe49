//! A connected client's subscription: a spool reader plus the wake-up
//! socket publishers notify. This is the [`Source`] the stream pumps from.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use crate::pump::Source;
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
        crate::sys::unlink_on_signal(wake.path());
        let tailer = Tailer::open(spool, channel, start, out)?;
        Ok(Subscription { tailer, wake })
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
