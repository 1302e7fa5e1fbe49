//! A `nph-events serve` process on an ephemeral loopback port.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::{bin, Chunks, Proc};

/// A running server; killed (by PID) when dropped.
pub struct Listener {
    pub proc: Proc,
    pub port: u16,
    /// Every stderr line, as it arrives.
    pub log: mpsc::Receiver<String>,
    pub spool: String,
    /// Leave the spool when dropped (a restart will use it).
    pub keep_spool: bool,
}

impl Listener {
    /// Starts `nph-events serve` on 127.0.0.1 with a private spool and
    /// extra flags.
    pub fn start(tag: &str, flags: &[&str]) -> Listener {
        let spool = std::env::temp_dir()
            .join(format!("nph-l-{tag}-{}", std::process::id()))
            .to_str()
            .unwrap()
            .to_owned();
        let _ = std::fs::remove_dir_all(&spool);
        Self::start_with_spool(&spool, flags)
    }

    /// Like [`Listener::start`] with a given spool.
    pub fn start_with_spool(spool: &str, flags: &[&str]) -> Listener {
        Self::start_on(spool, 0, flags)
    }

    /// Like [`Listener::start`] with a given spool and port (0: any), to
    /// restart a server where it was.
    pub fn start_on(spool: &str, port: u16, flags: &[&str]) -> Listener {
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(bin());
        cmd.env_clear()
            .args(["serve", "--listen", &listen, "--spool", spool])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut proc = Proc::spawn(&mut cmd);
        let stderr = proc.child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server printed its address");
        let port = banner_port(&first);
        Listener {
            proc,
            port,
            log: rx,
            spool: spool.to_owned(),
            keep_spool: false,
        }
    }

    /// Sends `raw` bytes and returns the connection and its reader.
    pub fn raw(&self, raw: &[u8]) -> (TcpStream, Chunks) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(raw).unwrap();
        let r = Chunks::new(s.try_clone().unwrap());
        (s, r)
    }

    /// GET `path` with extra header lines; the connection stays open.
    pub fn get(&self, path: &str, headers: &[&str]) -> (TcpStream, Chunks) {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.raw(req.as_bytes())
    }

    /// A request with a body; returns the whole answer (Connection: close).
    pub fn send(&self, method: &str, path: &str, headers: &[&str], body: &[u8]) -> String {
        super::http_send(self.port, method, path, headers, body)
    }
}

/// The port in the server's first log line ("listening on
/// http://127.0.0.1:PORT/ …").
pub fn banner_port(first: &str) -> u16 {
    first
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"))
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !self.keep_spool {
            let _ = std::fs::remove_dir_all(&self.spool);
        }
    }
}
