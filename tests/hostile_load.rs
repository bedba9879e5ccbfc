//! Hostile input, class 9: the batches in flight are bounded (`max_concurrent_batches`),
//! from the arrival of a batch until its reply has been taken. With no room to wait
//! (`max_waiting_batches(0)`; `hostile_readers.rs` tries the wait), one more gets `503`
//! with `Retry-After`, with nothing read or run; requests that pass through are not
//! counted.

mod common;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use common::Http;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tower_http_batch::BatchLayer;

/// `/block` says it has started, then never answers; `/text` answers.
fn router(entered: Arc<Notify>) -> Router {
    Router::new()
        .route(
            "/block",
            get(move || {
                let entered = entered.clone();
                async move {
                    entered.notify_one();
                    std::future::pending::<&str>().await
                }
            }),
        )
        .route("/text", get(|| async { "text" }))
        .route(
            "/bigjson",
            get(|| async {
                let body = format!("[{}0]", "0,".repeat(499_999));
                ([("content-type", "application/json")], body)
            }),
        )
}

#[tokio::test(start_paused = true)]
async fn batches_past_the_bound_get_503_and_places_come_back() {
    let entered = Arc::new(Notify::new());
    let layer = BatchLayer::new("/batch")
        .max_concurrent_batches(2)
        .max_waiting_batches(0)
        .timeout(Duration::from_secs(60));
    let http = Http::new(common::serve(layer.layer_router(router(entered.clone()))).await);
    let blocked = json!({"requests": [{"url": "/block"}]});
    let mut running = Vec::new();
    for _ in 0..2 {
        let (http, blocked) = (http.clone(), blocked.clone());
        running.push(tokio::spawn(async move { http.batch(&blocked, &[]).await }));
        entered.notified().await;
    }
    let text = json!({"requests": [{"url": "/text"}]});
    let busy = http.batch(&text, &[]).await;
    let p = busy.problem(503);
    assert_eq!(busy.headers["retry-after"], "1");
    assert_eq!(busy.headers["connection"], "close", "its body was not read");
    assert_eq!(p["type"], "urn:tower-http-batch:too-many-batches");
    assert!(p["detail"]
        .as_str()
        .unwrap()
        .contains("max_concurrent_batches"));
    // Requests that pass through are not counted.
    assert_eq!(http.send("GET", "/text", &[], "").await.status, 200);
    // The two batches end (their items time out); their places come back.
    for batch in running {
        assert_eq!(batch.await.unwrap().items()[0]["status"], 504);
    }
    assert_eq!(http.batch(&text, &[]).await.items()[0]["body"], "text");
}

#[tokio::test]
async fn a_reply_keeps_its_place_until_it_has_gone() {
    let layer = BatchLayer::new("/batch")
        .max_concurrent_batches(1)
        .max_waiting_batches(0);
    let http = Http::new(common::serve(layer.layer_router(router(Arc::default()))).await);
    // Sixteen 1 MB bodies: a reply larger than the socket buffers hold, sent to a client
    // that reads only its first bytes.
    let requests: Vec<_> = (0..16).map(|_| json!({"url": "/bigjson"})).collect();
    let body = json!({ "requests": requests }).to_string();
    let mut slow = common::post_slowly(http.addr, &body).await;
    // Read until the head is in, no further.
    let mut got = common::read_head(&mut slow).await;
    assert!(got.starts_with(b"HTTP/1.1 200"));
    // Its reply is on its way: the one place is taken.
    let text = json!({"requests": [{"url": "/text"}]});
    http.batch(&text, &[]).await.problem(503);
    // Once the client has read it all, the place is free. The reply streams: it is
    // chunked, and ends with the last chunk.
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let read_all = async {
        while !got.ends_with(b"\r\n0\r\n\r\n") {
            let mut buf = vec![0u8; 64 * 1024];
            let n = slow.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed the connection");
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_all)
        .await
        .expect("the reply arrives");
    let reply = http.batch(&text, &[]).await;
    assert_eq!(reply.items()[0]["body"], "text");
}

/// A response body that counts, in `live`, the bytes it holds until it is dropped.
struct Tracked {
    bytes: Vec<u8>,
    live: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.fetch_sub(self.bytes.len(), Ordering::SeqCst);
    }
}

/// `/tracked` answers 1 MB of text that counts itself in `live`; `/live` reports the
/// count, as `{"live": bytes}`.
fn tracking(live: Arc<AtomicUsize>) -> Router {
    let held = live.clone();
    Router::new()
        .route(
            "/tracked",
            get(move || {
                let live = live.clone();
                async move {
                    live.fetch_add(1 << 20, Ordering::SeqCst);
                    let body = Tracked {
                        bytes: vec![b'a'; 1 << 20],
                        live,
                    };
                    ([("content-type", "text/plain")], Bytes::from_owner(body))
                }
            }),
        )
        .route(
            "/live",
            get(move || async move { axum::Json(json!({"live": held.load(Ordering::SeqCst)})) }),
        )
}

#[tokio::test]
async fn a_batch_holds_the_bodies_it_still_needs_not_every_body() {
    let live = Arc::new(AtomicUsize::new(0));
    let layer = BatchLayer::new("/batch").max_response_bytes(64 << 20);
    let http = Http::new(common::serve(layer.layer_router(tracking(live.clone()))).await);
    // Twenty 1 MiB bodies, and one that a later item's reference may read: once written
    // into the reply, a body no reference will read is let go.
    let mut requests: Vec<_> = (0..20)
        .map(|i| json!({"id": format!("t{i}"), "url": "/tracked"}))
        .collect();
    requests.push(json!({"id": "kept", "url": "/tracked"}));
    requests.push(json!({"id": "before", "url": "/live"}));
    requests.push(
        json!({"id": "reader", "url": "/live", "dependsOn": ["kept"],
                         "headers": {"x-status": "{{kept#/status}}"}}),
    );
    requests.push(json!({"id": "after", "url": "/live"}));
    let items = http
        .batch(&json!({ "requests": requests }), &[])
        .await
        .items();
    assert_eq!(items.len(), 24);
    assert!(items[..21]
        .iter()
        .all(|i| i["body"].as_str().unwrap().len() == 1 << 20));
    // While `before` ran, only the body `reader` may still read was held; once `reader`
    // had its references resolved, nothing.
    assert_eq!(
        items[21]["body"]["live"],
        1 << 20,
        "{:#}",
        items[21]["body"]
    );
    assert_eq!(items[23]["body"]["live"], 0, "{:#}", items[23]["body"]);
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "everything is let go at the end"
    );
}

#[tokio::test]
async fn bodies_held_for_references_are_bounded_by_the_reply_limit() {
    let live = Arc::new(AtomicUsize::new(0));
    let layer = BatchLayer::new("/batch").max_response_bytes((4 << 20) + 100_000);
    let http = Http::new(common::serve(layer.layer_router(tracking(live.clone()))).await);
    // Twenty 1 MiB bodies, each of which the last item may read: without a bound the batch
    // would hold all twenty until then.
    let mut requests: Vec<_> = (0..20)
        .map(|i| json!({"id": format!("t{i}"), "url": "/tracked"}))
        .collect();
    requests.push(json!({"id": "before", "url": "/live"}));
    let ids: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    let headers: serde_json::Map<String, serde_json::Value> = (0..20)
        .map(|i| (format!("x-{i}"), json!(format!("{{{{t{i}#/status}}}}"))))
        .collect();
    requests.push(json!({"id": "reader", "url": "/live", "dependsOn": ids, "headers": headers}));
    let items = http
        .batch(&json!({ "requests": requests }), &[])
        .await
        .items();
    let kept = items[..20].iter().filter(|i| i["body"].is_string()).count();
    assert_eq!(kept, 4, "four bodies fit the limit");
    let omitted = items[19]["bodyOmitted"].as_str().unwrap();
    assert!(omitted.contains("max_response_bytes"), "{omitted}");
    assert_eq!(
        items[20]["body"]["live"],
        4 << 20,
        "{:#}",
        items[20]["body"]
    );
    assert_eq!(
        items[21]["status"], 200,
        "statuses are kept: {:#}",
        items[21]
    );
    assert_eq!(items[21]["body"]["live"], 0);
}

#[tokio::test]
async fn a_reference_into_a_body_left_out_says_why() {
    // `a` is held for `c`, so `b` does not fit beside it and is left out when it arrives.
    let layer = BatchLayer::new("/batch").max_response_bytes(1 << 20);
    let http = Http::new(common::serve(layer.layer_router(tracking(Arc::default()))).await);
    let batch = json!({"requests": [
        {"id": "a", "url": "/tracked"},
        {"id": "b", "url": "/tracked"},
        {"id": "c", "url": "/live", "dependsOn": ["a", "b"],
         "headers": {"x-a": "{{a#/status}}", "x-b": "{{b#/body}}"}},
    ]});
    let items = http.batch(&batch, &[]).await.items();
    assert!(items[1]["bodyOmitted"].is_string(), "{:#}", items[1]);
    assert_eq!(items[2]["status"], 424);
    let detail = items[2]["body"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"b\"") && detail.contains("was left out"),
        "{detail}"
    );
    assert!(detail.contains("max_response_bytes"), "{detail}");
}
