//! Hostile input, classes 6 and 7: the reply's limit counts what is written (escapes,
//! base64, headers), and no sub-response can make the whole reply unreadable: embedded
//! JSON is checked as strict parsers check it.

mod common;

use base64::Engine as _;
use common::{start, Reply};
use serde_json::{json, Value};
use tower_http_batch::BatchLayer;

const LIMIT: usize = 1 << 20;

fn layer() -> BatchLayer {
    BatchLayer::new("/batch")
        .max_response_bytes(LIMIT)
        .max_body_bytes(8 << 20)
}

/// The reply is no larger than the limit and a small frame per item (id, status, keys).
fn within_limit(reply: &Reply, items: usize) {
    assert!(
        reply.body.len() <= LIMIT + items * 200,
        "a reply of {} bytes for a limit of {LIMIT}",
        reply.body.len()
    );
}

#[tokio::test]
async fn escaped_control_bytes_count_as_written() {
    // 100 KB of 0x01 is 600 KB once escaped (`\u0001`): one body fits, the second would not.
    let (http, calls) = start(layer()).await;
    let requests: Vec<Value> = (0..20)
        .map(|_| json!({"url": "/bytes?n=100000&b=1"}))
        .collect();
    let reply = http.batch(&json!({ "requests": requests }), &[]).await;
    within_limit(&reply, 20);
    let items = reply.items();
    assert_eq!(calls.get(), 20, "every item still runs");
    assert_eq!(items[0]["body"].as_str().unwrap().len(), 100_000);
    for item in &items[1..] {
        assert_eq!(item["status"], 200);
        assert!(item.get("body").is_none());
        let why = item["bodyOmitted"].as_str().unwrap();
        assert!(why.contains("max_response_bytes"), "{why}");
    }
}

#[tokio::test]
async fn base64_bodies_count_as_written() {
    let (http, _) = start(layer()).await;
    // 400 KB of bytes that are not UTF-8 become 533 KB of base64: one fits, not two.
    let requests: Vec<Value> = (0..5)
        .map(|_| json!({"url": "/bytes?n=400000&b=255"}))
        .collect();
    let reply = http.batch(&json!({ "requests": requests }), &[]).await;
    within_limit(&reply, 5);
    let items = reply.items();
    assert!(items[0].get("body").is_some());
    assert!(items[1..].iter().all(|i| i.get("bodyOmitted").is_some()));
}

#[tokio::test]
async fn response_headers_count_too() {
    // 50 headers of 2 KB on every response: ten items' headers fit, then `{}`.
    let (http, _) = start(layer()).await;
    let requests: Vec<Value> = (0..30)
        .map(|_| json!({"url": "/headers?n=50&size=2000"}))
        .collect();
    let reply = http.batch(&json!({ "requests": requests }), &[]).await;
    within_limit(&reply, 30);
    let items = reply.items();
    let full = items
        .iter()
        .filter(|i| i["headers"].as_object().unwrap().len() >= 50)
        .count();
    assert!((9..=10).contains(&full), "{full} items with their headers");
    let cut = items.last().unwrap();
    assert_eq!(cut["status"], 200);
    assert_eq!(cut["headers"], json!({}));
    let why = cut["headersOmitted"].as_str().unwrap();
    assert!(why.contains("max_response_bytes"), "{why}");
}

/// An item whose sub-response is `body`, declared `application/json`.
fn json_body(body: &[u8]) -> Value {
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    json!({"method": "POST", "url": "/json", "headers": {"content-type": "application/octet-stream"}, "body": encoded})
}

#[tokio::test]
async fn json_strict_parsers_refuse_is_carried_as_a_string() {
    let (http, _) = start(layer()).await;
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let reply = http
        .batch(
            &json!({"requests": [
                json_body(deep.as_bytes()),
                json_body(br#"{"name": "\ud800"}"#),
                json_body(b"[\"caf\xe9\"]"),
                json_body(br#"{"fine": [1, 2]}"#),
            ]}),
            &[],
        )
        .await;
    // The reply is strict JSON: serde_json's default limits read it, and Python's too.
    let items = reply.items();
    assert_eq!(items[0]["body"], deep.as_str());
    assert_eq!(items[1]["body"], r#"{"name": "\ud800"}"#);
    assert_eq!(
        items[2]["body"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"[\"caf\xe9\"]")
    );
    for item in &items[..3] {
        let note = item["bodyNote"].as_str().unwrap();
        assert!(
            note.contains("strict JSON parsers would refuse it"),
            "{note}"
        );
    }
    assert_eq!(items[3]["body"], json!({"fine": [1, 2]}));
    assert!(items[3].get("bodyNote").is_none());
    let python = std::process::Command::new("python3")
        .args(["-c", "import json, sys; json.load(sys.stdin)"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(&reply.body)?;
            child.wait()
        })
        .expect("python3 runs");
    assert!(python.success(), "Python's json reads the reply");
}

#[tokio::test]
async fn bodies_just_under_the_parser_limit_keep_the_reply_readable() {
    // The reply nests a body three deep (two in the bulk format): a body of 125 to 127
    // levels is valid JSON on its own and would still push the reply past serde_json's
    // default limit of 128, so only up to 124 is embedded.
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let layer = layer().bulk("/bulk", "");
    let (http, _) = start(layer).await;
    let depths = [124, 125, 126, 127];
    let items: Vec<Value> = depths
        .iter()
        .map(|&n| json_body(deep(n).as_bytes()))
        .collect();
    let reply = http.batch(&json!({ "requests": items }), &[]).await;
    let items = reply.items();
    assert_eq!(
        items[0]["body"],
        serde_json::from_str::<Value>(&deep(124)).unwrap()
    );
    for (item, n) in items[1..].iter().zip(&depths[1..]) {
        assert_eq!(item["body"], deep(*n).as_str(), "depth {n}");
        let note = item["bodyNote"].as_str().unwrap();
        assert!(note.contains("nested deeper than 124"), "{note}");
    }
    let bulk: Vec<Value> = depths
        .iter()
        .map(|&n| json!({"url": "/json", "method": "POST", "data": deep(n)}))
        .collect();
    let reply = http
        .send_json("POST", "/bulk", json!({ "requests": bulk }).to_string())
        .await;
    let parsed: Value = serde_json::from_slice(&reply.body).expect("the bulk reply is strict JSON");
    assert!(parsed[0]["contents"].is_array(), "{:.200}", parsed[0]);
    assert!(parsed[3]["contents"].is_string(), "{:.200}", parsed[3]);
}

#[tokio::test]
async fn items_shown_back_in_a_resource_reply_keep_it_readable() {
    // Resource bulk shows a failed item as it was sent: an out-of-range number (which
    // serde_json refuses) or deep nesting in it must not make the whole reply unreadable.
    let layer = BatchLayer::default()
        .resource("/status/422")
        .resource("/json");
    let (http, _) = start(layer).await;
    let nested = format!("{}1{}", "[".repeat(124), "]".repeat(124));
    let body = format!(r#"{{"422": [{{"n": -2E1118895}}, {{"deep": {nested}}}, {{"ok": 1}}]}}"#);
    let reply = http.send_json("POST", "/status/422/batch", body).await;
    assert_eq!(reply.status, 207);
    let parsed: Value = serde_json::from_slice(&reply.body).expect("strict JSON");
    assert_eq!(parsed["failed"][0]["item"], r#"{"n": -2E1118895}"#);
    assert!(parsed["failed"][1]["item"].is_string());
    assert_eq!(parsed["failed"][2]["item"], json!({"ok": 1}));
    // A created resource whose body strict parsers refuse is shown as `null`, not as the
    // item that was sent.
    let body = r#"{"json": [{"n": -2E1118895}]}"#;
    let reply = http.send_json("POST", "/json/batch", body).await;
    let parsed: Value = serde_json::from_slice(&reply.body).expect("strict JSON");
    assert_eq!(parsed["created"], json!([null]), "{parsed}");
}
