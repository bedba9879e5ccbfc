//! `cargo +nightly fuzz run stored_outcome`: see `tower_http_batch::fuzzing::stored_outcome`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_http_batch::fuzzing::stored_outcome(data));
