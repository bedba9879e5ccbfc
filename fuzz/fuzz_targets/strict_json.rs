//! `cargo +nightly fuzz run strict_json`: see `tower_http_batch::fuzzing::strict_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_http_batch::fuzzing::strict_json(data));
