//! `cargo +nightly fuzz run resource`: see `tower_http_batch::fuzzing::resource`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_http_batch::fuzzing::resource(data));
