//! Time and waiting, behind traits so tests run hours of stream in
//! microseconds.

use std::cell::Cell;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant, SystemTime};

/// A source of time.
pub trait Clock {
    /// Monotonic time since the clock was made; drives intervals and
    /// heartbeats.
    fn now(&self) -> Duration;
    /// Wall-clock time, for the `Date` header and event timestamps.
    fn wall(&self) -> SystemTime;
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The timeout passed.
    Elapsed,
    /// The output was closed by the reader (client or server gone): no
    /// write is needed to know it.
    OutputClosed,
    /// The wake-up socket became readable: something was published.
    Data,
    /// The server is stopping: end the stream now.
    Shutdown,
}

/// Sleeps until a timeout or until something makes the sleep pointless.
pub trait Waiter {
    /// Waits at most `timeout`, also for `wake` (a socket that becomes
    /// readable when there is news) when given.
    fn wait(&mut self, timeout: Duration, wake: Option<BorrowedFd<'_>>) -> Wake;
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// A clock whose `now()` starts at zero.
    pub fn new() -> SystemClock {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told; for tests.
#[derive(Debug)]
pub struct FakeClock {
    now: Cell<Duration>,
    wall_start: SystemTime,
}

impl FakeClock {
    /// Starts at `now() == 0` and the given wall time.
    pub fn new(wall_start: SystemTime) -> FakeClock {
        FakeClock {
            now: Cell::new(Duration::ZERO),
            wall_start,
        }
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        self.now.set(self.now.get() + by);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.now.get()
    }
    fn wall(&self) -> SystemTime {
        self.wall_start + self.now.get()
    }
}

/// A waiter that advances a [`FakeClock`] by each full timeout, and can be
/// told to report the output closed after some number of waits.
#[derive(Debug)]
pub struct FakeWaiter<'a> {
    /// The clock this waiter advances.
    pub clock: &'a FakeClock,
    /// Report `OutputClosed` on this wait (1-based); `None` never.
    pub close_on_wait: Option<usize>,
    /// How many waits happened.
    pub waits: usize,
}

impl<'a> FakeWaiter<'a> {
    /// A waiter driving `clock`.
    pub fn new(clock: &'a FakeClock) -> FakeWaiter<'a> {
        FakeWaiter {
            clock,
            close_on_wait: None,
            waits: 0,
        }
    }
}

impl Waiter for FakeWaiter<'_> {
    fn wait(&mut self, timeout: Duration, _wake: Option<BorrowedFd<'_>>) -> Wake {
        self.waits += 1;
        if self.close_on_wait == Some(self.waits) {
            return Wake::OutputClosed;
        }
        self.clock.advance(timeout);
        Wake::Elapsed
    }
}

/// The real waiter: sleeps in `poll` on the output (and the wake-up
/// socket), so a reader that goes away while the stream is idle ends the
/// wait at once, and so does a publish.
#[derive(Debug)]
pub struct HangupWaiter<F> {
    output: F,
}

impl<F: std::os::fd::AsRawFd> HangupWaiter<F> {
    /// Watches `output` (the CGI's stdout).
    pub fn new(output: F) -> Self {
        HangupWaiter { output }
    }
}

impl<F: std::os::fd::AsRawFd> Waiter for HangupWaiter<F> {
    fn wait(&mut self, timeout: Duration, wake: Option<BorrowedFd<'_>>) -> Wake {
        match crate::sys::wait_for(&self.output, wake, timeout) {
            crate::sys::Ready::HangUp => Wake::OutputClosed,
            crate::sys::Ready::Readable => Wake::Data,
            crate::sys::Ready::Timeout => Wake::Elapsed,
            // The host is about to stop the process (its CPU limit, a
            // reload): end at this event boundary.
            crate::sys::Ready::Notice => Wake::Shutdown,
        }
    }
}
