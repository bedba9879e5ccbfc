//! `cargo +nightly fuzz run bulk`: see `tower_http_batch::fuzzing::bulk`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_http_batch::fuzzing::bulk(data));
