//! Shared test helpers: a spec-following SSE parser, a child process that
//! is killed (by PID) when dropped, and a timestamped byte reader.
#![allow(dead_code)]

pub mod doctor;
pub mod listener;
pub mod nginx;
pub mod pushpin;
pub mod servers;

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// Whether headless Chromium and playwright-core are here; a skip outside
/// CI, a failure in CI.
pub fn browser_available() -> bool {
    let have = std::path::Path::new("/usr/bin/chromium").exists()
        && servers::repo()
            .join("tests/browser/node_modules/playwright-core")
            .exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium, node and tests/browser/node_modules are needed in CI"
        );
        eprintln!("SKIP: chromium or playwright-core missing (bash .ci/run installs them)");
    }
    have
}

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nph-events")
}

/// The static binary `cgi-bin/install` builds for hosts where every client
/// is a process (built once per run; the benchmarks measure this one).
pub fn static_bin() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let out = Command::new(servers::repo().join("cgi-bin/install"))
            .arg("--build-only")
            .stderr(Stdio::inherit())
            .output()
            .expect("cgi-bin/install --build-only");
        assert!(out.status.success(), "cgi-bin/install --build-only failed");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// One dispatched event, as a browser's EventSource would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    pub event: String,
    pub data: String,
    pub last_event_id: String,
}

/// The WHATWG "interpret an event stream" algorithm, written from the spec
/// for tests: line splitting on CRLF/CR/LF, field parsing, dispatch on a
/// blank line, and an unterminated trailing event discarded.
pub fn parse_sse(input: &str) -> (Vec<Dispatched>, Option<u64>) {
    let mut out = Vec::new();
    let (mut data, mut event, mut last_id) = (String::new(), String::new(), String::new());
    let mut retry = None;
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let mut rest = input;
    while let Some(i) = rest.find(['\r', '\n']) {
        let line = &rest[..i];
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
        if line.is_empty() {
            if !data.is_empty() {
                data.pop();
                out.push(Dispatched {
                    event: if event.is_empty() {
                        "message".into()
                    } else {
                        event.clone()
                    },
                    data: std::mem::take(&mut data),
                    last_event_id: last_id.clone(),
                });
            }
            data.clear();
            event.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match name {
            "event" => event = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => last_id = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                retry = value.parse().ok()
            }
            _ => {}
        }
    }
    (out, retry)
}

/// A child that is killed by PID and reaped when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc {
            child: cmd.spawn().expect("spawn"),
        }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Waits for exit up to `limit`; None if still running.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) has no memory effects; the PID is our own child,
        // not yet reaped (reaping happens only in wait_for/drop).
        unsafe { libc::kill(self.pid() as i32, sig) };
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes read in the background, each chunk with its arrival time.
pub struct Chunks {
    rx: Receiver<(Instant, Vec<u8>)>,
    pub start: Instant,
    pub all: Vec<u8>,
    pub times: Vec<(Instant, usize)>,
    pub eof: bool,
}

impl Chunks {
    pub fn new(mut src: impl Read + Send + 'static) -> Chunks {
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match src.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Chunks {
            rx,
            start,
            all: Vec::new(),
            times: Vec::new(),
            eof: false,
        }
    }

    fn pull(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok((t, bytes)) => {
                self.all.extend_from_slice(&bytes);
                self.times.push((t, self.all.len()));
                true
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
        }
    }

    /// Reads until `needle` occurs `count` times in total, EOF, or `limit`.
    /// Counts incrementally: only bytes that arrived since the last look
    /// are searched, so long streams stay linear.
    pub fn until_count(&mut self, needle: &str, count: usize, limit: Duration) -> bool {
        let needle = needle.as_bytes();
        let deadline = Instant::now() + limit;
        let (mut found, mut next) = (0usize, 0usize);
        loop {
            while next + needle.len() <= self.all.len() {
                if self.all[next..].starts_with(needle) {
                    found += 1;
                }
                next += 1;
            }
            if found >= count {
                return true;
            }
            if self.eof || Instant::now() >= deadline {
                return false;
            }
            self.pull(deadline);
        }
    }

    pub fn until(&mut self, needle: &str, limit: Duration) -> bool {
        self.until_count(needle, 1, limit)
    }

    /// Reads until EOF or `limit`; true on EOF.
    pub fn until_eof(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.eof && Instant::now() < deadline {
            self.pull(deadline);
        }
        self.eof
    }

    /// When the byte at `offset` arrived.
    pub fn arrival_of(&self, offset: usize) -> Option<Instant> {
        self.times
            .iter()
            .find(|(_, end)| *end > offset)
            .map(|(t, _)| *t)
    }

    /// Arrival times of each occurrence of `needle`.
    pub fn arrivals(&self, needle: &str) -> Vec<Instant> {
        let text = self.text();
        text.match_indices(needle)
            .filter_map(|(i, _)| self.arrival_of(i))
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.all).into_owned()
    }
}

/// A command for the binary with an empty environment plus `vars`.
pub fn cgi_command(program: &str, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The usual CGI variables of a GET from a browser.
pub fn get_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", "GET"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("QUERY_STRING", ""),
        ("SCRIPT_NAME", "/cgi-bin/nph-events.cgi"),
        ("HTTP_ACCEPT", "text/event-stream"),
    ]
}

/// Processes whose executable is `exe` (matched by path, for observing the
/// CGI processes a server started; never used to kill).
pub fn pids_of_exe(exe: &std::path::Path) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .map(|p| p == exe)
                .unwrap_or(false)
        })
        .collect()
}

/// Splits a raw HTTP response into (head, body), undoing chunked framing
/// (which servers may choose for a parsed-header CGI or a proxied stream);
/// an incomplete last chunk is left out.
pub fn split_response(raw: &str) -> (String, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (head.to_owned(), body.to_owned());
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or("");
    }
    (head.to_owned(), out)
}

/// The body of a raw response, chunked framing undone.
pub fn body_of(raw: &str) -> String {
    split_response(raw).1
}

/// Text frames (as JSON) a WebSocket client reads within `limit`; the
/// socket must have a short read timeout.
/// Server WebSocket frames (unmasked) in `bytes`: (opcode, payload); a
/// frame not complete yet is left out.
pub fn ws_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let op = bytes[0] & 0x0f;
        let (len, head) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 if bytes.len() >= 10 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if bytes.len() < head + len {
            break;
        }
        out.push((op, bytes[head..head + len].to_vec()));
        bytes = &bytes[head + len..];
    }
    out
}

/// A read that ran into the socket's read timeout (nothing arrived).
pub fn ws_timed_out(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ))
}

pub fn ws_texts(
    ws: &mut tungstenite::WebSocket<std::net::TcpStream>,
    limit: Duration,
) -> Vec<serde_json::Value> {
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    while Instant::now() < end {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                got.push(serde_json::from_str(t.as_str()).unwrap())
            }
            Ok(_) => {}
            Err(e) if ws_timed_out(&e) => {}
            Err(e) => panic!("{e}"),
        }
    }
    got
}

/// Sends one request with a body to 127.0.0.1:`port` and returns the whole
/// answer (asks for `Connection: close`).
pub fn http_send(port: u16, method: &str, path: &str, headers: &[&str], body: &[u8]) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).unwrap();
    let mut r = Chunks::new(s.try_clone().unwrap());
    r.until_eof(Duration::from_secs(10));
    r.text()
}
