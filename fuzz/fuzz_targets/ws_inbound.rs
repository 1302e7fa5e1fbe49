#![no_main]
//! `cargo +nightly fuzz run ws_inbound`: see nph_events_fuzz::ws_inbound for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| nph_events_fuzz::ws_inbound(data));
