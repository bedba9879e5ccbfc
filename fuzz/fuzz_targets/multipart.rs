//! `cargo +nightly fuzz run multipart`: see `tower_http_batch::fuzzing::multipart`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_http_batch::fuzzing::multipart(data));
