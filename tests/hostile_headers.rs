//! Hostile input, class 1: header floods that used to panic inside `HeaderMap`. Each gets a
//! clear `400` naming the item and the field; nothing runs, and the connection survives.

mod common;

use common::{start, Http};
use serde_json::{json, Map, Value};
use tower_http_batch::BatchLayer;

fn layer() -> BatchLayer {
    BatchLayer::new("/batch")
        .bulk("/bulk", "")
        .max_body_bytes(4 << 20)
}

/// An object of `n` distinct header names.
fn headers(n: usize) -> Value {
    let map: Map<String, Value> = (0..n).map(|i| (format!("x-h{i}"), json!("v"))).collect();
    Value::Object(map)
}

/// Asserts a 400 at item `index`, field `headers`, whose detail names `limit`.
fn refused(reply: &common::Reply, index: u64, limit: &str) {
    let p = reply.problem(400);
    let errors = p["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{p}");
    assert_eq!(errors[0]["index"], index, "{p}");
    assert_eq!(errors[0]["field"], "headers", "{p}");
    let detail = errors[0]["detail"].as_str().unwrap();
    assert!(detail.contains(limit), "{detail}");
}

/// The server still answers on the same keep-alive connection.
async fn still_serves(http: &Http) {
    let reply = http
        .batch(&json!({"requests": [{"url": "/text"}]}), &[])
        .await;
    assert_eq!(reply.items()[0]["status"], 200);
}

#[tokio::test]
async fn a_json_item_with_25000_header_names_is_refused() {
    let (http, calls) = start(layer()).await;
    let batch = json!({"requests": [
        {"url": "/text"},
        {"url": "/whoami", "headers": headers(25_000)},
    ]});
    refused(&http.batch(&batch, &[]).await, 1, "max_item_headers");
    assert_eq!(calls.get(), 0, "nothing runs");
    still_serves(&http).await;
}

#[tokio::test]
async fn a_bulk_item_with_30000_header_lines_is_refused() {
    let (http, calls) = start(layer()).await;
    let lines: Vec<String> = (0..30_000).map(|i| format!("X-H{i}: v")).collect();
    let bulk = json!({"requests": [{"url": "/whoami", "headers": lines}]});
    let reply = http.send_json("POST", "/bulk", bulk.to_string()).await;
    refused(&reply, 0, "max_item_headers");
    assert_eq!(calls.get(), 0);
    still_serves(&http).await;
}

#[tokio::test]
async fn many_values_of_one_name_and_large_values_count_too() {
    let (http, calls) = start(layer()).await;
    let values: Vec<String> = (0..101).map(|i| format!("v{i}")).collect();
    let batch = json!({"requests": [{"url": "/echo", "headers": {"x-many": values}}]});
    refused(&http.batch(&batch, &[]).await, 0, "max_item_headers");
    let big = "a".repeat(17 * 1024);
    let batch = json!({"requests": [{"url": "/echo", "headers": {"x-big": big}}]});
    refused(&http.batch(&batch, &[]).await, 0, "max_item_header_bytes");
    // References count as values as well.
    let refs: Vec<String> = (0..101).map(|_| "{{a#/status}}".to_string()).collect();
    let batch = json!({"requests": [
        {"id": "a", "url": "/text"},
        {"url": "/echo", "dependsOn": ["a"], "headers": {"x-ref": refs}},
    ]});
    refused(&http.batch(&batch, &[]).await, 1, "max_item_headers");
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn up_to_the_caps_headers_pass_and_the_caps_are_configurable() {
    let (http, _) = start(layer()).await;
    let batch = json!({"requests": [{"url": "/echo", "headers": headers(100)}]});
    let items = http.batch(&batch, &[]).await.items();
    assert_eq!(items[0]["status"], 200);
    assert_eq!(items[0]["body"]["headers"]["x-h99"], json!(["v"]));

    let (http, _) = start(layer().max_item_headers(3).max_item_header_bytes(64)).await;
    let batch = json!({"requests": [{"url": "/echo", "headers": headers(4)}]});
    refused(
        &http.batch(&batch, &[]).await,
        0,
        "the limit is 3 (max_item_headers)",
    );
    let batch = json!({"requests": [{"url": "/echo", "headers": {"x-a": "b".repeat(64)}}]});
    refused(
        &http.batch(&batch, &[]).await,
        0,
        "the limit is 64 (max_item_header_bytes)",
    );
}
