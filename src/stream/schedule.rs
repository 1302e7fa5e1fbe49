//! When a stream writes: a pure decision function ([`Schedule::next`])
//! from the time alone: a ticker event, a heartbeat, the end, or how long
//! to wait. Both drivers use it: the CGI's blocking loop
//! ([`super::blocking`]) and the listener's reactor ([`super::sse_client`]).

use std::time::{Duration, UNIX_EPOCH};

use crate::clock::Clock;
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
            end: lifetime(config).map(|d| start + d),
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
        if now >= self.last_write + self.heartbeat {
            return Action::Heartbeat;
        }
        Action::Wait(self.due() - now)
    }

    /// When the next action is due: a tick, a heartbeat or the end.
    pub fn due(&self) -> Duration {
        let mut at = self.last_write + self.heartbeat;
        if self.interval.is_some() {
            at = at.min(self.next_tick);
        }
        if let Some(end) = self.end {
            at = at.min(end);
        }
        at
    }

    /// Records that something was written at `now` (resets the heartbeat).
    pub fn wrote(&mut self, now: Duration) {
        self.last_write = now;
    }
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

/// This stream's lifetime: `max_duration` cut short by a random fraction
/// up to `max_duration_jitter`. Clients that connected together (after a
/// restart, a network blip) end at different times, so they do not all
/// reconnect in the same second.
pub fn lifetime(config: &Config) -> Option<Duration> {
    let cut = config.max_duration_jitter * random_fraction();
    config.max_duration.map(|d| d.mul_f64(1.0 - cut))
}

/// A fraction in [0, 1) that differs between processes and calls: std's
/// `RandomState` is keyed from the OS's randomness once per thread and
/// moves on with every instance. Not for secrets; for spreading times.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The reconnection delay sent when a stream ends at its lifetime, capped
/// to the configured one: the client comes back within half a second and
/// resumes by `Last-Event-ID` (the next stream sends the usual `retry:`).
pub const RECYCLE_RETRY_MS: u64 = 500;

/// Appends what a stream sends last when its lifetime ends: a short
/// `retry:` so the browser reconnects promptly.
pub fn render_recycle(config: &Config, out: &mut Vec<u8>) {
    sse::retry(config.retry_ms.min(RECYCLE_RETRY_MS), out);
}

/// Appends the heartbeat: a comment and a blank line.
pub fn render_heartbeat(out: &mut Vec<u8>) {
    sse::comment("heartbeat", out);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::testing::{config, secs};

    #[test]
    fn lifetimes_are_cut_short_at_random_within_the_jitter() {
        let mut c = config(0.0, 15.0, Some(100.0));
        c.max_duration_jitter = 0.5;
        let lives: Vec<f64> = (0..200)
            .map(|_| lifetime(&c).unwrap().as_secs_f64())
            .collect();
        assert!(
            lives.iter().all(|l| (50.0..=100.0).contains(l)),
            "{lives:?}"
        );
        let (lo, hi) = (
            lives.iter().cloned().fold(f64::MAX, f64::min),
            lives.iter().cloned().fold(0.0, f64::max),
        );
        assert!(hi - lo > 40.0, "spread over the range: {lo}..{hi}");
        c.max_duration_jitter = 0.0;
        assert_eq!(lifetime(&c), Some(secs(100.0)));
        c.max_duration = None;
        assert_eq!(lifetime(&c), None);
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
}
