//! Batches sent with an `Idempotency-Key`, over real HTTP: a retry replays the reply and
//! runs nothing; the same key with another request is `422`; a duplicate while the first
//! runs is `409`; keys are per identity; a client that leaves does not stop a keyed
//! batch, so its retry finds it finished; a run stopped part-way (its runtime shut down,
//! as a crashed process's is) resumes on retry without sending an unsafe item twice; a
//! store that fails runs nothing.

mod common;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::routing::post;
use bytes::Bytes;
use common::gate::{create, wait_item, Gate};
use common::records::Records;
use common::store::{self, Store};
use common::{within, Calls, DropSignal, Http, Reply};
use futures_util::future::BoxFuture;
use http_body::Frame;
use serde_json::{json, Value};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_http_batch::store::{IdempotencyStore, MemoryStore, Record, State as RecordState};
use tower_http_batch::{BatchLayer, BoxError, Resource};

/// A reply body that tells when it is dropped.
struct Watched(axum::body::Body, #[allow(dead_code)] DropSignal);

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }
}

/// Auth and a body watch outside, `layer` around the store's `/items` and `/wait`.
async fn start(layer: BatchLayer, data: Store, gate: Gate) -> Http {
    let routes = store::router(data, Calls::default()).merge(gate.router());
    let app = layer.layer_router(routes);
    let app = tower::Layer::layer(&middleware::from_fn(common::auth), app);
    let watch = middleware::from_fn(move |req: Request, next: Next| {
        let dropped = DropSignal(gate.dropped.clone());
        async move {
            let response = next.run(req).await;
            response.map(|body| axum::body::Body::new(Watched(body, dropped)))
        }
    });
    Http::new(common::serve(tower::Layer::layer(&watch, app)).await)
}

/// `batch` with `key`, as `user` (anonymous without one).
async fn keyed(http: &Http, batch: &Value, key: &str, user: Option<&str>) -> Reply {
    let auth = user.map(|u| format!("Bearer {u}-token"));
    let mut headers = vec![("idempotency-key", key)];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth));
    }
    http.batch(batch, &headers).await
}

/// `batch` with `key`, sent until its first run has finished (until the answer is not
/// the `409` of a batch still running).
async fn finished(http: &Http, batch: &Value, key: &str, user: Option<&str>) -> Reply {
    common::once_free(|| keyed(http, batch, key, user)).await
}

#[tokio::test]
async fn a_retry_replays_the_reply_and_runs_nothing() {
    let data = Store::default();
    let http = start(BatchLayer::new("/batch"), data.clone(), Gate::default()).await;
    let batch =
        json!({ "requests": [create("a"), create("b"), { "id": "list", "url": "/items" }] });
    let first = keyed(&http, &batch, "k1", None).await;
    assert_eq!(first.statuses(), [201, 201, 200]);
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(data.ids().len(), 2);

    let again = finished(&http, &batch, "k1", None).await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.json(), first.json());
    // The key as the IETF draft writes it (a quoted string) is the same key.
    let quoted = keyed(&http, &batch, "\"k1\"", None).await;
    assert_eq!(quoted.headers["idempotent-replayed"], "true");
    assert_eq!(quoted.json(), first.json());
    assert_eq!(data.ids().len(), 2, "nothing ran again");

    // In the format the retry asks for.
    let headers = [
        ("idempotency-key", "k1"),
        ("accept", "application/x-ndjson"),
    ];
    let ndjson = http.batch(&batch, &headers).await;
    assert_eq!(ndjson.headers["idempotent-replayed"], "true");
    let lines = String::from_utf8(ndjson.body.to_vec()).unwrap();
    let bodies: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(bodies[0]["body"], first.items()[0]["body"]);
    assert_eq!(data.ids().len(), 2);
}

#[tokio::test]
async fn the_same_key_with_another_request_is_refused() {
    let data = Store::default();
    let http = start(BatchLayer::new("/batch"), data.clone(), Gate::default()).await;
    let first = json!({ "requests": [create("a")] });
    assert_eq!(keyed(&http, &first, "k2", None).await.statuses(), [201]);
    let other = json!({ "requests": [create("b")] });
    let refused = finished(&http, &other, "k2", None).await;
    let problem = refused.problem(422);
    assert_eq!(
        problem["type"],
        "urn:tower-http-batch:idempotency-key-reused"
    );
    assert_eq!(data.ids().len(), 1, "the other request did not run");
}

#[tokio::test]
async fn keys_belong_to_their_caller() {
    let data = Store::default();
    let http = start(BatchLayer::new("/batch"), data.clone(), Gate::default()).await;
    let batch = json!({ "requests": [create("a")] });
    let alice = keyed(&http, &batch, "shared", Some("alice")).await;
    let bob = keyed(&http, &batch, "shared", Some("bob")).await;
    assert_eq!((alice.statuses(), bob.statuses()), (vec![201], vec![201]));
    assert_ne!(alice.json(), bob.json(), "two batches, two items");
    assert_eq!(data.ids().len(), 2);
    let alice_again = finished(&http, &batch, "shared", Some("alice")).await;
    assert_eq!(alice_again.json(), alice.json());
    let anonymous = keyed(&http, &batch, "shared", None).await;
    assert!(anonymous.headers.get("idempotent-replayed").is_none());
    assert_eq!(data.ids().len(), 3);
}

#[tokio::test]
async fn a_duplicate_while_the_first_runs_is_told_to_come_back() {
    let (data, gate) = (Store::default(), Gate::default());
    let http = start(BatchLayer::new("/batch"), data.clone(), gate.clone()).await;
    let batch = json!({ "requests": [create("a"), wait_item()] });
    let first = tokio::spawn({
        let (http, batch) = (http.clone(), batch.clone());
        async move { keyed(&http, &batch, "k4", None).await }
    });
    within("the first run to reach /wait", gate.entered.notified()).await;
    let duplicate = keyed(&http, &batch, "k4", None).await;
    let problem = duplicate.problem(409);
    assert_eq!(
        problem["type"],
        "urn:tower-http-batch:idempotency-key-in-use"
    );
    assert_eq!(duplicate.headers["retry-after"], "1");
    gate.open();
    let first = first.await.unwrap();
    assert_eq!(first.statuses(), [201, 200]);
    let replay = finished(&http, &batch, "k4", None).await;
    assert_eq!(replay.json(), first.json());
    assert_eq!(gate.count.load(Ordering::SeqCst), 1);
    assert_eq!(data.ids().len(), 1);
}

#[tokio::test]
async fn a_keyed_batch_runs_to_its_end_when_its_client_leaves() {
    let (data, gate) = (Store::default(), Gate::default());
    let http = start(BatchLayer::new("/batch"), data.clone(), gate.clone()).await;
    let batch = json!({ "requests": [create("a"), wait_item(), create("c")] });
    let body = batch.to_string();
    let client = common::post_keyed(http.addr, "/batch", "k5", &body).await;
    within("the run to reach /wait", gate.entered.notified()).await;
    drop(client);
    // The server has seen the client leave: it dropped the reply.
    within("the reply to be dropped", gate.dropped.notified()).await;
    gate.open();
    let replay = finished(&http, &batch, "k5", None).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.statuses(), [201, 200, 201], "it ran to its end");
    assert_eq!(data.ids().len(), 2);
    assert_eq!(gate.count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_keyed_batch_answered_whole_runs_to_its_end_when_its_client_leaves() {
    let (data, gate) = (Store::default(), Gate::default());
    // Resource bulk: its status depends on every item, so its reply is sent whole.
    let layer = BatchLayer::new("/batch").resource(Resource::new("/wait"));
    let http = start(layer, data.clone(), gate.clone()).await;
    let body = json!([{ "name": "a" }, { "name": "b" }]).to_string();
    let client = common::post_keyed(http.addr, "/wait/batch", "k9", &body).await;
    within("the run to reach /wait", gate.entered.notified()).await;
    drop(client);
    within("the server to drop the request", gate.dropped.notified()).await;
    gate.open();
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "k9"),
    ];
    let replay =
        common::once_free(|| http.send("POST", "/wait/batch", &headers, body.clone())).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.json()["success_count"], 2, "{}", replay.json());
    assert_eq!(gate.count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_bulk_delete_by_filter_replays_what_it_deleted() {
    let data = store::seeded(6);
    let layer = BatchLayer::new("/batch").resource(Resource::new("/items").filters(["color"]));
    let http = start(layer, data.clone(), Gate::default()).await;
    let body = json!({ "filters": { "color": "red" } }).to_string();
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "k10"),
    ];
    let first = http
        .send("DELETE", "/items/batch", &headers, body.clone())
        .await;
    assert_eq!(first.json()["deleted"], json!([1, 3, 5]));
    let replay =
        common::once_free(|| http.send("DELETE", "/items/batch", &headers, body.clone())).await;
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(
        replay.json(),
        first.json(),
        "what it deleted, not what is left to delete"
    );
    assert_eq!(data.ids(), [2, 4, 6]);
}

#[test]
fn a_run_stopped_part_way_resumes_without_sending_an_unsafe_item_twice() {
    let records = Arc::new(MemoryStore::default());
    let layer = || {
        BatchLayer::new("/batch")
            .idempotency(records.clone())
            .idempotency_lease(Duration::from_millis(50))
    };
    let (data, gate) = (Store::default(), Gate::default());
    let by_reference = json!({ "id": "ref", "url": "/items/{{a#/body/id}}", "dependsOn": ["a"] });
    let list = json!({ "id": "list", "url": "/items" });
    let batch = json!({ "requests": [create("a"), wait_item(), create("c"), list, by_reference] });
    // The first process: stopped while /wait is in flight (every task dropped).
    let crashed = tokio::runtime::Runtime::new().unwrap();
    crashed.block_on(async {
        let http = start(layer(), data.clone(), gate.clone()).await;
        let batch = batch.clone();
        tokio::spawn(async move { keyed(&http, &batch, "k6", None).await });
        within("the run to reach /wait", gate.entered.notified()).await;
    });
    crashed.shutdown_background();
    assert_eq!(data.ids().len(), 1, "a ran");

    let restarted = tokio::runtime::Runtime::new().unwrap();
    restarted.block_on(async {
        let http = start(layer(), data.clone(), Gate::default()).await;
        // Once the stopped run's lease has passed, the retry takes it over.
        let resumed = finished(&http, &batch, "k6", None).await;
        assert!(resumed.headers.get("idempotent-replayed").is_none());
        assert_eq!(resumed.statuses(), [201, 409, 201, 200, 200]);
        let items = resumed.items();
        assert_eq!(items[1]["body"]["title"], "Outcome unknown");
        assert_eq!(
            items[3]["body"].as_array().unwrap().len(),
            2,
            "a once, c once"
        );
        assert_eq!(
            items[4]["body"]["name"], "a",
            "the reference read a's replayed result"
        );
        assert_eq!(
            gate.count.load(Ordering::SeqCst),
            1,
            "/wait was not sent again"
        );
        let again = finished(&http, &batch, "k6", None).await;
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert_eq!(again.json(), resumed.json());
    });
    assert_eq!(data.ids().len(), 2);
}

/// A store whose every call fails, as one whose server is down.
struct Down;

impl IdempotencyStore for Down {
    fn create<'a>(
        &'a self,
        _: &'a str,
        _: &'a Record,
        _: Duration,
    ) -> BoxFuture<'a, Result<Option<Record>, BoxError>> {
        Box::pin(async { Err("connection refused".into()) })
    }
    fn replace<'a>(
        &'a self,
        _: &'a str,
        _: RecordState,
        _: RecordState,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        Box::pin(async { Err("connection refused".into()) })
    }
    fn append<'a>(
        &'a self,
        _: &'a str,
        _: u64,
        _: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        Box::pin(async { Err("connection refused".into()) })
    }
    fn entries<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<(String, Bytes)>, BoxError>> {
        Box::pin(async { Err("connection refused".into()) })
    }
    fn get<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Record>, BoxError>> {
        Box::pin(async { Err("connection refused".into()) })
    }
}

/// `/down` (`POST`) takes the flaky store down: the items after it cannot be recorded.
async fn start_flaky(store: Arc<Records>, data: Store) -> Http {
    let layer = BatchLayer::new("/batch")
        .idempotency(store.clone())
        .idempotency_lease(Duration::from_millis(50));
    let down = move || {
        let store = store.clone();
        async move {
            store.down.store(true, Ordering::SeqCst);
            "down"
        }
    };
    let routes = store::router(data, Calls::default()).route("/down", post(down));
    let app = tower::Layer::layer(
        &middleware::from_fn(common::auth),
        layer.layer_router(routes),
    );
    Http::new(common::serve(app).await)
}

#[tokio::test]
async fn a_store_that_fails_mid_batch_leaves_it_to_resume() {
    let (flaky, data) = (Arc::new(Records::default()), Store::default());
    let http = start_flaky(flaky.clone(), data.clone()).await;
    let down = json!({ "id": "down", "method": "POST", "url": "/down" });
    let read_c = json!({ "id": "d", "url": "/items/{{c#/body/id}}", "dependsOn": ["c"] });
    let batch = json!({ "requests": [create("a"), down, create("c"), read_c] });
    let first = keyed(&http, &batch, "k11", None).await;
    assert_eq!(
        first.statuses(),
        [201, 200, 503, 424],
        "c was not sent, so neither was d"
    );
    assert_eq!(first.items()[2]["body"]["title"], "Not recorded");
    assert_eq!(data.ids().len(), 1);
    // The store is back: the record was not finished, so once its lease has passed the
    // retry resumes it. a replays; down was sent but its outcome could not be written
    // (the store went down under it), so it is unknown, not sent again; c, never sent,
    // runs now, and so does d, whose 424 followed from c's 503 and was not recorded.
    flaky.down.store(false, Ordering::SeqCst);
    let resumed = finished(&http, &batch, "k11", None).await;
    assert!(resumed.headers.get("idempotent-replayed").is_none());
    assert_eq!(resumed.statuses(), [201, 409, 201, 200]);
    assert_eq!(resumed.items()[3]["body"]["name"], "c");
    assert_eq!(resumed.items()[0], first.items()[0]);
    assert_eq!(data.ids().len(), 2);
    let replayed = finished(&http, &batch, "k11", None).await;
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    assert_eq!(replayed.json(), resumed.json());
}

#[tokio::test]
async fn a_keyed_batch_its_store_cannot_record_does_not_run() {
    let data = Store::default();
    let http = start(
        BatchLayer::new("/batch").idempotency(Down),
        data.clone(),
        Gate::default(),
    )
    .await;
    let batch = json!({ "requests": [create("a")] });
    let refused = keyed(&http, &batch, "k7", None).await;
    let problem = refused.problem(503);
    assert_eq!(problem["type"], "urn:tower-http-batch:store-unavailable");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(data.ids().is_empty());
    // A batch without a key does not need the store.
    assert_eq!(http.batch(&batch, &[]).await.statuses(), [201]);
}

#[tokio::test]
async fn keys_are_checked_and_may_be_required() {
    let data = Store::default();
    let layer = BatchLayer::new("/batch").require_idempotency_key();
    let http = start(layer, data.clone(), Gate::default()).await;
    let batch = json!({ "requests": [create("a")] });
    let missing = http.batch(&batch, &[]).await;
    assert!(missing.problem(400)["detail"]
        .as_str()
        .unwrap()
        .contains("must carry an Idempotency-Key"));
    let too_long = "k".repeat(256);
    for bad in [
        "",
        "\"\"",
        "\"open",
        "\"a\"b\"",
        too_long.as_str(),
        "tab\there",
    ] {
        let reply = http.batch(&batch, &[("idempotency-key", bad)]).await;
        assert_eq!(
            reply.problem(400)["type"],
            "urn:tower-http-batch:idempotency-key",
            "{bad:?}"
        );
    }
    let twice = [("idempotency-key", "a"), ("idempotency-key", "b")];
    http.batch(&batch, &twice).await.problem(400);
    // A malformed batch is refused as ever, and records nothing under its key.
    let malformed = http
        .batch_raw("{\"requests\": 5}", &[("idempotency-key", "k8")])
        .await;
    malformed.problem(400);
    assert_eq!(keyed(&http, &batch, "k8", None).await.statuses(), [201]);
    assert_eq!(data.ids().len(), 1);
}
