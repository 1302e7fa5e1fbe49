#![no_main]
//! `cargo +nightly fuzz run ws_frames`: see nph_events_fuzz::ws_frames for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| nph_events_fuzz::ws_frames(data));
