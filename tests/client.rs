//! The Rust batch client (feature `client`) over real HTTP: against the demo, a server
//! that throttles items, a connection that is reset after the server answered, coalesced
//! single requests, and a reply in Microsoft Graph's shape. A recorder in front of each
//! server notes every batch request that reaches it (its key, its ids, whether it was
//! replayed).

#[path = "../examples/demo/app.rs"]
mod app;
mod common;

use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use common::client::*;
use http::header;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::util::MapResponse;
use tower::{Layer, ServiceExt};
use tower_http_batch::client::{Batch, ClientError, Coalesce};
use tower_http_batch::BatchLayer;

async fn demo() -> (SocketAddr, Recorder) {
    serve_recorded(app::app(app::Db::open(None).unwrap())).await
}

#[tokio::test]
async fn two_hundred_and_fifty_requests_go_as_three_batches_with_every_chain_whole() {
    let (addr, rec) = demo().await;
    // Every fifth a create; the two after it wait for it.
    let item = |i: usize| match i % 5 {
        0 => post(
            "/users",
            json!({"name": format!("C{i}"), "email": format!("c{i}@example.com")}),
        ),
        1 | 2 => read(&format!("/users/{}", i % 100 + 1)).depends_on(format!("{}", i - i % 5 + 1)),
        _ => read(&format!("/users/{}", i % 100 + 1)),
    };
    let batch = (0..250).map(item).fold(alice(), Batch::push);
    let responses = client(http(), addr, "/batch")
        .max_requests(100)
        .oneshot(batch)
        .await
        .unwrap();
    assert_eq!(responses.len(), 250);
    assert!(responses.all_succeeded());
    for (i, r) in responses.iter().enumerate() {
        let expected = if i % 5 == 0 { 201 } else { 200 };
        assert_eq!(r.status(), expected, "request {i}");
    }
    assert_eq!(json_of(responses.get(5).unwrap())["name"], "C5");
    let seen = rec.seen();
    assert_eq!(seen.len(), 3, "the fewest batch requests 100 allows");
    assert!(seen.iter().all(|s| s.ids.len() <= 100 && s.key.is_some()));
    let batch_of = |id: &str| seen.iter().position(|s| s.ids.iter().any(|i| i == id));
    for head in (1..=250).step_by(5) {
        let chain = [head, head + 1, head + 2].map(|i| batch_of(&i.to_string()));
        assert!(
            chain[0].is_some() && chain.iter().all(|b| *b == chain[0]),
            "chain {head}"
        );
    }
    assert_eq!(responses.report().batch_requests, 3);
}

#[tokio::test]
async fn a_smaller_limit_is_learned_and_a_chain_longer_than_it_is_refused() {
    let calls = Arc::new(Mutex::new(HashMap::new()));
    let app = BatchLayer::new("/batch")
        .max_requests(4)
        .layer(throttling(calls.clone()));
    let (addr, rec) = serve_recorded(MapResponse::new(app, IntoResponse::into_response)).await;
    let batch = (1..=10)
        .map(|i| read(&format!("/ok/{i}")))
        .fold(Batch::new(), Batch::push);
    let responses = client(http(), addr, "/batch").oneshot(batch).await.unwrap();
    assert!(responses.all_succeeded());
    let sizes: Vec<usize> = rec.seen().iter().map(|s| s.ids.len()).collect();
    assert_eq!(
        sizes,
        [10, 4, 4, 2],
        "refused whole (nothing ran), then split at 4"
    );
    assert_eq!(calls.lock().unwrap().len(), 10, "each item ran once");
    // A chain of five cannot go in a batch request of four: nothing more is sent.
    let chain = (1..=5).fold(Batch::new(), |b, i| {
        let item = read("/ok/chain");
        b.push(if i > 1 {
            item.depends_on((i - 1).to_string())
        } else {
            item
        })
    });
    let err = client(http(), addr, "/batch")
        .max_requests(4)
        .oneshot(chain)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::ChainTooLong { ref ids, limit: 4 } if ids.len() == 5),
        "{err}"
    );
    assert_eq!(rec.seen().len(), 4);
}

#[tokio::test]
async fn only_throttled_items_are_sent_again_after_the_longest_retry_after() {
    let calls = Arc::new(Mutex::new(HashMap::new()));
    let app = BatchLayer::new("/batch").layer(throttling(calls.clone()));
    let (addr, rec) = serve_recorded(MapResponse::new(app, IntoResponse::into_response)).await;
    let batch = Batch::new()
        .push(read("/throttle/a/1").id("a"))
        .push(read("/throttle/b/2").id("b"))
        .push(read("/ok/c").id("c").depends_on("b"))
        .push(read("/ok/d").id("d"))
        .push(post("/ok/e", json!({})).id("e"))
        .push(read("/gateway/f").id("f"))
        .push(post("/gateway/g", json!({})).id("g"));
    let responses = client(http(), addr, "/batch").oneshot(batch).await.unwrap();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 504]);
    let calls = calls.lock().unwrap().clone();
    let expected = [
        ("throttle/a", 2),
        ("throttle/b", 2),
        ("ok/c", 1),
        ("ok/d", 1),
        ("ok/e", 1),
        ("gateway/f", 2),
        ("gateway/g", 1),
    ];
    assert_eq!(
        calls,
        expected.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    );
    // One wait, the longest Retry-After; then one batch request of what was throttled
    // (a, b), what waited for it (c, not sent the first time) and the GET that timed out.
    let report = responses.report();
    assert_eq!(
        (report.waited, report.items_resent, report.batch_requests),
        (Duration::from_secs(2), 4, 2)
    );
    let seen = rec.seen();
    assert_eq!(seen[1].ids, ["a", "b", "c", "f"]);
    // Measured where the server sees it: a late resend is fine, an early one is not.
    assert!(seen[1].at - seen[0].at >= Duration::from_secs(2));
    assert_ne!(
        seen[0].key, seen[1].key,
        "a resend is a new batch: a new key"
    );
}

#[tokio::test]
async fn a_reset_connection_is_retried_with_the_same_key_and_nothing_runs_twice() {
    let (addr, rec) = demo().await;
    let inner = LoseAnswers::new(|n| n == 0);
    let batch = alice().push(post(
        "/users",
        json!({"name": "Once", "email": "once@example.com"}),
    ));
    let responses = client(inner, addr, "/batch").oneshot(batch).await.unwrap();
    assert_eq!(responses.get(0).unwrap().status(), 201);
    let seen = rec.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].key, seen[1].key, "the retry carries the same key");
    assert!(
        !seen[0].replayed && seen[1].replayed,
        "the server replayed it: it ran once"
    );
    let check = client(http(), addr, "/batch")
        .oneshot(alice().push(read("/users?status=active")))
        .await
        .unwrap();
    let users = json_of(check.get(0).unwrap());
    let once = users
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["name"] == "Once")
        .count();
    assert_eq!(once, 1);
}

#[tokio::test]
async fn coalesced_single_requests_share_a_batch_per_identity() {
    let (addr, rec) = demo().await;
    // A window no test run reaches: the batch leaves when it holds 15.
    let loader = Coalesce::new(client(http(), addr, "/batch"), Duration::from_secs(60), 15);
    let request = |id: usize, token: &str| {
        let request = http::Request::get(format!("/users/{id}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Bytes::new());
        loader.clone().oneshot(request.unwrap())
    };
    let alice_reads = (1..=10).map(|i| request(i, "alice-token"));
    let bob_reads = (11..=15).map(|i| request(i, "bob-token"));
    let answers = futures_util::future::join_all(alice_reads.chain(bob_reads)).await;
    for (i, answer) in answers.iter().enumerate() {
        let response = answer.as_ref().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            json_of(response)["id"],
            i + 1,
            "each caller gets its own response"
        );
    }
    let mut sizes: Vec<usize> = rec.seen().iter().map(|s| s.ids.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [5, 10], "one batch request per identity");
}

#[tokio::test]
async fn a_reply_in_microsoft_graphs_shape_is_read_in_request_order() {
    // As Graph answers (its documentation's example, and the replies its SDKs' tests keep):
    // out of order, header names in either case, OData's JSON content type with its
    // parameters, a redirect without body, an error object, a null body, and a photo
    // (`/me/photo/$value`) in standard base64 with `+`, `/` and padding.
    let odata_json = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";
    let reply = json!({"responses": [
        {"id": "1", "status": 302, "headers": {"location": "https://b0mpua-by3301.files.1drv.com/y23vmagahszhxzlcvhasdhasghasodfi"}},
        {"id": "3", "status": 401, "body": {"error": {"code": "Forbidden", "message": "...", "innerError": {"request-id": "r", "date": "2019-03-22T23:17:50"}}}},
        {"id": "5", "status": 204, "body": null},
        {"id": "6", "status": 200, "headers": {"Cache-Control": "private", "Content-Type": "image/jpeg", "ETag": "BEB9D79C"}, "body": "++++////AQ=="},
        {"id": "2", "status": 200, "headers": {"Cache-Control": "no-cache", "OData-Version": "4.0", "Content-Type": odata_json}, "body": {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(microsoft.graph.plannerTask)", "value": []}},
        {"id": "4", "status": 200, "headers": {"content-type": "application/json"}, "body": {"value": [{"id": "x"}]}}
    ]});
    let graph = Router::new().route(
        "/v1.0/$batch",
        axum::routing::post(move || async move { axum::Json(reply) }),
    );
    let (addr, rec) = serve_recorded(graph).await;
    let paths = [
        "/me/drive/root:/{file}:/content",
        "/me/planner/tasks",
        "/groups/{id}/events",
        "/me/onenote/notebooks",
        "/me/calendar",
        "/me/photo/$value",
    ];
    let batch = paths
        .iter()
        .map(|p| read(&p.replace(['{', '}'], "")))
        .fold(Batch::new(), Batch::push);
    let responses = client(http(), addr, "/v1.0/$batch")
        .oneshot(batch)
        .await
        .unwrap();
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [302, 200, 401, 200, 204, 200]);
    let photo = responses.get(5).unwrap();
    assert_eq!(&photo.body()[..], b"\xfb\xef\xbe\xff\xff\xff\x01");
    assert_eq!(photo.headers()["etag"], "BEB9D79C");
    let planner = json_of(responses.get(1).unwrap());
    assert_eq!(planner["value"], json!([]));
    assert!(responses.get(0).unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("https://"));
    assert_eq!(json_of(responses.get(3).unwrap())["value"][0]["id"], "x");
    assert_eq!(
        json_of(responses.get(2).unwrap())["error"]["code"],
        "Forbidden"
    );
    assert!(responses.get(4).unwrap().body().is_empty());
    let failed: Vec<usize> = responses.failed().map(|(i, _)| i).collect();
    assert_eq!(failed, [2]);
    assert_eq!(rec.seen()[0].ids, ["1", "2", "3", "4", "5", "6"]);
}

#[tokio::test]
async fn the_client_is_a_layer_in_a_service_builder_stack() {
    use tower_http_batch::client::BatchClientLayer;
    let (addr, rec) = demo().await;
    let endpoint = format!("http://{addr}/batch").parse().unwrap();
    let stack = tower::ServiceBuilder::new()
        .timeout(Duration::from_secs(30))
        .layer(BatchClientLayer::new(endpoint).configure(|c| c.max_requests(2)))
        .service(http());
    let batch = (1..=3).fold(alice(), |b, i| b.push(read(&format!("/users/{i}"))));
    let responses = stack.oneshot(batch).await.unwrap();
    assert_eq!(responses.len(), 3);
    let sizes: Vec<usize> = rec.seen().iter().map(|s| s.ids.len()).collect();
    assert_eq!(sizes, [2, 1]);
}
