//! Private Pushpin instances on 127.0.0.1 for the GRIP end-to-end tests.
//!
//! Each instance runs from the shipped `pushpin-conf/pushpin.conf` and
//! `pushpin-conf/routes`, copied into its own temp directory with only the
//! documented `@...@` placeholders filled in (ports, directories, key,
//! origin). It is stopped by PID when dropped: SIGTERM to the runner, which
//! stops its four children (each in a process group of its own, so a group
//! kill would miss them); then any child still alive, found by the PIDs in
//! `<rundir>/*.pid` and only if its command line names this instance's
//! directory, is killed too.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::servers::repo;
use super::{Chunks, Proc};

/// The runner of the Debian package.
pub const PROGRAM: &str = "/usr/bin/pushpin";

/// The placeholders of the shipped files (pushpin-conf/README.md).
const PLACEHOLDERS: [&str; 6] = [
    "@FRONT@",
    "@PUBLISH_PORT@",
    "@RUNDIR@",
    "@LOGDIR@",
    "@GRIP_KEY@",
    "@ORIGIN@",
];

/// True when Pushpin can be tested here. Outside CI a missing Pushpin
/// skips the test with a message; in CI it is a failure.
pub fn available() -> bool {
    if Path::new(PROGRAM).exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{PROGRAM} is not installed, and CI must run every end-to-end test");
    }
    eprintln!("SKIP: {PROGRAM} not installed (bash .ci/run installs it: apt-get install pushpin)");
    false
}

/// A Pushpin instance: prepared by [`Pushpin::new`] (ports chosen, so the
/// origin can be told the publish URL first), started by
/// [`Pushpin::start`], stopped by [`Pushpin::stop`] or when dropped.
pub struct Pushpin {
    runner: Option<Proc>,
    pub dir: PathBuf,
    /// Where clients connect (condure).
    pub front_port: u16,
    /// The publish API (`POST /publish/`, pushpin-handler).
    pub publish_port: u16,
    key: String,
    /// How long the last start took to be ready.
    pub ready_after: Duration,
}

/// The internal sockets (`<rundir>/pushpin-<name>`, from the shipped
/// `ipc_prefix` and Debian's internal.conf) and how many connections each
/// has once the instance is up (counted on Pushpin 1.36; the ZeroMQ
/// publish, stats and command sockets nph-events does not use have none).
const INTERNAL_LINKS: [(&str, usize); 14] = [
    ("accept", 1),
    ("inspect", 1),
    ("retry", 1),
    ("ws-control-in", 1),
    ("ws-control-out", 1),
    ("intreq-in", 1),
    ("intreq-in-stream", 1),
    ("intreq-out", 1),
    ("zurl-in", 1),
    ("zurl-in-stream", 1),
    ("zurl-out", 1),
    ("condure-in", 2),
    ("condure-out", 1),
    ("condure-out-stream", 2),
];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Ports this process handed out already (never twice).
static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Whether `port` can be bound on 127.0.0.1 right now *without*
/// SO_REUSEADDR, as Pushpin's handler binds: a socket in TIME-WAIT on the
/// port makes that bind fail, while `TcpListener::bind` (which sets
/// SO_REUSEADDR) would succeed.
fn bindable(port: u16) -> bool {
    // SAFETY: plain socket calls on a descriptor created and closed here;
    // `addr` is a valid sockaddr_in for the length given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_port = port.to_be();
        addr.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
        let ok = libc::bind(
            fd,
            &addr as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) == 0;
        libc::close(fd);
        ok
    }
}

/// A free port below the ephemeral range (32768–60999 here, busy while
/// the suite runs: a port there may be taken between the check and
/// Pushpin's bind), never one this process gave out before.
fn free_port() -> u16 {
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut x = nanos ^ (u64::from(std::process::id()) << 20) ^ 0x9e37_79b9_7f4a_7c15;
    for _ in 0..1000 {
        // xorshift: spread over 20000..32000.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20000 + (x % 12000) as u16;
        if !taken.contains(&port) && bindable(port) {
            taken.insert(port);
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

impl Pushpin {
    /// Prepares an instance signing with `key`: its directory and two free
    /// ports below 32768. Nothing runs yet.
    pub fn new(key: &str) -> Pushpin {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("nph-events-pushpin-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["run", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        Pushpin {
            runner: None,
            dir,
            front_port: free_port(),
            publish_port: free_port(),
            key: key.to_owned(),
            ready_after: Duration::ZERO,
        }
    }

    /// [`Pushpin::new`] and [`Pushpin::start`] in front of `origin_port`.
    pub fn launch(key: &str, origin_port: u16) -> Pushpin {
        let mut p = Pushpin::new(key);
        p.start(origin_port);
        p
    }

    /// The URL nph-events publishes to (`NPH_EVENTS_GRIP_PUBLISH`).
    pub fn publish_url(&self) -> String {
        format!("http://127.0.0.1:{}/publish/", self.publish_port)
    }

    /// The shipped file `name`, placeholders filled in for this instance
    /// in front of 127.0.0.1:`origin_port`. Panics when the file names a
    /// placeholder that is not documented or leaves one unfilled.
    pub fn render(&self, name: &str, origin_port: u16) -> String {
        let shipped = std::fs::read_to_string(repo().join("pushpin-conf").join(name)).unwrap();
        let values = [
            format!("127.0.0.1:{}", self.front_port),
            self.publish_port.to_string(),
            self.dir.join("run").display().to_string(),
            self.dir.join("log").display().to_string(),
            self.key.clone(),
            format!("127.0.0.1:{origin_port}"),
        ];
        let mut text = shipped;
        for (p, v) in PLACEHOLDERS.iter().zip(&values) {
            text = text.replace(p, v);
        }
        let left: Vec<&str> = text
            .split('@')
            .skip(1)
            .step_by(2)
            .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
            .collect();
        assert!(
            left.is_empty(),
            "pushpin-conf/{name}: undocumented placeholders {left:?}"
        );
        text
    }

    /// Writes the configuration (origin 127.0.0.1:`origin_port`), starts
    /// the runner and waits until it is ready: the publish API answers
    /// `POST {"items":[]}` with 200 and the front port accepts.
    pub fn start(&mut self, origin_port: u16) {
        assert!(self.runner.is_none(), "already running");
        for name in ["pushpin.conf", "routes"] {
            std::fs::write(self.dir.join(name), self.render(name, origin_port)).unwrap();
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stdout.log"))
            .unwrap();
        let mut cmd = Command::new(PROGRAM);
        cmd.arg("--config")
            .arg(self.dir.join("pushpin.conf"))
            .current_dir(&self.dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out));
        let t0 = Instant::now();
        self.runner = Some(Proc::spawn(&mut cmd));
        let limit = Duration::from_secs(10);
        loop {
            if let Some(status) = self.runner.as_mut().unwrap().child.try_wait().unwrap() {
                self.runner = None;
                panic!("pushpin exited at start ({status}):\n{}", self.logs());
            }
            if publish_raw(self.publish_port, r#"{"items":[]}"#)
                .is_ok_and(|a| a.starts_with("HTTP/1.1 200"))
                && TcpStream::connect(("127.0.0.1", self.front_port)).is_ok()
                && self.internal_links_up()
            {
                self.ready_after = t0.elapsed();
                return;
            }
            if t0.elapsed() > limit {
                panic!("pushpin not ready within {limit:?}:\n{}", self.logs());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the four processes are connected to one another: each
    /// internal unix socket in rundir has its peers (ZeroMQ connects in the
    /// background and retries every 100 ms). The publish API and the front
    /// port answer before that: a hold that comes back in those first
    /// milliseconds got `500 Accept service unavailable` (seen here).
    fn internal_links_up(&self) -> bool {
        let run = self.dir.join("run");
        let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
        // (socket, peers in a running instance): proxy <-> handler,
        // proxy <-> zurl, condure <-> proxy and handler.
        INTERNAL_LINKS.iter().all(|(name, peers)| {
            let path = run.join(format!("pushpin-{name}")).display().to_string();
            let connected = table
                .lines()
                .filter(|l| l.ends_with(&format!(" {path}")))
                .filter(|l| l.split_whitespace().nth(5) == Some("03"))
                .count();
            connected >= *peers
        })
    }

    pub fn is_running(&self) -> bool {
        self.runner.is_some()
    }

    /// Stops the instance: SIGTERM to the runner, wait (bounded), then any
    /// child left over is killed by the PID its pid file names. Returns how
    /// long the runner took to exit.
    pub fn stop(&mut self) -> Option<Duration> {
        let mut runner = self.runner.take()?;
        let t0 = Instant::now();
        runner.signal(libc::SIGTERM);
        let took = match runner.wait_for(Duration::from_secs(5)) {
            Some(_) => Some(t0.elapsed()),
            None => {
                runner.signal(libc::SIGKILL);
                let _ = runner.wait_for(Duration::from_secs(2));
                None
            }
        };
        drop(runner);
        self.kill_leftovers();
        took
    }

    /// The children the runner started that are still alive: the PIDs in
    /// `<rundir>/*.pid` whose command line names this instance's directory
    /// (a stale pid file's PID may belong to someone else by now).
    pub fn leftovers(&self) -> Vec<i32> {
        let dir = self.dir.display().to_string();
        let Ok(entries) = std::fs::read_dir(self.dir.join("run")) else {
            return vec![];
        };
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pid"))
            .filter_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<i32>().ok())
            .filter(|pid| alive(*pid) && cmdline(*pid).contains(&dir))
            .collect()
    }

    fn kill_leftovers(&self) {
        let left = self.leftovers();
        if left.is_empty() {
            return;
        }
        eprintln!(
            "pushpin {}: killing leftover children {left:?}",
            self.dir.display()
        );
        for sig in [libc::SIGTERM, libc::SIGKILL] {
            for pid in self.leftovers() {
                // SAFETY: kill(2) has no memory effects; the PID was read
                // from this instance's pid file and its command line names
                // this instance's directory.
                unsafe { libc::kill(pid, sig) };
            }
            let t0 = Instant::now();
            while !self.leftovers().is_empty() && t0.elapsed() < Duration::from_secs(3) {
                thread::sleep(Duration::from_millis(20));
            }
            if self.leftovers().is_empty() {
                return;
            }
        }
    }

    /// The runner's output and the four logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for f in [
            "stdout.log",
            "log/condure.log",
            "log/zurl.log",
            "log/pushpin-proxy.log",
            "log/pushpin-handler.log",
        ] {
            let text = std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- pushpin {f} (last lines)\n"));
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// The handler's log.
    pub fn handler_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/pushpin-handler.log")).unwrap_or_default()
    }

    /// Waits until the handler has logged `count` subscriptions to
    /// `channel` in all (Pushpin subscribes a held stream a moment after
    /// the client got the hold's body).
    pub fn wait_subscribed(&self, channel: &str, count: usize, limit: Duration) -> bool {
        let needle = format!("channel={channel}");
        let t0 = Instant::now();
        loop {
            let n = self
                .handler_log()
                .lines()
                .filter(|l| l.contains("subscribe") && !l.contains("unsubscribe"))
                .filter(|l| l.split_whitespace().any(|w| w == needle))
                .count();
            if n >= count {
                return true;
            }
            if t0.elapsed() > limit {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a raw request to the front port; the connection and its reader.
    pub fn request(&self, method: &str, path: &str, headers: &[&str]) -> (TcpStream, Chunks) {
        let mut s = TcpStream::connect(("127.0.0.1", self.front_port)).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n",
            self.front_port
        );
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let reader = Chunks::new(s.try_clone().unwrap());
        (s, reader)
    }

    /// POSTs a publish body to this instance's publish API.
    pub fn publish(&self, body: &str) -> std::io::Result<String> {
        publish_raw(self.publish_port, body)
    }
}

impl Drop for Pushpin {
    fn drop(&mut self) {
        self.stop();
        self.kill_leftovers();
        if thread::panicking() {
            eprintln!("pushpin directory kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One `POST /publish/` with `body`, within 2 s; the whole answer.
fn publish_raw(port: u16, body: &str) -> std::io::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "POST /publish/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}
