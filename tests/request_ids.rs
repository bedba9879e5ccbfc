//! Request ids: each sub-request gets one derived from the outer request's, with
//! tower-http's request-id layers outside the batch layer.

mod common;

use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use common::Http;
use serde_json::json;
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http_batch::{BatchLayer, BatchRouter};

/// Ids `batch-1`, `batch-2`, … for outer requests that come without one.
#[derive(Clone, Default)]
struct Counter(Arc<std::sync::atomic::AtomicUsize>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        Some(RequestId::new(format!("batch-{n}").parse().unwrap()))
    }
}

/// `/echo-id` answers the request id it was given.
fn echo_id(header: &'static str) -> Router {
    Router::new().route(
        "/echo-id",
        get(move |headers: HeaderMap| async move {
            headers
                .get(header)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        }),
    )
}

fn with_ids(layer: BatchLayer, header: &'static str) -> BatchRouter {
    layer.layer_router(echo_id(header))
}

/// `/batch` around `/echo-id`, under tower-http's request-id layers counting ids.
async fn with_counted_ids() -> Http {
    let inner = with_ids(BatchLayer::new("/batch"), "x-request-id");
    let app = Router::new().fallback_service(inner).layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(Counter::default()))
            .layer(PropagateRequestIdLayer::x_request_id()),
    );
    Http::new(common::serve(app).await)
}

#[tokio::test]
async fn sub_requests_get_ids_derived_from_the_outer_one() {
    let http = with_counted_ids().await;
    let batch = json!({"requests": [
        {"id": "a", "url": "/echo-id"},
        {"id": "b", "url": "/echo-id", "headers": {"x-request-id": "chosen-by-the-client"}},
        {"id": "line\nbreak", "url": "/echo-id"},
        {"id": "d", "url": "/missing"},
        {"id": "e", "url": "/echo-id", "dependsOn": ["d"]},
    ]});
    let reply = http.batch(&batch, &[]).await;
    assert_eq!(
        reply.headers["x-request-id"], "batch-1",
        "the outer id goes back out"
    );
    let items = reply.items();
    let seen: Vec<_> = items.iter().map(|i| i["body"].clone()).collect();
    // An id that is not plain text is replaced by the index, marked so that it cannot be
    // another item's id.
    assert_eq!(
        seen[..3],
        [json!("batch-1.a"), json!("batch-1.b"), json!("batch-1.#2")]
    );
    for item in &items[..3] {
        assert_eq!(item["headers"]["X-Request-ID"], item["body"], "{item}");
    }
    assert_eq!(
        items[3]["headers"]["X-Request-ID"], "batch-1.d",
        "a 404 too"
    );
    assert_eq!(items[4]["status"], 424);
    assert!(
        items[4]["headers"].get("X-Request-ID").is_none(),
        "never sent: no id"
    );
    // A client's own outer id is used as it is.
    let reply = http.batch(&batch, &[("x-request-id", "mine")]).await;
    assert_eq!(reply.items()[0]["body"], "mine.a");
}

#[tokio::test]
async fn without_an_outer_id_a_sub_request_keeps_its_own_and_the_header_is_configurable() {
    let http = Http::new(common::serve(with_ids(BatchLayer::new("/batch"), "x-request-id")).await);
    let batch = json!({"requests": [
        {"id": "a", "url": "/echo-id", "headers": {"x-request-id": "own"}},
        {"id": "b", "url": "/echo-id"},
    ]});
    let items = http.batch(&batch, &[]).await.items();
    assert_eq!(items[0]["body"], "own");
    assert!(items[1].get("body").is_none(), "no id: {}", items[1]);

    let layer = BatchLayer::new("/batch").request_id_header("x-correlation-id".parse().unwrap());
    let http = Http::new(common::serve(with_ids(layer, "x-correlation-id")).await);
    let items = http
        .batch(&batch, &[("x-correlation-id", "corr")])
        .await
        .items();
    assert_eq!(items[1]["body"], "corr.b");
    assert_eq!(items[1]["headers"]["X-Correlation-Id"], "corr.b");
}

#[tokio::test]
async fn a_request_id_header_that_is_identity_is_never_rewritten() {
    // `authorization` carries the sender's identity: deriving from it would make it
    // `<token>.<item id>`, so nothing is derived, and the outer value is what every
    // sub-request carries.
    let layer = BatchLayer::new("/batch").request_id_header(http::header::AUTHORIZATION);
    let http = Http::new(common::serve(with_ids(layer, "authorization")).await);
    let batch = json!({"requests": [{"id": "admin", "url": "/echo-id"}]});
    let items = http
        .batch(&batch, &[("authorization", "alice-token")])
        .await
        .items();
    assert_eq!(items[0]["body"], "alice-token");
}

#[tokio::test]
async fn an_outer_id_too_long_or_not_plain_is_not_derived_from() {
    let http = Http::new(common::serve(with_ids(BatchLayer::new("/batch"), "x-request-id")).await);
    let batch = json!({"requests": [{"id": "a", "url": "/echo-id"}]});
    let long = "x".repeat(129);
    for outer in [long.as_str(), "with space"] {
        let items = http.batch(&batch, &[("x-request-id", outer)]).await.items();
        assert!(items[0].get("body").is_none(), "{outer}: {}", items[0]);
    }
    let fits = "x".repeat(128);
    let items = http.batch(&batch, &[("x-request-id", &fits)]).await.items();
    assert_eq!(items[0]["body"], format!("{fits}.a"));
}

/// A sub-request cut off by the batch deadline was sent with an id: its `504` gives it back.
#[tokio::test(start_paused = true)]
async fn an_item_cut_off_by_the_deadline_keeps_its_id() {
    let hang = get(std::future::pending::<&'static str>);
    let router = echo_id("x-request-id").route("/hang", hang);
    let layer = BatchLayer::new("/batch").batch_timeout(std::time::Duration::from_secs(5));
    let http = Http::new(common::serve(layer.layer_router(router)).await);
    let batch = json!({"requests": [{"id": "h", "url": "/hang"}]});
    let items = http.batch(&batch, &[("x-request-id", "r")]).await.items();
    assert_eq!(items[0]["status"], 504);
    assert_eq!(items[0]["headers"]["X-Request-ID"], "r.h");
}

#[test]
fn the_readme_spells_derived_ids_as_the_layer_does() {
    // `batch-1.#2` above: an item without a fit id gets `#` and its index.
    let readme = include_str!("../README.md");
    assert!(
        readme.contains("`<outer id>.<item id>` (`<outer id>.#<index>` when"),
        "README.md must spell a derived request id as the layer writes it"
    );
}

/// A job's sub-requests get ids derived from the request that sent it, as a synchronous
/// batch's do.
#[tokio::test]
async fn a_jobs_sub_requests_get_ids_derived_from_the_request_that_sent_it() {
    let http = with_counted_ids().await;
    let batch = json!({"requests": [{"id": "a", "url": "/echo-id"}]});
    let accepted = http.batch(&batch, &[("prefer", "respond-async")]).await;
    assert_eq!(accepted.status, 202);
    assert_eq!(accepted.headers["x-request-id"], "batch-1");
    let monitor = accepted.headers["location"].to_str().unwrap().to_owned();
    let done = common::jobs::finished(&http, &monitor, &[]).await;
    assert_eq!(done.items()[0]["body"], "batch-1.a");
}
