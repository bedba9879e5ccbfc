//! `cargo +nightly fuzz run url`: see `tower_http_batch::fuzzing::url`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_http_batch::fuzzing::url(data));
