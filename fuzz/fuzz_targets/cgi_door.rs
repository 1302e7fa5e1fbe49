#![no_main]
//! `cargo +nightly fuzz run cgi_door`: the whole CGI door (variables,
//! stdin, a fake clock) into a private spool; see nph_events_fuzz::cgi_door.

use std::path::PathBuf;
use std::sync::OnceLock;

fn spool() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nph-fuzz-c-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| nph_events_fuzz::cgi_door(spool(), data));
