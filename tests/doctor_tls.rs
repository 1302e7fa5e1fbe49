//! `nph-events doctor` over https:// against a real Apache with mod_ssl
//! and mod_http2: a throwaway CA and server certificate for 127.0.0.1,
//! trusted with `--cacert`.
//!
//! One Apache, two TLS virtual hosts on their own ports:
//! `Protocols h2 http/1.1` (what a host offering HTTP/2 has) and
//! `Protocols http/1.1` (the fix the doctor names for an NPH program
//! behind HTTP/2). Streams tick every 0.5 s and end after at most 3 s, so
//! output held until the program exits comes out within the watch.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::bin;
use support::doctor::{assert_buffered_by_http2, line, run as doctor, verdict};
use support::servers::{available, Kind, Server};

const TOKEN: &str = "doctor-tls-token";
const MODULES: &str = "/usr/lib/apache2/modules";

/// Whether `program` runs here; a skip outside CI, a failure in CI.
fn tool(program: &str, version_arg: &str) -> bool {
    if Command::new(program)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{program} is not installed, and CI must run every end-to-end test"
    );
    eprintln!("SKIP: {program} not installed");
    false
}

/// Apache with mod_ssl and mod_http2, curl and the openssl CLI.
fn tls_available() -> bool {
    if !available(Kind::ApacheCgidEvent) {
        return false;
    }
    for module in ["mod_ssl.so", "mod_http2.so"] {
        if !Path::new(MODULES).join(module).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{MODULES}/{module} missing in CI"
            );
            eprintln!("SKIP: {MODULES}/{module} missing");
            return false;
        }
    }
    tool("curl", "--version") && tool("openssl", "version")
}

/// A temp directory with a throwaway CA, a server certificate it signed
/// for IP 127.0.0.1, and a second CA that signed nothing; removed when
/// dropped.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make() -> Certs {
        let dir = std::env::temp_dir().join(format!("nph-doctor-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let certs = Certs { dir };
        let p = |name: &str| certs.dir.join(name).to_str().unwrap().to_owned();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for (ca, cn) in [("ca", "nph-events test CA"), ("other-ca", "another CA")] {
            openssl(
                &[
                    &["req", "-x509", "-nodes", "-days", "2"][..],
                    &ec,
                    &["-keyout", &p(&format!("{ca}.key"))],
                    &["-out", &p(&format!("{ca}.pem"))],
                    &["-subj", &format!("/CN={cn}")],
                    &["-addext", "basicConstraints=critical,CA:TRUE"],
                    &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                ]
                .concat(),
            );
        }
        openssl(
            &[
                &["req", "-nodes"][..],
                &ec,
                &["-keyout", &p("server.key"), "-out", &p("server.csr")],
                &["-subj", "/CN=127.0.0.1"],
            ]
            .concat(),
        );
        std::fs::write(
            certs.dir.join("server.ext"),
            "subjectAltName = IP:127.0.0.1\n\
             basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &p("server.ext"),
            "-out",
            &p("server.pem"),
        ]);
        certs
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Configuration for mod_ssl and mod_http2 and a TLS virtual host on each
/// `(port, Protocols)`; the CGI settings and ScriptAlias of the main
/// server apply to them.
fn tls_conf(certs: &Certs, hosts: &[(u16, &str)]) -> String {
    let mut c = format!(
        "LoadModule socache_shmcb_module {MODULES}/mod_socache_shmcb.so\n\
         LoadModule ssl_module {MODULES}/mod_ssl.so\n\
         LoadModule http2_module {MODULES}/mod_http2.so\n\
         SSLSessionCache \"shmcb:{}(65536)\"\n",
        certs.path("ssl_scache")
    );
    for (port, protocols) in hosts {
        c.push_str(&format!(
            "Listen 127.0.0.1:{port}\n\
             <VirtualHost 127.0.0.1:{port}>\n\
             \x20   ServerName 127.0.0.1\n\
             \x20   SSLEngine on\n\
             \x20   SSLCertificateFile \"{}\"\n\
             \x20   SSLCertificateKeyFile \"{}\"\n\
             \x20   Protocols {protocols}\n\
             </VirtualHost>\n",
            certs.path("server.pem"),
            certs.path("server.key"),
        ));
    }
    c
}

#[test]
fn https_with_a_private_ca_h2_buffers_the_nph_name_http11_streams_it() {
    if !tls_available() {
        return;
    }
    let certs = Certs::make();
    let (h2, h1) = (free_port(), free_port());
    let conf = tls_conf(&certs, &[(h2, "h2 http/1.1"), (h1, "http/1.1")]);
    let hash = nph_events::auth::token_hash_hex(TOKEN);
    let settings = [
        ("NPH_EVENTS_INTERVAL", "0.5"),
        ("NPH_EVENTS_HEARTBEAT", "1"),
        ("NPH_EVENTS_TOKEN_SHA256", hash.as_str()),
        // A bounded lifetime: output held until the program exits comes
        // out within the watch, and no stream outlives the test.
        ("NPH_EVENTS_MAX_DURATION", "3"),
    ];
    let server = Server::start_with(
        Kind::ApacheCgidEvent,
        &["nph-events.cgi", "events.cgi"],
        &settings,
        &[],
        &conf,
    );
    let ca = certs.path("ca.pem");
    let on = |port: u16, name: &str| format!("https://127.0.0.1:{port}/cgi-bin/{name}");

    // HTTP/2 negotiated by ALPN, NPH name: held until the program exits.
    let nph_h2 = on(h2, "nph-events.cgi");
    let (status, report, _) = doctor(&[&nph_h2, "--cacert", &ca, "--http2", "--seconds", "5"]);
    assert_buffered_by_http2(status, &report, &server.logs());
    assert!(report.contains("trusting --cacert"), "{report}");

    // The same without --http2: curl negotiates HTTP/2 as a browser does,
    // and the visitors' path is held back the same way.
    let (status, report, _) = doctor(&[&nph_h2, "--cacert", &ca, "--seconds", "5"]);
    assert_eq!(status, 1, "{report}");
    assert!(
        line(&report, "live").contains("buffered to the end"),
        "{report}"
    );
    assert!(line(&report, "http").contains("HTTP/2"), "{report}");

    // HTTP/2, parsed-header name: live, with probes published over TLS.
    let parsed_h2 = on(h2, "events.cgi");
    let (status, report, _) = doctor(&[
        &parsed_h2,
        "--cacert",
        &ca,
        "--http2",
        "--token",
        TOKEN,
        "--seconds",
        "2.5",
    ]);
    assert_eq!(status, 0, "{report}\n{}", server.logs());
    assert_eq!(verdict(&report, "live"), "ok", "{report}");
    assert_eq!(verdict(&report, "publish"), "ok", "{report}");
    assert!(line(&report, "live").contains("probes"), "{report}");
    assert!(line(&report, "http").contains("HTTP/2"), "{report}");
    assert!(!report.contains("fix:"), "{report}");

    // TLS with HTTP/1.1 only (the named fix), NPH name: live.
    let nph_h1 = on(h1, "nph-events.cgi");
    let (status, report, _) = doctor(&[
        &nph_h1,
        "--cacert",
        &ca,
        "--token",
        TOKEN,
        "--seconds",
        "2.5",
    ]);
    assert_eq!(status, 0, "{report}\n{}", server.logs());
    for check in ["head", "first-byte", "live", "publish", "http", "resume"] {
        assert_eq!(verdict(&report, check), "ok", "{check}: {report}");
    }
    assert!(line(&report, "http").contains("HTTP/1.1"), "{report}");
    assert!(
        report.contains("server: no Server header, and an nph- name"),
        "{report}"
    );

    // No --cacert: the self-signed CA is not trusted. One line naming the
    // certificate problem and the flag, exit 1, no report.
    let (status, report, err) = doctor(&[&nph_h2, "--seconds", "2"]);
    assert_eq!(status, 1, "{report}{err}");
    assert_eq!(report, "", "no report without a connection");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("nph-events doctor: cannot reach https://127.0.0.1:")
            && err.contains("curl: (60) SSL certificate problem")
            && err.contains("--cacert FILE"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("buffered") && !err.contains("  "),
        "{err}"
    );

    // A CA that did not sign the server's certificate: the same error,
    // naming the file given.
    let other = certs.path("other-ca.pem");
    let (status, report, err) = doctor(&[&parsed_h2, "--cacert", &other, "--seconds", "2"]);
    assert_eq!(status, 1, "{report}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("curl: (60)") && err.contains(&format!("not trusted with --cacert {other}")),
        "{err}"
    );
}

#[test]
fn cacert_usage_errors_exit_2_with_one_line() {
    let dir = std::env::temp_dir().join(format!("nph-doctor-cacert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("ca.pem");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.join("missing.pem");
    let (pem, missing) = (pem.to_str().unwrap(), missing.to_str().unwrap());
    for (args, says) in [
        (
            &["https://127.0.0.1:1/e.cgi", "--cacert", missing][..],
            "No such file",
        ),
        (
            &["http://127.0.0.1:1/e.cgi", "--cacert", pem],
            "--cacert is for https://",
        ),
        (&["https://127.0.0.1:1/e.cgi", "--cacert"], "--cacert needs"),
        (&["https://127.0.0.1:1/e.cgi", "--insecure"], "unknown flag"),
    ] {
        let out = Command::new(bin())
            .arg("doctor")
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("nph-events doctor: ") && err.contains(says),
            "{args:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
