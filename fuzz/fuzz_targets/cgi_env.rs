#![no_main]
//! `cargo +nightly fuzz run cgi_env`: see nph_events_fuzz::cgi_env for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| nph_events_fuzz::cgi_env(data));
