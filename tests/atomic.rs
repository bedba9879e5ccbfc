//! Atomic batches: `"atomic": true`, OData's `atomicityGroup`, and atomic resource bulk
//! requests, on a store whose transaction hook keeps a private copy until commit.

mod common;

use common::store::{self, seeded, Store};
use common::Http;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tower_http_batch::{BatchLayer, Resource};

fn layer(store: &Store) -> BatchLayer {
    BatchLayer::new("/batch")
        .resource(Resource::new("/items").filters(["color"]))
        .transactions(store.clone())
}

fn create(id: &str, name: Option<&str>) -> Value {
    let body = match name {
        Some(n) => json!({ "name": n }),
        None => json!({}),
    };
    json!({"id": id, "method": "POST", "url": "/items", "body": body})
}

/// Each item's status, in reply order.
fn statuses_of(items: &[Value]) -> Vec<Value> {
    items.iter().map(|i| i["status"].clone()).collect()
}

async fn names(http: &Http) -> Vec<String> {
    let list = http.send("GET", "/items", &[], "").await.json();
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_atomic_batch_commits_when_every_member_succeeds() {
    let store = seeded(0);
    let (http, _) = store::start(layer(&store), store.clone()).await;
    let items = http
        .batch(
            &json!({"atomic": true, "requests": [
                create("a", Some("one")),
                {"id": "b", "method": "PATCH", "url": "/items/{{a#/body/id}}", "dependsOn": ["a"], "body": {"color": "red"}},
                {"id": "c", "url": "/in-tx"},
            ]}),
            &[("authorization", "Bearer alice-token")],
        )
        .await
        .items();
    let statuses = statuses_of(&items);
    assert_eq!(statuses, [201, 200, 200], "{items:#?}");
    assert_eq!(items[2]["body"]["in_tx"], true, "members carry the handle");
    assert_eq!(store.log(), ["begin by alice", "commit"]);
    assert_eq!(names(&http).await, ["one"]);
    // Outside an atomic group, no handle.
    let items = http
        .batch(&json!({"requests": [{"url": "/in-tx"}]}), &[])
        .await
        .items();
    assert_eq!(items[0]["body"]["in_tx"], false);
}

#[tokio::test]
async fn a_failing_member_rolls_the_group_back() {
    let store = seeded(0);
    let (http, calls) = store::start(layer(&store), store.clone()).await;
    let items = http
        .batch(
            &json!({"atomic": true, "requests": [
                create("a", Some("one")),
                create("b", Some("two")),
                create("c", None),
                create("d", Some("four")),
            ]}),
            &[],
        )
        .await
        .items();
    let statuses = statuses_of(&items);
    assert_eq!(statuses, [424, 424, 422, 424]);
    // The failing member keeps its own body; the others say why they did not count.
    assert_eq!(items[2]["body"]["detail"], "name is required");
    assert_eq!(
        items[0]["body"]["detail"],
        "rolled back: request \"c\" (index 2) in atomic group \"atomic\" failed with status 422"
    );
    assert_eq!(
        items[3]["body"]["detail"],
        "not sent: request \"c\" (index 2) in atomic group \"atomic\" failed with status 422, and the group was rolled back"
    );
    assert_eq!(calls.get(), 3, "nothing after the failure was sent");
    assert_eq!(store.log(), ["begin by anonymous", "rollback"]);
    assert!(names(&http).await.is_empty());

    // The same batch in best effort creates three.
    let items = http
        .batch(
            &json!({"requests": [
                create("a", Some("one")),
                create("b", Some("two")),
                create("c", None),
                create("d", Some("four")),
            ]}),
            &[],
        )
        .await
        .items();
    let statuses = statuses_of(&items);
    assert_eq!(statuses, [201, 201, 422, 201]);
    assert_eq!(names(&http).await, ["one", "two", "four"]);
}

#[tokio::test]
async fn atomicity_groups_are_independent_and_can_be_depended_on() {
    let store = seeded(0);
    let (http, _) = store::start(layer(&store).concurrency(4), store.clone()).await;
    let items = http
        .batch(
            &json!({"requests": [
                {"id": "x", "url": "/items"},
                {"id": "g1a", "method": "POST", "url": "/items", "body": {"name": "kept"}, "atomicityGroup": "g1"},
                {"id": "g1b", "method": "POST", "url": "/items", "body": {"name": "kept too"}, "atomicityGroup": "g1"},
                {"id": "g2a", "method": "POST", "url": "/items", "body": {"name": "lost"}, "atomicityGroup": "g2"},
                {"id": "g2b", "method": "POST", "url": "/items", "body": {}, "atomicityGroup": "g2"},
                {"id": "after1", "url": "/items", "dependsOn": ["g1"]},
                {"id": "after2", "url": "/items", "dependsOn": ["g2"]},
            ]}),
            &[],
        )
        .await
        .items();
    let statuses = statuses_of(&items);
    assert_eq!(statuses, [200, 201, 201, 424, 422, 200, 424]);
    // `after1` ran once g1 had committed: it sees both of g1's items.
    let seen: Vec<_> = items[5]["body"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(seen, ["kept", "kept too"]);
    assert!(
        items[6]["body"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("not sent: request \"g2a\""),
        "{}",
        items[6]
    );
    let mut log = store.log();
    log.sort();
    assert_eq!(
        log,
        [
            "begin by anonymous",
            "begin by anonymous",
            "commit",
            "rollback"
        ]
    );
    assert_eq!(names(&http).await, ["kept", "kept too"]);
}

#[tokio::test]
async fn malformed_groups_and_missing_hooks_are_refused_before_anything_runs() {
    let store = seeded(0);
    let (http, calls) = store::start(layer(&store), store.clone()).await;
    for (batch, field, detail) in [
        (
            json!({"requests": [
                {"id": "a", "url": "/items", "atomicityGroup": "g"},
                {"id": "b", "url": "/items"},
                {"id": "c", "url": "/items", "atomicityGroup": "g"},
            ]}),
            "atomicityGroup",
            "\"g\" is split: its requests must be adjacent, and request 0 ends it",
        ),
        (
            json!({"requests": [{"id": "a", "url": "/items", "atomicityGroup": "a"}]}),
            "atomicityGroup",
            "\"a\" is already the id of request 0: groups and requests share one namespace",
        ),
        (
            json!({"atomic": true, "requests": [{"id": "a", "url": "/items", "atomicityGroup": "g"}]}),
            "atomicityGroup",
            "must be left out when the whole batch is `atomic`",
        ),
        (
            json!({"requests": [
                {"id": "a", "url": "/items", "atomicityGroup": "g", "dependsOn": ["g"]},
            ]}),
            "dependsOn",
            "\"g\" is an atomicity group that does not end before this request",
        ),
        (
            json!({"requests": [{"id": "a", "url": "/items", "atomicityGroup": 7}]}),
            "atomicityGroup",
            "must be a string, not a number",
        ),
    ] {
        let p = http.batch(&batch, &[]).await.problem(400);
        assert_eq!(p["errors"][0]["field"], field, "{p}");
        assert_eq!(p["errors"][0]["detail"], detail, "{p}");
    }
    assert_eq!(calls.get(), 0);
    assert!(store.log().is_empty());

    // A layer without a hook refuses atomic batches of two requests or more, whatever
    // their format.
    let bare = seeded(0);
    let (http, calls) =
        store::start(BatchLayer::new("/batch").resource("/items"), bare.clone()).await;
    let two = [create("a", Some("x")), create("b", Some("y"))];
    let p = http
        .batch(&json!({"atomic": true, "requests": two}), &[])
        .await
        .problem(400);
    assert_eq!(
        p["detail"],
        "field `atomic`: atomic batches need a transaction hook, and this server has none (BatchLayer::transactions)"
    );
    let p = http
        .batch(
            &json!({"requests": [
                {"url": "/items", "atomicityGroup": "g"},
                {"url": "/items", "atomicityGroup": "g"},
            ]}),
            &[],
        )
        .await
        .problem(400);
    assert_eq!(p["errors"][0]["field"], "atomicityGroup");
    assert_eq!(p["errors"][1]["index"], 1);
    let p = http
        .send(
            "POST",
            "/items/batch?atomic=true",
            &[("content-type", "application/json")],
            r#"[{"name": "x"}, {"name": "y"}]"#,
        )
        .await
        .problem(400);
    assert_eq!(p["errors"][0]["field"], "atomic");
    // How many a filter matches is known only once listed: refused up front.
    let p = http
        .send(
            "DELETE",
            "/items/batch",
            &[("content-type", "application/json")],
            r#"{"filters": {"name": "x"}, "atomic": true}"#,
        )
        .await
        .problem(400);
    assert_eq!(p["errors"][0]["field"], "atomic");
    assert_eq!(calls.get(), 0);
    assert!(bare.ids().is_empty());
}

#[tokio::test]
async fn a_group_of_one_request_needs_no_hook() {
    let bare = seeded(0);
    let (http, _) = store::start(BatchLayer::new("/batch"), bare.clone()).await;
    // The whole batch atomic, of one request; an atomicity group of one beside a plain
    // request: one request is atomic on its own.
    let one = json!({"atomic": true, "requests": [create("a", Some("x"))]});
    let items = http.batch(&one, &[]).await.items();
    assert_eq!(items[0]["status"], 201);
    let grouped = json!({"requests": [
        {"id": "g1", "method": "POST", "url": "/items", "body": {"name": "y"}, "atomicityGroup": "g"},
        {"id": "free", "url": "/items"},
    ]});
    let items = http.batch(&grouped, &[]).await.items();
    assert_eq!(
        (items[0]["status"].clone(), items[1]["status"].clone()),
        (json!(201), json!(200))
    );
    assert_eq!(bare.ids().len(), 2);
    // A member that fails is that group's failure, as with a hook: nothing to roll back.
    let failing = json!({"requests": [
        {"id": "bad", "method": "POST", "url": "/items", "body": {}, "atomicityGroup": "g"},
    ]});
    assert_eq!(http.batch(&failing, &[]).await.items()[0]["status"], 422);
    assert_eq!(bare.ids().len(), 2);
    // A resource bulk request of one item, atomic.
    let (http, _) = store::start(BatchLayer::new("/batch").resource("/items"), bare.clone()).await;
    let json = [("content-type", "application/json")];
    let one = r#"{"items": [{"name": "z"}], "atomic": true}"#;
    let reply = http.send("POST", "/items/batch", &json, one).await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let reply = reply.json();
    assert_eq!(
        (&reply["success_count"], &reply["atomic"]),
        (&json!(1), &json!(true))
    );
    assert_eq!(reply["rolled_back"], false);
    assert_eq!(bare.ids().len(), 3);
    let bad = r#"{"items": [{}], "atomic": true}"#;
    let reply = http.send("POST", "/items/batch", &json, bad).await;
    assert_eq!(reply.status, 207);
    assert_eq!(reply.json()["failed"][0]["status"], 422);
    assert_eq!(bare.ids().len(), 3);
}

#[tokio::test]
async fn a_hook_that_fails_costs_its_group_only() {
    let store = seeded(0);
    let (http, calls) = store::start(layer(&store), store.clone()).await;
    store.fail_begin.store(true, Ordering::SeqCst);
    let items = http
        .batch(
            &json!({"requests": [
                {"id": "a", "method": "POST", "url": "/items", "body": {"name": "x"}, "atomicityGroup": "g"},
                {"id": "b", "method": "POST", "url": "/items", "body": {"name": "y"}, "atomicityGroup": "g"},
                {"id": "c", "method": "POST", "url": "/items", "body": {"name": "free"}},
            ]}),
            &[],
        )
        .await
        .items();
    let statuses = statuses_of(&items);
    assert_eq!(statuses, [503, 503, 201]);
    assert_eq!(
        items[0]["body"]["detail"],
        "not sent: the transaction for atomic group \"g\" could not begin: the store is read-only"
    );
    assert_eq!(calls.get(), 1, "only the item outside the group ran");

    store.fail_begin.store(false, Ordering::SeqCst);
    store.fail_commit.store(true, Ordering::SeqCst);
    let items = http
        .batch(
            &json!({"atomic": true, "requests": [create("a", Some("x"))]}),
            &[],
        )
        .await
        .items();
    assert_eq!(items[0]["status"], 500);
    assert_eq!(
        items[0]["body"]["detail"],
        "the transaction of atomic group \"atomic\" could not be committed: the disk is full"
    );
    assert_eq!(names(&http).await, ["free"]);
}

#[tokio::test]
async fn stop_on_error_ends_the_reply_at_the_failing_member() {
    let store = seeded(0);
    let (http, _) = store::start(layer(&store), store.clone()).await;
    let items = http
        .batch(
            &json!({"atomic": true, "stop_on_error": true, "requests": [
                create("a", Some("one")),
                create("b", None),
                create("c", Some("three")),
            ]}),
            &[],
        )
        .await
        .items();
    let statuses = statuses_of(&items);
    assert_eq!(statuses, [424, 422]);
    assert!(names(&http).await.is_empty());
}

#[tokio::test]
async fn resource_bulk_is_all_or_nothing_when_atomic() {
    let store = seeded(3);
    let (http, calls) = store::start(layer(&store), store.clone()).await;
    let send = |method: &'static str, path: &'static str, body: Value| {
        let http = http.clone();
        async move { http.send_json(method, path, body.to_string()).await }
    };
    // A failing create rolls back the others; the reply says so.
    let reply = send(
        "POST",
        "/items/batch",
        json!({"atomic": true, "items": [{"name": "a"}, {"name": "b"}, {"color": "red"}]}),
    )
    .await;
    assert_eq!(reply.status, 207);
    let r = reply.json();
    assert_eq!(r["success_count"], 0);
    assert_eq!(r["error_count"], 3);
    assert_eq!(r["created"], json!([]));
    assert_eq!(r["rolled_back"], true);
    assert_eq!(r["failed"][2]["error"], "name is required");
    assert_eq!(r["failed"][0]["status"], 424);
    assert_eq!(store.ids(), [1, 2, 3]);

    // `?atomic=true` works as well; an item the layer refuses refuses the whole request.
    let before = calls.get();
    let p = send(
        "PATCH",
        "/items/batch?atomic=true",
        json!([{"id": 1, "name": "x"}, {"name": "no id"}]),
    )
    .await
    .problem(400);
    assert_eq!(p["errors"][0]["index"], 1);
    assert_eq!(p["errors"][0]["field"], "id");
    assert_eq!(calls.get(), before, "nothing ran");

    // An atomic delete where one id is missing deletes nothing.
    let reply = send(
        "DELETE",
        "/items/batch",
        json!({"atomic": true, "ids": [1, 2, 99]}),
    )
    .await;
    assert_eq!(reply.status, 207);
    assert_eq!(reply.json()["deleted_count"], 0);
    assert_eq!(store.ids(), [1, 2, 3]);

    // All succeed: committed.
    let reply = send(
        "DELETE",
        "/items/batch",
        json!({"atomic": true, "filters": {"color": "red"}}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    assert_eq!(reply.json()["deleted_count"], 2);
    assert_eq!(reply.json()["rolled_back"], false);
    assert_eq!(store.ids(), [2]);
}

// Time is paused: it moves only when every task waits, so the deadline passes exactly
// when nothing else can happen, however loaded the machine is.
#[tokio::test(start_paused = true)]
async fn a_group_cut_off_by_the_batch_deadline_does_not_commit() {
    let store = seeded(0);
    let layer = layer(&store).batch_timeout(Duration::from_millis(300));
    let (http, _) = store::start(layer, store.clone()).await;
    let items = http
        .batch(
            &json!({"atomic": true, "requests": [
                create("a", Some("one")),
                {"id": "h", "url": "/hang"},
                create("c", Some("three")),
            ]}),
            &[],
        )
        .await
        .items();
    let statuses = statuses_of(&items);
    assert_eq!(statuses, [504, 504, 424]);
    assert!(
        items[0]["body"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("rolled back: its atomic group did not finish"),
        "{}",
        items[0]
    );
    // The transaction was dropped, neither committed nor rolled back by call.
    assert_eq!(store.log(), ["begin by anonymous"]);
    assert!(names(&http).await.is_empty());
}

// Time is paused: it moves only when every task waits, so the deadline passes exactly
// when nothing else can happen, however loaded the machine is.
#[tokio::test(start_paused = true)]
async fn a_member_that_panics_or_times_out_rolls_its_group_back() {
    for (url, status) in [("/panic", 500), ("/hang", 504)] {
        let store = seeded(0);
        let layer = layer(&store).timeout(Duration::from_millis(300));
        let (http, _) = store::start(layer, store.clone()).await;
        let items = http
            .batch(
                &json!({"atomic": true, "requests": [
                    create("a", Some("one")),
                    {"id": "bad", "url": url},
                    create("c", Some("three")),
                ]}),
                &[],
            )
            .await
            .items();
        let statuses = statuses_of(&items);
        assert_eq!(statuses, [424, status, 424], "{url}: {items:#?}");
        let detail = items[0]["body"]["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("rolled back: request \"bad\" (index 1)"),
            "{url}: {detail}"
        );
        assert_eq!(store.log(), ["begin by anonymous", "rollback"], "{url}");
        assert!(names(&http).await.is_empty(), "{url}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_commit_in_flight_when_the_deadline_passes_finishes_and_is_reported() {
    let store = seeded(0);
    store.hold.commit.store(true, Ordering::SeqCst);
    let layer = layer(&store).batch_timeout(Duration::from_millis(300));
    let (http, _) = store::start(layer, store.clone()).await;
    let started = tokio::time::Instant::now();
    let client = http.clone();
    let reply = tokio::spawn(async move {
        let batch = json!({"atomic": true, "requests": [create("a", Some("one")), create("b", Some("two"))]});
        client.batch(&batch, &[]).await
    });
    // The commit has made the data permanent and not returned yet.
    store.hold.committed.notified().await;
    // Time is paused: the batch deadline (300 ms) passes before this sleep ends, while the
    // commit is still in flight. Only then does the commit return.
    tokio::time::sleep(Duration::from_secs(1)).await;
    store.hold.release.notify_one();
    let items = reply.await.unwrap().items();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the deadline passed meanwhile"
    );
    // The reply says what became of the data: committed.
    assert_eq!(statuses_of(&items), [201, 201], "{items:#?}");
    assert_eq!(store.log(), ["begin by anonymous", "commit"]);
    assert_eq!(names(&http).await, ["one", "two"]);
}

#[tokio::test(start_paused = true)]
async fn hook_calls_that_never_return_are_bounded_by_the_timeout() {
    // A commit that never returns: whether it took effect is unknown, and the reply says so.
    let store = seeded(0);
    store.hold.commit.store(true, Ordering::SeqCst);
    let bounded = layer(&store).timeout(Duration::from_secs(5));
    let (http, _) = store::start(bounded, store.clone()).await;
    let batch =
        json!({"atomic": true, "requests": [create("a", Some("one")), create("b", Some("two"))]});
    let items = http.batch(&batch, &[]).await.items();
    assert_eq!(statuses_of(&items), [504, 504], "{items:#?}");
    let detail = items[0]["body"]["detail"].as_str().unwrap();
    assert!(detail.contains("did not finish within 5s"), "{detail}");
    assert!(
        detail.contains("whether it took effect is unknown"),
        "{detail}"
    );

    // A begin that never returns: nothing is sent.
    let store = seeded(0);
    store.hold.begin.store(true, Ordering::SeqCst);
    let bounded = layer(&store).timeout(Duration::from_secs(5));
    let (http, calls) = store::start(bounded, store.clone()).await;
    let items = http.batch(&batch, &[]).await.items();
    assert_eq!(statuses_of(&items), [503, 503], "{items:#?}");
    let detail = items[0]["body"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("could not begin: it did not finish within 5s"),
        "{detail}"
    );
    assert_eq!(calls.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_per_item_timeout_a_commit_after_the_deadline_gets_one_more_batch_timeout() {
    let store = seeded(0);
    store.hold.commit.store(true, Ordering::SeqCst);
    let layer = layer(&store)
        .no_timeout()
        .batch_timeout(Duration::from_millis(300));
    let (http, _) = store::start(layer, store.clone()).await;
    let started = tokio::time::Instant::now();
    let batch = json!({"atomic": true, "requests": [create("a", Some("one"))]});
    // The commit never returns: the reply comes anyway, and says it cannot tell.
    let items = http.batch(&batch, &[]).await.items();
    assert_eq!(statuses_of(&items), [504], "{items:#?}");
    let detail = items[0]["body"]["detail"].as_str().unwrap();
    assert!(detail.contains("did not finish within 300ms"), "{detail}");
    assert!(
        detail.contains("whether it took effect is unknown"),
        "{detail}"
    );
    assert!(started.elapsed() >= Duration::from_millis(600));
}

#[tokio::test]
async fn with_stop_on_error_a_group_that_cannot_begin_ends_the_batch() {
    let store = seeded(0);
    let (http, calls) = store::start(layer(&store), store.clone()).await;
    store.fail_begin.store(true, Ordering::SeqCst);
    let items = http
        .batch(
            &json!({"stop_on_error": true, "requests": [
                {"id": "a", "method": "POST", "url": "/items", "body": {"name": "x"}, "atomicityGroup": "g"},
                {"id": "b", "method": "POST", "url": "/items", "body": {"name": "y"}, "atomicityGroup": "g"},
                {"id": "c", "method": "POST", "url": "/items", "body": {"name": "free"}},
            ]}),
            &[],
        )
        .await
        .items();
    // Its members' 503 is the first failure: the reply ends there, and `c` never runs.
    assert_eq!(statuses_of(&items), [503, 503]);
    assert_eq!(calls.get(), 0);
}

/// NDJSON gives items as they finish, but a group's members only once the group has
/// ended: what they report is what became of them (g2a's 201 was rolled back: 424).
#[tokio::test]
async fn ndjson_gives_a_groups_members_once_it_has_ended() {
    let store = seeded(0);
    let (http, _) = store::start(layer(&store).concurrency(4), store.clone()).await;
    let batch = json!({"requests": [
        {"id": "g1a", "method": "POST", "url": "/items", "body": {"name": "kept"}, "atomicityGroup": "g1"},
        {"id": "g1b", "method": "POST", "url": "/items", "body": {"name": "kept too"}, "atomicityGroup": "g1"},
        {"id": "g2a", "method": "POST", "url": "/items", "body": {"name": "lost"}, "atomicityGroup": "g2"},
        {"id": "g2b", "method": "POST", "url": "/items", "body": {}, "atomicityGroup": "g2"},
        {"id": "after2", "url": "/items", "dependsOn": ["g2"]},
    ]});
    let reply = http
        .batch(&batch, &[("accept", "application/x-ndjson")])
        .await;
    let text = std::str::from_utf8(&reply.body).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let status_of = |id: &str| {
        let mut found = lines.iter().filter(|l| l["id"] == id);
        let line = found.next().unwrap_or_else(|| panic!("{id}: {text}"));
        assert!(found.next().is_none(), "{id} once");
        line["status"].clone()
    };
    assert_eq!(status_of("g1a"), 201);
    assert_eq!(status_of("g1b"), 201);
    assert_eq!(status_of("g2a"), 424, "rolled back");
    assert_eq!(status_of("g2b"), 422);
    assert_eq!(status_of("after2"), 424);
    let position = |id: &str| lines.iter().position(|l| l["id"] == id).unwrap();
    // Each group's members come together, once it has ended; what depends on g2, after.
    assert_eq!(position("g1b"), position("g1a") + 1);
    assert_eq!(position("g2b"), position("g2a") + 1);
    assert!(position("after2") > position("g2b"));
    assert_eq!(lines.last().unwrap()["responses"], 5);
}

/// A member rolled back was sent with a request id: its `424` keeps it.
#[tokio::test]
async fn a_rolled_back_member_keeps_its_request_id() {
    let store = seeded(0);
    let (http, _) = store::start(layer(&store), store.clone()).await;
    let batch = json!({"atomic": true, "requests": [create("a", Some("one")), create("b", None)]});
    let items = http.batch(&batch, &[("x-request-id", "r")]).await.items();
    assert_eq!(statuses_of(&items), [424, 422]);
    assert_eq!(items[0]["headers"]["X-Request-ID"], "r.a");
    assert_eq!(items[1]["headers"]["X-Request-ID"], "r.b");
}
