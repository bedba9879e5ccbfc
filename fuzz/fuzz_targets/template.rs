//! `cargo +nightly fuzz run template`: see `tower_http_batch::fuzzing::template`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tower_http_batch::fuzzing::template(data));
