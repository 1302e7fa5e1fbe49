//! The few system calls std does not offer. This is the only module with
//! `unsafe`; each block says why it is sound.
//!
//! * Signal mask: Apache mod_cgi under a threaded MPM starts CGIs with
//!   TERM, HUP, INT (and more) blocked, inherited from its worker thread. A
//!   CGI that keeps that mask cannot be stopped by SIGTERM; Apache then
//!   waits 3 s and sends SIGKILL. We clear the mask at start.
//! * Termination: on SIGTERM, SIGHUP or SIGINT the process exits 0 at once
//!   from the handler (`_exit` is async-signal-safe). Every event is written
//!   by one `write_all` of a rendered buffer and nothing is buffered in
//!   user space, so there is nothing to flush or clean up; an event cut by
//!   the exit is never dispatched by an SSE client (an unterminated trailing
//!   event is discarded). No handler thread: each connected client is a
//!   process, and a thread per process costs memory on every one of them.
//! * Waiting on stdout: `poll` with no requested events still reports
//!   POLLERR/POLLHUP, which is how a pipe or socket tells that its reader
//!   went away, so an idle stream notices before its next heartbeat.

use std::os::fd::AsRawFd;
use std::time::Duration;

/// Empties the signal mask inherited from the web server.
pub fn reset_signal_mask() {
    // SAFETY: `set` is a properly initialised (emptied) sigset_t owned by
    // this frame; passing a null old-set pointer is allowed.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

extern "C" fn exit_zero(_signal: libc::c_int) {
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(0) }
}

/// Makes SIGTERM, SIGHUP and SIGINT end the process quietly with status 0.
pub fn exit_on_termination_signals() {
    for signal in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; the handler is an `extern "C" fn(c_int)` that only calls
        // an async-signal-safe function.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = exit_zero as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Waits up to `timeout` for `fd` to report an error or hang-up.
/// Returns true when the reader of `fd` is gone.
pub fn wait_for_hangup(fd: &impl AsRawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // Round up to whole ms so a 0.3 ms remainder is not a busy 0 ms poll.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfd` is one valid pollfd living on this frame; nfds is 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n > 0 && pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
}
