//! Load over real HTTP on loopback: sub-requests per second when they travel in batches,
//! against the same requests sent one by one as HTTP/1.1 keep-alive requests from the same
//! client (hyper's client, one connection, one request at a time).
//!
//! ```text
//! cargo run --release --example load                       # 100 per batch, 300 rounds
//! cargo run --release --example load -- --items 100 --rounds 1000
//! ```
//!
//! The server is an axum `Router` whose handler answers a small JSON object, wrapped in
//! `BatchLayer`, served by `axum::serve` on 127.0.0.1:0 in the same process (a tokio
//! runtime with two worker threads, shared with the client).

use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tower_http_batch::BatchLayer;

/// Sub-requests per second: batched against one request each.
#[derive(Parser)]
struct Args {
    /// Sub-requests per batch (and per round of separate requests).
    #[arg(long, default_value_t = 100)]
    items: usize,
    /// Rounds measured, after as many warm-up rounds as a tenth of this.
    #[arg(long, default_value_t = 300)]
    rounds: usize,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn send(client: &HttpClient, req: http::Request<Full<Bytes>>) -> (http::StatusCode, Bytes) {
    let res = client.request(req).await.expect("the server answers");
    let status = res.status();
    let body = res.into_body().collect().await.expect("a body").to_bytes();
    (status, body)
}

/// One round of separate requests: `items` GETs, one after another.
async fn separate(client: &HttpClient, base: &str, items: usize) {
    for i in 0..items {
        let req = http::Request::get(format!("{base}/items/{i}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, _) = send(client, req).await;
        assert_eq!(status, 200);
    }
}

/// One round as one batch.
async fn batched(client: &HttpClient, base: &str, batch: &Bytes, items: usize) {
    let req = http::Request::post(format!("{base}/batch"))
        .header("content-type", "application/json")
        .body(Full::new(batch.clone()))
        .unwrap();
    let (status, body) = send(client, req).await;
    assert_eq!(status, 200);
    // Cheap check that every item came back (the reply ends with the last one).
    assert!(body.len() > items * 20);
}

fn rate(items: usize, rounds: usize, elapsed: Duration) -> f64 {
    (items * rounds) as f64 / elapsed.as_secs_f64()
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let router = Router::new().route(
        "/items/{id}",
        get(
            |axum::extract::Path(id): axum::extract::Path<u64>| async move {
                Json(json!({"id": id, "name": "small"}))
            },
        ),
    );
    let app = BatchLayer::new("/batch")
        .max_requests(args.items.max(1))
        .layer_router(router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http();
    let batch = Bytes::from(
        json!({"requests": (0..args.items).map(|i| json!({"id": i.to_string(), "url": format!("/items/{i}")})).collect::<Vec<_>>()})
            .to_string(),
    );

    // Check the batch once, whole.
    let req = http::Request::post(format!("{base}/batch"))
        .header("content-type", "application/json")
        .body(Full::new(batch.clone()))
        .unwrap();
    let (_, body) = send(&client, req).await;
    let reply: Value = serde_json::from_slice(&body).unwrap();
    let responses = reply["responses"].as_array().unwrap();
    assert_eq!(responses.len(), args.items);
    assert!(responses.iter().all(|r| r["status"] == 200));

    let warm_up = (args.rounds / 10).max(1);
    for _ in 0..warm_up {
        separate(&client, &base, args.items).await;
        batched(&client, &base, &batch, args.items).await;
    }
    let start = Instant::now();
    for _ in 0..args.rounds {
        separate(&client, &base, args.items).await;
    }
    let separate_time = start.elapsed();
    let start = Instant::now();
    for _ in 0..args.rounds {
        batched(&client, &base, &batch, args.items).await;
    }
    let batched_time = start.elapsed();

    let separate_rate = rate(args.items, args.rounds, separate_time);
    let batched_rate = rate(args.items, args.rounds, batched_time);
    println!(
        "{} rounds of {} sub-requests over HTTP/1.1 keep-alive on loopback",
        args.rounds, args.items
    );
    println!(
        "separate requests: {:>10.0} sub-requests/s ({:.1} µs each)",
        separate_rate,
        1e6 / separate_rate
    );
    println!(
        "in batches:        {:>10.0} sub-requests/s ({:.1} µs each)",
        batched_rate,
        1e6 / batched_rate
    );
    println!("ratio:             {:>10.1}x", batched_rate / separate_rate);
}
