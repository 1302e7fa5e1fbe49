//! A private nginx on 127.0.0.1 using the shipped config unchanged.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::servers::repo;
use super::Proc;

/// A private nginx on 127.0.0.1 in front of `backend`; stopped by PID.
pub struct Nginx {
    pub proc: Proc,
    pub port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// nginx with the shipped config in front of `backend`.
    pub fn start(backend: u16) -> Option<Nginx> {
        let http = repo().join("nginx-conf/nph-events-http.conf");
        let locations = repo().join("nginx-conf/nph-events-locations.conf");
        Nginx::start_with("shipped", |port| {
            format!(
                "# A host that compresses everything it can.\n\
                 gzip on;\n  gzip_types text/event-stream text/plain application/json;\n\
                 include {};\n\
                 upstream nph_events {{ server 127.0.0.1:{backend}; }}\n\
                 server {{\n    listen 127.0.0.1:{port};\n    include {};\n  }}\n",
                http.display(),
                locations.display()
            )
        })
    }

    /// nginx whose `http` block holds what `http(port)` returns (the
    /// server blocks, listening on `port`), besides private temp paths.
    /// `None` (a skip) when nginx is not installed and this is not CI.
    pub fn start_with(tag: &str, http: impl Fn(u16) -> String) -> Option<Nginx> {
        let program = Path::new("/usr/sbin/nginx");
        if !program.exists() {
            assert!(std::env::var_os("CI").is_none(), "nginx missing in CI");
            eprintln!("SKIP: nginx not installed (bash .ci/run installs it)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("nph-nginx-{tag}-{}", std::process::id()));
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
               {}\n}}\n",
            http(port)
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
