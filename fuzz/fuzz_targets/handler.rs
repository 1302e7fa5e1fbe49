#![no_main]
//! `cargo +nightly fuzz run handler`: see nph_events_fuzz::handler for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| nph_events_fuzz::handler(data));
