//! `batch-proxy --store sqlite:FILE` in front of a legacy service: a keyed batch whose
//! client resets mid-run still runs to its end, and its retry replays it, writes applied
//! once, also after the proxy restarts; a proxy killed mid-batch (`SIGKILL`) leaves a
//! record that a restarted proxy resumes, never sending the write in flight again; a batch
//! job (`Prefer: respond-async`) runs with its client gone, and its monitor answers after a
//! restart.
#![cfg(feature = "proxy")]

mod common;

use common::process::{proxy, start_reading, Running};
use common::{Http, Reply};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{ChildStdout, Command};

fn legacy() -> (Running, String, BufReader<ChildStdout>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/legacy/app.py");
    let (child, port, out) = start_reading(Command::new("python3").arg(script));
    (child, format!("http://127.0.0.1:{port}"), out)
}

/// Returns once the legacy service has printed "waiting" (a `/wait` came in).
async fn waiting(out: &mut BufReader<ChildStdout>) {
    let mut line = String::new();
    let read = tokio::task::block_in_place(|| out.read_line(&mut line));
    assert!(read.unwrap() > 0 && line.trim() == "waiting", "{line:?}");
}

fn batch() -> Value {
    json!({ "requests": [
        { "id": "a", "method": "POST", "url": "/items", "body": { "name": "a" } },
        { "id": "wait", "method": "POST", "url": "/wait" },
        { "id": "c", "method": "POST", "url": "/items", "body": { "name": "c" } },
    ]})
}

/// Sends the batch with `key` on a connection of its own, and returns the connection
/// unread.
async fn send_raw(http: &Http, key: &str) -> tokio::net::TcpStream {
    common::post_keyed(http.addr, "/batch", key, &batch().to_string()).await
}

/// The batch with `key`, sent until no run holds it (`409`).
async fn retried(http: &Http, key: &str) -> Reply {
    // A real process on the other side: a pause between tries, as a client's would be.
    common::once_free(|| async {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        http.batch(&batch(), &[("idempotency-key", key)]).await
    })
    .await
}

fn store_flag(name: &str) -> (String, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("thb-{name}-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    (format!("sqlite:{}", path.display()), path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_batch_outlives_its_client_and_a_restart() {
    let (_legacy, upstream, mut out) = legacy();
    let legacy_http = Http::new(upstream.trim_start_matches("http://").parse().unwrap());
    let (store, path) = store_flag("proxy-restart");
    let (first, http) = proxy(&upstream, &["--store", &store]);
    let client = send_raw(&http, "k1").await;
    waiting(&mut out).await;
    drop(client);
    legacy_http.send("GET", "/release", &[], "").await;
    let replay = retried(&http, "k1").await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.statuses(), [201, 200, 201], "it ran to its end");
    // Restarted on the same store: the same reply, and still nothing runs again.
    drop(first);
    let (_second, http) = proxy(&upstream, &["--store", &store]);
    let again = retried(&http, "k1").await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.json(), replay.json());
    assert_eq!(
        legacy_http.send("GET", "/items/3", &[], "").await.status,
        404,
        "two writes"
    );
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_killed_mid_batch_is_resumed_by_the_next() {
    let (_legacy, upstream, mut out) = legacy();
    let legacy_http = Http::new(upstream.trim_start_matches("http://").parse().unwrap());
    let (store, path) = store_flag("proxy-killed");
    let (killed, http) = proxy(&upstream, &["--store", &store]);
    let _client = send_raw(&http, "k2").await;
    waiting(&mut out).await;
    drop(killed); // SIGKILL, mid-batch.
    let (_next, http) = proxy(&upstream, &["--store", &store]);
    // Once the killed proxy's lease (10 s) has passed, the retry takes the batch over.
    let resumed = retried(&http, "k2").await;
    assert!(resumed.headers.get("idempotent-replayed").is_none());
    assert_eq!(resumed.statuses(), [201, 409, 201]);
    assert_eq!(resumed.items()[1]["body"]["title"], "Outcome unknown");
    assert_eq!(
        resumed.items()[2]["body"]["id"],
        2,
        "a once, then c: the wait not again"
    );
    legacy_http.send("GET", "/release", &[], "").await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_behind_the_proxy_with_its_client_gone_and_outlives_a_restart() {
    let (_legacy, upstream, mut out) = legacy();
    let legacy_http = Http::new(upstream.trim_start_matches("http://").parse().unwrap());
    let (store, path) = store_flag("proxy-job");
    let (first, http) = proxy(&upstream, &["--store", &store]);
    let accepted = http.batch(&batch(), &[("prefer", "respond-async")]).await;
    assert_eq!(accepted.status, 202);
    assert_eq!(accepted.headers["preference-applied"], "respond-async");
    let monitor = accepted.headers["location"].to_str().unwrap().to_owned();
    waiting(&mut out).await;
    let running = http.send("GET", &monitor, &[], "").await;
    assert_eq!(running.status, 202);
    assert_eq!(running.json()["requests"], 3);
    legacy_http.send("GET", "/release", &[], "").await;
    let done = common::within("the job to finish", async {
        loop {
            let reply = http.send("GET", &monitor, &[], "").await;
            if reply.status != 202 {
                return reply;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(done.statuses(), [201, 200, 201]);
    // Restarted on the same store: the monitor still gives the reply.
    drop(first);
    let (_second, http) = proxy(&upstream, &["--store", &store]);
    let again = http.send("GET", &monitor, &[], "").await;
    assert_eq!(again.json(), done.json());
    let _ = std::fs::remove_file(path);
}
