//! What the host will do to a CGI stream, learnt where it shows, so the
//! stream ends cleanly first: at an event boundary, with a short `retry:`,
//! one log line naming the limit, and the client resuming by
//! `Last-Event-ID`. A process the host kills instead loses nothing either
//! (resume covers it), but the log shows only a kill, and the client waits
//! its full `retry:`.
//!
//! * CPU time (`RLIMIT_CPU`, Apache `RLimitCPU`): the kernel sends SIGXCPU
//!   at the soft limit and SIGKILL at the hard one. SIGXCPU becomes a
//!   notice that ends the stream. Where soft equals hard there would be no
//!   SIGXCPU first, so the soft limit is lowered by a second.
//! * The web server reloading or stopping: under Apache's mod_cgid the
//!   CGI's parent is the CGI daemon, which a graceful reload replaces and
//!   a stop ends; the kernel's parent-death signal (SIGUSR2 here) ends the
//!   stream at once, so the old server generation that serves it can
//!   exit. Without this an open stream keeps its old generation (and its
//!   scoreboard slots) for as long as the client stays, and a stop waits
//!   for the SIGKILL. Under prefork's mod_cgi a graceful reload shows
//!   nothing and a stop sends SIGTERM; lighttpd sends SIGTERM when its
//!   graceful timeout ends. SIGTERM ends a stream at once as before.
//! * Wall time and output idle time (a host's CGI timeout) cannot be seen
//!   from inside; `max_duration` (300 s by default) and the heartbeat
//!   (15 s, below common timeouts) keep a stream inside them.

use std::io::Write;

/// What was learnt at the start of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// `RLIMIT_CPU` as found: (soft, hard) seconds.
    pub cpu: Option<(u64, Option<u64>)>,
}

/// The signal the kernel sends when the CGI's parent goes away.
pub const PARENT_GONE: i32 = libc::SIGUSR2;

/// Reads the limits and arranges to be told before they strike, and
/// (`under_server`) when the web server reloads or stops.
pub fn prepare(under_server: bool, err: &mut impl Write) -> Host {
    let cpu = crate::sys::cpu_limit();
    if let Some((soft, hard)) = cpu {
        if let Some(lower) = soft_limit_to_set(soft, hard) {
            if let Err(e) = crate::sys::set_cpu_soft_limit(lower) {
                let _ = writeln!(err, "nph-events: cannot lower RLIMIT_CPU to {lower} s: {e}");
            }
        }
    }
    let signals: &[i32] = if under_server {
        &[libc::SIGXCPU, PARENT_GONE]
    } else {
        &[libc::SIGXCPU]
    };
    if let Err(e) = crate::sys::end_on_signals(signals) {
        let _ = writeln!(err, "nph-events: cannot watch for the host's signals: {e}");
    }
    if under_server && crate::sys::signal_on_parent_death(PARENT_GONE) {
        // Gone before the kernel could be asked: no signal will come.
        crate::sys::raise(PARENT_GONE);
    }
    Host { cpu }
}

/// The soft CPU limit to set so that SIGXCPU comes before the SIGKILL:
/// a second below the hard limit when they are equal (and there is a
/// second to spare); `None` when the soft limit already leaves room.
pub fn soft_limit_to_set(soft: u64, hard: Option<u64>) -> Option<u64> {
    match hard {
        Some(h) if soft >= h && h >= 2 => Some(h - 1),
        _ => None,
    }
}

impl Host {
    /// The log line for a stream ended by `signal` (a notice).
    pub fn explain(&self, signal: i32, used: std::time::Duration) -> String {
        if signal == libc::SIGXCPU {
            let limits = match self.cpu {
                Some((soft, Some(hard))) => format!("soft {soft} s, hard {hard} s"),
                Some((soft, None)) => format!("soft {soft} s"),
                None => "set after the start".to_owned(),
            };
            return format!(
                "nph-events: the stream ended before the host's CPU time limit \
                 (RLIMIT_CPU {limits}; {:.1} s used); the client reconnects and resumes",
                used.as_secs_f64()
            );
        }
        if signal == PARENT_GONE {
            return "nph-events: the stream ended because the web server is reloading or \
                    stopping (the process that started this CGI went away); the client \
                    reconnects and resumes"
                .to_owned();
        }
        format!(
            "nph-events: the stream ended on signal {signal}; the client reconnects and resumes"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_soft_limit_leaves_a_second_for_sigxcpu() {
        assert_eq!(soft_limit_to_set(5, Some(5)), Some(4));
        assert_eq!(soft_limit_to_set(5, Some(8)), None, "room already");
        assert_eq!(soft_limit_to_set(7, None), None, "no SIGKILL");
        assert_eq!(soft_limit_to_set(1, Some(1)), None, "no second to spare");
    }

    #[test]
    fn the_log_line_names_the_limit() {
        let host = Host {
            cpu: Some((4, Some(5))),
        };
        let line = host.explain(libc::SIGXCPU, Duration::from_millis(4020));
        assert!(
            line.contains("RLIMIT_CPU soft 4 s, hard 5 s; 4.0 s used"),
            "{line}"
        );
    }
}
