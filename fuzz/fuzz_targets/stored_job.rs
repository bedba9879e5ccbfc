//! `cargo +nightly fuzz run stored_job`: see `tower_http_batch::fuzzing::stored_job`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_http_batch::fuzzing::stored_job(data));
