//! Every malformed batch gets one 4xx with an `application/problem+json` body naming the
//! item and field, and nothing runs.

mod common;

use common::start;
use serde_json::{json, Value};
use std::io::{Read, Write};
use tower_http_batch::BatchLayer;

/// Sends `body` as a batch and asserts a 400 naming `(index, field)` for each expected
/// problem, with no handler called.
async fn rejects(body: &str, expected: &[(Option<usize>, &str)]) -> Value {
    let (http, calls) = start(BatchLayer::new("/batch")).await;
    let p = http.batch_raw(body, &[]).await.problem(400);
    let errors = p["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {p}"));
    for (index, field) in expected {
        assert!(
            errors.iter().any(|e| e["field"] == *field
                && e.get("index").and_then(Value::as_u64) == index.map(|i| i as u64)),
            "expected a problem at {index:?}/{field} in {p}"
        );
    }
    assert_eq!(
        calls.get(),
        0,
        "nothing may run from a batch that failed validation"
    );
    p
}

#[tokio::test]
async fn not_json() {
    let p = rejects("{\"requests\": [", &[(None, "body")]).await;
    assert!(
        p["detail"].as_str().unwrap().contains("not valid JSON"),
        "{p}"
    );
    rejects("\u{0}garbage", &[(None, "body")]).await;
}

#[tokio::test]
async fn wrong_shapes() {
    rejects("[1, 2]", &[(None, "body")]).await;
    rejects("{}", &[(None, "requests")]).await;
    rejects(r#"{"requests": {"url": "/a"}}"#, &[(None, "requests")]).await;
    rejects(
        r#"{"requests": [1, "x"]}"#,
        &[(Some(0), "requests"), (Some(1), "requests")],
    )
    .await;
    rejects(r#"{"requests": [{"url": 5}]}"#, &[(Some(0), "url")]).await;
    // Values serde_json refuses to read as text at all: still named at `url`, with the
    // item's other fields checked too.
    for (url, why) in [
        ("1e400", "must be a string, not a number"),
        (r#""\ud800""#, "must be a string of Unicode text"),
    ] {
        let body = format!(r#"{{"requests": [{{"id": "", "url": {url}}}, {{"url": "/a"}}]}}"#);
        let p = rejects(&body, &[(Some(0), "url"), (Some(0), "id")]).await;
        assert!(p.to_string().contains(why), "{url}: {p}");
    }
    rejects(r#"{"requests": [{"method": "GET"}]}"#, &[(Some(0), "url")]).await;
    rejects(
        r#"{"requests": [{"url": "/a", "headers": ["x: y"]}]}"#,
        &[(Some(0), "headers")],
    )
    .await;
    rejects(
        r#"{"requests": [{"url": "/a", "headers": {"x": {"y": 1}}}]}"#,
        &[(Some(0), "headers.x")],
    )
    .await;
    rejects(
        r#"{"requests": [{"url": "/a", "id": true}]}"#,
        &[(Some(0), "id")],
    )
    .await;
    rejects(
        r#"{"requests": [{"url": "/a", "url": "/b"}]}"#,
        &[(Some(0), "url")],
    )
    .await;
    rejects(
        r#"{"requests": [{"url": "/a"}], "stop_on_error": "yes"}"#,
        &[(None, "stop_on_error")],
    )
    .await;
    rejects(
        r#"{"requests": [{"url": "/a", "headers": {"content-type": "text/plain"}, "body": {"x": 1}}]}"#,
        &[(Some(0), "body")],
    )
    .await;
    rejects(
        r#"{"requests": [{"url": "/a", "headers": {"content-type": "image/png"}, "body": "not base64!"}]}"#,
        &[(Some(0), "body")],
    )
    .await;
}

#[tokio::test]
async fn empty_requests() {
    rejects(r#"{"requests": []}"#, &[(None, "requests")]).await;
}

#[tokio::test]
async fn too_many_requests_names_count_and_limit() {
    let requests: Vec<Value> = (0..101).map(|_| json!({"url": "/text"})).collect();
    let p = rejects(
        &json!({ "requests": requests }).to_string(),
        &[(None, "requests")],
    )
    .await;
    let detail = p["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("101") && detail.contains("100"), "{detail}");
}

#[tokio::test]
async fn unknown_or_forbidden_methods() {
    rejects(
        r#"{"requests": [{"url": "/a", "method": "CONNECT"}, {"url": "/a", "method": "TRACE"}, {"url": "/a", "method": "frobnicate"}, {"url": "/a", "method": ""}, {"url": "/a", "method": 1}, {"url": "/a", "method": "GET"}]}"#,
        &[(Some(0), "method"), (Some(1), "method"), (Some(2), "method"), (Some(3), "method"), (Some(4), "method")],
    )
    .await;
}

#[tokio::test]
async fn urls_with_scheme_authority_or_junk() {
    let urls = [
        "http://127.0.0.1:1/x",
        "https://example.com/",
        "//example.com/x",
        "file:///etc/passwd",
        "/a\r\nX-Injected: 1",
        "/a\u{7}",
        "/a b",
        "",
        "/a#f",
        "/ü",
    ];
    let requests: Vec<Value> = urls.iter().map(|u| json!({"url": u})).collect();
    let expected: Vec<_> = (0..urls.len()).map(|i| (Some(i), "url")).collect();
    rejects(&json!({ "requests": requests }).to_string(), &expected).await;
}

#[tokio::test]
async fn nested_batch_in_any_spelling() {
    let spellings = [
        "/batch",
        "/batch?x=1",
        "//batch",
        "/./batch",
        "/%62atch",
        "/x/../batch",
        "/BATCH",
        "/batch/",
        "batch",
    ];
    for url in spellings {
        let body =
            json!({"requests": [{"url": "/text"}, {"url": url, "method": "POST"}]}).to_string();
        rejects(&body, &[(Some(1), "url")]).await;
    }
}

#[tokio::test]
async fn duplicate_ids() {
    let p = rejects(
        r#"{"requests": [{"id": "a", "url": "/a"}, {"id": "b", "url": "/b"}, {"id": "a", "url": "/c"}, {"url": "/d"}, {"id": "3", "url": "/e"}]}"#,
        &[(Some(2), "id"), (Some(4), "id")],
    )
    .await;
    assert_eq!(p["errors"].as_array().unwrap().len(), 2, "{p}");
}

#[tokio::test]
async fn invalid_header_names_and_values() {
    rejects(
        r#"{"requests": [{"url": "/a", "headers": {"bad name": "x"}}, {"url": "/a", "headers": {"x-ok": "line\r\nInjected: 1"}}, {"url": "/a", "headers": {"": "x"}}]}"#,
        &[(Some(0), "headers.bad name"), (Some(1), "headers.x-ok"), (Some(2), "headers.")],
    )
    .await;
}

#[tokio::test]
async fn features_this_server_does_not_offer_are_refused_up_front() {
    // Groups of two requests or more need a transaction hook (one request needs none).
    rejects(
        r#"{"atomic": true, "requests": [{"url": "/a"}, {"url": "/b"}]}"#,
        &[(None, "atomic")],
    )
    .await;
    rejects(
        r#"{"requests": [{"url": "/a", "atomicityGroup": "g"}, {"url": "/b", "atomicityGroup": "g"}]}"#,
        &[(Some(0), "atomicityGroup"), (Some(1), "atomicityGroup")],
    )
    .await;
}

#[tokio::test]
async fn bad_references() {
    rejects(
        r#"{"requests": [
            {"id": "a", "url": "/a"},
            {"url": "/b/{{a#/body/id}}"},
            {"url": "/b/{{a#body}}", "dependsOn": ["a"]},
            {"url": "/b/{{#/x}}", "dependsOn": ["a"]},
            {"url": "/b/{{a#/x", "dependsOn": ["a"]},
            {"url": "$a/orders"},
            {"url": "/b", "headers": {"x-ref": "{{a#/status}}"}},
            {"url": "/b", "method": "POST", "body": {"k": ["{{a#/body}}"]}},
            {"url": "http://{{a#/body/host}}/x", "dependsOn": ["a"]}
        ]}"#,
        &[
            (Some(1), "url"),
            (Some(2), "url"),
            (Some(3), "url"),
            (Some(4), "url"),
            (Some(5), "url"),
            (Some(6), "headers.x-ref"),
            (Some(7), "body"),
            (Some(8), "url"),
        ],
    )
    .await;
}

#[tokio::test]
async fn bad_depends_on() {
    rejects(
        r#"{"requests": [
            {"id": "a", "url": "/a", "dependsOn": ["a"]},
            {"id": "b", "url": "/b", "dependsOn": ["c"]},
            {"id": "c", "url": "/c", "dependsOn": ["nobody"]},
            {"id": "d", "url": "/d", "dependsOn": "a"},
            {"id": "e", "url": "/e", "dependsOn": [1]}
        ]}"#,
        &[(Some(3), "dependsOn"), (Some(4), "dependsOn")],
    )
    .await;
    // Every id is checked: self, forward and unknown.
    let p = rejects(
        r#"{"requests": [
            {"id": "a", "url": "/a", "dependsOn": ["a"]},
            {"id": "b", "url": "/b", "dependsOn": ["c"]},
            {"id": "c", "url": "/c", "dependsOn": ["nobody", "a"]}
        ]}"#,
        &[
            (Some(0), "dependsOn"),
            (Some(1), "dependsOn"),
            (Some(2), "dependsOn"),
        ],
    )
    .await;
    let details: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert!(details[0].contains("itself"), "{details:?}");
    assert!(details[1].contains("later"), "{details:?}");
    assert!(details[2].contains("no request"), "{details:?}");
}

#[tokio::test]
async fn deeply_nested_json_does_not_overflow() {
    let depth = 200_000;
    let (http, calls) = start(BatchLayer::new("/batch").max_body_bytes(4 << 20)).await;
    // Where the layer reads JSON into a tree (headers, ids, the envelope), serde_json's
    // recursion limit answers.
    let deep_headers = format!(
        r#"{{"requests": [{{"url": "/a", "headers": {}1{}}}]}}"#,
        "{\"a\":".repeat(depth),
        "}".repeat(depth)
    );
    let p = http.batch_raw(&deep_headers, &[]).await.problem(400);
    assert_eq!(p["errors"][0]["field"], "headers.a", "{p}");
    let deep_id = format!(
        r#"{{"requests": [{{"url": "/a", "id": {}{}}}]}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert_eq!(
        http.batch_raw(&deep_id, &[]).await.problem(400)["errors"][0]["field"],
        "id"
    );
    assert_eq!(calls.get(), 0);
    // Unknown fields are skipped without building a tree.
    let deep_unknown = format!(
        r#"{{"requests": [{{"url": "/text"}}], "x": {}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert_eq!(
        http.batch_raw(&deep_unknown, &[]).await.items()[0]["status"],
        200
    );
    // A sub-request body is never parsed into a tree: it goes to the handler as the bytes
    // the client wrote, however deep.
    let before = calls.get();
    let deep_body = format!(
        r#"{{"requests": [{{"method": "POST", "url": "/status/201", "body": {}{}}}]}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert_eq!(
        http.batch_raw(&deep_body, &[]).await.items()[0]["status"],
        201
    );
    assert_eq!(calls.get(), before + 1, "the handler got the body");
    assert_eq!(
        http.send("GET", "/text", &[], "").await.status,
        200,
        "the server is still up"
    );
}

#[tokio::test]
async fn get_is_405_with_allow() {
    let (http, calls) = start(BatchLayer::new("/batch")).await;
    for method in ["GET", "PUT", "DELETE"] {
        let reply = http.send(method, "/batch", &[], "").await;
        reply.problem(405);
        assert_eq!(reply.headers["allow"], "POST");
    }
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn other_content_types_are_415() {
    let (http, calls) = start(BatchLayer::new("/batch")).await;
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        http.send(
            "POST",
            "/batch",
            &[("content-type", ct)],
            r#"{"requests":[{"url":"/text"}]}"#,
        )
        .await
        .problem(415);
    }
    let ok = http
        .send(
            "POST",
            "/batch",
            &[("content-type", "application/json; charset=utf-8")],
            r#"{"requests":[{"url":"/text"}]}"#,
        )
        .await;
    assert_eq!(ok.status, 200);
    let no_ct = http
        .send("POST", "/batch", &[], r#"{"requests":[{"url":"/text"}]}"#)
        .await;
    assert_eq!(
        no_ct.status, 200,
        "a body without content-type is read as JSON"
    );
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn body_over_the_limit_with_content_length_is_refused_before_reading() {
    let (http, calls) = start(BatchLayer::new("/batch").max_body_bytes(1000)).await;
    // Announce a large body and send none of it: the answer must come anyway.
    let addr = http.addr;
    let response = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"POST /batch HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 50000000\r\n\r\n")
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("application/problem+json"));
    assert!(
        response.contains("50000000") && response.contains("1000"),
        "names the size and the limit: {response}"
    );
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn body_over_the_limit_without_length_is_refused_while_reading() {
    use http_body_util::StreamBody;
    let (http, calls) = start(BatchLayer::new("/batch").max_body_bytes(1000)).await;
    let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>> = (0..20)
        .map(|_| Ok(http_body::Frame::data(bytes::Bytes::from(vec![b' '; 100]))))
        .collect();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(format!("http://{}/batch", http.addr))
        .header("content-type", "application/json")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn every_problem_is_listed_at_once() {
    let p = rejects(
        r#"{"requests": [{"url": "http://x/"}, {"url": "/ok"}, {"method": "TRACE", "url": "/batch"}]}"#,
        &[(Some(0), "url"), (Some(2), "method"), (Some(2), "url")],
    )
    .await;
    assert_eq!(p["errors"].as_array().unwrap().len(), 3);
    assert!(p["detail"].as_str().unwrap().contains("Nothing was run"));
}

#[tokio::test]
async fn one_reply_lists_every_problem_depends_on_included() {
    // An invalid URL, and an unknown id in `dependsOn`, in the same batch: both are
    // reported at once, and a request that depends on the invalid one by its (valid) id
    // is not reported.
    let p = rejects(
        r#"{"requests": [
            {"id": "a", "url": "http://elsewhere.example/"},
            {"id": "b", "url": "/b", "dependsOn": ["nobody"]},
            {"id": "c", "url": "/c", "dependsOn": ["a"]},
            {"id": "a", "url": "/d", "method": "FETCH"}
        ]}"#,
        &[
            (Some(0), "url"),
            (Some(1), "dependsOn"),
            (Some(3), "method"),
            (Some(3), "id"),
        ],
    )
    .await;
    assert_eq!(p["errors"].as_array().unwrap().len(), 4, "{p}");
}
