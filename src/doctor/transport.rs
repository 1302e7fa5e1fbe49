//! Getting bytes off the wire with their arrival times.
//!
//! `http://` over HTTP/1.1 uses a small client of our own on a
//! `TcpStream`: it sees exactly the bytes and chunks the server sends.
//! `https://` and HTTP/2 (h2, h2c) run the system `curl` with `-N` (no
//! output buffering), and the arrival of each piece of its output is
//! timed instead: the program carries no TLS or HTTP/2 code of its own.
//! A private CA's certificate (`--cacert`) is handed to curl, which then
//! trusts it for every request of the run.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use super::capture::{Capture, Decoder};
use super::target::Target;

/// How requests are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Our own HTTP/1.1 client (`http://` only).
    Raw,
    /// The `curl` program, with this protocol choice and, for a private
    /// CA, the certificate file that curl trusts (`--cacert`).
    Curl {
        mode: CurlMode,
        cacert: Option<PathBuf>,
    },
}

/// The protocol curl is told to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurlMode {
    /// curl's default: HTTP/2 where TLS negotiates it, as browsers do.
    Auto,
    /// `--http1.1` (the WebSocket handshake needs HTTP/1.1).
    Http11,
    /// `--http2`: ALPN on https, `Upgrade: h2c` on http.
    Http2,
    /// `--http2-prior-knowledge`: h2c without upgrade.
    Http2Prior,
}

impl Transport {
    /// The same transport for a request that must be HTTP/1.1 (the same
    /// CA trusted).
    pub fn http11(&self) -> Transport {
        match self {
            Transport::Raw => Transport::Raw,
            Transport::Curl { cacert, .. } => Transport::Curl {
                mode: CurlMode::Http11,
                cacert: cacert.clone(),
            },
        }
    }

    /// curl's protocol choice (`None`: the built-in client).
    pub fn curl_mode(&self) -> Option<CurlMode> {
        match self {
            Transport::Raw => None,
            Transport::Curl { mode, .. } => Some(*mode),
        }
    }

    /// For the report: what made the requests.
    pub fn describe(&self) -> String {
        let Transport::Curl { mode, cacert } = self else {
            return "built-in HTTP/1.1 client".to_owned();
        };
        let what = match mode {
            CurlMode::Auto => "curl (HTTP/2 where TLS offers it, as browsers)",
            CurlMode::Http11 => "curl --http1.1",
            CurlMode::Http2 => "curl --http2",
            CurlMode::Http2Prior => "curl --http2-prior-knowledge",
        };
        match cacert {
            Some(file) => format!("{what}, trusting --cacert {}", file.display()),
            None => what.to_owned(),
        }
    }
}

/// One request to make.
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a Target,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Makes `request` and records the answer until it ends, `limit` passes,
/// or `enough` says so. With `keep_informational` a `1xx` head is the
/// answer (the WebSocket handshake's 101).
pub fn exchange(
    transport: &Transport,
    request: &Request<'_>,
    limit: Duration,
    keep_informational: bool,
    enough: &dyn Fn(&Capture) -> bool,
) -> Capture {
    exchange_from(
        Instant::now(),
        transport,
        request,
        limit,
        keep_informational,
        enough,
    )
}

/// [`exchange`] with times counted from `start` (taken just before), so
/// that another thread's clock readings line up with this capture's.
pub fn exchange_from(
    start: Instant,
    transport: &Transport,
    request: &Request<'_>,
    limit: Duration,
    keep_informational: bool,
    enough: &dyn Fn(&Capture) -> bool,
) -> Capture {
    let deadline = start + limit;
    let opened = match transport {
        Transport::Raw => open_raw(request, limit),
        Transport::Curl { mode, cacert } => open_curl(request, *mode, cacert.as_deref(), limit),
    };
    let source = match opened {
        Ok(s) => s,
        Err(e) => {
            return Capture {
                error: Some(e),
                watched: start.elapsed(),
                ..Capture::default()
            }
        }
    };
    let mut decoder = Decoder::new(*transport != Transport::Raw, keep_informational);
    loop {
        if decoder.done() || enough(&decoder.capture) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match source.rx.recv_timeout(left) {
            Ok((at, bytes)) => decoder.feed(at - start, &bytes),
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => {
                decoder.eof(start.elapsed());
                break;
            }
        }
    }
    let mut capture = decoder.capture;
    capture.watched = start.elapsed().min(limit);
    if let Some(why) = source.stop() {
        if capture.head.is_none() && capture.error.is_none() {
            capture.error = Some(explain_curl(&why, transport));
        }
    }
    capture
}

/// A running request: its timed output and how to end it.
struct Source {
    rx: Receiver<(Instant, Vec<u8>)>,
    stop: Stop,
}

enum Stop {
    Tcp(TcpStream),
    Curl(Child, thread::JoinHandle<String>),
}

impl Source {
    /// Ends the request; returns curl's complaint, if any.
    fn stop(self) -> Option<String> {
        match self.stop {
            Stop::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Both);
                None
            }
            Stop::Curl(mut child, stderr) => {
                let _ = child.kill();
                let _ = child.wait();
                let text = stderr.join().unwrap_or_default();
                let line = text.lines().rev().find(|l| l.starts_with("curl:"))?;
                Some(line.to_owned())
            }
        }
    }
}

/// curl's complaint, with what to do about a certificate it could not
/// verify: the usual first failure against a host with a private CA.
pub fn explain_curl(line: &str, transport: &Transport) -> String {
    let cacert = match transport {
        Transport::Curl { cacert, .. } => cacert.as_deref(),
        Transport::Raw => None,
    };
    let code = line
        .strip_prefix("curl: (")
        .and_then(|rest| rest.split_once(')'))
        .and_then(|(n, _)| n.parse::<u32>().ok());
    let hint = match (code, cacert) {
        // CURLE_PEER_FAILED_VERIFICATION: an unknown CA, a self-signed
        // certificate, a name that does not match, an expired one.
        (Some(60), None) => "the server's certificate is not trusted: if the site uses a \
                             private CA, give its certificate with --cacert FILE; else fix \
                             the certificate (chain, name, dates) on the server"
            .to_owned(),
        (Some(60), Some(file)) => format!(
            "the server's certificate is not trusted with --cacert {} either: is that the \
             CA that signed it, and does the certificate name this host (subjectAltName)?",
            file.display()
        ),
        // CURLE_SSL_CACERT_BADFILE.
        (Some(77), Some(file)) => format!(
            "curl could not use --cacert {} (PEM certificates expected)",
            file.display()
        ),
        _ => return line.to_owned(),
    };
    format!("{line} ({hint})")
}

/// Forwards what `src` yields, timestamped, until it ends.
fn pump(mut src: impl Read + Send + 'static) -> Receiver<(Instant, Vec<u8>)> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
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
    rx
}

fn open_raw(request: &Request<'_>, limit: Duration) -> Result<Source, String> {
    let t = request.target;
    let addrs = (t.connect_host(), t.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", t.host))?;
    let timeout = limit.clamp(Duration::from_millis(100), Duration::from_secs(10));
    let mut last = format!("{} has no address", t.host);
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let _ = stream.set_nodelay(true);
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        request.method,
        t.request_target(),
        t.host_header()
    );
    for (name, value) in &request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !request.body.is_empty() || request.method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", request.body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&request.body);
    stream
        .write_all(&bytes)
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let reader = stream
        .try_clone()
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    Ok(Source {
        rx: pump(reader),
        stop: Stop::Tcp(stream),
    })
}

/// The curl arguments for `request` (testable without running curl).
pub fn curl_args(
    request: &Request<'_>,
    mode: CurlMode,
    cacert: Option<&Path>,
    limit: Duration,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["-sS".into(), "-N".into(), "--globoff".into()];
    match request.method {
        "HEAD" => args.push("-I".into()),
        m => {
            args.push("-i".into());
            if m != "GET" {
                args.extend(["-X".into(), m.into()]);
            }
        }
    }
    match mode {
        CurlMode::Auto => {}
        CurlMode::Http11 => args.push("--http1.1".into()),
        CurlMode::Http2 => args.push("--http2".into()),
        CurlMode::Http2Prior => args.push("--http2-prior-knowledge".into()),
    }
    if let Some(file) = cacert {
        // A private CA: curl verifies the server's certificate against
        // the certificates in this file instead of its own CA bundle.
        args.extend(["--cacert".into(), file.to_string_lossy().into_owned()]);
    }
    // A safety net only: the doctor stops curl itself at `limit`.
    let secs = limit.as_secs() + 2;
    args.extend(["--max-time".into(), secs.to_string()]);
    // Headers and body come from stdin (see `curl_config`).
    args.extend(["--config".into(), "-".into()]);
    args.push("--".into());
    args.push(request.target.to_string());
    args
}

/// The config curl reads from stdin: the headers and the body. Kept off
/// the command line, where other users of the host would see the token.
pub fn curl_config(request: &Request<'_>) -> String {
    let mut config = String::new();
    for (name, value) in &request.headers {
        config.push_str(&format!(
            "header = {}\n",
            quote(&format!("{name}: {value}"))
        ));
    }
    if !request.body.is_empty() || request.method == "POST" {
        config.push_str("header = \"Expect:\"\n");
        let body = String::from_utf8_lossy(&request.body);
        config.push_str(&format!("data-binary = {}\n", quote(&body)));
    }
    config
}

/// A double-quoted curl config value.
fn quote(value: &str) -> String {
    let mut q = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            '\t' => q.push_str("\\t"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn open_curl(
    request: &Request<'_>,
    mode: CurlMode,
    cacert: Option<&Path>,
    limit: Duration,
) -> Result<Source, String> {
    let mut child = Command::new("curl")
        .args(curl_args(request, mode, cacert, limit))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                "https:// and --http2 need the curl program, which is not on PATH".to_owned()
            }
            _ => format!("cannot run curl: {e}"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A few hundred bytes: this cannot block on a full pipe.
        let _ = stdin.write_all(curl_config(request).as_bytes());
    }
    let stdout = child.stdout.take().ok_or("curl has no output")?;
    let mut stderr = child.stderr.take().ok_or("curl has no error output")?;
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    Ok(Source {
        rx: pump(stdout),
        stop: Stop::Curl(child, errors),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_gets_the_protocol_headers_and_body_as_arguments() {
        let t = Target::parse("https://example.org/events?channel=a").unwrap();
        let r = Request {
            method: "POST",
            target: &t,
            headers: vec![("Authorization".into(), "Bearer x".into())],
            body: b"hi".to_vec(),
        };
        let args = curl_args(&r, CurlMode::Http2Prior, None, Duration::from_secs(5));
        let line = args.join(" ");
        assert!(line.contains("-X POST"), "{line}");
        assert!(line.contains("--http2-prior-knowledge"), "{line}");
        assert!(
            !line.contains("Bearer"),
            "the token stays off the command line: {line}"
        );
        assert_eq!(
            curl_config(&r),
            "header = \"Authorization: Bearer x\"\nheader = \"Expect:\"\ndata-binary = \"hi\"\n"
        );
        let odd = Request {
            method: "GET",
            target: &t,
            headers: vec![("X".into(), "a\"b\\c".into())],
            body: Vec::new(),
        };
        assert_eq!(curl_config(&odd), "header = \"X: a\\\"b\\\\c\"\n");
        assert!(
            line.ends_with("-- https://example.org/events?channel=a"),
            "{line}"
        );
        let head = Request {
            method: "HEAD",
            body: Vec::new(),
            ..r
        };
        assert!(
            curl_args(&head, CurlMode::Auto, None, Duration::from_secs(1))
                .contains(&"-I".to_owned())
        );
        assert!(!line.contains("--cacert"), "{line}");
        let ca = Path::new("/etc/private ca.pem");
        let args = curl_args(&head, CurlMode::Http2, Some(ca), Duration::from_secs(1));
        let at = args.iter().position(|a| a == "--cacert").unwrap();
        assert_eq!(args[at + 1], "/etc/private ca.pem");
        assert!(at < args.iter().position(|a| a == "--").unwrap());
        let t = Transport::Curl {
            mode: CurlMode::Http2,
            cacert: Some(ca.to_path_buf()),
        };
        assert_eq!(
            t.http11(),
            Transport::Curl {
                mode: CurlMode::Http11,
                cacert: Some(ca.to_path_buf())
            }
        );
        assert!(t.describe().contains("--cacert /etc/private ca.pem"));
    }

    #[test]
    fn certificate_errors_say_what_to_do() {
        let bare = Transport::Curl {
            mode: CurlMode::Auto,
            cacert: None,
        };
        let line =
            "curl: (60) SSL certificate problem: self-signed certificate in certificate chain";
        let e = explain_curl(line, &bare);
        assert!(e.starts_with(line) && e.contains("--cacert FILE"), "{e}");
        let with = Transport::Curl {
            mode: CurlMode::Auto,
            cacert: Some("/ca.pem".into()),
        };
        let e = explain_curl(line, &with);
        assert!(
            e.contains("not trusted with --cacert /ca.pem either"),
            "{e}"
        );
        let e = explain_curl("curl: (77) error setting certificate file: /ca.pem", &with);
        assert!(e.contains("PEM certificates expected"), "{e}");
        let other = "curl: (7) Failed to connect to 127.0.0.1 port 1: Connection refused";
        assert_eq!(explain_curl(other, &bare), other);
    }
}
