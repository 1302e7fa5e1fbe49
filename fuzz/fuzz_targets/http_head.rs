#![no_main]
//! `cargo +nightly fuzz run http_head`: raw bytes to the built-in listener
//! (`nph-events serve`, started once in this process on a loopback port),
//! as a client would send them; see nph_events_fuzz::http_exchange.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{mpsc, Mutex, OnceLock};

/// Passes the server's log on line by line (a `writeln!` arrives in
/// several writes); the first line names its port.
struct Log {
    tx: Mutex<mpsc::Sender<String>>,
    line: Vec<u8>,
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        while let Some(end) = self.line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.line.drain(..=end).collect();
            let _ = self
                .tx
                .lock()
                .unwrap()
                .send(String::from_utf8_lossy(&line).into_owned());
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nph-fuzz-l-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut args = vec!["--listen".to_owned(), "127.0.0.1:0".to_owned()];
        args.extend(nph_events_fuzz::listener_args());
        args.extend(["--spool".to_owned(), dir.display().to_string()]);
        let overrides =
            match nph_events::cli::parse(std::iter::once("serve".to_owned()).chain(args)) {
                Ok(nph_events::cli::Command::Serve(o)) => o,
                other => panic!("serve arguments: {other:?}"),
            };
        let config = nph_events::config::load(std::iter::empty(), None, &overrides.values).unwrap();
        let spool = nph_events::spool::Spool::open(&dir).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut log = Log {
                tx: Mutex::new(tx),
                line: Vec::new(),
            };
            nph_events::door::listener::serve(config, spool, &mut log)
        });
        loop {
            let line = rx.recv().expect("the server's first line");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split('/').next().unwrap();
                return addr.parse().expect("an address");
            }
        }
    })
}

/// Whether `data` nests brackets deeper than 64. Under AddressSanitizer
/// the frames of serde_json's recursive parser are about three times as
/// large, and a publish body nested 100 deep overflows the listener's
/// 128 KiB connection stack here, while the plain release and debug
/// binaries answer every depth (400 beyond serde_json's limit of 128):
/// `tests/fuzz_parsers.rs` sends such bodies to the real binary instead.
fn nests_deep(data: &[u8]) -> bool {
    let (mut depth, mut max) = (0i64, 0i64);
    for b in data {
        match b {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth -= 1,
            _ => {}
        }
        max = max.max(depth);
    }
    max > 64
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if !nests_deep(data) {
        nph_events_fuzz::http_exchange(server(), data);
    }
});
