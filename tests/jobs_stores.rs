//! Batch jobs kept in a store shared across instances and restarts, over real HTTP: two
//! instances on one Redis answer and cancel each other's jobs; a job whose process stopped
//! is reported with what it finished, and the same request sent again under the same
//! `Idempotency-Key` resumes it.

mod common;

use common::gate::{create, wait_item, Gate};
use common::jobs::{as_user, finished, location, start, ASYNC};
use common::process::Redis;
use common::store::Store;
use common::{within, Http};
use serde_json::json;
use std::time::Duration;
use tower_http_batch::BatchLayer;

/// Two servers (two layers, as two instances) sharing one Redis.
async fn two_on_redis(redis: &Redis, data: &Store, gate: &Gate) -> (Http, Http) {
    let layer = || async {
        let store = tower_http_batch::store::open(&redis.url).await.unwrap();
        // A short lease: a cancel made on the other instance is read within 100 ms.
        BatchLayer::new("/batch")
            .idempotency(store)
            .idempotency_lease(Duration::from_millis(300))
    };
    let a = start(layer().await, data.clone(), gate.clone()).await;
    let b = start(layer().await, data.clone(), gate.clone()).await;
    (a, b)
}

#[tokio::test]
async fn on_one_redis_either_instance_answers_and_cancels_a_job() {
    let redis = Redis::start();
    let (data, gate) = (Store::default(), Gate::default());
    let (a, b) = two_on_redis(&redis, &data, &gate).await;
    let alice = as_user("alice");
    let alice = ("authorization", alice.as_str());
    let batch = json!({ "requests": [create("a"), wait_item(), create("c")] });
    let monitor = location(&a.batch(&batch, &[ASYNC, alice]).await);
    within("the job to reach /wait", gate.entered.notified()).await;

    let on_b = b.send("GET", &monitor, &[alice], "").await;
    assert_eq!(on_b.status, 202);
    assert_eq!(on_b.json()["state"], "running");
    assert_eq!(on_b.json()["responses"], 1);
    let bob = as_user("bob");
    b.send("GET", &monitor, &[("authorization", &bob)], "")
        .await
        .problem(404);

    // Cancelled on B; A's run learns it when it next renews its lease, and says so.
    assert_eq!(b.send("DELETE", &monitor, &[alice], "").await.status, 202);
    within("A's run to learn of the cancel", async {
        while a.send("GET", &monitor, &[alice], "").await.json()["state"] != "cancelling" {
            tokio::task::yield_now().await;
        }
    })
    .await;
    gate.open();
    let done = finished(&b, &monitor, &[alice]).await;
    assert_eq!(done.statuses(), [201, 200, 424]);
    assert_eq!(done.items()[2]["body"]["title"], "Job cancelled");
    assert_eq!(finished(&a, &monitor, &[alice]).await.json(), done.json());
    assert_eq!(data.ids().len(), 1, "c was never created");
}

#[test]
fn a_job_whose_process_stopped_is_reported_and_its_key_resumes_it() {
    let file = std::env::temp_dir().join(format!("thb-jobs-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let layer = || {
        let store = tower_http_batch::store::SqliteStore::open(&file).unwrap();
        BatchLayer::new("/batch")
            .idempotency(store)
            .idempotency_lease(Duration::from_millis(300))
    };
    let (data, gate) = (Store::default(), Gate::default());
    let batch = json!({ "requests": [create("a"), wait_item(), create("c")] });
    let keyed = [ASYNC, ("idempotency-key", "import-1")];
    // The first process: stopped while /wait is in flight (every task dropped).
    let crashed = tokio::runtime::Runtime::new().unwrap();
    let monitor = crashed.block_on(async {
        let http = start(layer(), data.clone(), gate.clone()).await;
        let monitor = location(&http.batch(&batch, &keyed).await);
        within("the job to reach /wait", gate.entered.notified()).await;
        monitor
    });
    crashed.shutdown_background();

    let restarted = tokio::runtime::Runtime::new().unwrap();
    restarted.block_on(async {
        let http = start(layer(), data.clone(), Gate::default()).await;
        // Once its lease has passed: what it finished, what it cannot know, what it never
        // sent.
        let reported = finished(&http, &monitor, &[]).await;
        assert_eq!(reported.status, 200);
        assert_eq!(reported.statuses(), [201, 409, 503]);
        assert_eq!(reported.items()[1]["body"]["title"], "Outcome unknown");
        assert_eq!(reported.items()[2]["body"]["title"], "Job stopped");
        let cancel = http.send("DELETE", &monitor, &[], "").await;
        assert_eq!(
            cancel.problem(409)["type"],
            "urn:tower-http-batch:job-not-running"
        );
        assert_eq!(data.ids().len(), 1, "nothing ran again");
        // Sent again under its key: the same job, resumed; the write in flight is not
        // sent again, the one never sent runs.
        let again = location(&http.batch(&batch, &keyed).await);
        assert_eq!(again, monitor);
        let resumed = finished(&http, &monitor, &[]).await;
        assert_eq!(resumed.statuses(), [201, 409, 201]);
        assert_eq!(data.ids().len(), 2, "a once, c once");
    });
    let _ = std::fs::remove_file(&file);
}
