//! Hostile input, class 3: references cannot multiply work. A dependency's body is parsed
//! only when a reference points into it, at most once per batch, and parsing and copying
//! are charged to `max_reference_bytes`. The bounds are checked through that budget: each
//! batch below fits a budget that parsing per item would pass many times over. (The issue's
//! attack used 1 MB bodies; 200 KB keeps the debug-build test quick and changes no count.)

mod common;

use common::start;
use serde_json::{json, Value};
use tower_http_batch::BatchLayer;

const SIZE: usize = 200_000;

/// 16 items that each answer a JSON array of `SIZE` bytes, then 84 that each depend on all 16 and
/// use `header` (with `{k}` for the dependency's index) in a header.
fn batch(header: impl Fn(usize) -> String) -> Value {
    let mut items: Vec<Value> = (0..16)
        .map(|k| json!({"id": format!("a{k}"), "url": format!("/bigjson?n={SIZE}")}))
        .collect();
    let all: Vec<String> = (0..16).map(|k| format!("a{k}")).collect();
    for i in 0..84 {
        let value: String = (0..16).map(&header).collect::<Vec<_>>().join(",");
        items.push(json!({"id": format!("b{i}"), "url": "/text", "dependsOn": all, "headers": {"x-ref": value}}));
    }
    json!({ "requests": items })
}

fn layer() -> BatchLayer {
    BatchLayer::new("/batch")
        .max_body_bytes(8 << 20)
        .max_response_bytes(64 << 20)
}

fn statuses(items: &[Value]) -> Vec<u64> {
    items
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn reading_status_or_headers_parses_no_body() {
    // A budget that one body fits but not two: 84 × 16 parses could not fit. None happens.
    let (http, _) = start(layer().max_reference_bytes(SIZE + SIZE / 2)).await;
    let items = http
        .batch(&batch(|k| format!("{{{{a{k}#/status}}}}")), &[])
        .await
        .items();
    assert!(
        statuses(&items).iter().all(|&s| s == 200),
        "{:?}",
        statuses(&items)
    );
    let ctype = "{{a3#/headers/content-type}}";
    let items = http.batch(&batch(|_| ctype.to_string()), &[]).await.items();
    assert!(statuses(&items).iter().all(|&s| s == 200));
}

#[tokio::test]
async fn a_body_is_parsed_once_per_batch() {
    // 16 bodies: 16 × SIZE to parse once, 84 × 16 × SIZE to parse per item.
    let (http, _) = start(layer().max_reference_bytes(17 * SIZE)).await;
    let items = http
        .batch(&batch(|k| format!("{{{{a{k}#/body/0}}}}")), &[])
        .await
        .items();
    assert!(
        statuses(&items).iter().all(|&s| s == 200),
        "{:?}",
        statuses(&items)
    );
    // The budget is what bounds it: when the second body does not fit, the items that
    // need it are not sent.
    let (http, calls) = start(layer().max_reference_bytes(SIZE + SIZE / 2)).await;
    let items = http
        .batch(&batch(|k| format!("{{{{a{k}#/body/0}}}}")), &[])
        .await
        .items();
    assert!(statuses(&items)[16..].iter().all(|&s| s == 424));
    let detail = items[16]["body"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("reading the body of request \"a1\"")
            && detail.contains("max_reference_bytes"),
        "{detail}"
    );
    assert_eq!(calls.get(), 16, "none of the 84 was sent");
}

#[tokio::test]
async fn every_copy_is_charged() {
    // Each item copies the whole body into its own: the budget holds one parse and 16
    // copies, then items are not sent.
    let (http, _) = start(layer().max_reference_bytes(17 * SIZE + SIZE / 2)).await;
    let mut items = vec![json!({"id": "a", "url": format!("/bigjson?n={SIZE}")})];
    for i in 0..40 {
        items.push(json!({"id": format!("b{i}"), "method": "POST", "url": "/json", "dependsOn": ["a"], "body": {"copy": "{{a#/body}}"}}));
    }
    let reply = http.batch(&json!({ "requests": items }), &[]).await.items();
    let ok = statuses(&reply).iter().filter(|&&s| s == 200).count();
    assert_eq!(ok, 1 + 16, "{:?}", statuses(&reply));
    let refused = reply.iter().find(|i| i["status"] == 424).unwrap();
    let detail = refused["body"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("copying the value of {{a#/body}}"),
        "{detail}"
    );
}
