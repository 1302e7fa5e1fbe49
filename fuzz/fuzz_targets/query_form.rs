#![no_main]
//! `cargo +nightly fuzz run query_form`: see nph_events_fuzz::query_form for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| nph_events_fuzz::query_form(data));
