//! Property tests over arbitrary bytes for every parser (issue 10), in
//! plain `cargo test`: the same checks as the coverage-guided targets in
//! `fuzz/` (`fuzz/src/lib.rs`, included here), driven by a seeded
//! generator instead of libFuzzer. Each target runs its valid seeds, then
//! thousands of inputs: pure noise, strings of tokens that matter to the
//! parser, and the seeds mutated (bytes flipped, inserted, deleted,
//! duplicated, spliced). Every test prints how many executions it ran.
//!
//! `NPH_FUZZ_SEED=<n>` changes the inputs (decimal or 0x-hex; the default
//! is fixed, so CI runs are reproducible); `NPH_FUZZ_ITERS=<n>` runs n
//! inputs per in-memory target (the listener and the CGI door, which do
//! I/O, run a tenth of that). A failure prints the input that broke it.
//! The `finding_*` tests reproduce what fuzzing found (all fixed; see
//! `fuzz/README.md`), so none comes back.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use checks::{BODY, SEP};

/// xorshift64*: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn token(&mut self) -> &'static [u8] {
        TOKENS[self.below(TOKENS.len())]
    }
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn seed() -> u64 {
    env_number("NPH_FUZZ_SEED").unwrap_or(0x5eed_0f15_50e1_0a01)
}

/// Executions per target: `default`, or `NPH_FUZZ_ITERS` (divided by
/// `share` for the targets that do I/O).
fn iterations(default: usize, share: usize) -> usize {
    env_number("NPH_FUZZ_ITERS").map_or(default, |n| (n as usize / share).max(1))
}

/// Bytes that mean something to one parser or another.
const INTERESTING: &[u8] =
    b"\0\t\n\r %&+,-.0123456789:;=?ABCDEFabcdef/\\\"{}[]\x7f\x80\xbf\xc0\xc3\xe2\xef\xf4\xff\xfe";

/// Tokens that mean something to one parser or another.
const TOKENS: &[&[u8]] = &[
    b"%",
    b"%2",
    b"%zz",
    b"%C3%A9",
    b"%ff",
    b"%26",
    b"%3D",
    b"%0A",
    b"+",
    b"&",
    b"=",
    b"&&",
    b"\r\n",
    b"\n\n",
    b"\r\n\r\n",
    b"\0",
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"OPTIONS",
    b" HTTP/1.1\r\n",
    b" HTTP/1.0\r\n",
    b"HTTP/2.0",
    b"/",
    b"/events",
    b"/index.html",
    b"?",
    b"channel=",
    b"channel=news",
    b"lastEventId=",
    b"sig=",
    b"expires=",
    b"grant=",
    b"channel=user-alice",
    b"channel=room&expires=1800000060&sig=EIB8otpfcsFrPolx-kZ4fBbQG2D6gAwkIPheYE3gwa4",
    b"Access-Control-Request-Method: POST",
    b"Access-Control-Request-Headers: authorization, x-custom",
    b"Origin: https://app.example",
    b"Last-Event-ID: ",
    b"Content-Length: ",
    b"Content-Type: ",
    b"Transfer-Encoding: chunked",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Connection: Upgrade",
    b"Upgrade: websocket",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    b"Sec-WebSocket-Version: 13",
    b"Origin: http://example.org",
    b"Host: example.org",
    b"Authorization: Bearer test",
    b"Bearer ",
    b"Accept: text/html",
    b"text/event-stream",
    b"application/json",
    b"application/x-www-form-urlencoded",
    b"text/plain",
    b"; charset=utf-8",
    b"0",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999",
    b"-1",
    b"1e3",
    b"0x10",
    b"id: ",
    b"data: ",
    b"event: ",
    b"retry: ",
    b": ",
    b"reset",
    b".sse",
    b"00000000000000000042",
    b"{\"event\":\"e\",\"data\":\"d\"}",
    b"{",
    b"}",
    b"null",
    b"\"data\":",
    b"[1,2]",
    b"REQUEST_METHOD=",
    b"QUERY_STRING=",
    b"HTTP_AUTHORIZATION=",
    b"CONTENT_LENGTH=",
    b"CONTENT_TYPE=",
    b"SERVER_PROTOCOL=",
    b"HTTP_UPGRADE=",
    b"REMOTE_USER=alice",
    b"SERVER_SOFTWARE=Apache",
    b"\xe2\x82\xac",
    b"\xf0\x9f\x98",
    b"\xed\xa0\x80",
    b"\x81\x85",
    b"\x88\x80",
    b"\x89\x80",
    b"\x80\xfe\xff\xff",
    b"\x01\x7e\x01\x00",
    b"\x02\x7f\x00\x00\x00\x00\x00\x01\x00\x00",
    b"\xef\xbb\xbf",
];

/// One input: noise, tokens, or a mutated seed.
fn input(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    match rng.below(10) {
        0 => {
            let max = if rng.below(4) == 0 { 600 } else { 48 };
            let n = rng.below(max);
            (0..n).map(|_| rng.next() as u8).collect()
        }
        1 => {
            let n = rng.below(64);
            (0..n).map(|_| *rng.pick(INTERESTING)).collect()
        }
        2 => {
            let mut v = Vec::new();
            for _ in 0..1 + rng.below(12) {
                v.extend_from_slice(rng.token());
                if rng.below(4) == 0 {
                    v.push(*rng.pick(&[SEP, BODY, b'&', b'\n']));
                }
            }
            v
        }
        _ => {
            let mut v = rng.pick(seeds).clone();
            for _ in 0..1 + rng.below(8) {
                mutate(rng, &mut v, seeds);
            }
            v
        }
    }
}

fn mutate(rng: &mut Rng, v: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let at = rng.below(v.len() + 1);
    match rng.below(11) {
        0 if at < v.len() => v[at] ^= 1 << rng.below(8),
        1 if at < v.len() => v[at] = rng.next() as u8,
        2 => v.insert(at, *rng.pick(INTERESTING)),
        3 => {
            let t = rng.token();
            v.splice(at..at, t.iter().copied());
        }
        4 => {
            let end = (at + 1 + rng.below(16)).min(v.len());
            v.drain(at.min(end)..end);
        }
        5 => {
            let end = (at + 1 + rng.below(32)).min(v.len());
            let piece = v[at.min(end)..end].to_vec();
            let to = rng.below(v.len() + 1);
            v.splice(to..to, piece);
        }
        6 => v.insert(at, *rng.pick(&[SEP, BODY])),
        7 => v.truncate(at),
        8 => {
            let t = rng.token();
            let end = (at + t.len()).min(v.len());
            v.splice(at..end, t.iter().copied());
        }
        9 => {
            let other = rng.pick(seeds);
            let from = rng.below(other.len() + 1);
            v.truncate(at);
            v.extend_from_slice(&other[from..]);
        }
        _ => {
            // A number where there was one: extremes and neighbours.
            let n = *rng.pick(&[0, 1, 9, 10, 99, 125, 126, 65_535, 65_536, u64::MAX]);
            let s = n.wrapping_add(rng.below(3) as u64).to_string();
            v.splice(at..at, s.bytes());
        }
    }
    if v.len() > 4096 {
        v.truncate(4096);
    }
}

/// Runs `check` on `data`; on a failure prints the input, then fails.
fn run_one(target: &str, data: &[u8], check: &dyn Fn(&[u8])) {
    if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| check(data))) {
        eprintln!(
            "fuzz_parsers: {target} failed (NPH_FUZZ_SEED={:#x}) on the input\n  b\"{}\"",
            seed(),
            data.escape_ascii()
        );
        panic::resume_unwind(e);
    }
}

/// The seeds, then `n` generated inputs; reports the executions.
fn run(target: &str, n: usize, extra: &[Vec<u8>], check: &dyn Fn(&[u8])) {
    let start = Instant::now();
    let mut seeds = checks::seeds(target);
    seeds.extend_from_slice(extra);
    let mut rng = Rng(seed()
        ^ target
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b))
        | 1);
    for s in &seeds {
        run_one(target, s, check);
    }
    for _ in 0..n {
        let data = input(&mut rng, &seeds);
        run_one(target, &data, check);
    }
    // Straight to stderr, past the test harness's capture: the CI log
    // states what ran.
    let line = format!(
        "fuzz_parsers: {target}: {} executions in {:.2} s, no failure (NPH_FUZZ_SEED={:#x})\n",
        seeds.len() + n,
        start.elapsed().as_secs_f64(),
        seed()
    );
    let outcomes = checks::take_outcomes();
    let shown: Vec<String> = outcomes
        .iter()
        .take(12)
        .map(|(o, n)| format!("{o}: {n}"))
        .collect();
    let line = if shown.is_empty() {
        line
    } else {
        format!(
            "{line}  reached ({} kinds): {}\n",
            outcomes.len(),
            shown.join(", ")
        )
    };
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// An in-memory target: `n` inputs (`NPH_FUZZ_ITERS`, or a tenth of it
/// for the targets whose every input is a long one, `share` 10).
fn in_memory(target: &str, n: usize, share: usize, extra: &[Vec<u8>]) {
    run(target, iterations(n, share), extra, &|d| {
        checks::check(target, d)
    });
}

#[test]
fn handler_whole_requests() {
    in_memory("handler", 100_000, 1, &[]);
}

#[test]
fn cgi_variables_to_request() {
    in_memory("cgi_env", 60_000, 1, &[]);
}

#[test]
fn query_and_form_decoding() {
    in_memory("query_form", 100_000, 1, &[]);
}

#[test]
fn publish_bodies() {
    in_memory("publish_body", 100_000, 1, &[]);
}

#[test]
fn spool_records_segment_and_channel_names() {
    in_memory("spool_records", 40_000, 1, &[]);
}

#[test]
fn last_event_id_and_the_sse_encoder() {
    // Every power of ten and its neighbours, and the ends of u64.
    let mut edges: Vec<Vec<u8>> = (0..20u32)
        .flat_map(|e| {
            let p = 10u64.pow(e);
            [p - 1, p, p + 1]
        })
        .chain([u64::MAX - 1, u64::MAX, 1 << 63])
        .map(|n| n.to_le_bytes().to_vec())
        .collect();
    edges.push(b"\xff\xff\xff\xff\xff\xff\xff\xff\x14".to_vec());
    in_memory("last_event_id", 100_000, 1, &edges);
}

#[test]
fn websocket_inbound_bytes_in_any_pieces() {
    in_memory("ws_inbound", 100_000, 1, &[]);
}

#[test]
fn websocket_valid_frames_split_at_every_byte() {
    in_memory("ws_frames", 20_000, 10, &[]);
}

#[test]
fn settings_values() {
    in_memory("config_values", 60_000, 1, &[]);
}

/// A private directory that goes away with the test.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("nph-fz-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(dir.as_os_str().len() <= 60, "spool path too long: {dir:?}");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn cgi_door_whole_runs() {
    let spool = TempDir::new("cgi");
    run("cgi_door", iterations(5_000, 10), &[], &|d| {
        checks::cgi_door(&spool.0, d)
    });
}

/// `nph-events serve` on a free loopback port, killed (by its pid) when
/// dropped; its log lines arrive on a channel.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: mpsc::Receiver<String>,
    _spool: TempDir,
}

impl Server {
    fn start() -> Server {
        let spool = TempDir::new("srv");
        let mut child = Command::new(env!("CARGO_BIN_EXE_nph-events"))
            .env_clear()
            .args(["serve", "--listen", "127.0.0.1:0", "--spool"])
            .arg(&spool.0)
            .args(checks::listener_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nph-events serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = log
            .recv_timeout(Duration::from_secs(10))
            .expect("the server names its address");
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        Server {
            child,
            addr,
            log,
            _spool: spool,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn listener_request_heads_as_raw_bytes() {
    let server = Server::start();
    // Publish bodies nested up to and far past serde_json's limit (128):
    // parsed on a connection thread's 128 KiB stack.
    let deep: Vec<Vec<u8>> = [10, 64, 100, 127, 128, 200, 5_000]
        .iter()
        .map(|&d| {
            let body = format!("{{\"data\":{}{}}}", "[".repeat(d), "]".repeat(d));
            format!(
                "POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();
    run("http_head", iterations(5_000, 10), &deep, &|d| {
        checks::http_exchange(server.addr, d);
    });
    // Still serving, and no connection thread panicked.
    let codes = checks::http_exchange(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(codes, [200]);
    let log: Vec<String> = server.log.try_iter().collect();
    let panics: Vec<&String> = log.iter().filter(|l| l.contains("panicked")).collect();
    assert!(panics.is_empty(), "{panics:#?}");
}

// ---------------------------------------------------------------------------
// The findings, one reproducer each (ignored until fixed; run them with
// `cargo test --test fuzz_parsers -- --ignored`).

#[test]
fn finding_head_not_found_has_body() {
    use nph_events::handler::{handle, Answer};
    use nph_events::request::{Method, Protocol, Request};
    let config = nph_events::config::Config::default();
    let r = Request::new(
        Method::Head,
        Protocol::Http11,
        Some("/nope".into()),
        String::new(),
    );
    let mut append = |_: &str, _: &nph_events::message::Message| Ok(1);
    let now = std::time::SystemTime::now();
    let Answer::Reply(reply) = handle(&config, &r, &mut &b""[..], &mut append, now) else {
        panic!("a reply")
    };
    assert_eq!(reply.status.0, 404);
    assert!(reply.head_only, "the answer to HEAD must not have a body");
}

#[test]
fn finding_listener_head_not_found_has_body() {
    let server = Server::start();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"HEAD /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    let body = got.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(body, "", "{got}");
}

#[test]
fn finding_listener_head_refusal_has_body() {
    let server = Server::start();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"HEAD /events HTTP/1.1\r\nContent-Length: x\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
    let body = got.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(body, "", "{got}");
}

#[test]
fn finding_listener_reset_loses_response() {
    let server = Server::start();
    let mut s = TcpStream::connect(server.addr).unwrap();
    let mut req = b"GET /nope HTTP/1.0\r\n\r\n".to_vec();
    req.extend_from_slice(&[b'x'; 4096]);
    s.write_all(&req).unwrap();
    thread::sleep(Duration::from_millis(100));
    let mut got = Vec::new();
    let read = s.read_to_end(&mut got);
    assert!(read.is_ok(), "{read:?}: the 404 was lost");
    assert!(
        got.starts_with(b"HTTP/1.0 404 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn finding_records_drop_trailing_newline() {
    let buf = b"id: 1\ndata: a\n\n\n";
    let c = nph_events::spool::complete_len(buf);
    let covered: usize = nph_events::spool::records(buf).map(<[u8]>::len).sum();
    assert_eq!((c, covered), (buf.len(), buf.len()));
}

#[test]
fn finding_token_hash_plus_sign() {
    let key = nph_events::config::KEYS
        .iter()
        .find(|k| k.json == "token_sha256")
        .unwrap();
    let mut c = nph_events::config::Config::default();
    let plus = "+f".repeat(32);
    assert!(c.set(key, &plus, "test").is_err(), "accepted {plus:?}");
}

// ---------------------------------------------------------------------------
// The seed corpus of the coverage-guided targets.

/// `fuzz/seeds/<target>/` holds exactly [`checks::seeds`], one file each,
/// so `cargo fuzz run <target> <scratch dir> fuzz/seeds/<target>` starts
/// from them. `NPH_FUZZ_WRITE_SEEDS=1` writes them after a change.
#[test]
fn fuzz_seed_corpus_is_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let write = std::env::var_os("NPH_FUZZ_WRITE_SEEDS").is_some();
    for target in checks::TARGETS {
        let dir = root.join(target);
        let want: Vec<(String, Vec<u8>)> = checks::seeds(target)
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("seed-{i:02}"), s))
            .collect();
        if write {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &want {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
        let mut have: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .map(|e| {
                        let e = e.unwrap();
                        let name = e.file_name().to_string_lossy().into_owned();
                        (name, std::fs::read(e.path()).unwrap())
                    })
                    .collect()
            })
            .unwrap_or_default();
        have.sort();
        assert!(
            have == want,
            "fuzz/seeds/{target} is not checks::seeds(\"{target}\"): \
             run NPH_FUZZ_WRITE_SEEDS=1 cargo test --test fuzz_parsers fuzz_seed_corpus"
        );
    }
}
