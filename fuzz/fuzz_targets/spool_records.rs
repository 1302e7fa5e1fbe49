#![no_main]
//! `cargo +nightly fuzz run spool_records`: see nph_events_fuzz::spool_records for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| nph_events_fuzz::spool_records(data));
