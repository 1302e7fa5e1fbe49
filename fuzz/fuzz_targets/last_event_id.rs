#![no_main]
//! `cargo +nightly fuzz run last_event_id`: see nph_events_fuzz::last_event_id for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| nph_events_fuzz::last_event_id(data));
