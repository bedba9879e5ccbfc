//! How `batch-proxy` reaches its upstream: with `--concurrency n`, a batch's sub-requests
//! go out n at once over pooled connections (HTTP/1.1: one each, kept for the next batch;
//! `--upstream-http2`: all on one).

#![cfg(feature = "proxy")]

mod common;

use common::process::proxy;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Barrier;

/// An upstream (HTTP/1.1 or HTTP/2 without TLS) whose every request waits until `n` are in
/// flight at once, then answers `met`; a request still alone after 20 s answers `alone`.
/// Also returns the connections it has taken, by the client's address.
async fn meeting_upstream(n: usize) -> (SocketAddr, Arc<Mutex<HashSet<SocketAddr>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let barrier = Arc::new(Barrier::new(n));
    let connections = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            connections.lock().unwrap().insert(peer);
            let barrier = barrier.clone();
            let service = service_fn(move |_req| {
                let barrier = barrier.clone();
                async move {
                    let met = tokio::time::timeout(Duration::from_secs(20), barrier.wait());
                    let body = match met.await {
                        Ok(_) => "met",
                        Err(_) => "alone",
                    };
                    let body =
                        http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes()));
                    Ok::<_, std::convert::Infallible>(http::Response::new(body))
                }
            });
            tokio::spawn(async move {
                let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = server.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, seen)
}

/// What the items of a batch of `n` `GET /meet` said.
async fn meet(http: &common::Http, n: usize) -> Vec<Value> {
    let requests: Vec<_> = (0..n).map(|_| json!({ "url": "/meet" })).collect();
    let items = http
        .batch(&json!({ "requests": requests }), &[])
        .await
        .items();
    items.iter().map(|item| item["body"].clone()).collect()
}

#[tokio::test]
async fn concurrent_sub_requests_go_out_over_pooled_connections() {
    let (upstream, connections) = meeting_upstream(4).await;
    let flags = ["--concurrency", "4", "--threads", "1"];
    let (_proxy, http) = proxy(&format!("http://{upstream}"), &flags);
    assert_eq!(meet(&http, 4).await, vec![json!("met"); 4]);
    assert_eq!(connections.lock().unwrap().len(), 4);
    // The next batch finds them in the pool.
    assert_eq!(meet(&http, 8).await, vec![json!("met"); 8]);
    assert_eq!(connections.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn over_http2_they_share_one_connection() {
    let (upstream, connections) = meeting_upstream(4).await;
    let flags = ["--concurrency", "4", "--upstream-http2", "--threads", "1"];
    let (_proxy, http) = proxy(&format!("http://{upstream}"), &flags);
    assert_eq!(meet(&http, 4).await, vec![json!("met"); 4]);
    assert_eq!(meet(&http, 4).await, vec![json!("met"); 4]);
    assert_eq!(connections.lock().unwrap().len(), 1);
}
