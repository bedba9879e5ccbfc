//! Load that should wait, and readers that should not hold places for ever, over real
//! HTTP: a batch that finds every place taken waits for one (bounded in count and time)
//! instead of being turned away; a client that reads its reply slower than the minimum
//! rate has it cut, and its place goes to the next batch.
//!
//! Time is paused where the test waits on a timer: it moves only when every task waits,
//! so a deadline passes exactly when nothing else can happen, however loaded the machine.

mod common;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use common::{within, Http};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http_batch::BatchLayer;

/// `/big/{n}` answers 16 KiB and counts; `/gate` says it has entered, then waits for a
/// permit of `gate`; `/text` answers.
fn router(started: Arc<AtomicUsize>, gate: Gate) -> Router {
    let big = Bytes::from(vec![b'x'; 16 * 1024]);
    Router::new()
        .route(
            "/big/{n}",
            get(move || {
                started.fetch_add(1, Ordering::SeqCst);
                let big = big.clone();
                async move { ([("content-type", "text/plain")], big) }
            }),
        )
        .route(
            "/gate",
            get(move || async move {
                gate.entered.add_permits(1);
                gate.open.acquire().await.unwrap().forget();
                "through"
            }),
        )
        .route("/text", get(|| async { "text" }))
}

/// Handlers that wait until the test lets them through.
#[derive(Clone)]
struct Gate {
    entered: Arc<Semaphore>,
    open: Arc<Semaphore>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            entered: Arc::new(Semaphore::new(0)),
            open: Arc::new(Semaphore::new(0)),
        }
    }
}

impl Gate {
    async fn entered(&self, n: u32) {
        self.entered.acquire_many(n).await.unwrap().forget();
    }
}

fn bigs(n: usize) -> String {
    let requests: Vec<Value> = (0..n)
        .map(|i| json!({"url": format!("/big/{i}")}))
        .collect();
    json!({ "requests": requests }).to_string()
}

#[tokio::test]
async fn a_burst_waits_for_places_and_is_served() {
    let gate = Gate::default();
    let layer = BatchLayer::new("/batch").max_concurrent_batches(4);
    let app = layer.layer_router(router(Arc::default(), gate.clone()));
    let http = Http::new(common::serve(app).await);
    // Four batches hold every place until the gate opens; forty more arrive meanwhile.
    let gated = json!({"requests": [{"url": "/gate"}]});
    let text = json!({"requests": [{"url": "/text"}]});
    let mut batches = Vec::new();
    let send = |batch: &Value| {
        let (http, batch) = (http.clone(), batch.clone());
        tokio::spawn(async move { http.batch(&batch, &[]).await })
    };
    batches.extend((0..4).map(|_| send(&gated)));
    gate.entered(4).await;
    batches.extend((0..40).map(|_| send(&text)));
    tokio::task::yield_now().await;
    gate.open.add_permits(4);
    for batch in batches {
        let reply = within("a batch's reply", batch).await.unwrap();
        assert_eq!(
            reply.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(reply.items()[0]["status"] == 200);
    }
}

#[tokio::test(start_paused = true)]
async fn the_wait_is_bounded_in_count_and_time() {
    let gate = Gate::default();
    let layer = BatchLayer::new("/batch")
        .max_concurrent_batches(1)
        .max_waiting_batches(1)
        .admission_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(60));
    let app = layer.layer_router(router(Arc::default(), gate.clone()));
    let http = Http::new(common::serve(app).await);
    let gated = json!({"requests": [{"url": "/gate"}]});
    let text = json!({"requests": [{"url": "/text"}]});
    let holder = {
        let http = http.clone();
        tokio::spawn(async move { http.batch(&gated, &[]).await })
    };
    // The one place is taken; one batch waits; the next finds the queue full at once.
    gate.entered(1).await;
    let waiting = {
        let (http, text) = (http.clone(), text.clone());
        tokio::spawn(async move { http.batch(&text, &[]).await })
    };
    common::settle().await;
    let full = http.batch(&text, &[]).await;
    let p = full.problem(503);
    assert_eq!(full.headers["retry-after"], "1");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("max_waiting_batches"),
        "{p}"
    );
    // The waiting one gives up after 3 s.
    let waited = waiting.await.unwrap();
    let p = waited.problem(503);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("within 3s (admission_timeout)"),
        "{p}"
    );
    gate.open.add_permits(1);
    assert_eq!(holder.await.unwrap().status, 200);
}

#[tokio::test(start_paused = true)]
async fn a_reader_that_never_reads_gives_its_place_back() {
    let started = Arc::new(AtomicUsize::new(0));
    let layer = BatchLayer::new("/batch")
        .max_requests(400)
        .max_response_bytes(64 << 20)
        .max_concurrent_batches(2)
        .admission_timeout(Duration::from_secs(60));
    let app = layer.layer_router(router(started.clone(), Gate::default()));
    let http = Http::new(common::serve(app).await);
    // Two batches of 6.4 MB to clients that never read: more than the kernels buffer, so
    // each run pauses with its reply unread, and holds its place...
    let batch = bigs(400);
    let _slow = [
        common::post_slowly(http.addr, &batch).await,
        common::post_slowly(http.addr, &batch).await,
    ];
    common::settle().await;
    let ran = started.load(Ordering::SeqCst);
    assert!(
        ran < 800,
        "the runs wait for their readers ({ran} items run)"
    );
    // ...until its waits pass the budget (5 s, and 1 s per 128 KiB taken): the replies
    // are cut, the runs stop, and the places go to the next batch, which waited for one.
    let text = json!({"requests": [{"url": "/text"}]});
    let reply = http.batch(&text, &[]).await;
    assert_eq!(
        reply.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        started.load(Ordering::SeqCst),
        ran,
        "the cut runs started nothing more"
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_minimum_rate_a_reader_keeps_its_place() {
    let layer = BatchLayer::new("/batch")
        .max_requests(400)
        .max_response_bytes(64 << 20)
        .max_concurrent_batches(1)
        .admission_timeout(Duration::from_secs(60))
        .no_reply_min_rate();
    let app = layer.layer_router(router(Arc::default(), Gate::default()));
    let http = Http::new(common::serve(app).await);
    let _slow = common::post_slowly(http.addr, &bigs(400)).await;
    common::settle().await;
    let text = json!({"requests": [{"url": "/text"}]});
    let p = http.batch(&text, &[]).await.problem(503);
    assert!(
        p["detail"].as_str().unwrap().contains("admission_timeout"),
        "{p}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reader_that_keeps_up_is_never_cut() {
    let layer = BatchLayer::new("/batch")
        .max_requests(400)
        .max_response_bytes(64 << 20)
        .reply_min_rate(1024, Duration::from_secs(1));
    let app = layer.layer_router(router(Arc::default(), Gate::default()));
    let http = Http::new(common::serve(app).await);
    // A fast reader: the whole reply, however long the batch.
    let reply = http.batch_raw(&bigs(400), &[]).await;
    assert_eq!(reply.items().len(), 400);
}

// A reader four times faster than the minimum rate, reading a long reply of small items
// frame by frame (time paused: its pauses are exact): it waits on the run, the run waits
// on it, and what it takes during each wait pays for the wait. It is never cut.
#[tokio::test(start_paused = true)]
async fn a_steady_reader_faster_than_the_rate_is_never_cut() {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let rate = 16 * 1024;
    let layer = BatchLayer::new("/batch")
        .max_requests(3000)
        .reply_min_rate(rate, Duration::from_secs(1));
    let app = layer.layer_router(router(Arc::default(), Gate::default()));
    let requests: Vec<Value> = (0..3000).map(|_| json!({"url": "/text"})).collect();
    let request = http::Request::post("/batch")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({ "requests": requests }).to_string(),
        ))
        .unwrap();
    let mut body = app.oneshot(request).await.unwrap().into_body();
    let mut reply = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        reply.extend_from_slice(&data);
        let read_for = data.len() as f64 / (4 * rate) as f64;
        tokio::time::sleep(Duration::from_secs_f64(read_for)).await;
    }
    assert!(reply.len() > 10 * rate as usize, "{} bytes", reply.len());
    let reply: Value = serde_json::from_slice(&reply).expect("the whole reply");
    assert_eq!(reply["responses"].as_array().unwrap().len(), 3000);
}

#[tokio::test(start_paused = true)]
async fn an_unread_reply_keeps_its_place_until_its_reader_is_cut() {
    let layer = BatchLayer::new("/batch")
        .max_requests(400)
        .max_response_bytes(64 << 20)
        .max_concurrent_batches(1)
        .max_waiting_batches(0);
    let app = layer.layer_router(router(Arc::default(), Gate::default()));
    let http = Http::new(common::serve(app).await);
    let mut slow = common::post_slowly(http.addr, &bigs(400)).await;
    assert!(common::read_head(&mut slow)
        .await
        .starts_with(b"HTTP/1.1 200"));
    // 6.4 MB, nearly all of it unread: the place is still taken (the body holds no more
    // than a little of the reply at a time, so the rest counts as unread)...
    let text = json!({"requests": [{"url": "/text"}]});
    http.batch(&text, &[]).await.problem(503);
    // ...and a request the endpoint refuses anyway says so, place or not.
    assert_eq!(http.send("GET", "/batch", &[], "").await.status, 405);
    // Once the reader is cut (5 s of waiting on it), the place is free.
    for _ in 0..6 {
        common::settle().await;
    }
    assert_eq!(http.batch(&text, &[]).await.status, 200);
}
