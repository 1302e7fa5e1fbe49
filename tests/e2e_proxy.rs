//! `nph-events serve` behind real reverse proxies, each using the shipped
//! config unchanged: nginx (`nginx-conf/`) and Apache mod_proxy
//! (`apache-conf/nph-events-proxy.conf`). Events must arrive live.

mod support;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::listener::Listener;
use support::servers::{available, repo, Kind, Server};
use support::{parse_sse, Chunks, Proc};

const TOKEN: &str = "proxy-token";

fn listener(tag: &str) -> Listener {
    let hash = nph_events::auth::token_hash_hex(TOKEN);
    Listener::start(
        tag,
        &[
            "--interval",
            "0.3",
            "--heartbeat",
            "1",
            "--token-sha256",
            &hash,
        ],
    )
}

/// A private nginx on 127.0.0.1 in front of `backend`; stopped by PID.
struct Nginx {
    proc: Proc,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    fn start(backend: u16) -> Option<Nginx> {
        let program = Path::new("/usr/sbin/nginx");
        if !program.exists() {
            assert!(std::env::var_os("CI").is_none(), "nginx missing in CI");
            eprintln!("SKIP: nginx not installed (bash .ci/run installs it)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("nph-nginx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n\
               client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
               fastcgi_temp_path {d}/tmp/fcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
               # A host that compresses everything it can.\n\
               gzip on;\n  gzip_types text/event-stream text/plain application/json;\n\
               upstream nph_events {{ server 127.0.0.1:{backend}; }}\n\
               server {{\n    listen 127.0.0.1:{port};\n    include {};\n  }}\n}}\n",
            repo().join("nginx-conf/nph-events-locations.conf").display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut cmd = Command::new(program);
        cmd.arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(&dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let proc = Proc::spawn(&mut cmd);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Nginx { proc, port, dir })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.proc.signal(libc::SIGTERM);
        let _ = self.proc.wait_for(Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn request(port: u16, raw: &str) -> (TcpStream, Chunks) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let r = Chunks::new(s.try_clone().unwrap());
    (s, r)
}

fn dechunked_body(text: &str) -> String {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_owned();
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
    out
}

/// Through the proxy on `port`: ticks arrive one by one, a POST reaches the
/// streams, and the demo page is served under the prefix.
fn live_through(port: u16, what: &str) {
    let get =
        "GET /nph-events/events?channel=px HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n";
    let t0 = Instant::now();
    let mut streams = [request(port, get), request(port, get)];
    for (_, r) in streams.iter_mut() {
        assert!(
            r.until_count("event: tick", 4, Duration::from_secs(5)),
            "{what}: {}",
            r.text()
        );
        let ticks = r.arrivals("event: tick");
        assert!(
            ticks[0] - t0 < Duration::from_secs(1),
            "{what}: first event late"
        );
        for pair in ticks.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(150),
                "{what}: ticks batched ({gap:?})"
            );
        }
        assert!(
            !r.text().to_ascii_lowercase().contains("content-encoding"),
            "{what}: compressed"
        );
    }
    let body = "published through the proxy";
    let post = format!(
        "POST /nph-events/events?channel=px HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (_p, mut answer) = request(port, &post);
    answer.until_eof(Duration::from_secs(5));
    assert!(
        answer.text().starts_with("HTTP/1.1 201"),
        "{what}: {}",
        answer.text()
    );
    for (_, r) in streams.iter_mut() {
        assert!(
            r.until(body, Duration::from_secs(2)),
            "{what}: publish not delivered"
        );
        let (events, _) = parse_sse(&dechunked_body(&r.text()));
        assert!(events
            .iter()
            .any(|e| e.data == body && !e.last_event_id.is_empty()));
    }
    let (_c, mut page) = request(
        port,
        "GET /nph-events/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    page.until_eof(Duration::from_secs(5));
    assert!(
        page.text().starts_with("HTTP/1.1 200"),
        "{what}: {}",
        page.text()
    );
    assert!(
        page.text().contains("content=\"events\""),
        "{what}: demo page"
    );
}

#[test]
fn nginx_in_front_of_the_listener() {
    let backend = listener("nginx");
    let Some(nginx) = Nginx::start(backend.port) else {
        return;
    };
    live_through(nginx.port, "nginx");
}

#[test]
fn apache_mod_proxy_in_front_of_the_listener() {
    if !available(Kind::ApacheCgidEvent) {
        return;
    }
    let backend = listener("modproxy");
    let m = "/usr/lib/apache2/modules";
    let extra = format!(
        "LoadModule proxy_module {m}/mod_proxy.so\n\
         LoadModule proxy_http_module {m}/mod_proxy_http.so\n\
         Define NPH_EVENTS_BACKEND 127.0.0.1:{}\n\
         Include \"{}\"\n",
        backend.port,
        repo().join("apache-conf/nph-events-proxy.conf").display()
    );
    let server = Server::start_with(Kind::ApacheCgidEvent, &[], &[], &[], &extra);
    live_through(server.port, "apache mod_proxy");
}
