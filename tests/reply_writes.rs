//! How a streamed reply is cut into writes: items that finish within 1 ms of the body's
//! last write are gathered into one frame (one write to the socket, one wake-up of the
//! reader), and an item that finishes after a quiet spell leaves at once. Tokio's clock is
//! paused, so "at once" and "1 ms later" are exact.

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt as _;
use tower_http_batch::BatchLayer;

/// `/yield` answers after giving way once; `/sleep/{ms}` after that long; `/big` 20 KB of
/// text after giving way once.
fn router() -> Router {
    Router::new()
        .route(
            "/big",
            get(|| async {
                tokio::task::yield_now().await;
                "x".repeat(20_000)
            }),
        )
        .route(
            "/yield",
            get(|| async {
                tokio::task::yield_now().await;
                "yielded"
            }),
        )
        .route(
            "/sleep/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "slept"
            }),
        )
}

/// The reply's frames, each with when it came (from the request).
async fn frames(urls: &[&str]) -> Vec<(Duration, String)> {
    let requests: Vec<_> = urls.iter().map(|u| json!({ "url": u })).collect();
    let body = json!({ "requests": requests }).to_string();
    let request = http::Request::post("/batch")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();
    let start = Instant::now();
    let app = BatchLayer::new("/batch").layer_router(router());
    let response = app.oneshot(request).await.unwrap();
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        let data: Bytes = frame.unwrap().into_data().unwrap();
        frames.push((start.elapsed(), String::from_utf8(data.to_vec()).unwrap()));
    }
    frames
}

#[tokio::test(start_paused = true)]
async fn items_that_finish_together_leave_in_one_write() {
    // Each item gives way once: without gathering, the body would be woken, and write,
    // once per item.
    let frames = frames(&["/yield"; 20]).await;
    let texts: Vec<_> = frames.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert_eq!(texts[0], r#"{"responses":["#);
    assert_eq!(texts[1].matches("yielded").count(), 20);
}

#[tokio::test(start_paused = true)]
async fn an_item_after_a_quiet_spell_leaves_at_once_and_the_next_within_1_ms() {
    // The first item comes 10 ms after the head: it leaves then. The second finishes in
    // the same instant: it waits the 1 ms, not the 100 ms the third takes.
    let frames = frames(&["/sleep/10", "/yield", "/sleep/100"]).await;
    let at = |needle: &str| {
        frames
            .iter()
            .find(|(_, text)| text.contains(needle))
            .map(|(at, _)| at.as_millis())
            .unwrap()
    };
    let first = frames
        .iter()
        .position(|(_, t)| t.contains("slept"))
        .unwrap();
    assert!(!frames[first].1.contains("yielded"), "{frames:?}");
    assert_eq!(at("slept"), 10, "{frames:?}");
    assert_eq!(at("yielded"), 11, "{frames:?}");
    assert_eq!(frames.last().unwrap().0.as_millis(), 110, "{frames:?}");
}

#[tokio::test(start_paused = true)]
async fn sixteen_kib_written_leave_at_once() {
    // The small item waits for the 1 ms; the big one after it takes the reply past 16 KiB,
    // which wakes the body at once, 100 ms before the batch ends.
    let frames = frames(&["/yield", "/big", "/sleep/100"]).await;
    let big = frames.iter().find(|(_, t)| t.contains("xxxx")).unwrap();
    assert_eq!(
        big.0.as_millis(),
        0,
        "{:?}",
        frames.iter().map(|f| f.0).collect::<Vec<_>>()
    );
}
