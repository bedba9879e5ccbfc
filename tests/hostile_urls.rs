//! Hostile input, classes 4 and 5: dot segments are decoded once, and nothing the layer
//! encoded is decoded again; `//host` and `\` are checked on the final path, after dot
//! segments, `$id` and references; a bulk URL stays under its base; a resource id stays one
//! segment. What the handler received is read back from the echo handler.

mod common;

use common::start;
use serde_json::{json, Value};
use tower_http_batch::BatchLayer;

fn layer() -> BatchLayer {
    BatchLayer::new("/batch")
        .bulk("/bulk", "/echo")
        .resource("/echo")
}

/// `a` answers `{"x": x}`; `b` sends `DELETE /echo/org/5/members/{{a#/body/x}}`.
fn member(x: &str) -> Value {
    json!({"requests": [
        {"id": "a", "method": "POST", "url": "/json", "body": {"x": x}},
        {"id": "b", "method": "DELETE", "url": "/echo/org/5/members/{{a#/body/x}}", "dependsOn": ["a"]},
    ]})
}

#[tokio::test]
async fn encoded_dots_from_references_stay_one_segment() {
    let (http, _) = start(layer()).await;
    for (x, seen) in [
        ("%2e%2e", "/echo/org/5/members/%252e%252e"),
        ("%252e%252e", "/echo/org/5/members/%25252e%25252e"),
        (".%2e", "/echo/org/5/members/.%252e"),
        ("...", "/echo/org/5/members/..."),
    ] {
        let items = http.batch(&member(x), &[]).await.items();
        assert_eq!(items[1]["status"], 200, "{x}: {items:#?}");
        assert_eq!(items[1]["body"]["method"], "DELETE");
        assert_eq!(items[1]["body"]["uri"], seen, "{x}");
    }
}

#[tokio::test]
async fn a_reference_that_makes_a_dot_segment_is_not_sent() {
    let (http, calls) = start(layer()).await;
    for x in [".", ".."] {
        let before = calls.get();
        let items = http.batch(&member(x), &[]).await.items();
        assert_eq!(items[1]["status"], 424, "{x}: {items:#?}");
        let detail = items[1]["body"]["detail"].as_str().unwrap();
        assert!(detail.contains("dot segment"), "{detail}");
        assert_eq!(calls.get(), before + 1, "{x}: only `a` ran");
    }
    // Two values that make `..` together, and text and a value.
    let items = http
        .batch(
            &json!({"requests": [
                {"id": "a", "method": "POST", "url": "/json", "body": {"d": "."}},
                {"id": "b", "method": "DELETE", "url": "/echo/x/{{a#/body/d}}{{a#/body/d}}", "dependsOn": ["a"]},
                {"id": "c", "method": "DELETE", "url": "/echo/x/.{{a#/body/d}}/y", "dependsOn": ["a"]},
                {"id": "d", "url": "/echo/x?{{a#/body/d}}{{a#/body/d}}", "dependsOn": ["a"]},
            ]}),
            &[],
        )
        .await
        .items();
    assert_eq!(items[1]["status"], 424);
    assert_eq!(items[2]["status"], 424);
    assert_eq!(items[3]["status"], 200, "in the query, dots are data");
    assert_eq!(items[3]["body"]["uri"], "/echo/x?..");
}

#[tokio::test]
async fn literal_urls_decode_dots_once() {
    let (http, _) = start(layer()).await;
    let items = http
        .batch(
            &json!({"requests": [
                {"method": "DELETE", "url": "/echo/org/5/members/%252e%252e"},
                {"url": "/echo/a/%2e%2e/b"},
                {"url": "/echo/a/%2E/b"},
            ]}),
            &[],
        )
        .await
        .items();
    assert_eq!(items[0]["body"]["uri"], "/echo/org/5/members/%252e%252e");
    assert_eq!(items[1]["body"]["uri"], "/echo/b");
    assert_eq!(items[2]["body"]["uri"], "/echo/a/b");
}

#[tokio::test]
async fn network_paths_and_backslashes_are_refused_on_the_final_path() {
    let (http, calls) = start(layer()).await;
    for url in [
        "/.//evil/x",
        "/..//evil/x",
        "/x/..//evil/x",
        "/%2e//evil/x",
        "/./\\evil",
        "/a\\b",
        "echo/..//evil",
    ] {
        let p = http
            .batch(&json!({"requests": [{"url": url}]}), &[])
            .await
            .problem(400);
        assert_eq!(p["errors"][0]["index"], 0, "{url}: {p}");
        assert_eq!(p["errors"][0]["field"], "url", "{url}: {p}");
    }
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn a_location_that_becomes_a_network_path_is_not_followed() {
    let (http, calls) = start(layer()).await;
    let items = http
        .batch(
            &json!({"requests": [
                {"id": "a", "url": "/located?to=/.//evil/x"},
                {"id": "b", "url": "$a/t", "dependsOn": ["a"]},
            ]}),
            &[],
        )
        .await
        .items();
    assert_eq!(items[0]["status"], 201);
    assert_eq!(items[1]["status"], 424, "{items:#?}");
    let detail = items[1]["body"]["detail"].as_str().unwrap();
    assert!(detail.contains("`//`"), "{detail}");
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn bulk_urls_stay_under_their_base() {
    let (http, calls) = start(layer()).await;
    // The last one escapes only for a server that decodes `%2f`, then normalises.
    let escape = json!({"requests": [
        {"url": "/v10/../../whoami"},
        {"url": "/v10/%2e%2e/%2e%2e/whoami"},
        {"url": "/v10/..%2f..%2fwhoami"},
    ]});
    let p = http
        .send_json("POST", "/bulk", escape.to_string())
        .await
        .problem(400);
    for i in [0, 1, 2] {
        assert_eq!(p["errors"][i]["field"], "url", "{p}");
        let detail = p["errors"][i]["detail"].as_str().unwrap();
        assert!(detail.contains("must stay under \"/echo\""), "{detail}");
    }
    assert_eq!(calls.get(), 0);
    let inside = json!({"requests": [{"url": "/v10/./x/../Accounts"}]});
    let reply = http.send_json("POST", "/bulk", inside.to_string()).await;
    assert_eq!(reply.json()[0]["contents"]["uri"], "/echo/v10/Accounts");
}

#[tokio::test]
async fn resource_ids_stay_one_segment() {
    let (http, _) = start(layer()).await;
    let updates = json!({"updates": [
        {"id": "%2e%2e", "x": 1},
        {"id": "%252e%252e", "x": 1},
        {"id": "a/../..", "x": 1},
    ]});
    let reply = http
        .send_json("PATCH", "/echo/batch", updates.to_string())
        .await;
    let r = reply.json();
    let uris: Vec<&Value> = r["succeeded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["uri"])
        .collect();
    assert_eq!(
        uris,
        [
            "/echo/%252e%252e",
            "/echo/%25252e%25252e",
            "/echo/a%2F..%2F.."
        ],
        "{r}"
    );
}
