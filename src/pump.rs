//! The event-stream loop, split into a pure decision function
//! ([`Schedule::next`]) and a small driver ([`stream`]) that does the I/O.
//!
//! The schedule decides, from the current time only, whether to send a
//! ticker event, a heartbeat, end, or wait and for how long. The driver
//! renders, writes each piece with one `write_all`, and waits through the
//! injected [`Waiter`]. Tests drive both with a fake clock.

use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::time::{Duration, UNIX_EPOCH};

use crate::clock::{Clock, Waiter, Wake};
use crate::config::Config;
use crate::sse;

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send ticker event number `seq` (1-based).
    Tick(u64),
    /// Send a heartbeat comment.
    Heartbeat,
    /// `max_duration` reached: end the stream at this event boundary.
    End,
    /// Nothing is due: wait this long (always > 0).
    Wait(Duration),
}

/// Timing state of one stream. All times are monotonic clock readings.
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Option<Duration>,
    heartbeat: Duration,
    end: Option<Duration>,
    next_tick: Duration,
    last_write: Duration,
    seq: u64,
}

impl Schedule {
    /// A schedule whose stream began (head written) at `start`. The first
    /// ticker event is due at once, as in the classic script.
    pub fn new(config: &Config, start: Duration) -> Schedule {
        Schedule {
            interval: (!config.interval.is_zero()).then_some(config.interval),
            heartbeat: config.heartbeat,
            end: config.max_duration.map(|d| start + d),
            next_tick: start,
            last_write: start,
            seq: 0,
        }
    }

    /// Decides the next action at time `now`. A `Tick` advances the ticker
    /// (a stream that fell behind skips missed ticks instead of bursting).
    pub fn next(&mut self, now: Duration) -> Action {
        if self.end.is_some_and(|end| now >= end) {
            return Action::End;
        }
        if let Some(interval) = self.interval {
            if now >= self.next_tick {
                self.seq += 1;
                self.next_tick += interval;
                if self.next_tick <= now {
                    self.next_tick = now + interval;
                }
                return Action::Tick(self.seq);
            }
        }
        let heartbeat_due = self.last_write + self.heartbeat;
        if now >= heartbeat_due {
            return Action::Heartbeat;
        }
        let mut until = heartbeat_due;
        if self.interval.is_some() {
            until = until.min(self.next_tick);
        }
        if let Some(end) = self.end {
            until = until.min(end);
        }
        Action::Wait(until - now)
    }

    /// Records that something was written at `now` (resets the heartbeat).
    pub fn wrote(&mut self, now: Duration) {
        self.last_write = now;
    }
}

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

/// True for the write errors that mean "the client left".
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    )
}

/// Renders ticker event `seq`: `{"seq":N,"time":unix-ms}` with the
/// configured event name and no `id`, so ticks never disturb resume.
pub fn render_tick(config: &Config, seq: u64, clock: &dyn Clock, out: &mut Vec<u8>) {
    let ms = clock
        .wall()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let data = serde_json::json!({ "seq": seq, "time": ms }).to_string();
    let event = sse::Event {
        id: None,
        event: Some(&config.tick_event),
        data: &data,
    };
    // The event name was validated with the configuration; a failure here
    // would be a bug, and then the tick is skipped rather than torn.
    let _ = sse::encode(&event, out);
}

/// Appends the heartbeat: a comment and a blank line.
pub fn render_heartbeat(out: &mut Vec<u8>) {
    sse::comment("heartbeat", out);
    out.push(b'\n');
}

/// Where published events come from. The driver polls it before every
/// decision and sleeps on its wake-up descriptor.
pub trait Source {
    /// Appends complete events published since the last poll to `out`.
    /// `full_check` asks for the slower checks (gaps), done at heartbeats.
    fn poll(&mut self, out: &mut Vec<u8>, full_check: bool) -> io::Result<()>;
    /// A descriptor that becomes readable when there is news.
    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// Called after a wake-up, to consume it.
    fn woken(&mut self) {}
}

/// A source with nothing in it: the ticker-only stream.
#[derive(Debug, Default)]
pub struct NoSource;

impl Source for NoSource {
    fn poll(&mut self, _out: &mut Vec<u8>, _full_check: bool) -> io::Result<()> {
        Ok(())
    }
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
pub fn stream(
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
            Action::End if buf.is_empty() => return Ok(Outcome::MaxDuration),
            Action::End => {}
            Action::Wait(d) if buf.is_empty() => {
                match waiter.wait(d, source.wake_fd()) {
                    Wake::OutputClosed => return Ok(Outcome::ClientGone),
                    Wake::Shutdown => return Ok(Outcome::Shutdown),
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

/// One rendered piece, one `write_all`, then flush.
pub fn send(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FakeClock, FakeWaiter};
    use std::time::SystemTime;

    fn config(interval: f64, heartbeat: f64, max: Option<f64>) -> Config {
        Config {
            interval: Duration::from_secs_f64(interval),
            heartbeat: Duration::from_secs_f64(heartbeat),
            max_duration: max.map(Duration::from_secs_f64),
            ..Config::default()
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn tick_at_once_then_every_interval() {
        let mut s = Schedule::new(&config(10.0, 15.0, None), secs(0.0));
        assert_eq!(s.next(secs(0.0)), Action::Tick(1));
        s.wrote(secs(0.0));
        assert_eq!(s.next(secs(0.0)), Action::Wait(secs(10.0)));
        assert_eq!(s.next(secs(10.0)), Action::Tick(2));
    }

    #[test]
    fn heartbeat_when_quiet_and_ticker_off() {
        let mut s = Schedule::new(&config(0.0, 15.0, None), secs(0.0));
        assert_eq!(s.next(secs(0.0)), Action::Wait(secs(15.0)));
        assert_eq!(s.next(secs(15.0)), Action::Heartbeat);
        s.wrote(secs(15.0));
        assert_eq!(s.next(secs(16.0)), Action::Wait(secs(14.0)));
    }

    #[test]
    fn late_stream_skips_missed_ticks() {
        let mut s = Schedule::new(&config(1.0, 15.0, None), secs(0.0));
        assert_eq!(s.next(secs(0.0)), Action::Tick(1));
        assert_eq!(s.next(secs(5.5)), Action::Tick(2));
        s.wrote(secs(5.5));
        assert_eq!(s.next(secs(5.5)), Action::Wait(secs(1.0)));
    }

    #[test]
    fn end_wins_over_due_tick() {
        let mut s = Schedule::new(&config(1.0, 15.0, Some(3.0)), secs(0.0));
        assert_eq!(s.next(secs(0.0)), Action::Tick(1));
        s.wrote(secs(0.0));
        assert_eq!(s.next(secs(2.5)), Action::Tick(2));
        s.wrote(secs(2.5));
        assert_eq!(s.next(secs(2.5)), Action::Wait(secs(0.5)));
        assert_eq!(s.next(secs(3.0)), Action::End);
    }

    /// Property over many configurations: in a simulated 30-minute stream,
    /// the gap between writes never exceeds the heartbeat, ticks are numbered
    /// 1, 2, 3… and spaced by at least the interval, and every wait is > 0.
    #[test]
    fn heartbeat_never_late_and_waits_positive() {
        for interval in [0.0, 0.3, 1.0, 7.0, 20.0, 60.0] {
            for heartbeat in [0.05, 0.5, 15.0, 30.0] {
                let c = config(interval, heartbeat, Some(1800.0));
                let mut s = Schedule::new(&c, secs(0.0));
                let mut now = secs(0.0);
                let mut last_write = now;
                let (mut ticks, mut last_tick) = (0u64, None::<Duration>);
                loop {
                    match s.next(now) {
                        Action::End => break,
                        Action::Wait(d) => {
                            assert!(d > Duration::ZERO);
                            now += d;
                        }
                        a => {
                            assert!(now - last_write <= secs(heartbeat) + secs(1e-9));
                            if let Action::Tick(n) = a {
                                ticks += 1;
                                assert_eq!(n, ticks);
                                if let Some(t) = last_tick {
                                    assert!(now - t >= secs(interval) - secs(1e-9));
                                }
                                last_tick = Some(now);
                            }
                            s.wrote(now);
                            last_write = now;
                        }
                    }
                }
                assert!(now >= secs(1800.0));
                if interval > 0.0 {
                    let expected = (1800.0 / interval).ceil() as u64;
                    assert!(ticks.abs_diff(expected) <= 1, "{interval}: {ticks}");
                }
            }
        }
    }

    #[test]
    fn driver_golden_output_with_fake_clock() {
        let clock = FakeClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
        let mut waiter = FakeWaiter::new(&clock);
        let mut out = Vec::new();
        let c = config(2.0, 1.5, Some(4.0));
        let outcome = stream(&mut out, &c, &clock, &mut waiter, &mut NoSource).unwrap();
        assert_eq!(outcome, Outcome::MaxDuration);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: tick\ndata: {\"seq\":1,\"time\":1000000}\n\n\
             : heartbeat\n\n\
             event: tick\ndata: {\"seq\":2,\"time\":1002000}\n\n\
             : heartbeat\n\n"
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
        stream(&mut out, &c, &clock, &mut waiter, &mut source).unwrap();
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
        let r = stream(
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
        let r = stream(
            &mut Gone,
            &config(1.0, 15.0, None),
            &clock,
            &mut waiter,
            &mut NoSource,
        );
        assert_eq!(r.unwrap(), Outcome::ClientGone);
    }
}
