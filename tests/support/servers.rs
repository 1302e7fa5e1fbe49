//! Private Apache and lighttpd instances on 127.0.0.1 for end-to-end tests.
//!
//! Each instance lives in its own temp directory, loads the project's
//! shipped config snippet unchanged, installs the binary with the shipped
//! `cgi-bin/install`, and is stopped by PID when dropped.

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{bin, pids_of_exe, Chunks, Proc};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Which server, and how it runs CGIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Apache, event MPM, mod_cgid: Debian's default.
    ApacheCgidEvent,
    /// Apache, prefork MPM, mod_cgi: the classic shared host.
    ApacheCgiPrefork,
    /// lighttpd 1.4 with mod_cgi.
    Lighttpd,
}

impl Kind {
    fn program(self) -> &'static str {
        match self {
            Kind::Lighttpd => "/usr/sbin/lighttpd",
            _ => "/usr/sbin/apache2",
        }
    }
}

/// True when the server can be tested here. Outside CI a missing server
/// skips the test with a message; in CI it is a failure.
pub fn available(kind: Kind) -> bool {
    if Path::new(kind.program()).exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is not installed, and CI must run every end-to-end test",
            kind.program()
        );
    }
    eprintln!(
        "SKIP: {} not installed (bash .ci/run installs it)",
        kind.program()
    );
    false
}

/// At most this many servers run at once: the machine has 2 cores, and a
/// dozen servers starting together made timings unrepresentative.
const MAX_SERVERS: usize = 3;

static RUNNING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// A place among the [`MAX_SERVERS`]; released when dropped.
struct Permit;

impl Permit {
    fn acquire() -> Permit {
        let (lock, cv) = &RUNNING;
        let mut n = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= MAX_SERVERS {
            n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        Permit
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let (lock, cv) = &RUNNING;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        cv.notify_one();
    }
}

/// A running server with nph-events installed.
pub struct Server {
    _permit: Permit,
    proc: Option<Proc>,
    pub kind: Kind,
    pub port: u16,
    pub dir: PathBuf,
    /// The installed programs (one per name), for observing their processes.
    pub installed: Vec<PathBuf>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("nph-events-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (sub, mode) in [
        ("", 0o755),
        ("cgi-bin", 0o755),
        ("htdocs", 0o755),
        ("run", 0o755),
        ("spool", 0o700),
    ] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        // The web server runs CGIs as its own user: everything readable,
        // the spool private to that user (nph-events refuses any other).
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    if is_root() {
        let (uid, gid) = www_data();
        std::os::unix::fs::chown(dir.join("spool"), Some(uid), Some(gid)).unwrap();
    }
    // lighttpd opens its log after dropping to the web-server user.
    let log = dir.join("error.log");
    std::fs::write(&log, "").unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    dir
}

/// The uid and gid of `www-data`, the user the servers run CGIs as when
/// started by root (looked up once: `getpwnam` is not thread-safe).
fn www_data() -> (libc::uid_t, libc::gid_t) {
    static IDS: std::sync::OnceLock<(libc::uid_t, libc::gid_t)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        // SAFETY: a valid C string; the entry is read at once, and no
        // other code of the tests calls getpw*.
        unsafe {
            let pw = libc::getpwnam(c"www-data".as_ptr());
            assert!(!pw.is_null(), "no www-data user");
            ((*pw).pw_uid, (*pw).pw_gid)
        }
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The binary servers install as their CGI: the test build unless
/// [`install_static_binary`] was called.
static CGI_BINARY: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Makes every server started from now on install the static binary
/// `cgi-bin/install` builds (what a host gets), not the test build: for
/// the benchmarks, which measure memory per CGI process.
pub fn install_static_binary() {
    let _ = CGI_BINARY.set(super::static_bin());
}

/// Installs the binary as `name` with the shipped install script.
fn install(dir: &Path, name: &str) -> PathBuf {
    let binary = CGI_BINARY.get().copied().unwrap_or_else(bin);
    let status = Command::new(repo().join("cgi-bin/install"))
        .args(["--binary", binary, "--name", name])
        .arg(dir.join("cgi-bin"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "cgi-bin/install failed");
    dir.join("cgi-bin").join(name)
}

impl Server {
    /// Starts `kind` with `settings` as NPH_EVENTS_* variables for every
    /// script, and the binary installed under each of `names`.
    pub fn start(kind: Kind, names: &[&str], settings: &[(&str, &str)]) -> Server {
        Server::start_with(kind, names, settings, &[], "")
    }

    /// [`Server::start`] plus extra CGI scripts `(name, source file)` and
    /// extra server configuration appended to the generated file.
    pub fn start_with(
        kind: Kind,
        names: &[&str],
        settings: &[(&str, &str)],
        scripts: &[(&str, &Path)],
        extra_conf: &str,
    ) -> Server {
        let permit = Permit::acquire();
        let dir = temp_dir(match kind {
            Kind::ApacheCgidEvent => "cgid",
            Kind::ApacheCgiPrefork => "prefork",
            Kind::Lighttpd => "lighttpd",
        });
        let mut installed: Vec<PathBuf> = names.iter().map(|n| install(&dir, n)).collect();
        for (name, source) in scripts {
            let target = dir.join("cgi-bin").join(name);
            std::fs::copy(source, &target).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
            installed.push(target);
        }
        let port = free_port();
        // A private spool, unless the test names one (a default location),
        // or names none with an empty value (the config file's, say).
        let spool = dir.join("spool").to_str().unwrap().to_owned();
        let mut all: Vec<(&str, &str)> = Vec::new();
        if !settings.iter().any(|(k, _)| *k == "NPH_EVENTS_SPOOL") {
            all.push(("NPH_EVENTS_SPOOL", &spool));
        }
        all.extend(
            settings
                .iter()
                .filter(|(k, v)| !(*k == "NPH_EVENTS_SPOOL" && v.is_empty())),
        );
        let mut conf = match kind {
            Kind::Lighttpd => lighttpd_conf(&dir, port, &all),
            _ => apache_conf(kind, &dir, port, &all),
        };
        conf.push_str(extra_conf);
        let conf_path = dir.join("server.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new(kind.program());
        match kind {
            Kind::Lighttpd => cmd.args(["-D", "-f"]).arg(&conf_path),
            _ => cmd.arg("-f").arg(&conf_path).args(["-DFOREGROUND"]),
        };
        // Own process group: prefork Apache signals its whole group on
        // shutdown, which would otherwise include the test runner.
        cmd.process_group(0);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr.log")).unwrap(),
            ));
        let proc = Proc::spawn(&mut cmd);
        let mut server = Server {
            _permit: permit,
            proc: Some(proc),
            kind,
            port,
            dir,
            installed,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.proc.as_mut().unwrap().child.try_wait().unwrap() {
                panic!(
                    "{:?} exited at start ({status}):\n{}",
                    self.kind,
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{:?} did not listen within 10 s:\n{}",
            self.kind,
            self.logs()
        );
    }

    /// The server's error logs, for failure messages.
    pub fn logs(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Sends a raw request and returns the connection and its reader.
    pub fn request(&self, method: &str, path: &str, headers: &[&str]) -> (TcpStream, Chunks) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n",
            self.port
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

    /// Sends a request with a body and reads the whole answer (the
    /// connection is closed by asking for `Connection: close`).
    pub fn send(&self, method: &str, path: &str, headers: &[&str], body: &[u8]) -> String {
        super::http_send(self.port, method, path, headers, body)
    }

    /// Apache (event MPM) with the shipped `apache-conf/nph-events-proxy.conf`
    /// in front of a listener on `backend`.
    pub fn apache_proxy(backend: u16) -> Server {
        Self::apache_with_conf(backend, "nph-events-proxy.conf", &[])
    }

    /// Apache with `apache-conf/nph-events-wstunnel.conf` (mod_proxy_wstunnel
    /// and mod_rewrite) in front of a listener on `backend`.
    pub fn apache_wstunnel(backend: u16) -> Server {
        let modules = ["proxy_wstunnel", "rewrite"];
        Self::apache_with_conf(backend, "nph-events-wstunnel.conf", &modules)
    }

    fn apache_with_conf(backend: u16, conf: &str, modules: &[&str]) -> Server {
        let m = APACHE_MODULES;
        let mut extra = format!(
            "LoadModule proxy_module {m}/mod_proxy.so\n\
             LoadModule proxy_http_module {m}/mod_proxy_http.so\n"
        );
        for module in modules {
            extra.push_str(&format!("LoadModule {module}_module {m}/mod_{module}.so\n"));
        }
        extra.push_str(&format!(
            "Define NPH_EVENTS_BACKEND 127.0.0.1:{backend}\nInclude \"{}\"\n",
            repo().join("apache-conf").join(conf).display()
        ));
        Server::start_with(Kind::ApacheCgidEvent, &[], &[], &[], &extra)
    }

    /// The server's main process (Apache's parent, lighttpd).
    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map_or(0, |p| p.child.id())
    }

    /// Sends `signal` to the server's main process (a reload, a stop).
    pub fn signal(&self, signal: i32) {
        if let Some(p) = self.proc.as_ref() {
            p.signal(signal);
        }
    }

    /// Waits up to `limit` for the main process to exit; how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        let p = self.proc.as_mut()?;
        p.wait_for(limit)?;
        self.proc = None;
        Some(t0.elapsed())
    }

    /// The spool directory the server's CGIs use.
    pub fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// PIDs of running copies of the installed program `installed[i]`.
    pub fn cgi_pids(&self, i: usize) -> Vec<u32> {
        pids_of_exe(&self.installed[i])
    }

    /// Stops the server (by PID) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal(libc::SIGTERM);
            if p.wait_for(Duration::from_secs(10)).is_none() {
                p.signal(libc::SIGKILL);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Closes a client connection both ways, as a browser tab closing does.
pub fn disconnect(s: &TcpStream) {
    let _ = s.shutdown(Shutdown::Both);
}

const APACHE_MODULES: &str = "/usr/lib/apache2/modules";

fn apache_conf(kind: Kind, dir: &Path, port: u16, settings: &[(&str, &str)]) -> String {
    let d = dir.display();
    let (mpm, cgi) = match kind {
        Kind::ApacheCgidEvent => ("mpm_event", "cgid"),
        _ => ("mpm_prefork", "cgi"),
    };
    let mut c = format!(
        "ServerRoot \"{d}\"\n\
         DefaultRuntimeDir \"{d}/run\"\n\
         PidFile \"{d}/run/httpd.pid\"\n\
         Listen 127.0.0.1:{port}\n\
         ServerName 127.0.0.1\n\
         ErrorLog \"{d}/error.log\"\n\
         LogLevel warn\n\
         Timeout 30\n\
         DocumentRoot \"{d}/htdocs\"\n\
         LoadModule {mpm}_module {APACHE_MODULES}/mod_{mpm}.so\n\
         LoadModule {cgi}_module {APACHE_MODULES}/mod_{cgi}.so\n"
    );
    for m in ["authz_core", "alias", "env", "filter", "deflate"] {
        c.push_str(&format!(
            "LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so\n"
        ));
    }
    if kind == Kind::ApacheCgidEvent {
        c.push_str(&format!("ScriptSock \"{d}/run/cgid.sock\"\n"));
    }
    if is_root() {
        c.push_str("User www-data\nGroup www-data\n");
    }
    // A host that compresses everything, to prove the snippet keeps the
    // stream out of mod_deflate.
    c.push_str("AddOutputFilterByType DEFLATE text/event-stream text/plain text/html\n");
    c.push_str(&format!("Define NPH_EVENTS_CGI_DIR \"{d}/cgi-bin\"\n"));
    c.push_str(&format!(
        "Include \"{}\"\n",
        repo().join("apache-conf/nph-events.conf").display()
    ));
    c.push_str(&format!("<Directory \"{d}/cgi-bin\">\n"));
    for (k, v) in settings {
        c.push_str(&format!("    SetEnv {k} \"{v}\"\n"));
    }
    c.push_str("</Directory>\n");
    c
}

fn lighttpd_conf(dir: &Path, port: u16, settings: &[(&str, &str)]) -> String {
    let d = dir.display();
    let mut c = format!(
        "server.document-root = \"{d}/htdocs\"\n\
         server.bind = \"127.0.0.1\"\n\
         server.port = {port}\n\
         server.errorlog = \"{d}/error.log\"\n\
         server.tag = \"lighttpd-test\"\n\
         server.modules = ( )\n"
    );
    if is_root() {
        c.push_str("server.username = \"www-data\"\nserver.groupname = \"www-data\"\n");
    }
    c.push_str(&format!("var.nph_events_cgi_dir = \"{d}/cgi-bin\"\n"));
    c.push_str(&format!(
        "include \"{}\"\n",
        repo().join("lighttpd-conf/nph-events.conf").display()
    ));
    let env: Vec<String> = settings
        .iter()
        .map(|(k, v)| format!("\"{k}\" => \"{v}\""))
        .collect();
    if !env.is_empty() {
        c.push_str(&format!(
            "setenv.add-environment += ( {} )\n",
            env.join(", ")
        ));
    }
    c
}

/// Makes an htpasswd file with the users alice and bob, password `pw`
/// each, in a directory of its own that the web server's user can read.
pub fn htpasswd(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nph-htpasswd-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users");
    for (i, user) in ["alice", "bob"].iter().enumerate() {
        let mut cmd = Command::new("htpasswd");
        if i == 0 {
            cmd.arg("-c");
        }
        let made = cmd
            .args(["-b", "-B"])
            .arg(&file)
            .args([user, "pw"])
            .output();
        assert!(
            made.is_ok_and(|o| o.status.success()),
            "htpasswd (apache2-utils) is needed"
        );
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    file
}
