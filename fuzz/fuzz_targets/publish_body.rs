#![no_main]
//! `cargo +nightly fuzz run publish_body`: see nph_events_fuzz::publish_body for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| nph_events_fuzz::publish_body(data));
