//! Streamed replies, seen by an HTTP client: the first items arrive while a later one is
//! still running. No timing: a later handler waits for a signal that the test sends only
//! once it has read the earlier items from the socket. If the reply did not stream, the
//! test would wait for ever, so each wait is bounded and a regression fails instead.

mod common;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use common::{within, DropSignal};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tower::ServiceExt;
use tower_http_batch::BatchLayer;

/// `/fast/{name}` answers `{"name": name}` at once; `/wait/{name}` answers the same once
/// the gate is opened (once per opening); `/missing` is a 404; `/pretty` a JSON body with
/// line breaks.
fn router(gate: Arc<Notify>) -> Router {
    let named = |name: String| Json(json!({ "name": name }));
    Router::new()
        .route(
            "/fast/{name}",
            get(move |Path(n): Path<String>| async move { named(n) }),
        )
        .route(
            "/wait/{name}",
            get(
                move |State(gate): State<Arc<Notify>>, Path(n): Path<String>| async move {
                    gate.notified().await;
                    named(n)
                },
            ),
        )
        .route(
            "/missing",
            get(|| async { axum::http::StatusCode::NOT_FOUND }),
        )
        .route(
            "/pretty",
            get(|| async {
                let body = "{\n  \"a\": 1,\n  \"b\": \"two\"\r\n}\n";
                ([("content-type", "application/json")], body)
            }),
        )
        .with_state(gate)
}

async fn start(layer: BatchLayer) -> (SocketAddr, Arc<Notify>) {
    let gate = Arc::new(Notify::new());
    let app = layer.layer_router(router(gate.clone()));
    (common::serve(app).await, gate)
}

/// A reply being read from the socket, frame by frame.
struct Reading {
    head: http::response::Parts,
    body: Incoming,
    text: String,
}

impl Reading {
    async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: String) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut req = http::Request::post(format!("http://{addr}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::from(body)).unwrap();
        let res = within("the reply's head", client.request(req))
            .await
            .unwrap();
        let (head, body) = res.into_parts();
        Self {
            head,
            body,
            text: String::new(),
        }
    }

    /// Reads until `done` holds of what has arrived.
    async fn until(&mut self, what: &str, done: impl Fn(&str) -> bool) {
        within(what, async {
            while !done(&self.text) {
                let frame = self.body.frame().await.expect("the reply ended").unwrap();
                if let Ok(data) = frame.into_data() {
                    self.text.push_str(std::str::from_utf8(&data).unwrap());
                }
            }
        })
        .await
    }

    /// Reads to the end.
    async fn rest(mut self) -> String {
        let rest = within("the reply's end", self.body.collect())
            .await
            .unwrap();
        self.text
            .push_str(std::str::from_utf8(&rest.to_bytes()).unwrap());
        self.text
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
const NDJSON: (&str, &str) = ("accept", "application/x-ndjson");

#[tokio::test]
async fn json_items_arrive_in_request_order_as_they_finish() {
    let (addr, gate) = start(BatchLayer::new("/batch")).await;
    let batch = json!({"requests": [
        {"id": "a", "url": "/fast/a"},
        {"id": "b", "url": "/wait/b"},
    ]});
    let mut reading = Reading::post(addr, "/batch", &[JSON], batch.to_string()).await;
    assert_eq!(reading.head.status, 200);
    assert_eq!(reading.head.headers["content-type"], "application/json");
    assert!(reading.head.headers.get("content-length").is_none());
    reading
        .until("item a", |t| t.contains(r#"{"name":"a"}}"#))
        .await;
    assert!(reading
        .text
        .starts_with(r#"{"responses":[{"id":"a","status":200"#));
    assert!(
        !reading.text.contains(r#""id":"b""#),
        "b waits for the gate"
    );
    gate.notify_one();
    let reply: Value = serde_json::from_str(&reading.rest().await).unwrap();
    assert_eq!(reply["responses"][1]["id"], "b");
    assert_eq!(reply["responses"][1]["body"], json!({"name": "b"}));
}

#[tokio::test]
async fn bulk_and_multipart_items_arrive_as_they_finish() {
    let layer = BatchLayer::new("/batch").bulk("/bulk", "");
    let (addr, gate) = start(layer).await;
    let bulk = json!({"requests": [{"url": "/fast/a"}, {"url": "/wait/b"}]}).to_string();
    let part = |url: &str| {
        format!("--b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET {url} HTTP/1.1\r\n\r\n\r\n")
    };
    let multipart = format!("{}{}--b--\r\n", part("/fast/a"), part("/wait/b"));
    let cases = [
        ("/bulk", "application/json", bulk),
        ("/batch", "multipart/mixed; boundary=b", multipart),
    ];
    for (path, content_type, body) in cases {
        let mut reading = Reading::post(addr, path, &[("content-type", content_type)], body).await;
        assert_eq!(reading.head.status, 200, "{path}");
        reading
            .until("item a", |t| t.contains(r#"{"name":"a"}"#))
            .await;
        assert!(
            !reading.text.contains(r#""b""#),
            "{path}: b has not finished"
        );
        gate.notify_one();
        let text = reading.rest().await;
        let b = text.find(r#"{"name":"b"}"#).expect("item b");
        assert!(text.find(r#"{"name":"a"}"#).unwrap() < b, "{text}");
    }
}

/// Every line of an NDJSON reply, parsed.
fn lines(text: &str) -> Vec<Value> {
    assert!(text.ends_with('\n'), "{text:?}");
    let lines = text.lines().map(|l| serde_json::from_str(l).unwrap());
    lines.collect()
}

#[tokio::test]
async fn ndjson_lines_arrive_in_completion_order_then_a_closing_line() {
    let (addr, gate) = start(BatchLayer::new("/batch").concurrency(2)).await;
    let batch = json!({"requests": [
        {"id": "slow", "url": "/wait/slow"},
        {"id": "quick", "url": "/fast/quick"},
        {"id": "after", "url": "/missing", "dependsOn": ["slow"]},
    ]});
    let mut reading = Reading::post(addr, "/batch", &[JSON, NDJSON], batch.to_string()).await;
    assert_eq!(reading.head.headers["content-type"], "application/x-ndjson");
    reading.until("the first line", |t| t.contains('\n')).await;
    let first = lines(&reading.text);
    assert_eq!(first.len(), 1, "only the quick item has finished");
    assert_eq!(first[0]["id"], "quick");
    assert_eq!(first[0]["body"], json!({"name": "quick"}));
    gate.notify_one();
    let all = lines(&reading.rest().await);
    let ids: Vec<_> = all.iter().map(|l| l["id"].clone()).collect();
    assert_eq!(
        ids,
        [json!("quick"), json!("slow"), json!("after"), Value::Null]
    );
    assert_eq!(all[2]["status"], 404);
    assert_eq!(
        all[3],
        json!({"done": true, "requests": 3, "responses": 3,
               "statusClasses": {"1xx": 0, "2xx": 2, "3xx": 0, "4xx": 1, "5xx": 0},
               "cutShort": null})
    );
}

#[tokio::test]
async fn ndjson_says_when_stop_on_error_cut_the_batch_short() {
    let (addr, _gate) = start(BatchLayer::new("/batch")).await;
    let batch = json!({"stop_on_error": true, "requests": [
        {"id": "1", "url": "/fast/one"},
        {"id": "2", "url": "/missing"},
        {"id": "3", "url": "/fast/three"},
    ]});
    let reading = Reading::post(addr, "/batch", &[JSON, NDJSON], batch.to_string()).await;
    let all = lines(&reading.rest().await);
    assert_eq!(all.len(), 3, "two items, then the closing line");
    assert_eq!(all[1]["status"], 404);
    assert_eq!(all[2]["requests"], 3);
    assert_eq!(all[2]["responses"], 2);
    assert_eq!(all[2]["cutShort"], "stop_on_error");
}

// Paused time: the deadline passes once every task waits; no wall clock is read.
#[tokio::test(start_paused = true)]
async fn ndjson_says_when_the_batch_deadline_cut_it_short() {
    let layer = BatchLayer::new("/batch").batch_timeout(Duration::from_secs(5));
    let (addr, _gate) = start(layer).await;
    let batch = json!({"requests": [
        {"id": "1", "url": "/fast/one"},
        {"id": "2", "url": "/wait/never"},
        {"id": "3", "url": "/fast/three"},
    ]});
    let reading = Reading::post(addr, "/batch", &[JSON, NDJSON], batch.to_string()).await;
    let all = lines(&reading.rest().await);
    let statuses: Vec<_> = all[..3].iter().map(|l| l["status"].clone()).collect();
    assert_eq!(statuses, [200, 504, 424]);
    assert_eq!(all[3]["responses"], 3);
    assert_eq!(all[3]["statusClasses"]["5xx"], 1);
    assert_eq!(all[3]["cutShort"], "batch_timeout");
}

#[tokio::test]
async fn ndjson_lines_hold_bodies_with_line_breaks_and_respect_the_reply_limit() {
    let layer = BatchLayer::new("/batch").max_response_bytes(400);
    let (addr, _gate) = start(layer).await;
    let batch = json!({"requests": [
        {"id": "p", "url": "/pretty"},
        {"id": "q", "url": "/pretty"},
        {"id": "r", "url": "/pretty"},
        {"id": "s", "url": "/pretty"},
        {"id": "t", "url": "/pretty"},
    ]});
    let reading = Reading::post(addr, "/batch", &[JSON, NDJSON], batch.to_string()).await;
    let all = lines(&reading.rest().await);
    assert_eq!(all.len(), 6, "one line per item, and the closing line");
    assert_eq!(all[0]["body"], json!({"a": 1, "b": "two"}));
    let omitted = all[..5].iter().filter(|l| l["bodyOmitted"].is_string());
    assert!(omitted.count() > 0, "the reply limit holds: {all:?}");
}

#[tokio::test]
async fn the_usual_reply_without_an_ndjson_accept() {
    let (addr, _gate) = start(BatchLayer::new("/batch")).await;
    let batch = json!({"requests": [{"url": "/fast/a"}]}).to_string();
    let accepts = [
        "*/*",
        "application/json",
        "application/x-ndjson;q=0",
        "application/x-ndjson;q=0.5, application/json",
    ];
    for accept in accepts {
        let headers = [JSON, ("accept", accept)];
        let reading = Reading::post(addr, "/batch", &headers, batch.clone()).await;
        assert_eq!(reading.head.headers["content-type"], "application/json");
        // It finished before its first wait: sent whole, with its length.
        assert!(reading.head.headers.contains_key("content-length"));
        let reply: Value = serde_json::from_str(&reading.rest().await).unwrap();
        assert_eq!(reply["responses"][0]["status"], 200, "{accept}");
    }
}

/// A router whose `/big/{n}` handlers count their calls and answer 16 KiB of text, and
/// `/gated` waits for the gate and counts when it gets past it.
fn counting(started: Arc<AtomicUsize>, finished: Arc<AtomicUsize>, gate: Arc<Notify>) -> Router {
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
            "/gated",
            get(move || async move {
                gate.notified().await;
                finished.fetch_add(1, Ordering::SeqCst);
                "through"
            }),
        )
}

/// In process, on paused time: `settle` returns once every task waits (the paused clock
/// only moves then), so what the run could do without the client, it has done.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn batch_request(batch: &Value) -> http::Request<axum::body::Body> {
    http::Request::post("/batch")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(batch.to_string()))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_reply_nobody_reads_starts_nothing_new_past_64_kib() {
    let (started, finished) = (Arc::default(), Arc::default());
    let app = BatchLayer::new("/batch")
        .max_response_bytes(usize::MAX / 2)
        .layer_router(counting(Arc::clone(&started), finished, Arc::default()));
    let requests: Vec<_> = (0..100)
        .map(|i| json!({ "url": format!("/big/{i}") }))
        .collect();
    let response = app
        .oneshot(batch_request(&json!({ "requests": requests })))
        .await
        .unwrap();
    settle().await;
    let before = started.load(Ordering::SeqCst);
    assert!(
        before < 10,
        "{before} of 100 ran while nobody read the reply"
    );
    // Read, and the rest runs.
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let reply: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(reply["responses"].as_array().unwrap().len(), 100);
    assert_eq!(started.load(Ordering::SeqCst), 100);
}

#[tokio::test(start_paused = true)]
async fn a_batch_runs_on_while_its_reply_is_not_read() {
    let (finished, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let app = BatchLayer::new("/batch").layer_router(counting(
        Arc::default(),
        Arc::clone(&finished),
        gate.clone(),
    ));
    let batch = json!({"requests": [{"url": "/gated"}]});
    let response = app.oneshot(batch_request(&batch)).await.unwrap();
    // The reply's head is out; its body is not read. The sub-request still finishes: a
    // slow reader does not hold a batch's calls, transactions or deadline.
    gate.notify_one();
    settle().await;
    assert_eq!(finished.load(Ordering::SeqCst), 1);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&body).unwrap().contains("through"));
}

#[tokio::test]
async fn a_client_that_goes_away_mid_reply_cancels_what_is_in_flight() {
    let dropped = Arc::new(Notify::new());
    let signal = dropped.clone();
    let router = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/forever",
            get(move || {
                let guard = DropSignal(signal.clone());
                async move {
                    std::future::pending::<()>().await;
                    drop(guard);
                    "never"
                }
            }),
        );
    let addr = common::serve(BatchLayer::new("/batch").layer_router(router)).await;
    let batch = json!({"requests": [{"url": "/fast"}, {"url": "/forever"}]});
    let mut reading = Reading::post(addr, "/batch", &[JSON], batch.to_string()).await;
    reading
        .until("the first item", |t| t.contains("\"fast\""))
        .await;
    drop(reading);
    within(
        "the second item's handler being dropped",
        dropped.notified(),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_batch_with_nothing_left_to_start_is_over_however_slowly_it_is_read() {
    let started = Arc::new(AtomicUsize::new(0));
    // No minimum rate for readers: `hostile_readers.rs` tries that.
    let app = BatchLayer::new("/batch")
        .batch_timeout(Duration::from_secs(5))
        .no_reply_min_rate()
        .layer_router(counting(
            Arc::clone(&started),
            Arc::default(),
            Arc::default(),
        ));
    // Four 16 KiB items: the last one takes the unread reply past 64 KiB.
    let requests: Vec<_> = (0..4)
        .map(|i| json!({ "url": format!("/big/{i}") }))
        .collect();
    let mut request = batch_request(&json!({ "requests": requests }));
    request
        .headers_mut()
        .insert("accept", "application/x-ndjson".parse().unwrap());
    let response = app.oneshot(request).await.unwrap();
    // Nobody reads until well past the deadline: the batch had ended before it.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let last = std::str::from_utf8(&body).unwrap().lines().last().unwrap();
    let last: Value = serde_json::from_str(last).unwrap();
    assert_eq!(last["responses"], 4);
    assert_eq!(last["cutShort"], Value::Null, "{last}");
}

/// The run and the body on different threads: every reply arrives whole, many times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_reply_streams_whole_between_threads() {
    let started = Arc::new(AtomicUsize::new(0));
    let layer = BatchLayer::new("/batch")
        .max_requests(200)
        .max_response_bytes(64 << 20);
    let app = layer.layer_router(counting(
        Arc::clone(&started),
        Arc::default(),
        Arc::default(),
    ));
    let addr = common::serve(app).await;
    let requests: Vec<_> = (0..200)
        .map(|i| json!({ "url": format!("/big/{i}") }))
        .collect();
    let batch = json!({ "requests": requests }).to_string();
    for _ in 0..5 {
        let reading = Reading::post(addr, "/batch", &[JSON], batch.clone()).await;
        let reply: Value = serde_json::from_str(&reading.rest().await).unwrap();
        let items = reply["responses"].as_array().unwrap();
        assert_eq!(items.len(), 200);
        let whole =
            |i: &Value| i["status"] == 200 && i["body"].as_str().unwrap().len() == 16 * 1024;
        assert!(items.iter().all(whole));
    }
    assert_eq!(started.load(Ordering::SeqCst), 1000);
}
