#![no_main]
//! `cargo +nightly fuzz run config_values`: see nph_events_fuzz::config_values for what is checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| nph_events_fuzz::config_values(data));
