//! `cargo +nightly fuzz run json_batch`: see `tower_http_batch::fuzzing::json_batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_http_batch::fuzzing::json_batch(data));
