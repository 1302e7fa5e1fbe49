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
//!   went away, so an idle stream notices before its next heartbeat. The
//!   same `poll` waits for the wake-up socket that publishers write to.
//! * epoll: the listener's WebSocket reactor watches thousands of sockets
//!   from one thread; `poll` would rescan them all on every wake-up.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
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

/// A file to remove when a termination signal ends the process: the
/// reader's wake-up socket. Set once, read by the handler.
static UNLINK_ON_SIGNAL: OnceLock<CString> = OnceLock::new();

/// Registers `path` to be unlinked if a termination signal ends the
/// process (normal exits remove it by `Drop`). Only the first call counts.
pub fn unlink_on_signal(path: &Path) {
    if let Ok(c) = CString::new(path.as_os_str().as_bytes()) {
        let _ = UNLINK_ON_SIGNAL.set(c);
    }
}

extern "C" fn exit_zero(_signal: libc::c_int) {
    // `OnceLock::get` is a single atomic load: no lock, no allocation.
    if let Some(path) = UNLINK_ON_SIGNAL.get() {
        // SAFETY: unlink is async-signal-safe; `path` is a valid C string
        // that lives for the rest of the process.
        unsafe { libc::unlink(path.as_ptr()) };
    }
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(0) }
}

/// Makes SIGTERM, SIGHUP and SIGINT end the process quietly with status 0:
/// for a CGI stream only (the web server stopping it is its normal end).
/// A command-line publish keeps the default, so a killed publish is seen
/// as killed, never as a success.
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

/// What ended a [`wait_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// The output's reader is gone (POLLERR, POLLHUP or POLLNVAL).
    HangUp,
    /// The wake-up descriptor is readable.
    Readable,
    /// Neither, within the timeout (or the wait was interrupted).
    Timeout,
    /// A signal given to [`end_on_signals`] arrived.
    Notice,
}

/// Waits up to `timeout` for the reader of `output` to go away or for
/// `wake` to become readable.
pub fn wait_for(output: &impl AsRawFd, wake: Option<BorrowedFd<'_>>, timeout: Duration) -> Ready {
    let mut fds = [
        libc::pollfd {
            fd: output.as_raw_fd(),
            events: 0,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.map_or(-1, |w| w.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: NOTICE_RX.load(std::sync::atomic::Ordering::SeqCst),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // Round up to whole ms so a 0.3 ms remainder is not a busy 0 ms poll.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a valid array of three pollfds on this frame; poll
    // ignores entries with a negative fd.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, ms) };
    if n <= 0 {
        return Ready::Timeout;
    }
    if fds[2].revents != 0 {
        return Ready::Notice;
    }
    if fds[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        return Ready::HangUp;
    }
    if fds[1].revents != 0 {
        return Ready::Readable;
    }
    Ready::Timeout
}

/// The receiving end of the notice socket ([`end_on_signals`]), or -1.
static NOTICE_RX: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
/// The sending end, written by the signal handler.
static NOTICE_TX: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
/// Both ends, owned for the life of the process.
static NOTICE: std::sync::Mutex<
    Option<(
        std::os::unix::net::UnixDatagram,
        std::os::unix::net::UnixDatagram,
    )>,
> = std::sync::Mutex::new(None);

extern "C" fn send_notice(signal: libc::c_int) {
    let fd = NOTICE_TX.load(std::sync::atomic::Ordering::SeqCst);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: send(2) is async-signal-safe; the buffer is a local byte.
        unsafe { libc::send(fd, (&byte as *const u8).cast(), 1, libc::MSG_DONTWAIT) };
    }
}

/// For a CGI stream: each of `signals` becomes a notice (its number on a
/// socket that [`wait_for`] watches) instead of its default action, so the
/// stream ends at its next event boundary, says why, and the client
/// resumes. Used for what the host sends before it kills a process
/// (SIGXCPU at the CPU time limit) and for a server's reload signs.
pub fn end_on_signals(signals: &[libc::c_int]) -> std::io::Result<()> {
    let mut notice = NOTICE.lock().unwrap_or_else(|e| e.into_inner());
    if notice.is_none() {
        let (tx, rx) = std::os::unix::net::UnixDatagram::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        NOTICE_TX.store(tx.as_raw_fd(), std::sync::atomic::Ordering::SeqCst);
        NOTICE_RX.store(rx.as_raw_fd(), std::sync::atomic::Ordering::SeqCst);
        *notice = Some((tx, rx));
    }
    for &signal in signals {
        // SAFETY: as in `exit_on_termination_signals`; the handler only
        // calls send(2).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = send_notice as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    Ok(())
}

/// Asks the kernel to send `signal` when the process that started this one
/// goes away (`PR_SET_PDEATHSIG`). Under Apache's mod_cgid that parent is
/// the CGI daemon, which a graceful reload, a stop or a graceful stop's
/// timeout replaces or ends: the one sign a CGI gets that its server is
/// going. Returns whether the parent had already changed by the time the
/// request took effect (the signal would never come then).
pub fn signal_on_parent_death(signal: libc::c_int) -> bool {
    // SAFETY: getppid cannot fail; prctl with PR_SET_PDEATHSIG takes a
    // signal number and ignores the other arguments.
    unsafe {
        let before = libc::getppid();
        libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0);
        libc::getppid() != before
    }
}

/// Sends `signal` to this process (as the kernel would have).
pub fn raise(signal: libc::c_int) {
    // SAFETY: raise takes a signal number; a handled signal runs its
    // handler, which only calls send(2).
    unsafe { libc::raise(signal) };
}

/// The first signal noticed since the last call ([`end_on_signals`]).
pub fn take_notice() -> Option<libc::c_int> {
    let notice = NOTICE.lock().unwrap_or_else(|e| e.into_inner());
    let (_, rx) = notice.as_ref()?;
    let mut byte = [0u8; 1];
    match rx.recv(&mut byte) {
        Ok(1) => Some(libc::c_int::from(byte[0])),
        _ => None,
    }
}

/// The CPU time limit (`RLIMIT_CPU`) in whole seconds: `(soft, hard)`,
/// `None` for no limit; `None` overall when the soft limit is unlimited.
pub fn cpu_limit() -> Option<(u64, Option<u64>)> {
    // SAFETY: rlimit is plain data; getrlimit fills it.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid resource and a live, writable struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_CPU, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    let hard = (lim.rlim_max != libc::RLIM_INFINITY).then_some(lim.rlim_max);
    Some((lim.rlim_cur, hard))
}

/// Lowers the soft CPU time limit to `soft` seconds (always allowed),
/// keeping the hard one.
pub fn set_cpu_soft_limit(soft: u64) -> std::io::Result<()> {
    // SAFETY: as in `cpu_limit`.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: as in `cpu_limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_CPU, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    lim.rlim_cur = soft;
    // SAFETY: a valid resource and an initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_CPU, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// CPU time this process has used (user and system).
pub fn cpu_used() -> Duration {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and a live, writable struct.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The effective user id (owner check of the default spool directory).
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The user name of `uid` from `/etc/passwd`, else `uid N`. (Names are
/// for messages only; nothing is decided by them.)
pub fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    name_in_passwd(&passwd, uid).unwrap_or_else(|| format!("uid {uid}"))
}

pub(crate) fn name_in_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

/// Bytes free for an unprivileged user on the file system holding `path`
/// (`statvfs`: blocks available to non-root times the fragment size).
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path holds a NUL byte"))?;
    // SAFETY: statvfs is plain data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a live, writable struct.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Sets a listening socket's accept queue to `backlog` (calling listen(2)
/// again on a listening socket only changes its queue length).
pub fn deepen_listen_queue(listener: &impl AsRawFd, backlog: i32) {
    // SAFETY: listen(2) on a descriptor we own; failure leaves it as it was.
    unsafe { libc::listen(listener.as_raw_fd(), backlog) };
}

/// The effective group id.
pub fn effective_gid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// Makes this process `uid`/`gid` for good (root only): the supplementary
/// groups become just `gid`, then the group, then the user, in that order
/// because each step needs the privilege the next one gives up. Used by a
/// root shell publishing into a spool that belongs to the web server's
/// user, so that everything it creates there stays that user's. Checked
/// afterwards: a process that could regain root is refused.
pub fn become_user(uid: u32, gid: u32) -> std::io::Result<()> {
    let groups = [gid as libc::gid_t];
    // SAFETY: setgroups reads `groups.len()` ids from a live array.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: setgid/setuid take plain integers and report failure by -1.
    if unsafe { libc::setgid(gid) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(uid) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above; trying to get root back must fail now.
    if uid != 0 && unsafe { libc::setuid(0) } == 0 {
        return Err(std::io::Error::other("could still regain root"));
    }
    Ok(())
}

/// Switches this process to `SCHED_BATCH` (allowed without privileges).
///
/// A publish wakes every connected client at once; each is a process that
/// does a few microseconds of work. Under the normal policy each woken
/// reader preempts whatever runs (the publisher still sending wake-ups, the
/// web server relaying the previous reader's bytes), and the CPUs spend the
/// burst switching. Batch readers wait for the running task's slice instead:
/// measured at 1,000 clients through Apache on 2 cores, p99 delivery latency
/// 44–46 ms against 50–51 ms, and less CPU in Apache (docs/benchmark-fanout.md).
/// An idle machine runs a woken batch task at once, so a lone client loses
/// nothing.
pub fn batch_scheduling() {
    // SAFETY: `param` is a valid, zeroed sched_param (priority 0, required
    // for SCHED_BATCH); pid 0 is this process.
    unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
}

/// Makes the calling thread `by` steps nicer than it is (Linux applies a
/// niceness to the thread named by its id). The listener's connection
/// threads do this: under load the kernel then runs the reactor, which
/// serves every established stream, before request handling, so a flood
/// of requests slows newcomers rather than the clients already served.
/// Raising one's own niceness needs no privilege; a failure changes
/// nothing and is ignored.
pub fn lower_thread_priority(by: i32) {
    // SAFETY: plain system calls on this thread's own id, no pointers.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if now != -1 || *libc::__errno_location() == 0 {
            libc::setpriority(libc::PRIO_PROCESS, tid, (now + by).min(19));
        }
    }
}

/// Ignores SIGXFSZ, so that exceeding a file-size limit makes the write
/// fail with EFBIG (reported, and the partial record rolled back) instead
/// of killing the process. Apache mod_cgi already starts CGIs this way.
pub fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no other effect.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Polls `fds` for readability; returns which are readable (all false on
/// timeout or interruption).
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Vec<bool> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfds.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    pfds.iter().map(|p| n > 0 && p.revents != 0).collect()
}

/// Write end of the stop socket, for the signal handler. Set once and
/// never closed: the handler must never write to a descriptor number that
/// was closed and reused for something else.
static STOP_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
/// Both ends of the stop socket, made by the first [`stop_signals`] call.
static STOP: std::sync::Mutex<
    Option<(
        std::os::unix::net::UnixDatagram,
        std::os::unix::net::UnixDatagram,
    )>,
> = std::sync::Mutex::new(None);

extern "C" fn request_stop(_signal: libc::c_int) {
    let fd = STOP_FD.load(std::sync::atomic::Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: send(2) is async-signal-safe; the buffer is a static byte.
        unsafe { libc::send(fd, b"!".as_ptr().cast(), 1, libc::MSG_DONTWAIT) };
    }
}

/// For the server: SIGTERM, SIGINT and SIGHUP become a byte on the returned
/// socket (the self-pipe trick), so the accept loop can stop gracefully
/// instead of the process ending at once. Calling it again returns another
/// handle on the same socket: the sending end the handler writes to is
/// made once and lives as long as the process.
pub fn stop_signals() -> std::io::Result<std::os::unix::net::UnixDatagram> {
    let mut stop = STOP.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, rx)) = stop.as_ref() {
        return rx.try_clone();
    }
    let (tx, rx) = std::os::unix::net::UnixDatagram::pair()?;
    tx.set_nonblocking(true)?;
    let handle = rx.try_clone()?;
    STOP_FD.store(tx.as_raw_fd(), std::sync::atomic::Ordering::SeqCst);
    *stop = Some((tx, rx));
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: as in `exit_on_termination_signals`; the handler only
        // calls send(2).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = request_stop as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    Ok(handle)
}

/// Tunes glibc's malloc for the threaded server.
///
/// * Arenas capped at 2: by default every thread may get an arena of its
///   own (up to 8 per core), and memory freed in one stays resident;
///   connection threads then cost more than they use.
/// * A fixed mmap threshold (128 KiB): a slow client's large output queue
///   gets its own mapping and is returned to the kernel when freed. By
///   default glibc raises the threshold each time such a block is freed
///   (up to 32 MiB), after which large queues come from the heap and what
///   they held stays resident after the clients are gone.
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt with valid parameters has no memory-safety effects.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Caps a socket's kernel send buffer (`SO_SNDBUF`; the kernel doubles the
/// value for its bookkeeping). Without a cap, Linux grows the buffer of a
/// connection whose reader is slow up to `net.ipv4.tcp_wmem`'s maximum
/// (4 MiB by default): kernel memory per stalled client that no output
/// budget of the program sees.
pub fn cap_send_buffer(fd: &impl AsRawFd, bytes: usize) -> std::io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a valid
    // c_int that lives for the call; the descriptor is open.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Returns to the kernel the pages of this thread's stack below the
/// current frame. A server thread touches its deepest stack while it
/// parses a request and opens a stream; those pages stay resident for the
/// life of a long stream although nothing below the waiting frame is live.
/// Releasing them makes an idle stream cost only its live frames.
pub fn release_unused_stack() {
    let marker = 0u8;
    let sp = std::ptr::addr_of!(marker) as usize;
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread; the
    // range given to madvise lies inside this thread's own stack mapping,
    // at least 1 KiB below this frame: room for the few bytes the madvise
    // call itself pushes, so no live data is dropped.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return;
        }
        let mut base: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut base, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if got != 0 {
            return;
        }
        let page = 4096usize;
        let low = (base as usize + page - 1) & !(page - 1);
        let high = sp.saturating_sub(1024) & !(page - 1);
        if high > low {
            libc::madvise(low as *mut libc::c_void, high - low, libc::MADV_DONTNEED);
        }
    }
}

/// Sets O_NONBLOCK on a descriptor (std offers it for sockets only; the
/// CGI's stdin is a pipe or socket the server gave us).
pub fn set_nonblocking(fd: &impl AsRawFd) -> std::io::Result<()> {
    // SAFETY: fcntl F_GETFL/F_SETFL on a valid, owned descriptor.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Raises the open-file limit to the hard limit (the server needs a few
/// descriptors per connection; the soft default of 1024 is far too low).
pub fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// An epoll instance: readiness of many descriptors, each with a token.
#[derive(Debug)]
pub struct Epoll(std::os::fd::OwnedFd);

/// What a registered descriptor became ready for.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// The token given at registration.
    pub token: u64,
    /// Readable, or the peer hung up / an error is pending (a read says which).
    pub readable: bool,
    /// Writable.
    pub writable: bool,
}

impl Epoll {
    /// A new instance (close-on-exec).
    pub fn new() -> std::io::Result<Epoll> {
        // SAFETY: no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned here alone.
        Ok(Epoll(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }

    fn ctl(
        &self,
        op: i32,
        fd: &impl AsRawFd,
        token: u64,
        read: bool,
        write: bool,
    ) -> std::io::Result<()> {
        // Hang-ups and errors are always reported.
        let mut events = 0;
        if read {
            events |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if write {
            events |= libc::EPOLLOUT as u32;
        }
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call;
        // both descriptors are open (borrowed from their owners).
        let rc = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watches `fd` for input (and output if `write`), reported as `token`.
    pub fn add(&self, fd: &impl AsRawFd, token: u64, write: bool) -> std::io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, true, write)
    }

    /// Changes whether `fd` is watched for input and for output.
    pub fn modify(
        &self,
        fd: &impl AsRawFd,
        token: u64,
        read: bool,
        write: bool,
    ) -> std::io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, read, write)
    }

    /// Stops watching `fd` (closing it would too; this is for clarity).
    pub fn remove(&self, fd: &impl AsRawFd) {
        // SAFETY: a null event pointer is allowed for EPOLL_CTL_DEL.
        unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Waits up to `timeout` and appends what became ready to `out`.
    pub fn wait(&self, out: &mut Vec<Event>, timeout: Duration) {
        const MAX: usize = 256;
        let mut raw = [libc::epoll_event { events: 0, u64: 0 }; MAX];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `raw` has room for MAX events and outlives the call.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), raw.as_mut_ptr(), MAX as i32, ms) };
        for ev in raw.iter().take(n.max(0) as usize) {
            let bits = ev.events;
            let other = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            out.push(Event {
                token: ev.u64,
                readable: bits & other != 0,
                writable: bits & libc::EPOLLOUT as u32 != 0,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_passwd_or_the_number() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nbad line\n";
        assert_eq!(name_in_passwd(passwd, 33).as_deref(), Some("www-data"));
        assert_eq!(name_in_passwd(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_in_passwd(passwd, 7), None);
    }

    /// A second call must not leave the handler writing to a closed (and
    /// maybe reused) descriptor: the signal still arrives, on both handles.
    #[test]
    fn stop_signals_twice_still_delivers() {
        let first = stop_signals().unwrap();
        let second = stop_signals().unwrap();
        // Something else takes the lowest free descriptor numbers now.
        let _other = std::os::unix::net::UnixDatagram::pair().unwrap();
        // SAFETY: raising a signal whose handler is installed above.
        unsafe { libc::raise(libc::SIGTERM) };
        second
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut b = [0u8; 4];
        assert_eq!(second.recv(&mut b).unwrap(), 1, "the stop byte");
        first.set_nonblocking(true).unwrap();
        assert!(first.recv(&mut b).is_err(), "one byte per signal");
    }
}
