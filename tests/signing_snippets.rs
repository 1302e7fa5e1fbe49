//! The signing snippets of docs/private-channels.md, run. Each fenced block
//! of the "Snippets" section is read from the document itself (so the page
//! and this test cannot drift), a driver line is appended that calls the
//! function with arguments from the environment, and the block is run with
//! its interpreter. What it prints must be the check value of the page,
//! must be what `nph-events sign` prints for the same inputs, and must open
//! a stream when given to the real binary as a CGI; tampered, it must not.
//!
//! A missing interpreter skips its language with a message; with `CI` set,
//! PHP, Perl and Node are required (`.ci/run` installs them) and only
//! Python may be skipped.

mod support;

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{bin, cgi_command, get_vars, Chunks, Proc};

/// The page the snippets live in, as compiled into this test (cargo
/// rebuilds the test when the page changes).
const DOC: &str = include_str!("../docs/private-channels.md");

/// The page's check value.
const SECRET: &str = "0123456789abcdef0123456789abcdef";
const CHECK_EXPIRES: u64 = 1_800_000_300;
const CHECK_QUERY: &str =
    "channel=user-42&expires=1800000300&sig=fRTQiBPTR-BwNevflHScuDO-CegcnubXI4G_F5bPa5s";

/// A grant and a channel it covers.
const GRANT: &str = "news,user-42-*";
const GRANT_CHANNEL: &str = "user-42-orders";

/// Longest any one process (interpreter or CGI) may run.
const LIMIT: Duration = Duration::from_secs(20);

struct Lang {
    /// The fenced block's language tag.
    tag: &'static str,
    /// The interpreter, and the flag that runs a program given as argument.
    program: &'static str,
    flag: &'static str,
    /// Code run before the tests: fails when the interpreter cannot run
    /// the snippet (Perl's modules are a separate Debian package).
    probe: &'static str,
    /// What to install when the probe fails.
    install: &'static str,
    /// Appended to the snippet: calls it with SNIPPET_SECRET,
    /// SNIPPET_CHANNEL, the lifetime that makes the URL expire at
    /// SNIPPET_EXPIRES, and SNIPPET_GRANT when set; prints the query.
    driver: &'static str,
    /// Whether CI must have it.
    required_in_ci: bool,
}

const PHP: Lang = Lang {
    tag: "php",
    program: "php",
    flag: "-r",
    probe: "exit(function_exists('hash_hmac') ? 0 : 1);",
    install: "apt-get install php-cli",
    driver: r#"
$g = getenv('SNIPPET_GRANT');
echo signed_query(getenv('SNIPPET_SECRET'), getenv('SNIPPET_CHANNEL'), (int) getenv('SNIPPET_EXPIRES') - time(), $g === false ? null : $g), "\n";
"#,
    required_in_ci: true,
};

const PERL: Lang = Lang {
    tag: "perl",
    program: "perl",
    flag: "-e",
    probe: "use Digest::SHA; use MIME::Base64; exit 0;",
    install: "apt-get install perl: Digest::SHA and MIME::Base64 are not in perl-base",
    driver: r#"
print signed_query($ENV{SNIPPET_SECRET}, $ENV{SNIPPET_CHANNEL}, $ENV{SNIPPET_EXPIRES} - time(), $ENV{SNIPPET_GRANT}), "\n";
"#,
    required_in_ci: true,
};

const PYTHON: Lang = Lang {
    tag: "python",
    program: "python3",
    flag: "-c",
    probe: "import base64, hashlib, hmac",
    install: "apt-get install python3",
    driver: r#"
import os as _os, time as _time
print(signed_query(_os.environ["SNIPPET_SECRET"], _os.environ["SNIPPET_CHANNEL"], int(_os.environ["SNIPPET_EXPIRES"]) - int(_time.time()), _os.environ.get("SNIPPET_GRANT")))
"#,
    required_in_ci: false,
};

const NODE: Lang = Lang {
    tag: "js",
    program: "node",
    flag: "-e",
    probe: "require('crypto').createHmac('sha256', 'k').update('m').digest('base64url');",
    install: "apt-get install nodejs",
    driver: r#"
const _env = process.env;
console.log(signedQuery(_env.SNIPPET_SECRET, _env.SNIPPET_CHANNEL, Number(_env.SNIPPET_EXPIRES) - Math.floor(Date.now() / 1000), _env.SNIPPET_GRANT));
"#,
    required_in_ci: true,
};

// ---------------------------------------------------------------------
// The document

/// The fenced blocks of the "Snippets" section: (language tag, code).
fn snippet_blocks() -> Vec<(String, String)> {
    let section = DOC
        .split_once("\n### Snippets\n")
        .expect("docs/private-channels.md has a \"### Snippets\" section")
        .1;
    let section = section.split("\n## ").next().unwrap();
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let Some(tag) = line.strip_prefix("```") else {
            continue;
        };
        let mut code = String::new();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("unterminated ```{tag} block in the Snippets section"));
            if line == "```" {
                break;
            }
            code.push_str(line);
            code.push('\n');
        }
        blocks.push((tag.trim().to_owned(), code));
    }
    blocks
}

/// The one snippet written in `tag`.
fn snippet(tag: &str) -> String {
    let found: Vec<String> = snippet_blocks()
        .into_iter()
        .filter(|(t, _)| t == tag)
        .map(|(_, code)| code)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "the Snippets section must have exactly one ```{tag} block"
    );
    found.into_iter().next().unwrap()
}

#[test]
fn the_document_has_one_tested_snippet_per_language() {
    let tags: Vec<String> = snippet_blocks().into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        tags,
        ["php", "perl", "python", "js"],
        "every block in the Snippets section is run by this test, and no other"
    );
    assert!(
        !DOC.contains("<!-- snippets:"),
        "the snippets' placeholder is still in the page"
    );
    for (tag, code) in snippet_blocks() {
        assert!(!code.contains("<?php"), "{tag}: the test runs it with -r");
        assert!(
            code.contains("nph-events-subscribe-v1\\n"),
            "{tag}: signs the page's message: {code}"
        );
    }
}

// ---------------------------------------------------------------------
// Processes

/// Runs `cmd` to its end (at most [`LIMIT`]): (exit code, stdout, stderr);
/// Err when it cannot be started.
fn run(cmd: &mut Command) -> io::Result<(i32, String, String)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = Proc {
        child: cmd.spawn()?,
    };
    let mut out = Chunks::new(p.child.stdout.take().unwrap());
    let mut err = Chunks::new(p.child.stderr.take().unwrap());
    let status = p
        .wait_for(LIMIT)
        .unwrap_or_else(|| panic!("{cmd:?} still running after {LIMIT:?}"));
    out.until_eof(Duration::from_secs(2));
    err.until_eof(Duration::from_secs(2));
    Ok((status.code().unwrap_or(-1), out.text(), err.text()))
}

/// Whether `lang` can run here; a skip (or, in CI, a failure) otherwise.
fn available(lang: &Lang) -> bool {
    let why = match run(Command::new(lang.program).arg(lang.flag).arg(lang.probe)) {
        Ok((0, _, _)) => return true,
        Ok((code, out, err)) => format!("its probe exited {code}: {err}{out}"),
        Err(e) => e.to_string(),
    };
    let ci = std::env::var_os("CI").is_some();
    if ci && lang.required_in_ci {
        panic!(
            "{} cannot run the {} snippet ({why}), and CI must run it ({})",
            lang.program, lang.tag, lang.install
        );
    }
    eprintln!(
        "SKIP: {} not installed ({}; {why})",
        lang.program, lang.install
    );
    false
}

/// The value of `name` in a query.
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// What the snippet prints for a URL expiring at `expires`. The driver
/// hands the snippet the lifetime `expires - now`; when the clock passes a
/// second between the driver's reading and the snippet's, the URL comes
/// out a second late, and it is made again.
fn make(lang: &Lang, code: &str, channel: &str, grant: Option<&str>, expires: u64) -> String {
    let mut made = Vec::new();
    for _ in 0..5 {
        let mut cmd = Command::new(lang.program);
        cmd.arg(lang.flag)
            .arg(code)
            .env("SNIPPET_SECRET", SECRET)
            .env("SNIPPET_CHANNEL", channel)
            .env("SNIPPET_EXPIRES", expires.to_string());
        match grant {
            Some(g) => cmd.env("SNIPPET_GRANT", g),
            None => cmd.env_remove("SNIPPET_GRANT"),
        };
        let (status, out, err) = run(&mut cmd).expect(lang.program);
        assert_eq!(
            status, 0,
            "the {} snippet failed:\nstdout: {out}\nstderr: {err}",
            lang.tag
        );
        assert_eq!(err, "", "the {} snippet wrote to stderr", lang.tag);
        let query = out
            .strip_suffix('\n')
            .filter(|q| !q.contains('\n'))
            .unwrap_or_else(|| panic!("the {} snippet printed {out:?}, not one line", lang.tag))
            .to_owned();
        if param(&query, "expires") == Some(expires.to_string().as_str()) {
            return query;
        }
        made.push(query);
    }
    panic!(
        "the {} snippet did not make a URL expiring at {expires} (lifetime from the \
         driver's clock) in 5 tries: {made:#?}",
        lang.tag
    );
}

/// What `nph-events sign` prints (without the newline).
fn sign_cli(channel: &str, grant: Option<&str>, expires: u64) -> String {
    let mut cmd = cgi_command(bin(), &[("NPH_EVENTS_SUBSCRIBE_SECRET", SECRET)]);
    cmd.args(["sign", "--channel", channel]);
    if let Some(g) = grant {
        cmd.args(["--grant", g]);
    }
    cmd.args(["--expires", &expires.to_string()]);
    let (code, out, err) = run(&mut cmd).expect("nph-events sign");
    assert_eq!(code, 0, "nph-events sign failed: {err}");
    assert_eq!(err, "");
    out.strip_suffix('\n')
        .unwrap_or_else(|| panic!("nph-events sign printed {out:?}"))
        .to_owned()
}

/// A private spool directory (mode 0700), removed when dropped.
struct Spool(PathBuf);

impl Spool {
    fn new(tag: &str) -> Spool {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nph-events-snippets-{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        Spool(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary as a CGI answering a GET for `query`, on a site where every
/// channel needs a signed URL: (exit code, whole answer, stderr).
fn cgi(spool: &Spool, query: &str) -> (i32, String, String) {
    let mut vars = get_vars();
    vars.retain(|(k, _)| *k != "QUERY_STRING");
    let dir = spool.path().to_str().unwrap();
    vars.extend([
        ("QUERY_STRING", query),
        ("NPH_EVENTS_CHANNELS", "*=signed"),
        ("NPH_EVENTS_SUBSCRIBE_SECRET", SECRET),
        ("NPH_EVENTS_SPOOL", dir),
        ("NPH_EVENTS_MAX_DURATION", "0.2"),
    ]);
    run(&mut cgi_command(bin(), &vars)).expect("nph-events")
}

fn assert_opens(spool: &Spool, query: &str, who: &str) {
    let (code, out, err) = cgi(spool, query);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n")
            && head.contains("\r\nContent-Type: text/event-stream; charset=utf-8")
            && body.starts_with(": nph-events/"),
        "{who}: nph-events did not open a stream for ?{query}:\n{out}\nstderr: {err}"
    );
    assert_eq!(code, 0, "{who}: ?{query}: {err}");
}

fn assert_refused(spool: &Spool, query: &str, reason: &str, who: &str) {
    let (_, out, err) = cgi(spool, query);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    assert!(
        head.starts_with("HTTP/1.1 403 Forbidden\r\n") && body.contains(reason),
        "{who}: ?{query} should be refused with 403 ({reason:?}), got:\n{out}\nstderr: {err}"
    );
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------
// Each snippet

fn check(lang: &Lang) {
    if !available(lang) {
        return;
    }
    let code = format!("{}\n{}", snippet(lang.tag), lang.driver);
    let who = format!("{} snippet", lang.tag);

    // The page's check value, and the same inputs through `nph-events sign`.
    let made = make(lang, &code, "user-42", None, CHECK_EXPIRES);
    assert_eq!(made, CHECK_QUERY, "{who}: the page's check value");
    assert_eq!(made, sign_cli("user-42", None, CHECK_EXPIRES), "{who}");
    // A grant: signed over the grant, printed as `nph-events sign` does.
    let made = make(lang, &code, GRANT_CHANNEL, Some(GRANT), CHECK_EXPIRES);
    assert_eq!(
        made,
        sign_cli(GRANT_CHANNEL, Some(GRANT), CHECK_EXPIRES),
        "{who}: with grant {GRANT:?}"
    );

    // A URL for now, given to the binary.
    let spool = Spool::new(lang.tag);
    let expires = now() + 300;
    let made = make(lang, &code, "user-42", None, expires);
    assert_eq!(made, sign_cli("user-42", None, expires), "{who}");
    assert_opens(&spool, &made, &who);
    let sig = param(&made, "sig").expect("sig");
    let first = if sig.starts_with('A') { "B" } else { "A" };
    let tampered = made.replacen(&format!("sig={}", &sig[..1]), &format!("sig={first}"), 1);
    assert_ne!(tampered, made);
    assert_refused(&spool, &tampered, "signature does not match", &who);
    let other = made.replacen("channel=user-42&", "channel=user-43&", 1);
    assert_ne!(other, made);
    assert_refused(&spool, &other, "signature does not match", &who);

    // With a grant: opens its channel, raw or percent-encoded, and no other.
    let made = make(lang, &code, GRANT_CHANNEL, Some(GRANT), expires);
    assert_eq!(made, sign_cli(GRANT_CHANNEL, Some(GRANT), expires), "{who}");
    assert!(made.contains(&format!("&grant={GRANT}&")), "{who}: {made}");
    assert_opens(&spool, &made, &who);
    let encoded = made.replacen("grant=news,user-42-*", "grant=news%2Cuser-42-%2A", 1);
    assert_ne!(encoded, made);
    assert_opens(&spool, &encoded, &who);
    let outside = made.replacen("channel=user-42-orders&", "channel=user-43&", 1);
    assert_ne!(outside, made);
    assert_refused(&spool, &outside, "does not grant channel \"user-43\"", &who);
    let widened = made.replacen("grant=news,user-42-*", "grant=news,user-*", 1);
    assert_ne!(widened, made);
    assert_refused(&spool, &widened, "signature does not match", &who);
}

#[test]
fn php_snippet() {
    check(&PHP);
}

#[test]
fn perl_snippet() {
    check(&PERL);
}

#[test]
fn python_snippet() {
    check(&PYTHON);
}

#[test]
fn node_snippet() {
    check(&NODE);
}

// ---------------------------------------------------------------------
// `nph-events sign`

#[test]
fn sign_prints_the_check_value() {
    assert_eq!(sign_cli("user-42", None, CHECK_EXPIRES), CHECK_QUERY);
}

/// Runs `nph-events sign` with `vars` only: (exit code, stdout, stderr).
fn sign_with(vars: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = cgi_command(bin(), vars);
    cmd.arg("sign").args(args);
    run(&mut cmd).expect("nph-events sign")
}

fn assert_sign_fails(vars: &[(&str, &str)], args: &[&str], says: &str) {
    let (code, out, err) = sign_with(vars, args);
    assert_eq!(code, 2, "sign {args:?}: {out}{err}");
    assert_eq!(out, "", "sign {args:?} printed a URL");
    assert!(
        err.starts_with("nph-events sign: ") && err.contains(says),
        "sign {args:?}: stderr should say {says:?}: {err:?}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.ends_with('\n'), "{err:?}");
}

#[test]
fn sign_errors() {
    let secret = [("NPH_EVENTS_SUBSCRIBE_SECRET", SECRET)];
    assert_sign_fails(
        &[],
        &["--channel", "user-42"],
        "no secret: set NPH_EVENTS_SUBSCRIBE_SECRET",
    );
    assert_sign_fails(
        &[("NPH_EVENTS_SUBSCRIBE_SECRET", "short")],
        &["--channel", "user-42"],
        "16 bytes or more",
    );
    assert_sign_fails(&secret, &["--channel", "user 42"], "--channel \"user 42\"");
    assert_sign_fails(&secret, &["--channel", "../etc"], "--channel \"../etc\"");
    assert_sign_fails(
        &secret,
        &["--channel", "user-43", "--grant", GRANT],
        "does not cover --channel user-43",
    );
    // and the grant does cover this one
    let (code, out, err) = sign_with(&secret, &["--channel", GRANT_CHANNEL, "--grant", GRANT]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("channel=user-42-orders&grant=news,user-42-*&expires="),
        "{out}"
    );
}

/// The three lines of PHP in the README's "Private channels" section make
/// a URL nph-events opens (and only for its channel).
#[test]
fn readme_php_lines_make_a_url_that_opens() {
    if !available(&PHP) {
        return;
    }
    let readme = include_str!("../README.md");
    let section = readme
        .split("\n## Private channels\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Private channels section");
    let lines = section
        .split("```php\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a php block in it");
    let lines: String = lines.lines().map(|l| format!("{}\n", l.trim())).collect();
    let code = format!(
        "$secret = getenv('SNIPPET_SECRET'); $channel = getenv('SNIPPET_CHANNEL');\n{lines}\
         echo explode('?', $url, 2)[1], \"\\n\";"
    );
    let (status, out, err) = run(Command::new("php")
        .arg("-r")
        .arg(&code)
        .env("SNIPPET_SECRET", SECRET)
        .env("SNIPPET_CHANNEL", "user-42"))
    .expect("php");
    assert_eq!((status, err.as_str()), (0, ""), "{code}\n{out}");
    let query = out.trim_end();
    assert!(query.starts_with("channel=user-42&expires="), "{query}");
    let spool = Spool::new("readme");
    assert_opens(&spool, query, "README php");
    let other = query.replacen("channel=user-42&", "channel=user-43&", 1);
    assert_refused(&spool, &other, "signature does not match", "README php");
}
