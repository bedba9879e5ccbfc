//! The SugarCRM bulk format (seed 002) on the same engine: shape, base, headers,
//! identity and validation.

mod common;

use common::start;
use serde_json::{json, Value};
use tower_http_batch::BatchLayer;

fn layer() -> BatchLayer {
    // Sub-URLs resolve under `/echo`, so the echo handler shows where they went; `/bulk`
    // has no base, for items that reach other routes (a URL cannot leave its base).
    BatchLayer::new("/batch")
        .bulk("/rest/v10/bulk", "/echo")
        .bulk("/bulk", "")
}

async fn bulk(http: &common::Http, body: &Value, headers: &[(&str, &str)]) -> common::Reply {
    bulk_at(http, "/rest/v10/bulk", body, headers).await
}

async fn bulk_at(
    http: &common::Http,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> common::Reply {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    http.send("POST", path, &all, body.to_string()).await
}

#[tokio::test]
async fn runs_in_order_and_a_failure_does_not_stop_the_rest() {
    let (http, calls) = start(layer()).await;
    let reply = bulk_at(
        &http,
        "/bulk",
        &json!({"requests": [
            {"url": "/echo/v10/Accounts", "method": "POST", "data": "{\"name\": \"test123\"}"},
            {"url": "/echo/v10/Accounts?fields=name"},
            {"url": "/status/404", "method": "DELETE"},
            {"url": "/text"},
            {"url": "/empty"},
        ]}),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
    let items = reply.json();
    let items = items.as_array().expect("a bare array");
    let statuses: Vec<_> = items
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 404, 200, 204]);
    assert_eq!(calls.get(), 5);
    let created = &items[0]["contents"];
    assert_eq!(
        created["uri"], "/echo/v10/Accounts",
        "resolved under the base"
    );
    assert_eq!(created["method"], "POST");
    assert_eq!(
        created["body"], "{\"name\": \"test123\"}",
        "data is the body, as given"
    );
    assert_eq!(
        created["headers"]["content-type"],
        json!(["application/json"])
    );
    assert_eq!(
        items[1]["contents"]["uri"],
        "/echo/v10/Accounts?fields=name"
    );
    assert_eq!(
        items[1]["contents"]["method"], "GET",
        "method defaults to GET"
    );
    assert_eq!(
        items[2]["contents"],
        json!({"error": "status 404"}),
        "JSON contents are parsed"
    );
    assert_eq!(
        items[3]["contents"], "plain text, ünïcode",
        "text contents are a string"
    );
    assert_eq!(items[4]["contents"], "");
    assert_eq!(
        items[4]["headers"],
        json!([]),
        "no headers is [] as SugarCRM writes it"
    );
    assert_eq!(items[0]["headers"]["Content-Type"], "application/json");
}

#[tokio::test]
async fn headers_as_lines_or_object_and_identity_stays_outer() {
    let (http, _) = start(layer()).await;
    let reply = bulk_at(
        &http,
        "/bulk",
        &json!({"requests": [
            {"url": "/echo/v10/x", "headers": ["X-Custom: one", "Authorization: Bearer bob-token", "OAuth-Token: abc"]},
            {"url": "/echo/v10/y", "headers": {"x-custom": "two", "cookie": "stolen=1"}},
            {"url": "/whoami", "headers": ["Authorization: Bearer bob-token"]},
        ]}),
        &[("authorization", "Bearer alice-token"), ("cookie", "mine=1")],
    )
    .await;
    let items = reply.json();
    let first = &items[0]["contents"]["headers"];
    assert_eq!(first["x-custom"], json!(["one"]));
    assert_eq!(first["oauth-token"], json!(["abc"]));
    assert_eq!(first["authorization"], json!(["Bearer alice-token"]));
    let second = &items[1]["contents"]["headers"];
    assert_eq!(second["x-custom"], json!(["two"]));
    assert_eq!(second["cookie"], json!(["mine=1"]));
    assert_eq!(items[2]["contents"]["user"], "alice");
}

#[tokio::test]
async fn braces_in_bulk_headers_are_literal() {
    let (http, _) = start(layer()).await;
    let reply = bulk(
        &http,
        &json!({"requests": [{"url": "/v10/x", "headers": ["X-Template: a{{b#/c}}d"]}]}),
        &[],
    )
    .await;
    assert_eq!(
        reply.json()[0]["contents"]["headers"]["x-template"],
        json!(["a{{b#/c}}d"])
    );
}

#[tokio::test]
async fn data_may_also_be_a_json_object() {
    let (http, _) = start(layer()).await;
    let reply = bulk(
        &http,
        &json!({"requests": [{"url": "/v10/x", "method": "PUT", "data": {"a": 1}}]}),
        &[],
    )
    .await;
    assert_eq!(reply.json()[0]["contents"]["body"], "{\"a\":1}");
}

#[tokio::test]
async fn malformed_bulk_requests_run_nothing() {
    let (http, calls) = start(layer()).await;
    let reply = bulk(
        &http,
        &json!({"requests": [
            {"url": "/v10/ok"},
            {"url": "v10/Accounts"},
            {"url": "/v10/x", "data": "not json"},
            {"url": "/v10/x", "data": 5},
            {"url": "/v10/x", "method": "TRACE"},
            {"url": "/../rest/v10/bulk", "method": "POST"},
            {"url": "/../batch", "method": "POST"},
            {"url": "/v10/x", "headers": ["no colon here"]},
            {"method": "GET"},
        ]}),
        &[],
    )
    .await;
    let p = reply.problem(400);
    let at: Vec<(u64, String)> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(u64, String)> = [
        (1, "url"),
        (2, "data"),
        (3, "data"),
        (4, "method"),
        (5, "url"),
        (6, "url"),
        (7, "headers"),
        (8, "url"),
    ]
    .iter()
    .map(|(i, f)| (*i, f.to_string()))
    .collect();
    assert_eq!(at, expected, "{p}");
    assert_eq!(calls.get(), 0);
    bulk(&http, &json!({"requests": []}), &[])
        .await
        .problem(400);
    bulk(&http, &json!([{"url": "/v10/x"}]), &[])
        .await
        .problem(400);
    let too_many: Vec<Value> = (0..101).map(|_| json!({"url": "/v10/x"})).collect();
    bulk(&http, &json!({ "requests": too_many }), &[])
        .await
        .problem(400);
    assert_eq!(
        http.send("GET", "/rest/v10/bulk", &[], "").await.status,
        405
    );
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn a_bulk_only_layer() {
    let calls = common::Calls::default();
    let app = BatchLayer::default()
        .bulk("/bulk", "")
        .layer_router(common::router(calls.clone()));
    let http = common::Http::new(common::serve(app).await);
    let reply = bulk_at(
        &http,
        "/bulk",
        &json!({"requests": [{"url": "/text"}]}),
        &[],
    )
    .await;
    assert_eq!(reply.json()[0]["contents"], "plain text, ünïcode");
    assert_eq!(
        http.send(
            "POST",
            "/batch",
            &[("content-type", "application/json")],
            "{}"
        )
        .await
        .status,
        404,
        "no JSON batch endpoint"
    );
}
