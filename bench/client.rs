//! Shared by the benchmarks: many SSE and WebSocket clients read by one
//! epoll thread, publishing by POST, per-process CPU, memory, thread and
//! descriptor readings, and the machine's memory.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        // As root, go beyond the default hard limit (10,000 WebSocket
        // connections need three descriptors each in the server); children
        // (the servers under test) inherit it.
        let want = libc::rlimit {
            rlim_cur: 65536,
            rlim_max: 65536,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// One connected SSE client.
pub struct Client {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    /// Arrival time of each round's marker.
    pub arrivals: Vec<Option<Instant>>,
    scanned: usize,
    /// The server closed the connection.
    pub closed: bool,
}

/// Reads whatever is available on every client, for up to `wait`, until
/// `done` says stop. One thread, epoll over all sockets: the measuring
/// client must cost little next to what it measures.
pub fn pump(clients: &mut [Client], wait: Duration, done: impl FnMut(&[Client]) -> bool) {
    Poller::new(clients).pump(clients, wait, done);
}

/// An epoll instance over clients (each one's index is its token), made
/// ahead of time so that reading starts at once when it counts.
pub struct Poller {
    ep: i32,
}

impl Poller {
    pub fn new(clients: &[Client]) -> Poller {
        // SAFETY: epoll_create1 has no memory preconditions.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(ep >= 0, "epoll_create1");
        for (i, c) in clients.iter().enumerate().filter(|(_, c)| !c.closed) {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: valid epoll fd, valid socket fd, `ev` lives on this frame.
            unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c.stream.as_raw_fd(), &mut ev) };
        }
        Poller { ep }
    }

    /// [`pump`] over the clients this poller was made for.
    pub fn pump(
        &self,
        clients: &mut [Client],
        wait: Duration,
        mut done: impl FnMut(&[Client]) -> bool,
    ) {
        let deadline = Instant::now() + wait;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut chunk = vec![0u8; 64 * 1024];
        while !done(clients) && Instant::now() < deadline {
            // SAFETY: `events` has room for the given count.
            let n =
                unsafe { libc::epoll_wait(self.ep, events.as_mut_ptr(), events.len() as i32, 20) };
            let now = Instant::now();
            for ev in events.iter().take(n.max(0) as usize) {
                let c = &mut clients[ev.u64 as usize];
                match c.stream.read(&mut chunk) {
                    Ok(k) if k > 0 => {
                        c.buf.extend_from_slice(&chunk[..k]);
                        scan(c, now);
                        continue;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue
                    }
                    _ => c.closed = true,
                }
                // Closed: no more readiness from it.
                // SAFETY: valid epoll fd and socket fd; no event struct needed.
                unsafe {
                    libc::epoll_ctl(
                        self.ep,
                        libc::EPOLL_CTL_DEL,
                        c.stream.as_raw_fd(),
                        std::ptr::null_mut(),
                    )
                };
            }
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // SAFETY: closing the epoll fd we created.
        unsafe { libc::close(self.ep) };
    }
}

/// Records the arrival of any `round-N` marker not seen yet.
pub fn scan(c: &mut Client, now: Instant) {
    let text = &c.buf[c.scanned.saturating_sub(16)..];
    let s = String::from_utf8_lossy(text);
    // "data: round-N" (SSE) or "\"data\":\"round-N\"" (WebSocket JSON).
    for part in s.split("round-").skip(1) {
        let digits: String = part.chars().take_while(|ch| ch.is_ascii_digit()).collect();
        if let Ok(round) = digits.parse::<usize>() {
            if round < c.arrivals.len() && c.arrivals[round].is_none() {
                c.arrivals[round] = Some(now);
            }
        }
    }
    c.scanned = c.buf.len();
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// CPU time in ns (schedstat, exact) of a process and all its threads.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// (utime + stime in clock ticks, voluntary + involuntary switches).
pub fn proc_cost(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let switches: u64 = status
        .lines()
        .filter(|l| {
            l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt_switches")
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Some((ticks, switches))
}

/// The request of an SSE client of channel `bench`.
pub fn sse_request(path: &str) -> String {
    format!("GET {path}?channel=bench HTTP/1.1\r\nHost: bench\r\n\r\n")
}

pub fn connect(port: u16, path: &str, n: usize, rounds: usize) -> Vec<Client> {
    connect_with(port, &sse_request(path), b"retry:", n, rounds)
}

/// WebSocket clients (the handshake by hand; frames are only scanned).
pub fn connect_ws(port: u16, path: &str, n: usize, rounds: usize) -> Vec<Client> {
    let req = format!(
        "GET {path}?channel=bench HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    connect_with(port, &req, b"101 Switching", n, rounds)
}

/// Opens `n` connections sending `request`, until each has shown `ready`.
pub fn connect_with(
    port: u16,
    request: &str,
    ready: &[u8],
    n: usize,
    rounds: usize,
) -> Vec<Client> {
    let mut clients = open(port, request, n, rounds);
    let count = wait_ready(&mut clients, ready, Duration::from_secs(300));
    assert_eq!(count, n, "all clients streaming");
    clients
}

/// Opens `n` connections and sends `request` on each (not waiting for
/// the answers).
pub fn open(port: u16, request: &str, n: usize, rounds: usize) -> Vec<Client> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.write_all(request.as_bytes()).unwrap();
            s.set_nonblocking(true).unwrap();
            Client {
                stream: s,
                buf: Vec::new(),
                arrivals: vec![None; rounds],
                scanned: 0,
                closed: false,
            }
        })
        .collect()
}

/// Whether `ready` has arrived on the client.
pub fn is_ready(c: &Client, ready: &[u8]) -> bool {
    c.buf.windows(ready.len()).any(|w| w == ready)
}

/// Reads until every client has shown `ready` or was closed by the server,
/// for up to `wait`; returns how many showed `ready`.
pub fn wait_ready(clients: &mut [Client], ready: &[u8], wait: Duration) -> usize {
    pump(clients, wait, |cs| {
        cs.iter().all(|c| c.closed || is_ready(c, ready))
    });
    clients.iter().filter(|c| is_ready(c, ready)).count()
}

/// Publishes `rounds` times, `gap` apart (`send(round)` on its own thread
/// while the clients are read), and returns the sorted latencies (ms) from
/// just before each publish to the arrival of its `round-N` at each client.
pub fn broadcast(
    clients: &mut [Client],
    rounds: usize,
    gap: Duration,
    send: impl Fn(usize) + Sync,
) -> Vec<f64> {
    let send = &send;
    let poller = Poller::new(clients);
    let mut samples = Vec::new();
    for round in 0..rounds {
        std::thread::sleep(gap);
        let t0 = Instant::now();
        std::thread::scope(|s| {
            s.spawn(move || send(round));
            // Done once every client has it; `next` only moves forward.
            let mut next = 0;
            poller.pump(clients, Duration::from_secs(10), |cs| {
                while next < cs.len() && cs[next].arrivals[round].is_some() {
                    next += 1;
                }
                next == cs.len()
            });
        });
        samples.extend(
            clients
                .iter()
                .filter_map(|c| c.arrivals[round])
                .map(|t| (t - t0).as_secs_f64() * 1e3),
        );
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples
}

/// Closes the clients with a reset (`SO_LINGER` 0): no TIME_WAIT sockets
/// left behind to blur the next memory reading.
pub fn reset(clients: Vec<Client>) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    for c in clients {
        // SAFETY: setsockopt on our own open socket with a valid struct.
        unsafe {
            libc::setsockopt(
                c.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
    }
}

/// Publishes `round-N` by an authenticated POST and checks the 201.
pub fn post(port: u16, path: &str, token: &str, round: usize) {
    let body = format!("round-{round}");
    let req = format!(
        "POST {path}?channel=bench HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "publish failed: {answer}"
    );
}

/// PSS of a process (all its threads), KiB.
pub fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Pss:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// A number from a process's /proc/PID/status line (`Threads:`, …).
pub fn status_value(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Threads of a process.
pub fn threads(pid: u32) -> u64 {
    status_value(pid, "Threads:").unwrap_or(0)
}

/// Open descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The sum of `keys` in /proc/meminfo (KiB), the median of five readings
/// 100 ms apart.
pub fn meminfo_kib(keys: &[&str]) -> u64 {
    let mut samples: Vec<u64> = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
            keys.iter()
                .filter_map(|key| {
                    info.lines()
                        .find_map(|l| l.strip_prefix(key))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                })
                .sum()
        })
        .collect();
    samples.sort_unstable();
    samples[2]
}

/// Waits (up to 30 s) until MemAvailable moves less than 512 KiB in a
/// second: memory still being freed (the previous server, a build that
/// just ended) would count against the clients.
pub fn quiet_memory() {
    let start = Instant::now();
    let mut last = meminfo_kib(&["MemAvailable:"]);
    while start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
        let now = meminfo_kib(&["MemAvailable:"]);
        if now.abs_diff(last) < 512 {
            return;
        }
        last = now;
    }
}

/// Kernel memory in use (KiB): kernel stacks, page tables and
/// unreclaimable slab (where sockets, pipes and task structs live). Its
/// growth while connections are open is what they cost the kernel, at both
/// ends of each socket.
pub fn kernel_kib() -> u64 {
    meminfo_kib(&["KernelStack:", "PageTables:", "SUnreclaim:"])
}

/// CPU time (ns) the whole machine spent in user and system mode (all
/// processes; interrupts and steal left out).
pub fn machine_busy_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(3)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1_000_000_000 / hz
}

/// Drops what [`scan`] has already looked at from a client's buffer (all
/// but the overlap it rereads), so that a long run with much traffic
/// keeps little.
pub fn forget(c: &mut Client) {
    let cut = c.scanned.saturating_sub(16).min(c.buf.len());
    c.buf.drain(..cut);
    c.scanned -= cut;
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `from`
/// (any of 127.0.0.0/8: to the server, another client address), with an
/// optional receive buffer size set before connecting.
pub fn connect_from(
    from: std::net::Ipv4Addr,
    port: u16,
    rcvbuf: Option<i32>,
) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket(2) has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket nobody else owns; the stream closes it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    if let Some(size) = rcvbuf {
        // SAFETY: setsockopt on our own socket with a valid int.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
    }
    let local = sockaddr(from, 0);
    // SAFETY: `local` is a valid sockaddr_in of `len` bytes on this frame.
    if unsafe { libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let remote = sockaddr(std::net::Ipv4Addr::LOCALHOST, port);
    // SAFETY: as above.
    if unsafe { libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stream)
}

/// Makes closing the socket send a reset (`SO_LINGER` 0): no TIME_WAIT
/// left behind, the peer sees the end at once.
pub fn linger_zero(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a valid struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// Whether the peer has closed or reset the connection, without reading
/// anything from it (`poll` for `POLLRDHUP`).
pub fn hung_up(s: &TcpStream) -> bool {
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd on this frame, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// CPU time (ns) the calling thread has used.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One masked client WebSocket frame (FIN set) with `opcode` and
/// `payload`.
pub fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x5a, 0xc3, 0x17, 0x9e];
    let mut f = vec![0x80 | opcode];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// Resident memory of a process (KiB): `VmRSS`.
pub fn rss_kib(pid: u32) -> u64 {
    status_value(pid, "VmRSS:").unwrap_or(0)
}
