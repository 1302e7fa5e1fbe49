//! The CGI's event stream: a blocking loop over the [`Schedule`], one
//! process per client. It renders, writes each piece with one
//! `write_all`, and sleeps through the injected [`Waiter`] (in `poll` on
//! stdout and the wake-up socket), so tests drive it with a fake clock.

use std::io::{self, Write};

use super::schedule::{render_heartbeat, render_recycle, render_tick, Action, Schedule};
use super::{is_disconnect, send, Source};
use crate::clock::{Clock, Waiter, Wake};
use crate::config::Config;

/// How a stream ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `max_duration` was reached; the client will reconnect.
    MaxDuration,
    /// The reader went away (EPIPE, ECONNRESET, or hang-up while idle).
    ClientGone,
    /// The server is shutting down; the stream ended at an event boundary.
    Shutdown,
}

/// Runs the stream body until it ends. The head and opening lines are
/// already written; the schedule starts now. Published events and ticks
/// due at the same moment go out in one write, events first.
///
/// The source is read at the start, after each wake-up from it, and at
/// heartbeats (with its slower checks); not after every write: a publish
/// during a write leaves a wake-up pending, so the next wait returns at
/// once. That keeps a delivery to one `recv`, one `pread`, one `stat`, one
/// `write` and one `poll`.
pub fn run(
    out: &mut impl Write,
    config: &Config,
    clock: &dyn Clock,
    waiter: &mut dyn Waiter,
    source: &mut dyn Source,
) -> io::Result<Outcome> {
    let mut schedule = Schedule::new(config, clock.now());
    let mut buf = Vec::with_capacity(256);
    let mut check_source = true;
    loop {
        let now = clock.now();
        buf.clear();
        let action = schedule.next(now);
        let full_check = action == Action::Heartbeat;
        if check_source || full_check {
            source.poll(&mut buf, full_check)?;
            check_source = false;
        }
        match action {
            Action::End => {
                // Events read with the end go out first, then a short
                // `retry:` so the client is back at once.
                render_recycle(config, &mut buf);
                return match send(out, &buf) {
                    Ok(()) => Ok(Outcome::MaxDuration),
                    Err(e) if is_disconnect(&e) => Ok(Outcome::ClientGone),
                    Err(e) => Err(e),
                };
            }
            Action::Wait(d) if buf.is_empty() => {
                match waiter.wait(d, source.wake_fd()) {
                    Wake::OutputClosed => return Ok(Outcome::ClientGone),
                    Wake::Shutdown => {
                        // The host is about to end the process: end here,
                        // between events, and have the client back at once.
                        buf.clear();
                        render_recycle(config, &mut buf);
                        return match send(out, &buf) {
                            Ok(()) => Ok(Outcome::Shutdown),
                            Err(e) if is_disconnect(&e) => Ok(Outcome::ClientGone),
                            Err(e) => Err(e),
                        };
                    }
                    Wake::Data => {
                        source.woken();
                        check_source = true;
                    }
                    Wake::Elapsed => {}
                }
                continue;
            }
            Action::Wait(_) => {}
            Action::Tick(seq) => render_tick(config, seq, clock, &mut buf),
            Action::Heartbeat if buf.is_empty() => render_heartbeat(&mut buf),
            Action::Heartbeat => {}
        }
        match send(out, &buf) {
            Ok(()) => schedule.wrote(now),
            Err(e) if is_disconnect(&e) => return Ok(Outcome::ClientGone),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FakeClock, FakeWaiter};
    use crate::stream::testing::config;
    use crate::stream::NoSource;
    use std::os::fd::BorrowedFd;
    use std::time::{Duration, SystemTime};

    #[test]
    fn driver_golden_output_with_fake_clock() {
        let clock = FakeClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
        let mut waiter = FakeWaiter::new(&clock);
        let mut out = Vec::new();
        let c = config(2.0, 1.5, Some(4.0));
        let outcome = run(&mut out, &c, &clock, &mut waiter, &mut NoSource).unwrap();
        assert_eq!(outcome, Outcome::MaxDuration);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: tick\ndata: {\"seq\":1,\"time\":1000000}\n\n\
             : heartbeat\n\n\
             event: tick\ndata: {\"seq\":2,\"time\":1002000}\n\n\
             : heartbeat\n\n\
             retry: 500\n\n"
        );
    }

    /// A source that yields one event per wake-up and counts its polls.
    struct Queue {
        items: Vec<&'static str>,
        polls: usize,
        woken: bool,
    }

    impl Source for Queue {
        fn poll(&mut self, out: &mut Vec<u8>, _full: bool) -> io::Result<()> {
            self.polls += 1;
            if std::mem::take(&mut self.woken) && !self.items.is_empty() {
                out.extend_from_slice(self.items.remove(0).as_bytes());
            }
            Ok(())
        }
        fn woken(&mut self) {
            self.woken = true;
        }
    }

    struct DataEvery<'a>(FakeWaiter<'a>);

    impl Waiter for DataEvery<'_> {
        fn wait(&mut self, timeout: Duration, wake: Option<BorrowedFd<'_>>) -> Wake {
            // Every wait ends early by a publish, 1 s in.
            let _ = wake;
            self.0.waits += 1;
            if self.0.waits > 3 {
                return self.0.wait(timeout, None);
            }
            self.0.clock.advance(Duration::from_secs(1).min(timeout));
            Wake::Data
        }
    }

    #[test]
    fn driver_delivers_on_wake_ups_without_polling_after_writes() {
        let clock = FakeClock::new(SystemTime::UNIX_EPOCH);
        let mut waiter = DataEvery(FakeWaiter::new(&clock));
        let mut source = Queue {
            items: vec![
                "id: 1\ndata: a\n\n",
                "id: 2\ndata: b\n\n",
                "id: 3\ndata: c\n\n",
            ],
            polls: 0,
            woken: false,
        };
        let mut out = Vec::new();
        let c = config(0.0, 15.0, Some(10.0));
        run(&mut out, &c, &clock, &mut waiter, &mut source).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("id: 1\ndata: a\n\nid: 2\ndata: b\n\nid: 3\ndata: c\n\n"),
            "{text}"
        );
        // One poll at the start and one per wake-up; none after writes.
        assert_eq!(source.polls, 4);
    }

    #[test]
    fn driver_stops_on_hangup_and_on_broken_pipe() {
        let clock = FakeClock::new(SystemTime::UNIX_EPOCH);
        let mut waiter = FakeWaiter::new(&clock);
        waiter.close_on_wait = Some(3);
        let mut out = Vec::new();
        let r = run(
            &mut out,
            &config(1.0, 15.0, None),
            &clock,
            &mut waiter,
            &mut NoSource,
        );
        assert_eq!(r.unwrap(), Outcome::ClientGone);

        struct Gone;
        impl Write for Gone {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut waiter = FakeWaiter::new(&clock);
        let r = run(
            &mut Gone,
            &config(1.0, 15.0, None),
            &clock,
            &mut waiter,
            &mut NoSource,
        );
        assert_eq!(r.unwrap(), Outcome::ClientGone);
    }
}
