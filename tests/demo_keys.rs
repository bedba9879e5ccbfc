//! The demo's keyed batches over real HTTP: two demos sharing one Redis (and one data
//! file, as `--db` gives them) replay each other's batches, and refuse keyed batches once
//! Redis is gone; a demo restarted on the same SQLite store replays; another identity with
//! the same key gets its own batch; a multipart batch replays too; a 10,000-user import runs
//! as a job on one demo and the other answers its monitor.

#[path = "../examples/demo/app.rs"]
mod app;
mod common;

use common::process::Redis;
use common::{Http, Reply};
use serde_json::{json, Value};
use std::time::Duration;
use tower_http_batch::store::{self, IdempotencyStore};

const ALICE: (&str, &str) = ("authorization", "Bearer alice-token");
const BOB: (&str, &str) = ("authorization", "Bearer bob-token");

async fn demo(data: &str, store: std::sync::Arc<dyn IdempotencyStore>) -> Http {
    let keys = app::Keys {
        store,
        retention: Duration::from_secs(3600),
    };
    let db = app::Db::open(Some(data)).unwrap();
    Http::new(common::serve(app::app_with_keys(db, keys)).await)
}

fn batch() -> Value {
    json!({ "requests": [
        { "id": "new", "method": "POST", "url": "/users", "body": { "name": "Kay", "email": "kay@example.com" } },
        { "id": "read", "url": "/users/{{new#/body/id}}", "dependsOn": ["new"] },
    ]})
}

async fn keyed(http: &Http, key: &str, who: (&str, &str)) -> Reply {
    let batch = batch();
    let headers = [("idempotency-key", key), who];
    common::once_free(|| http.batch(&batch, &headers)).await
}

fn temp(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("thb-{name}-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path.to_str().unwrap().to_owned()
}

async fn users(http: &Http) -> usize {
    http.send("GET", "/users", &[], "")
        .await
        .json()
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn two_demos_on_one_redis_replay_each_other() {
    let redis = Redis::start();
    let data = temp("demo-shared");
    let a = demo(&data, store::open(&redis.url).await.unwrap()).await;
    let b = demo(&data, store::open(&redis.url).await.unwrap()).await;
    let before = users(&a).await;
    let first = keyed(&a, "order-1", ALICE).await;
    assert_eq!(first.items()[0]["status"], 201);
    assert_eq!(first.items()[1]["status"], 200);
    let on_b = keyed(&b, "order-1", ALICE).await;
    assert_eq!(on_b.headers["idempotent-replayed"], "true");
    assert_eq!(on_b.json(), first.json());
    assert_eq!(users(&b).await, before + 1, "created once");
    // Bob's key is Bob's.
    let bob = keyed(&b, "order-1", BOB).await;
    assert!(bob.headers.get("idempotent-replayed").is_none());
    assert_eq!(users(&a).await, before + 2);

    // Redis gone: a keyed batch is refused (503) and runs nothing; one without a key runs.
    drop(redis);
    let refused = a
        .batch(&batch(), &[("idempotency-key", "order-9"), ALICE])
        .await;
    assert_eq!(
        refused.problem(503)["type"],
        "urn:tower-http-batch:store-unavailable"
    );
    assert_eq!(users(&a).await, before + 2);
    assert_eq!(a.batch(&batch(), &[ALICE]).await.items()[0]["status"], 201);
    let _ = std::fs::remove_file(&data);
}

#[tokio::test]
async fn a_demo_restarted_on_its_sqlite_store_replays() {
    let (data, records) = (temp("demo-data"), temp("demo-records"));
    let sqlite = format!("sqlite:{records}");
    let first = {
        let http = demo(&data, store::open(&sqlite).await.unwrap()).await;
        keyed(&http, "order-2", ALICE).await
    };
    let http = demo(&data, store::open(&sqlite).await.unwrap()).await;
    let before = users(&http).await;
    let again = keyed(&http, "order-2", ALICE).await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.json(), first.json());
    assert_eq!(users(&http).await, before);
    let _ = (std::fs::remove_file(&data), std::fs::remove_file(&records));
}

#[tokio::test]
async fn a_multipart_batch_replays() {
    let data = temp("demo-multipart");
    let http = demo(&data, store::open("memory").await.unwrap()).await;
    let body = "--b\r\ncontent-type: application/http\r\ncontent-transfer-encoding: binary\r\n\r\nPOST /users HTTP/1.1\r\ncontent-type: application/json\r\n\r\n{\"name\": \"Mo\", \"email\": \"mo@example.com\"}\r\n--b--\r\n";
    let headers = [
        ("content-type", "multipart/mixed; boundary=b"),
        ("idempotency-key", "multi-1"),
        ALICE,
    ];
    let before = users(&http).await;
    let first = http.send("POST", "/batch", &headers, body).await;
    assert_eq!(first.status, 200);
    assert!(String::from_utf8_lossy(&first.body).contains("201"));
    let again = common::once_free(|| http.send("POST", "/batch", &headers, body)).await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert!(String::from_utf8_lossy(&again.body).contains("201"));
    assert_eq!(users(&http).await, before + 1);
    let _ = std::fs::remove_file(&data);
}

/// The README's import: 10,000 users in one resource bulk request, run as a job on one
/// demo, its client gone at once; the other demo on the same Redis answers its monitor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_user_import_runs_as_a_job_and_either_demo_answers_its_monitor() {
    let redis = Redis::start();
    let on_own_data = || async {
        let keys = app::Keys {
            store: store::open(&redis.url).await.unwrap(),
            retention: Duration::from_secs(3600),
        };
        let db = app::Db::open(None).unwrap();
        Http::new(common::serve(app::app_with_keys(db, keys)).await)
    };
    let (a, b) = (on_own_data().await, on_own_data().await);
    let users: Vec<Value> = (0..10_000)
        .map(|i| json!({ "name": format!("User {i}"), "email": format!("user{i}@example.com") }))
        .collect();
    let body = json!({ "users": users }).to_string();
    let headers = [
        ("content-type", "application/json"),
        ("prefer", "respond-async"),
        ALICE,
    ];
    let accepted = a.send("POST", "/users/batch", &headers, body).await;
    assert_eq!(accepted.status, 202, "{:?}", accepted.body);
    let monitor = accepted.headers["location"].to_str().unwrap().to_owned();
    assert!(monitor.starts_with("/users/batch/jobs/"), "{monitor}");
    let done = common::within("the job to finish", async {
        loop {
            let reply = b.send("GET", &monitor, &[ALICE], "").await;
            if reply.status != 202 {
                return reply;
            }
            let progress = reply.json();
            assert_eq!(progress["state"], "running");
            assert!(progress["responses"].as_u64().unwrap() <= 10_000);
            // As a client polls (Retry-After says a second): not in a tight loop.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert_eq!(done.status, 201, "{:?}", done.body);
    assert_eq!(done.json()["success_count"], 10_000);
    assert_eq!(
        a.send("GET", &monitor, &[ALICE], "").await.json(),
        done.json()
    );
    assert_eq!(b.send("GET", &monitor, &[BOB], "").await.status, 404);
    assert_eq!(done.json()["created"].as_array().unwrap().len(), 10_000);
}
