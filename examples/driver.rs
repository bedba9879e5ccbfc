//! A fixed amount of work for callgrind, which counts instructions to the instruction:
//! `ROUNDS` rounds, each one batch of 100 small `GET`s through the layer (`batch`) or the
//! same 100 requests as direct calls to the router (`direct`), or the batch with a new
//! `Idempotency-Key` each round (`keyed`: recorded in a `MemoryStore`), or always the same
//! key (`replayed`: run once, then replayed), or the 100 requests sent to the layer, which
//! passes them through (`through`), on a one-thread runtime.
//! The cost of one item is (count at R rounds − count at 0 rounds) / (R × 100), which
//! cancels start-up.
//!
//! ```text
//! cargo build --release --example driver
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p target/release/examples/driver batch 100
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p target/release/examples/driver batch 0
//! ```

use axum::body::Body;
use axum::routing::get;
use axum::{Json, Router};
use http::Request;
use http_body_util::BodyExt as _;
use serde_json::json;
use tower::ServiceExt as _;
use tower_http_batch::BatchLayer;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "batch".into());
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(100);
    let router = Router::new().route(
        "/items/{id}",
        get(|| async { Json(json!({"id": 1, "name": "small"})) }),
    );
    let batched = BatchLayer::new("/batch").layer_router(router.clone());
    let batch = json!({"requests": (0..100).map(|i| json!({"url": format!("/items/{i}")})).collect::<Vec<_>>()})
        .to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for round in 0..rounds {
            match mode.as_str() {
                "direct" => {
                    for i in 0..100 {
                        let req = Request::get(format!("/items/{i}")).body(Body::empty());
                        let res = router.clone().oneshot(req.unwrap()).await.unwrap();
                        let _ = res.into_body().collect().await.unwrap();
                    }
                }
                // The same requests through the batch layer, which passes them through.
                "through" => {
                    for i in 0..100 {
                        let req = Request::get(format!("/items/{i}")).body(Body::empty());
                        let res = batched.clone().oneshot(req.unwrap()).await.unwrap();
                        let _ = res.into_body().collect().await.unwrap();
                    }
                }
                mode => {
                    let mut req = Request::post("/batch")
                        .header("content-type", "application/json")
                        .body(Body::from(batch.clone()))
                        .unwrap();
                    let key = match mode {
                        "keyed" => Some(format!("key-{round}")),
                        "replayed" => Some("key".to_owned()),
                        _ => None,
                    };
                    if let Some(key) = key {
                        let key = http::HeaderValue::try_from(key).unwrap();
                        req.headers_mut().insert("idempotency-key", key);
                    }
                    let res = batched.clone().oneshot(req).await.unwrap();
                    let _ = res.into_body().collect().await.unwrap();
                }
            }
        }
    });
}
