//! `cargo +nightly fuzz run reply`: see `tower_http_batch::fuzzing::reply`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_http_batch::fuzzing::reply(data));
