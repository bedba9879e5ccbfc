//! The fuzz targets' seeds, run as tests: every entry point in `fuzz/` is exercised by
//! `cargo test --all-features`, so a seed that breaks an invariant fails CI, not only a
//! fuzzing session. Inputs a fuzzer once crashed on are kept in the seeds too.
#![cfg(feature = "fuzzing")]

use std::path::Path;
use tower_http_batch::fuzzing;

/// Runs `target` on every file in `fuzz/seeds/<name>`; returns how many there were.
fn run_seeds(name: &str, target: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(name);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(
            outcome.is_ok(),
            "{name}: seed {} breaks an invariant",
            path.display()
        );
        count += 1;
    }
    count
}

#[test]
fn json_batch_seeds() {
    assert!(run_seeds("json_batch", fuzzing::json_batch) >= 3);
}

#[test]
fn bulk_seeds() {
    assert!(run_seeds("bulk", fuzzing::bulk) >= 1);
}

#[test]
fn resource_seeds() {
    assert!(run_seeds("resource", fuzzing::resource) >= 5);
}

#[test]
fn url_seeds() {
    assert!(run_seeds("url", fuzzing::url) >= 10);
}

#[test]
fn template_seeds() {
    assert!(run_seeds("template", fuzzing::template) >= 3);
}

#[test]
fn reply_seeds() {
    assert!(run_seeds("reply", fuzzing::reply) >= 5);
}

#[test]
fn multipart_seeds() {
    assert!(run_seeds("multipart", fuzzing::multipart) >= 5);
}

#[test]
fn strict_json_seeds() {
    assert!(run_seeds("strict_json", fuzzing::strict_json) >= 5);
}

#[test]
fn stored_job_seeds() {
    assert!(run_seeds("stored_job", fuzzing::stored_job) >= 3);
}
