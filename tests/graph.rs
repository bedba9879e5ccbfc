//! Execution order: `concurrency(n)`, `dependsOn`, and `424 Failed Dependency`.
//! Overlap is proven with a barrier (it only opens when requests really run together)
//! and a gauge of requests in flight; order with a log of start and end events.

mod common;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use common::{within, DropSignal, Http};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Barrier, Notify};
use tower_http_batch::BatchLayer;

#[derive(Clone)]
struct Probe {
    barrier: Arc<Barrier>,
    current: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
    /// Signalled when a `/block` handler starts, and when its future is dropped.
    entered: Arc<Notify>,
    dropped: Arc<Notify>,
}

impl Probe {
    fn new(meet: usize) -> Self {
        Self {
            barrier: Arc::new(Barrier::new(meet)),
            current: Arc::default(),
            peak: Arc::default(),
            log: Arc::default(),
            entered: Arc::default(),
            dropped: Arc::default(),
        }
    }

    fn enter(&self, name: &str) {
        self.log.lock().unwrap().push(format!("start {name}"));
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self, name: &str) {
        self.current.fetch_sub(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(format!("end {name}"));
    }

    fn position(&self, event: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter()
            .position(|e| e == event)
            .unwrap_or_else(|| panic!("no {event:?} in {log:?}"))
    }

    fn started(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with("start"))
            .count()
    }
}

/// `/meet/{name}` waits at the barrier; `/step/{name}` yields once; `/fail/{name}` is 500.
fn router(probe: Probe) -> Router {
    Router::new()
        .route(
            "/meet/{name}",
            get(
                |State(p): State<Probe>, Path(name): Path<String>| async move {
                    p.enter(&name);
                    p.barrier.wait().await;
                    p.leave(&name);
                    name
                },
            ),
        )
        .route(
            "/step/{name}",
            get(
                |State(p): State<Probe>, Path(name): Path<String>| async move {
                    p.enter(&name);
                    tokio::task::yield_now().await;
                    p.leave(&name);
                    name
                },
            ),
        )
        .route(
            "/block/{name}",
            get(
                |State(p): State<Probe>, Path(name): Path<String>| async move {
                    let _signal = DropSignal(p.dropped.clone());
                    p.enter(&name);
                    p.entered.notify_one();
                    std::future::pending::<()>().await;
                    name
                },
            ),
        )
        .route(
            "/fail/{name}",
            get(
                |State(p): State<Probe>, Path(name): Path<String>| async move {
                    p.enter(&name);
                    p.leave(&name);
                    (StatusCode::INTERNAL_SERVER_ERROR, "it broke")
                },
            ),
        )
        .with_state(probe)
}

async fn start(layer: BatchLayer, probe: &Probe) -> Http {
    Http::new(common::serve(layer.layer_router(router(probe.clone()))).await)
}

fn statuses(items: &[Value]) -> Vec<u64> {
    items
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn concurrency_runs_independent_items_together_up_to_n() {
    let probe = Probe::new(2);
    let http = start(BatchLayer::new("/batch").concurrency(2), &probe).await;
    let requests: Vec<Value> = (0..6)
        .map(|i| json!({"id": format!("m{i}"), "url": format!("/meet/m{i}")}))
        .collect();
    let items = http
        .batch(&json!({ "requests": requests }), &[])
        .await
        .items();
    assert_eq!(
        statuses(&items),
        [200; 6],
        "pairs met at the barrier: they ran together"
    );
    assert_eq!(
        probe.peak.load(Ordering::SeqCst),
        2,
        "never more than 2 at once"
    );
    let ids: Vec<_> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        ["m0", "m1", "m2", "m3", "m4", "m5"],
        "results stay in request order"
    );
    assert_eq!(items[3]["body"], "m3");
}

#[tokio::test]
async fn sequential_by_default_and_with_stop_on_error() {
    for (layer, stop) in [
        (BatchLayer::new("/batch"), false),
        (BatchLayer::new("/batch").concurrency(8), true),
    ] {
        let probe = Probe::new(1);
        let http = start(layer, &probe).await;
        let requests: Vec<Value> = (0..5)
            .map(|i| json!({"url": format!("/step/s{i}")}))
            .collect();
        let items = http
            .batch(&json!({ "requests": requests, "stop_on_error": stop }), &[])
            .await
            .items();
        assert_eq!(statuses(&items), [200; 5]);
        assert_eq!(
            probe.peak.load(Ordering::SeqCst),
            1,
            "one at a time (stop_on_error: {stop})"
        );
        let log = probe.log.lock().unwrap().clone();
        let expected: Vec<String> = (0..5)
            .flat_map(|i| [format!("start s{i}"), format!("end s{i}")])
            .collect();
        assert_eq!(log, expected, "in request order");
    }
}

#[tokio::test]
async fn stop_on_error_with_concurrency_runs_nothing_after_the_failure() {
    let probe = Probe::new(1);
    let http = start(BatchLayer::new("/batch").concurrency(8), &probe).await;
    let batch = json!({"stop_on_error": true, "requests": [
        {"url": "/step/a"}, {"url": "/fail/b"}, {"url": "/step/c"}, {"url": "/step/d"},
    ]});
    let items = http.batch(&batch, &[]).await.items();
    assert_eq!(statuses(&items), [200, 500]);
    assert_eq!(probe.started(), 2);
}

#[tokio::test]
async fn a_diamond_waits_for_its_dependencies() {
    // a -> (b, c) -> d; b and c meet at the barrier, so they must overlap.
    let probe = Probe::new(2);
    let http = start(BatchLayer::new("/batch").concurrency(4), &probe).await;
    let batch = json!({"requests": [
        {"id": "a", "url": "/step/a"},
        {"id": "b", "url": "/meet/b", "dependsOn": ["a"]},
        {"id": "c", "url": "/meet/c", "dependsOn": ["a"]},
        {"id": "d", "url": "/step/d", "dependsOn": ["b", "c"]},
    ]});
    let items = http.batch(&batch, &[]).await.items();
    assert_eq!(statuses(&items), [200; 4]);
    assert!(probe.position("end a") < probe.position("start b"));
    assert!(probe.position("end a") < probe.position("start c"));
    assert!(probe.position("end b") < probe.position("start d"));
    assert!(probe.position("end c") < probe.position("start d"));
    assert_eq!(
        probe.peak.load(Ordering::SeqCst),
        2,
        "b and c ran together, d waited"
    );
}

#[tokio::test]
async fn a_failed_dependency_gives_424_and_is_not_sent() {
    for concurrency in [1, 4] {
        let probe = Probe::new(1);
        let http = start(BatchLayer::new("/batch").concurrency(concurrency), &probe).await;
        let batch = json!({"requests": [
            {"id": "a", "url": "/step/a"},
            {"id": "b", "url": "/fail/b", "dependsOn": ["a"]},
            {"id": "c", "url": "/step/c", "dependsOn": ["b"]},
            {"id": "d", "url": "/step/d", "dependsOn": ["c", "a"]},
            {"id": "e", "url": "/step/e"},
        ]});
        let items = http.batch(&batch, &[]).await.items();
        assert_eq!(
            statuses(&items),
            [200, 500, 424, 424, 200],
            "concurrency {concurrency}"
        );
        assert_eq!(items[2]["headers"]["Content-Type"], "application/json");
        let why_c = items[2]["body"]["detail"].as_str().unwrap();
        assert!(why_c.contains("\"b\"") && why_c.contains("500"), "{why_c}");
        let why_d = items[3]["body"]["detail"].as_str().unwrap();
        assert!(
            why_d.contains("\"c\"") && why_d.contains("not sent"),
            "{why_d}"
        );
        assert_eq!(
            probe.started(),
            3,
            "c and d were not sent (concurrency {concurrency})"
        );
    }
}

// Paused time: the deadline passes only once every task waits, however loaded the machine.
#[tokio::test(start_paused = true)]
async fn the_batch_deadline_reports_every_item() {
    let probe = Probe::new(1);
    let layer = BatchLayer::new("/batch")
        .concurrency(2)
        .batch_timeout(Duration::from_millis(300));
    let http = start(layer, &probe).await;
    let batch = json!({"requests": [
        {"id": "a", "url": "/step/a"},
        {"id": "b", "url": "/block/b"},
        {"id": "c", "url": "/block/c"},
        {"id": "d", "url": "/step/d", "dependsOn": ["b"]},
        {"id": "e", "url": "/step/e"},
    ]});
    let items = http.batch(&batch, &[]).await.items();
    assert_eq!(statuses(&items), [200, 504, 504, 424, 424]);
    assert!(items[1]["body"]["detail"]
        .as_str()
        .unwrap()
        .contains("batch_timeout"));
    assert!(items[4]["body"]["detail"]
        .as_str()
        .unwrap()
        .contains("before it could start"));
    assert_eq!(probe.started(), 3, "d and e were never sent");
}

#[tokio::test]
async fn a_client_that_goes_away_stops_the_batch() {
    let probe = Probe::new(1);
    let http = start(BatchLayer::new("/batch"), &probe).await;
    let body = json!({"requests": [{"url": "/block/first"}, {"url": "/step/second"}, {"url": "/step/third"}]}).to_string();
    let mut conn = tokio::net::TcpStream::connect(http.addr).await.unwrap();
    let head = format!(
        "POST /batch HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body.as_bytes()).await.unwrap();
    within("the first sub-request starting", probe.entered.notified()).await;
    conn.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest).await;
    drop(conn);
    within(
        "the first sub-request being dropped",
        probe.dropped.notified(),
    )
    .await;
    assert_eq!(
        probe.started(),
        1,
        "nothing after the disconnect was started"
    );
    // The reply streams: its head and the envelope left at once, but no item did.
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert!(rest.contains("{\"responses\":["), "{rest}");
    assert!(!rest.contains("\"status\""), "no item was written: {rest}");
}
