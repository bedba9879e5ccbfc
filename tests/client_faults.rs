//! The Rust batch client when things go wrong, over real HTTP: a server that is always
//! busy, an answer lost without keys, a `Retry-After` no client should wait for, an item
//! that waited for one failed and one throttled, bodies and repeated headers carried
//! byte for byte through this crate's own layer, and a coalescing window that closes.

mod common;

use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use common::client::*;
use http::{header, StatusCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::util::MapResponse;
use tower::{Layer, ServiceExt};
use tower_http_batch::client::{Batch, ClientError, Coalesce, Item, NotAnswered};
use tower_http_batch::BatchLayer;

/// The throttling service behind a batch layer, recorded.
async fn throttled() -> (
    std::net::SocketAddr,
    Recorder,
    Arc<Mutex<HashMap<String, usize>>>,
) {
    let calls = Arc::new(Mutex::new(HashMap::new()));
    let app = BatchLayer::new("/batch").layer(throttling(calls.clone()));
    let (addr, rec) = serve_recorded(MapResponse::new(app, IntoResponse::into_response)).await;
    (addr, rec, calls)
}

#[tokio::test]
async fn a_server_always_busy_is_asked_as_often_as_allowed_then_it_is_an_error() {
    let busy = Router::new().route(
        "/batch",
        axum::routing::post(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "0")],
            )
                .into_response()
        }),
    );
    let (addr, rec) = serve_recorded(busy).await;
    let batch = Batch::new().push(post_json("/x")).push(read("/y"));
    let err = client(http(), addr, "/batch")
        .oneshot(batch)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Rejected { status, .. } if status == 503),
        "{err}"
    );
    // The default four attempts, one key; the items are never resent on their own.
    let seen = rec.seen();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|s| s.key == seen[0].key));
}

fn post_json(path: &str) -> Item {
    post(path, serde_json::json!({"n": 1}))
}

#[tokio::test]
async fn without_keys_a_lost_answer_is_not_sent_again_unless_every_item_may_be() {
    let (addr, rec, calls) = throttled().await;
    let writes = Batch::new().push(post_json("/ok/w"));
    let client = client(LoseAnswers::new(|_| true), addr, "/batch").no_idempotency_keys();
    let err = client.clone().oneshot(writes).await.unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err}");
    assert_eq!(
        rec.seen().len(),
        1,
        "a POST whose answer was lost is not sent again"
    );
    assert!(rec.seen()[0].key.is_none());
    // Reads may be repeated: sent again (four attempts in all).
    let reads = Batch::new().push(read("/ok/r"));
    assert!(client.oneshot(reads).await.is_err());
    assert_eq!(rec.seen().len(), 5);
    assert_eq!(calls.lock().unwrap()["ok/w"], 1);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_client_waits_is_not_waited_for() {
    let (addr, rec, calls) = throttled().await;
    let forever = format!("/throttle/z/{}", u64::MAX);
    let batch = Batch::new().push(read(&forever)).push(read("/ok/fine"));
    let responses = client(http(), addr, "/batch").oneshot(batch).await.unwrap();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [429, 200], "the server's answer is kept");
    assert_eq!(responses.report().waited, Duration::ZERO);
    assert_eq!(rec.seen().len(), 1);
    assert_eq!(calls.lock().unwrap()["throttle/z"], 1);
}

#[tokio::test]
async fn an_item_that_waited_for_a_failed_one_is_not_resent_with_a_throttled_one() {
    let (addr, rec, calls) = throttled().await;
    let batch = Batch::new()
        .push(read("/missing").id("gone"))
        .push(read("/throttle/t/1").id("slow"))
        .push(
            read("/ok/both")
                .id("both")
                .depends_on("GONE")
                .depends_on("Slow"),
        )
        .push(read("/ok/one").id("one").depends_on("SLOW"));
    let responses = client(http(), addr, "/batch").oneshot(batch).await.unwrap();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [404, 200, 424, 200]);
    // Ids ignore case in dependsOn, and only the ids as given go on the wire.
    assert_eq!(rec.seen()[1].ids, ["slow", "one"]);
    let calls = calls.lock().unwrap();
    assert_eq!((calls.get("ok/both"), calls["ok/one"]), (None, 1));
}

#[tokio::test]
async fn bodies_and_repeated_headers_go_through_the_layer_byte_for_byte() {
    let (addr, _, _) = throttled().await;
    let big = r#"{"n": 123456789012345678901234567890, "z": 1, "a": 2}"#;
    let echo = |ct: &str, body: &'static [u8]| {
        let request = http::Request::post("/echo").header(header::CONTENT_TYPE, ct);
        Item::new(request.body(Bytes::from_static(body)).unwrap())
    };
    let batch = Batch::new()
        .push(echo("application/json", big.as_bytes()))
        .push(echo("text/plain; charset=utf-8", "héllo\n".as_bytes()))
        .push(echo("application/octet-stream", b"\x00\xff\x89PNG"));
    let responses = client(http(), addr, "/batch").oneshot(batch).await.unwrap();
    let bodies: Vec<&[u8]> = responses.iter().map(|r| &r.body()[..]).collect();
    assert_eq!(
        bodies,
        [big.as_bytes(), "héllo\n".as_bytes(), b"\x00\xff\x89PNG"]
    );
    let cookies: Vec<_> = responses
        .get(0)
        .unwrap()
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    // A body no server could read is refused before anything is sent.
    let bare = Item::new(
        http::Request::post("/echo")
            .body(Bytes::from_static(b"hello"))
            .unwrap(),
    );
    let err = client(http(), addr, "/batch")
        .oneshot(Batch::new().push(bare))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Invalid(_)), "{err}");
}

#[tokio::test]
async fn a_batch_request_that_fails_marks_its_items_and_never_resends_them() {
    let (addr, rec, calls) = throttled().await;
    let batch = (0..3).fold(Batch::new(), |b, i| b.push(post_json(&format!("/ok/p{i}"))));
    let inner = LoseAnswers::new(|n| n == 1);
    let client = client(inner, addr, "/batch")
        .max_requests(2)
        .batch_attempts(1);
    let responses = client.oneshot(batch).await.unwrap();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 502]);
    let unknown: Vec<(usize, bool)> = responses
        .not_answered()
        .map(|(i, n)| (i, n.maybe_ran))
        .collect();
    assert_eq!(
        unknown,
        [(2, true)],
        "it may have run: the server ran it, the answer was lost"
    );
    assert_eq!(rec.seen().len(), 2, "not resent under a new key");
    assert_eq!(
        calls.lock().unwrap().values().sum::<usize>(),
        3,
        "each ran once"
    );
    let _: Option<&NotAnswered> = responses.get(2).unwrap().extensions().get();
}

#[tokio::test]
async fn a_coalescing_window_closes_and_later_requests_go_in_the_next_batch() {
    let (addr, rec, _) = throttled().await;
    let loader = Coalesce::new(
        client(http(), addr, "/batch"),
        Duration::from_millis(20),
        100,
    );
    let read = |name: &str| {
        let request = http::Request::get(format!("/ok/{name}"))
            .body(Bytes::new())
            .unwrap();
        loader.clone().oneshot(request)
    };
    // Handed over in one poll, so all within the window whatever the machine's load.
    let (a, b, c) = tokio::join!(read("a"), read("b"), read("c"));
    let bodies: Vec<Bytes> = [a, b, c]
        .into_iter()
        .map(|r| r.unwrap().into_body())
        .collect();
    assert_eq!(bodies, ["a", "b", "c"]);
    assert_eq!(read("d").await.unwrap().into_body(), "d");
    let sizes: Vec<usize> = rec.seen().iter().map(|s| s.ids.len()).collect();
    assert_eq!(sizes, [3, 1], "the window closed before the fourth came");
}

#[tokio::test]
async fn a_spent_retry_budget_stops_every_retry() {
    use tower::retry::budget::TpsBudget;
    let (addr, rec, calls) = throttled().await;
    // No reserve and nothing earned by calls: no retry may start.
    let none = Arc::new(TpsBudget::new(Duration::from_secs(1), 0, 0.0));
    let frugal = client(http(), addr, "/batch").retry_budget(none);
    let batch = Batch::new().push(read("/throttle/q/1")).push(read("/ok/q"));
    let responses = frugal.oneshot(batch).await.unwrap();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [429, 200], "the throttled item keeps its answer");
    assert_eq!(responses.report().items_resent, 0);
    assert_eq!(rec.seen().len(), 1);
    assert_eq!(calls.lock().unwrap()["throttle/q"], 1);
    // The same for a batch request sent again: a busy server is asked once.
    let busy = axum::Router::new().route(
        "/batch",
        axum::routing::post(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "0")],
            )
                .into_response()
        }),
    );
    let (busy_addr, busy_rec) = serve_recorded(busy).await;
    let none = Arc::new(TpsBudget::new(Duration::from_secs(1), 0, 0.0));
    let client = client(http(), busy_addr, "/batch").retry_budget(none);
    assert!(client.oneshot(Batch::new().push(read("/x"))).await.is_err());
    assert_eq!(busy_rec.seen().len(), 1);
}
