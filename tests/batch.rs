//! The JSON batch format through real HTTP: order, bodies, identity, stop_on_error,
//! isolation and limits.

mod common;

use common::{start, Http};
use serde_json::{json, Value};
use std::time::Duration;
use tower_http_batch::BatchLayer;

fn layer() -> BatchLayer {
    BatchLayer::new("/batch")
}

#[tokio::test]
async fn mixed_methods_answer_in_request_order() {
    let (http, calls) = start(layer()).await;
    let methods = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get",
    ];
    let requests: Vec<Value> = methods
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"method": m, "url": format!("/echo/{i}?q={i}")}))
        .collect();
    let items = http
        .batch(&json!({ "requests": requests }), &[])
        .await
        .items();
    assert_eq!(items.len(), methods.len());
    for (i, (item, method)) in items.iter().zip(methods).enumerate() {
        assert_eq!(item["id"], i.to_string(), "ids default to the index");
        assert_eq!(item["status"], 200);
        if method == "HEAD" {
            assert!(item.get("body").is_none(), "HEAD has no body: {item}");
        } else {
            assert_eq!(item["body"]["method"], method.to_ascii_uppercase());
            assert_eq!(item["body"]["uri"], format!("/echo/{i}?q={i}"));
        }
    }
    assert_eq!(calls.get(), methods.len());
}

#[tokio::test]
async fn explicit_ids_and_mixed_resources() {
    let (http, _) = start(layer()).await;
    let items = http
        .batch(
            &json!({"requests": [
                {"id": "who", "url": "/whoami"},
                {"id": "txt", "url": "/text"},
                {"id": "nf", "url": "/no/such/route"},
                {"id": "7", "url": "/status/409", "method": "DELETE"},
            ]}),
            &[("authorization", "Bearer alice-token")],
        )
        .await
        .items();
    let ids: Vec<_> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["who", "txt", "nf", "7"]);
    assert_eq!(items[0]["body"], json!({"user": "alice"}));
    assert_eq!(items[2]["status"], 404);
    assert_eq!(items[3]["status"], 409);
    assert_eq!(items[3]["body"]["error"], "status 409");
}

#[tokio::test]
async fn request_bodies_by_content_type() {
    let (http, _) = start(layer()).await;
    let items = http
        .batch(
            &json!({"requests": [
                {"method": "POST", "url": "/echo", "body": {"name": "Alice", "n": [1, 2]}},
                {"method": "POST", "url": "/echo", "headers": {"content-type": "text/plain"}, "body": "just text"},
                {"method": "POST", "url": "/echo", "headers": {"content-type": "application/octet-stream"}, "body": "AJ-Slv8"},
                {"method": "POST", "url": "/echo", "headers": {"content-type": "application/merge-patch+json"}, "body": {"a": null}},
                {"method": "POST", "url": "/echo", "body": "a json string"},
                {"method": "POST", "url": "/echo"},
            ]}),
            &[],
        )
        .await
        .items();
    let echoed = |i: usize| items[i]["body"].clone();
    assert_eq!(
        echoed(0)["headers"]["content-type"],
        json!(["application/json"])
    );
    assert_eq!(
        serde_json::from_str::<Value>(echoed(0)["body"].as_str().unwrap()).unwrap(),
        json!({"name": "Alice", "n": [1, 2]})
    );
    assert_eq!(
        echoed(0)["headers"]["content-length"],
        json!([echoed(0)["body"].as_str().unwrap().len().to_string()])
    );
    assert_eq!(echoed(1)["body"], "just text");
    assert_eq!(echoed(1)["headers"]["content-type"], json!(["text/plain"]));
    assert_eq!(
        echoed(2)["body_bytes"],
        json!([0, 159, 146, 150, 255]),
        "base64url decoded"
    );
    assert_eq!(echoed(3)["body"], "{\"a\": null}".replace(' ', ""));
    assert_eq!(
        echoed(3)["headers"]["content-type"],
        json!(["application/merge-patch+json"])
    );
    assert_eq!(echoed(4)["body"], "\"a json string\"");
    assert_eq!(echoed(5)["body"], "");
    assert_eq!(echoed(5)["headers"]["content-length"], json!(["0"]));
}

#[tokio::test]
async fn response_bodies_json_text_binary_empty() {
    let (http, _) = start(layer()).await;
    let items = http
        .batch(
            &json!({"requests": [
                {"url": "/whoami"}, {"url": "/text"}, {"url": "/binary"}, {"url": "/empty"},
            ]}),
            &[],
        )
        .await
        .items();
    assert_eq!(
        items[0]["body"],
        json!({"user": "anonymous"}),
        "JSON stays a JSON value"
    );
    assert_eq!(items[0]["headers"]["Content-Type"], "application/json");
    assert_eq!(items[1]["body"], "plain text, ünïcode", "text is a string");
    assert_eq!(
        items[1]["headers"]["Content-Type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        items[2]["body"], "AJ-Slv8",
        "binary is base64url without padding"
    );
    assert_eq!(
        items[2]["headers"]["Content-Type"],
        "application/octet-stream"
    );
    assert_eq!(items[3]["status"], 204);
    assert!(
        items[3].get("body").is_none(),
        "no body for an empty response"
    );
    for item in &items {
        assert!(
            item["headers"].get("content-length").is_none(),
            "framing headers are not reported: {item}"
        );
    }
}

#[tokio::test]
async fn sub_requests_act_as_the_outer_sender_only() {
    let (http, _) = start(layer()).await;
    let reply = http
        .batch(
            &json!({"requests": [{
                "url": "/echo",
                "method": "POST",
                "headers": {
                    "authorization": "Bearer bob-token",
                    "Cookie": "session=bob",
                    "proxy-authorization": "Basic Ym9i",
                    "x-forwarded-for": "10.9.9.9",
                    "x-forwarded-host": "evil.example",
                    "forwarded": "for=10.9.9.9",
                    "x-real-ip": "10.9.9.9",
                    "host": "evil.example",
                    "connection": "close",
                    "transfer-encoding": "chunked",
                    "content-length": "999",
                    "te": "trailers",
                    "upgrade": "websocket",
                    "expect": "100-continue",
                    "if-match": "\"v7\"",
                    "x-custom": ["one", "two"],
                    "accept": "application/json",
                },
                "body": {"a": 1},
            }, {"url": "/whoami", "headers": {"authorization": "Bearer bob-token"}}]}),
            &[
                ("authorization", "Bearer alice-token"),
                ("cookie", "session=alice"),
                ("cookie", "theme=dark"),
                ("x-forwarded-for", "203.0.113.5"),
            ],
        )
        .await;
    let items = reply.items();
    let seen = &items[0]["body"];
    let h = &seen["headers"];
    assert_eq!(
        seen["user"], "alice",
        "the auth layer's extension is inherited"
    );
    assert_eq!(
        items[1]["body"]["user"], "alice",
        "a sub-request's own token is ignored"
    );
    assert_eq!(h["authorization"], json!(["Bearer alice-token"]));
    assert_eq!(
        h["cookie"],
        json!(["session=alice", "theme=dark"]),
        "every outer cookie value, none of the sub-request's"
    );
    assert!(h.get("proxy-authorization").is_none());
    assert_eq!(
        h["x-forwarded-for"],
        json!(["203.0.113.5"]),
        "the outer client address, not a spoofed one"
    );
    for dropped in [
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
        "connection",
        "transfer-encoding",
        "te",
        "upgrade",
        "expect",
    ] {
        assert!(h.get(dropped).is_none(), "{dropped} must not pass: {h}");
    }
    assert_eq!(
        h["host"],
        json!([http.addr.to_string()]),
        "host is the outer request's"
    );
    assert_eq!(
        h["content-length"],
        json!(["7"]),
        "content-length is computed"
    );
    assert_eq!(h["if-match"], json!(["\"v7\""]));
    assert_eq!(h["x-custom"], json!(["one", "two"]));
    assert_eq!(h["accept"], json!(["application/json"]));
    assert_eq!(
        seen["connect_info"], true,
        "axum's ConnectInfo is inherited"
    );
}

#[tokio::test]
async fn if_match_reaches_the_handler() {
    let (http, _) = start(layer()).await;
    let items = http
        .batch(
            &json!({"requests": [
                {"method": "PUT", "url": "/etag", "headers": {"If-Match": "\"v1\""}, "body": "x", "id": "good"},
                {"method": "PUT", "url": "/etag", "headers": {"If-Match": "\"v0\""}, "id": "stale"},
                {"method": "PUT", "url": "/etag", "id": "none"},
            ]}),
            &[],
        )
        .await
        .items();
    assert_eq!(items[0]["status"], 200);
    assert_eq!(items[1]["status"], 412);
    assert_eq!(items[2]["status"], 412);
}

#[tokio::test]
async fn set_cookie_stays_in_its_item() {
    let (http, _) = start(layer()).await;
    let reply = http
        .batch(&json!({"requests": [{"url": "/cookies"}]}), &[])
        .await;
    assert!(
        reply.headers.get("set-cookie").is_none(),
        "the outer response sets no cookie"
    );
    assert_eq!(
        reply.items()[0]["headers"]["Set-Cookie"],
        json!(["a=1; Path=/", "b=2; Path=/"])
    );
}

#[tokio::test]
async fn inherited_outer_headers() {
    let layer = layer().inherit_header(http::header::ACCEPT_LANGUAGE);
    let (http, _) = start(layer).await;
    let items = http
        .batch(
            &json!({"requests": [
                {"url": "/echo"},
                {"url": "/echo", "headers": {"accept-language": "fr"}},
            ]}),
            &[("accept-language", "de"), ("x-not-inherited", "1")],
        )
        .await
        .items();
    assert_eq!(
        items[0]["body"]["headers"]["accept-language"],
        json!(["de"])
    );
    assert_eq!(
        items[1]["body"]["headers"]["accept-language"],
        json!(["fr"]),
        "the sub-request's own value wins"
    );
    assert!(items[0]["body"]["headers"].get("x-not-inherited").is_none());
}

#[tokio::test]
async fn configured_identity_header_is_outer_only() {
    let layer = layer().identity_header(http::HeaderName::from_static("x-api-key"));
    let (http, _) = start(layer).await;
    let items = http
        .batch(
            &json!({"requests": [{"url": "/echo", "headers": {"x-api-key": "stolen"}}]}),
            &[("x-api-key", "mine")],
        )
        .await
        .items();
    assert_eq!(items[0]["body"]["headers"]["x-api-key"], json!(["mine"]));
}

#[tokio::test]
async fn stop_on_error_ends_at_the_first_failure() {
    let (http, calls) = start(layer()).await;
    let batch = |stop: bool| {
        json!({"stop_on_error": stop, "requests": [
            {"url": "/text"}, {"url": "/status/422"}, {"url": "/text"}, {"url": "/text"},
        ]})
    };
    let items = http.batch(&batch(true), &[]).await.items();
    assert_eq!(
        items.len(),
        2,
        "results stop at the first error, which is included"
    );
    assert_eq!(items[1]["status"], 422);
    assert_eq!(calls.get(), 2, "nothing after the error ran");
    let items = http.batch(&batch(false), &[]).await.items();
    assert_eq!(items.len(), 4);
}

// Paused time: the timeout fires only once every task waits, however loaded the machine.
#[tokio::test(start_paused = true)]
async fn a_panic_a_hang_cost_their_item_only() {
    let layer = layer().timeout(Duration::from_millis(200));
    let (http, _) = start(layer).await;
    let reply = http
        .batch(
            &json!({"requests": [
                {"id": "a", "url": "/text"},
                {"id": "boom", "url": "/panic"},
                {"id": "b", "url": "/text"},
                {"id": "slow", "url": "/hang"},
                {"id": "c", "url": "/whoami"},
            ]}),
            &[],
        )
        .await;
    let items = reply.items();
    let statuses: Vec<_> = items
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 500, 200, 504, 200]);
    assert_eq!(items[1]["headers"]["Content-Type"], "application/json");
    assert_eq!(items[1]["body"]["title"], "Sub-request panicked");
    assert!(
        items[3]["body"]["detail"]
            .as_str()
            .unwrap()
            .contains("200ms"),
        "{}",
        items[3]
    );
    // The same keep-alive connection still works.
    assert_eq!(http.send("GET", "/text", &[], "").await.status, 200);
    assert_eq!(
        http.batch(&json!({"requests": [{"url": "/text"}]}), &[])
            .await
            .items()[0]["status"],
        200
    );
}

/// Panics when dropped.
struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("a handler's future that panics when dropped");
    }
}

// A handler that never answers, and whose future panics when the layer drops it: at its
// timeout (the item reports the panic), and when the batch's deadline drops what is in
// flight (the items report the deadline). The batch still answers.
#[tokio::test(start_paused = true)]
async fn a_handler_that_panics_when_dropped_costs_its_item_only() {
    let router = axum::Router::new().route(
        "/stuck",
        axum::routing::get(|| async {
            let _guard = PanicsWhenDropped;
            std::future::pending::<&str>().await
        }),
    );
    let timed_out = BatchLayer::new("/batch").timeout(Duration::from_secs(1));
    let past_deadline = BatchLayer::new("/batch")
        .no_timeout()
        .batch_timeout(Duration::from_secs(1));
    // One at a time: at the deadline the second item has not started.
    for (layer, want) in [(timed_out, [500, 500]), (past_deadline, [504, 424])] {
        let http = Http::new(common::serve(layer.layer_router(router.clone())).await);
        let batch = json!({"requests": [{"url": "/stuck"}, {"url": "/stuck"}]});
        let items = http.batch(&batch, &[]).await.items();
        let statuses: Vec<_> = items.iter().map(|i| i["status"].clone()).collect();
        assert_eq!(statuses, want, "{items:?}");
    }
}

#[tokio::test]
async fn pass_through_is_untouched() {
    let (http, calls) = start(layer()).await;
    let reply = http
        .send(
            "POST",
            "/echo/x?y=1",
            &[("authorization", "Bearer carol-token"), ("x-a", "b")],
            "raw body",
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = reply.json();
    assert_eq!(seen["body"], "raw body");
    assert_eq!(seen["user"], "carol");
    assert_eq!(seen["headers"]["x-a"], json!(["b"]));
    assert_eq!(calls.get(), 1);
    assert_eq!(
        http.send("GET", "/batch/x", &[], "").await.status,
        404,
        "only the exact batch path is a batch"
    );
    assert_eq!(
        http.send("GET", "/whoami", &[("authorization", "junk")], "")
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn several_batch_paths() {
    let (http, _) = start(BatchLayer::new("/batch").path("/$batch")).await;
    let reply = http
        .send(
            "POST",
            "/$batch",
            &[("content-type", "application/json")],
            r#"{"requests":[{"url":"/text"},{"url":"/batch"}]}"#,
        )
        .await;
    let p = reply.problem(400);
    assert_eq!(
        p["errors"][0]["index"], 1,
        "every batch path counts as nested"
    );
    let reply = http
        .send(
            "POST",
            "/$batch",
            &[("content-type", "application/json")],
            r#"{"requests":[{"url":"/text"}]}"#,
        )
        .await;
    assert_eq!(reply.items()[0]["status"], 200);
}

#[tokio::test]
async fn relative_urls_resolve_against_the_batch_directory() {
    let (http, _) = start(BatchLayer::new("/batch")).await;
    let items = http
        .batch(
            &json!({"requests": [{"url": "echo/a"}, {"url": "/x/../echo/b"}]}),
            &[],
        )
        .await
        .items();
    assert_eq!(items[0]["body"]["uri"], "/echo/a");
    assert_eq!(items[1]["body"]["uri"], "/echo/b");
}

#[tokio::test]
async fn item_response_limit_keeps_status_and_omits_body() {
    let (http, _) = start(layer().max_item_response_bytes(100)).await;
    let items = http
        .batch(
            &json!({"requests": [{"url": "/big?n=100"}, {"url": "/big?n=101"}, {"url": "/text"}]}),
            &[],
        )
        .await
        .items();
    assert_eq!(items[0]["body"].as_str().unwrap().len(), 100);
    assert_eq!(items[1]["status"], 200, "it ran: its status is reported");
    assert!(items[1].get("body").is_none());
    assert!(items[1]["bodyOmitted"]
        .as_str()
        .unwrap()
        .contains("100 bytes"));
    assert_eq!(items[2]["body"], "plain text, ünïcode");
}

#[tokio::test]
async fn total_response_limit_omits_later_bodies() {
    // The limit counts the reply as written, headers included: about 190 bytes per item
    // here, so two bodies fit and the third does not.
    let (http, calls) = start(layer().max_response_bytes(450)).await;
    let items = http
        .batch(&json!({"requests": [{"url": "/big?n=100"}, {"url": "/big?n=100"}, {"url": "/big?n=100"}, {"url": "/empty"}]}), &[])
        .await
        .items();
    assert_eq!(calls.get(), 4, "every item still runs");
    assert!(items[1].get("body").is_some());
    assert!(items[2].get("body").is_none());
    assert!(items[2]["bodyOmitted"]
        .as_str()
        .unwrap()
        .contains("max_response_bytes"));
    assert_eq!(items[3]["status"], 204);
}

#[tokio::test]
async fn concurrency_limit_of_one_inside_does_not_deadlock() {
    use tower::limit::ConcurrencyLimitLayer;
    use tower::Layer;
    let calls = common::Calls::default();
    let inner = ConcurrencyLimitLayer::new(1).layer(common::router(calls.clone()));
    let svc =
        tower::util::MapResponseLayer::new(|res: http::Response<_>| res.map(axum::body::Body::new))
            .layer(BatchLayer::new("/batch").layer(inner));
    let http = Http::new(common::serve(svc).await);
    let batch = json!({"requests": [{"url": "/text"}, {"url": "/text"}, {"url": "/text"}]});
    // A deadlock would hang: bound the wait so the test fails instead.
    let reply = tokio::time::timeout(Duration::from_secs(30), http.batch(&batch, &[]))
        .await
        .expect("deadlock");
    assert!(reply.items().iter().all(|i| i["status"] == 200));
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn large_json_bodies_go_into_the_reply_whole() {
    let (http, _) = common::start(BatchLayer::new("/batch").bulk("/bulk", "")).await;
    // Bodies over the size the reply references instead of copying, between small ones.
    let big: Vec<u32> = (0..5000).collect();
    let items = http
        .batch(
            &json!({"requests": [
                {"id": "small", "method": "POST", "url": "/json", "body": {"a": 1}},
                {"id": "big", "method": "POST", "url": "/json", "body": big},
                {"id": "big2", "method": "POST", "url": "/json", "body": {"list": big, "s": "x\"y"}},
                {"id": "text", "url": "/text"},
            ]}),
            &[],
        )
        .await
        .items();
    assert_eq!(items[0]["body"], json!({"a": 1}));
    assert_eq!(items[1]["body"], json!(big));
    assert_eq!(items[2]["body"], json!({"list": big, "s": "x\"y"}));
    assert_eq!(items[3]["body"], "plain text, ünïcode");

    let data = json!(big).to_string();
    let reply = http
        .send(
            "POST",
            "/bulk",
            &[("content-type", "application/json")],
            json!({"requests": [
                {"url": "/json", "method": "POST", "data": data},
                {"url": "/json", "method": "POST", "data": "{\"b\": 2}"},
            ]})
            .to_string(),
        )
        .await;
    assert_eq!(reply.status, 200);
    let r = reply.json();
    assert_eq!(r[0]["contents"], json!(big));
    assert_eq!(r[1]["contents"], json!({"b": 2}));
    assert_eq!(
        reply.headers["content-length"],
        reply.body.len().to_string().as_str(),
        "the exact length is known up front"
    );
}

// Paused time: the timeout fires only once every task waits, however loaded the machine.
#[tokio::test(start_paused = true)]
async fn the_per_item_timeout_holds_one_at_a_time_and_concurrently() {
    for concurrency in [1, 4] {
        // A batch deadline far away: each hang ends at its own timeout.
        let layer = layer()
            .timeout(Duration::from_millis(150))
            .batch_timeout(Duration::from_secs(30))
            .concurrency(concurrency);
        let (http, _) = start(layer).await;
        let items = http
            .batch(
                &json!({"requests": [
                    {"url": "/hang"}, {"url": "/text"}, {"url": "/hang"}, {"url": "/text"},
                ]}),
                &[],
            )
            .await
            .items();
        let statuses: Vec<_> = items
            .iter()
            .map(|i| i["status"].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, [504, 200, 504, 200], "concurrency {concurrency}");
        for i in [0, 2] {
            let detail = items[i]["body"]["detail"].as_str().unwrap();
            assert!(
                detail.contains("150ms") && detail.contains("per-sub-request timeout"),
                "concurrency {concurrency}: {detail}"
            );
        }
    }
}

// Paused time: the timeout fires only once every task waits, however loaded the machine.
#[tokio::test(start_paused = true)]
async fn one_at_a_time_the_batch_deadline_ends_the_item_in_flight() {
    let layer = layer().batch_timeout(Duration::from_millis(200));
    let (http, _) = start(layer).await;
    let items = http
        .batch(
            &json!({"requests": [{"url": "/text"}, {"url": "/hang"}, {"url": "/text"}]}),
            &[],
        )
        .await
        .items();
    let statuses: Vec<_> = items
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 504, 424]);
    let detail = items[1]["body"]["detail"].as_str().unwrap();
    assert!(detail.contains("batch_timeout"), "{detail}");
}

#[tokio::test(start_paused = true)]
async fn the_per_item_timeout_can_be_turned_off() {
    let batch = json!({"requests": [{"url": "/sleep?s=60"}]});
    let (http, _) = start(layer()).await;
    let items = http.batch(&batch, &[]).await.items();
    assert_eq!(items[0]["status"], 504, "the default is 30 s");
    let (http, _) = start(layer().no_timeout()).await;
    let items = http.batch(&batch, &[]).await.items();
    assert_eq!(items[0]["status"], 200);
    assert_eq!(items[0]["body"], "slept");
}
