//! Batch jobs over real HTTP: `Prefer: respond-async` gets `202` and a monitor; the
//! monitor shows progress (JSON, or the items so far as NDJSON), then the reply a
//! synchronous batch gives; `DELETE` cancels (nothing new starts, an open atomic group
//! rolls back); another caller gets `404`; an `Idempotency-Key` names one job; `wait=N`
//! answers at once when the job finishes in time; jobs are bounded per caller and in all.
//! (Jobs in Redis and SQLite: `jobs_stores.rs`.)

mod common;

use common::gate::{create, wait_item, Gate};
use common::jobs::{as_user, finished, location, start, ASYNC};
use common::records::Records;
use common::store::Store;
use common::within;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tower_http_batch::store::MemoryStore;
use tower_http_batch::BatchLayer;

#[tokio::test]
async fn a_job_shows_its_progress_then_the_reply_a_synchronous_batch_gives() {
    let batch = json!({ "requests": [create("a"), create("b"), wait_item(), { "id": "list", "url": "/items" }] });
    let gate = Gate::default();
    gate.open();
    let sync_http = start(BatchLayer::new("/batch"), Store::default(), gate).await;
    let sync = sync_http.batch(&batch, &[]).await;
    assert_eq!(sync.statuses(), [201, 201, 200, 200]);

    let (data, gate) = (Store::default(), Gate::default());
    let http = start(BatchLayer::new("/batch"), data.clone(), gate.clone()).await;
    let accepted = http.batch(&batch, &[ASYNC]).await;
    let monitor = location(&accepted);
    within("the job to reach /wait", gate.entered.notified()).await;

    let running = http.send("GET", &monitor, &[], "").await;
    assert_eq!(running.status, 202);
    assert_eq!(running.headers["retry-after"], "1");
    let progress = running.json();
    assert_eq!(progress["state"], "running");
    assert_eq!(progress["requests"], 4);
    assert_eq!(progress["responses"], 2);
    assert_eq!(progress["statusClasses"]["2xx"], 2);
    let so_far = http
        .send("GET", &monitor, &[("accept", "application/x-ndjson")], "")
        .await;
    assert_eq!(so_far.status, 202);
    assert_eq!(so_far.headers["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = String::from_utf8(so_far.body.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<_> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b"], "the items finished so far");

    gate.open();
    let done = finished(&http, &monitor, &[]).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.headers["content-type"], sync.headers["content-type"]);
    assert_eq!(
        done.json(),
        sync.json(),
        "the reply a synchronous batch gives"
    );
    let again = http.send("GET", &monitor, &[], "").await;
    assert_eq!(again.json(), sync.json(), "read again, nothing runs again");
    assert_eq!(data.ids().len(), 2);
    let lines = http
        .send("GET", &monitor, &[("accept", "application/x-ndjson")], "")
        .await;
    assert_eq!(lines.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&lines.body).lines().count(),
        5,
        "4 items and the end"
    );
}

#[tokio::test]
async fn a_malformed_async_batch_is_refused_at_once_and_nothing_runs() {
    let data = Store::default();
    let http = start(BatchLayer::new("/batch"), data.clone(), Gate::default()).await;
    let bad = json!({ "requests": [create("a"), { "id": "a", "url": "/items" }] });
    let refused = http.batch(&bad, &[ASYNC]).await;
    refused.problem(400);
    assert!(refused.headers.get("location").is_none());
    assert!(data.ids().is_empty());
}

#[tokio::test]
async fn only_the_caller_that_sent_a_job_can_read_or_cancel_it() {
    let (data, gate) = (Store::default(), Gate::default());
    let http = start(BatchLayer::new("/batch"), data.clone(), gate.clone()).await;
    let batch = json!({ "requests": [wait_item(), create("a")] });
    let alice = as_user("alice");
    let accepted = http
        .batch(&batch, &[ASYNC, ("authorization", &alice)])
        .await;
    let monitor = location(&accepted);
    within("the job to reach /wait", gate.entered.notified()).await;
    for who in [Some(as_user("bob")), None] {
        let mut headers = vec![];
        if let Some(who) = &who {
            headers.push(("authorization", who.as_str()));
        }
        let read = http.send("GET", &monitor, &headers, "").await;
        assert_eq!(
            read.problem(404)["type"],
            "urn:tower-http-batch:job-not-found"
        );
        let cancel = http.send("DELETE", &monitor, &headers, "").await;
        cancel.problem(404);
    }
    let unknown = monitor.replace(&monitor[monitor.len() - 4..], "0000");
    let none = http
        .send("GET", &unknown, &[("authorization", &alice)], "")
        .await;
    none.problem(404);
    gate.open();
    let done = finished(&http, &monitor, &[("authorization", &alice)]).await;
    assert_eq!(
        done.statuses(),
        [200, 201],
        "bob's DELETE cancelled nothing"
    );
}

#[tokio::test]
async fn a_cancelled_job_starts_nothing_more_and_its_open_group_rolls_back() {
    let (data, gate) = (Store::default(), Gate::default());
    let http = start(BatchLayer::new("/batch"), data.clone(), gate.clone()).await;
    let in_group = |mut v: Value| {
        v["atomicityGroup"] = json!("g");
        v
    };
    let batch = json!({ "requests": [
        create("a"),
        in_group(create("b")),
        in_group(wait_item()),
        in_group(create("c")),
        create("d"),
    ] });
    let monitor = location(&http.batch(&batch, &[ASYNC]).await);
    within("the job to reach /wait", gate.entered.notified()).await;
    let cancelled = http.send("DELETE", &monitor, &[], "").await;
    assert_eq!(cancelled.status, 202);
    assert_eq!(cancelled.json()["state"], "cancelling");
    assert_eq!(
        http.send("GET", &monitor, &[], "").await.json()["state"],
        "cancelling"
    );
    gate.open();
    let done = finished(&http, &monitor, &[]).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.statuses(), [201, 424, 424, 424, 424]);
    let items = done.items();
    assert_eq!(items[3]["body"]["title"], "Job cancelled", "{:?}", items[3]);
    assert_eq!(items[4]["body"]["title"], "Job cancelled");
    assert_eq!(
        data.ids().len(),
        1,
        "only what ran before the cancel is kept"
    );
    assert!(
        data.log().iter().any(|l| l == "rollback"),
        "{:?}",
        data.log()
    );
    let again = http.send("DELETE", &monitor, &[], "").await;
    assert_eq!(
        again.problem(409)["type"],
        "urn:tower-http-batch:job-not-running"
    );
}

#[tokio::test]
async fn an_idempotency_key_names_one_job() {
    let (data, gate) = (Store::default(), Gate::default());
    let http = start(BatchLayer::new("/batch"), data.clone(), gate.clone()).await;
    let batch = json!({ "requests": [create("a"), wait_item()] });
    let key = ("idempotency-key", "job-1");
    let first = location(&http.batch(&batch, &[ASYNC, key]).await);
    within("the job to reach /wait", gate.entered.notified()).await;
    let again = location(&http.batch(&batch, &[ASYNC, key]).await);
    assert_eq!(first, again, "the same job, while it runs");
    // How long a client would wait is not part of the request.
    let waits = [("prefer", "respond-async, wait=0"), key];
    assert_eq!(location(&http.batch(&batch, &waits).await), first);
    let other = json!({ "requests": [create("b")] });
    let refused = http.batch(&other, &[ASYNC, key]).await;
    assert_eq!(
        refused.problem(422)["type"],
        "urn:tower-http-batch:idempotency-key-reused"
    );
    gate.open();
    finished(&http, &first, &[]).await;
    let after = http.batch(&batch, &[ASYNC, key]).await;
    assert_eq!(
        location(&after),
        first,
        "the same job, once it has finished"
    );
    assert_eq!(after.json()["state"], "finished");
    let waited = http
        .batch(&batch, &[("prefer", "respond-async, wait=5"), key])
        .await;
    assert_eq!(
        waited.statuses(),
        [201, 200],
        "a finished job's reply, for who would wait"
    );
    // The same key without respond-async is another request: it does not run again.
    let sync = http.batch(&batch, &[key]).await;
    assert_eq!(
        sync.problem(422)["type"],
        "urn:tower-http-batch:idempotency-key-reused"
    );
    assert_eq!(data.ids().len(), 1);
    assert_eq!(gate.count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn prefer_wait_answers_with_the_reply_when_the_job_finishes_in_time() {
    let (data, gate) = (Store::default(), Gate::default());
    let http = start(BatchLayer::new("/batch"), data.clone(), gate.clone()).await;
    let quick = json!({ "requests": [create("a")] });
    let waited = http
        .batch(&quick, &[("prefer", "respond-async, wait=20")])
        .await;
    assert_eq!(waited.status, 200);
    assert_eq!(waited.statuses(), [201]);
    assert!(waited.headers.get("preference-applied").is_none());
    // The gate stays shut: the job cannot finish within the second it is given.
    let slow = json!({ "requests": [wait_item()] });
    let accepted = http
        .batch(
            &slow,
            &[("prefer", "respond-async; wait=1"), ("prefer", "wait=1")],
        )
        .await;
    let monitor = location(&accepted);
    gate.open();
    assert_eq!(finished(&http, &monitor, &[]).await.statuses(), [200]);
}

#[tokio::test]
async fn jobs_are_bounded_per_caller_and_in_all() {
    let (data, gate) = (Store::default(), Gate::default());
    let layer = BatchLayer::new("/batch").max_jobs(2).max_jobs_per_caller(1);
    let http = start(layer, data.clone(), gate.clone()).await;
    let batch = json!({ "requests": [wait_item()] });
    let send = |user: &'static str| {
        let http = http.clone();
        let batch = batch.clone();
        async move {
            let auth = as_user(user);
            http.batch(&batch, &[ASYNC, ("authorization", &auth)]).await
        }
    };
    let alice = location(&send("alice").await);
    let refused = send("alice").await;
    assert_eq!(
        refused.problem(429)["type"],
        "urn:tower-http-batch:too-many-jobs"
    );
    assert!(refused.headers.contains_key("retry-after"));
    location(&send("bob").await);
    let full = send("carol").await;
    full.problem(503);
    assert!(full.headers.contains_key("retry-after"));
    gate.open();
    let auth = as_user("alice");
    finished(&http, &alice, &[("authorization", &auth)]).await;
    // Its place is given back once the run has ended (just after the record says so).
    within("alice's place to be free", async {
        while send("alice").await.status != 202 {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn without_jobs_respond_async_is_ignored() {
    let data = Store::default();
    let http = start(BatchLayer::new("/batch").no_jobs(), data, Gate::default()).await;
    let reply = http
        .batch(&json!({ "requests": [create("a")] }), &[ASYNC])
        .await;
    assert_eq!(reply.statuses(), [201]);
    assert!(reply.headers.get("preference-applied").is_none());
    let monitor = format!("/batch/jobs/{}", "0".repeat(32));
    assert_eq!(
        http.send("GET", &monitor, &[], "").await.status,
        404,
        "passed through"
    );
}

#[tokio::test]
async fn polling_a_job_run_here_reads_no_record() {
    let records = Arc::new(Records::default());
    let (data, gate) = (Store::default(), Gate::default());
    let layer = BatchLayer::new("/batch").idempotency(records.clone());
    let http = start(layer, data, gate.clone()).await;
    let batch = json!({ "requests": [create("a"), wait_item()] });
    let monitor = location(&http.batch(&batch, &[ASYNC]).await);
    within("the job to reach /wait", gate.entered.notified()).await;
    for _ in 0..50 {
        let progress = http.send("GET", &monitor, &[], "").await.json();
        assert_eq!(
            (
                progress["requests"].as_u64(),
                progress["responses"].as_u64()
            ),
            (Some(2), Some(1))
        );
    }
    assert_eq!(
        http.send("DELETE", &monitor, &[], "").await.json()["responses"],
        1
    );
    assert_eq!(
        records.reads.load(Ordering::SeqCst),
        0,
        "its run counts its progress"
    );
    gate.open();
    finished(&http, &monitor, &[]).await;
}

#[tokio::test]
async fn a_keyed_job_keeps_its_name_while_a_full_store_lets_finished_batches_go() {
    // Room for ten records: the job's two (its own, and the one under its key), and the
    // keyed batches that follow, which push the oldest finished ones out.
    let records = MemoryStore::new(10, 1 << 20);
    let (data, gate) = (Store::default(), Gate::default());
    let layer = BatchLayer::new("/batch").idempotency(records);
    let http = start(layer, data.clone(), gate.clone()).await;
    let batch = json!({ "requests": [wait_item(), create("a")] });
    let key = ("idempotency-key", "import-1");
    let first = location(&http.batch(&batch, &[ASYNC, key]).await);
    within("the job to reach /wait", gate.entered.notified()).await;
    for i in 0..20 {
        let other = json!({ "requests": [{ "id": "r", "url": "/items" }] });
        let key = format!("read-{i}");
        assert_eq!(
            http.batch(&other, &[("idempotency-key", &key)])
                .await
                .statuses(),
            [200]
        );
    }
    let again = location(&http.batch(&batch, &[ASYNC, key]).await);
    assert_eq!(again, first, "the same job: its name was kept while it ran");
    gate.open();
    assert_eq!(finished(&http, &first, &[]).await.statuses(), [200, 201]);
    assert_eq!(gate.count.load(Ordering::SeqCst), 1, "it ran once");
}
