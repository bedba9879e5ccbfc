//! Resource bulk endpoints (seed 000): `POST/PATCH/DELETE /items/batch`, best effort,
//! through real HTTP.

mod common;

use common::store::{self, seeded};
use common::{Http, Reply};
use serde_json::{json, Value};
use tower_http_batch::{BatchLayer, Resource};

async fn send(http: &Http, method: &str, path: &str, body: &Value) -> Reply {
    http.send_json(method, path, body.to_string()).await
}

/// `/items`, with the filters its listing takes (`broken` makes the listing fail).
fn items() -> Resource {
    Resource::new("/items").filters(["color", "broken"])
}

fn layer() -> BatchLayer {
    BatchLayer::new("/batch").resource(items())
}

#[tokio::test]
async fn bulk_create_reports_created_and_failed_in_request_order() {
    let store = seeded(0);
    let (http, _) = store::start(layer(), store.clone()).await;
    let reply = send(
        &http,
        "POST",
        "/items/batch",
        &json!({"items": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
    )
    .await;
    assert_eq!(reply.status, 201);
    let r = reply.json();
    assert_eq!(r["success_count"], 3);
    assert_eq!(r["error_count"], 0);
    assert_eq!(r["failed"], json!([]));
    let names: Vec<_> = r["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, [json!("a"), json!("b"), json!("c")]);
    assert_eq!(r["created"][2]["id"], 3);
    assert_eq!(store.ids(), [1, 2, 3]);

    // Some fail: 207, each failure with the handler's own message and the item.
    let reply = send(
        &http,
        "POST",
        "/items/batch",
        &json!({"items": [{"name": "d"}, {"color": "red"}, {"name": "boom"}, "not an object", {"name": "e"}]}),
    )
    .await;
    assert_eq!(reply.status, 207);
    let r = reply.json();
    assert_eq!(r["success_count"], 2);
    assert_eq!(r["error_count"], 3);
    assert_eq!(r["created"][0]["name"], "d");
    assert_eq!(r["created"][1]["name"], "e");
    assert_eq!(
        r["failed"],
        json!([
            {"index": 1, "status": 422, "error": "name is required", "item": {"color": "red"}},
            {"index": 2, "status": 500, "error": "storage exploded", "item": {"name": "boom"}},
            {"index": 3, "status": 422, "error": "`item`: must be a JSON object, not a string", "item": "not an object"},
        ])
    );
    assert_eq!(store.ids(), [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn a_bare_array_works_and_the_key_is_configurable() {
    let store = seeded(0);
    let (http, _) = store::start(
        BatchLayer::new("/batch").resource(Resource::new("/items").name("things")),
        store.clone(),
    )
    .await;
    let reply = send(&http, "POST", "/items/batch", &json!([{"name": "a"}])).await;
    assert_eq!(reply.status, 201, "{}", reply.json());
    let reply = send(
        &http,
        "POST",
        "/items/batch",
        &json!({"things": [{"name": "b"}]}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.json());
    // The old key is now an unknown field: refused whole, nothing created.
    let p = send(
        &http,
        "POST",
        "/items/batch",
        &json!({"items": [{"name": "c"}]}),
    )
    .await
    .problem(400);
    assert_eq!(p["errors"][0]["field"], "items");
    assert!(p["detail"].as_str().unwrap().contains("\"things\""), "{p}");
    assert_eq!(store.ids(), [1, 2]);
}

#[tokio::test]
async fn bulk_update_takes_the_id_out_of_each_item() {
    let store = seeded(3);
    let (http, calls) = store::start(layer(), store.clone()).await;
    let reply = send(
        &http,
        "PATCH",
        "/items/batch",
        &json!({"updates": [
            {"id": 1, "name": "one"},
            {"id": "2", "color": "green"},
            {"id": 999, "name": "ghost"},
            {"name": "no id"},
            {"id": "x", "name": "bad id"},
            {"id": {"nested": 1}},
        ]}),
    )
    .await;
    assert_eq!(reply.status, 207);
    let r = reply.json();
    assert_eq!(r["success_count"], 2);
    assert_eq!(r["error_count"], 4);
    assert_eq!(
        r["succeeded"][0],
        json!({"id": 1, "name": "one", "color": "red"})
    );
    assert_eq!(
        r["succeeded"][1],
        json!({"id": 2, "name": "item 2", "color": "green"})
    );
    assert_eq!(
        r["failed"],
        json!([
            {"index": 2, "id": 999, "status": 404, "error": "Item not found"},
            {"index": 3, "id": null, "status": 422, "error": "`id`: is required"},
            {"index": 4, "id": "x", "status": 400, "error": "bad id \"x\""},
            {"index": 5, "id": {"nested": 1}, "status": 422, "error": "`id`: must be a string or a number, not an object"},
        ])
    );
    // Items 3 and 5 were refused by the layer and never sent.
    assert_eq!(calls.get(), 4);

    // All succeeded: 200.
    let reply = send(
        &http,
        "PATCH",
        "/items/batch",
        &json!([{"id": 3, "name": "three"}]),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["succeeded"][0]["name"], "three");
}

#[tokio::test]
async fn an_id_is_one_path_segment_and_never_the_batch_endpoint() {
    let store = seeded(1);
    let (http, calls) = store::start(layer(), store.clone()).await;
    let reply = send(
        &http,
        "DELETE",
        "/items/batch",
        &json!({"ids": ["1/../../batch", "batch", "..", "", "a b"]}),
    )
    .await;
    assert_eq!(reply.status, 207);
    let r = reply.json();
    let failed = r["failed"].as_array().unwrap();
    // "1/../../batch" is escaped into one segment (`1%2F..%2F..%2Fbatch`), but a server
    // that decodes `%2F` would route it to `/batch`: refused as a nested batch too.
    for i in [0, 1] {
        assert_eq!(failed[i]["status"], 422, "{r}");
        let error = failed[i]["error"].as_str().unwrap();
        assert!(error.contains("batches do not nest"), "{r}");
    }
    assert_eq!(failed[2]["status"], 422);
    assert_eq!(failed[3]["error"], "`ids`: must not be empty");
    assert_eq!(failed[4]["status"], 400);
    assert_eq!(
        calls.get(),
        1,
        "only the escaped \"a b\" reaches the router"
    );
    assert_eq!(store.ids(), [1]);
}

#[tokio::test]
async fn bulk_delete_by_ids_counts_deleted_not_found_and_failed() {
    let store = seeded(20);
    let (http, _) = store::start(layer(), store.clone()).await;
    let reply = send(
        &http,
        "DELETE",
        "/items/batch",
        &json!({"ids": [1, "2", 99, 13]}),
    )
    .await;
    assert_eq!(reply.status, 207);
    assert_eq!(
        reply.json(),
        json!({
            "deleted_count": 2, "not_found_count": 1, "error_count": 1,
            "deleted": [1, "2"], "not_found": [99],
            "failed": [{"index": 3, "id": 13, "status": 403, "error": "Forbidden"}],
        })
    );
    let reply = send(&http, "DELETE", "/items/batch", &json!([3, 4])).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["deleted_count"], 2);
    assert_eq!(store.ids().len(), 16);
}

#[tokio::test]
async fn bulk_delete_by_filters_lists_then_deletes() {
    let store = seeded(10);
    let (http, calls) = store::start(layer(), store.clone()).await;
    let reply = send(
        &http,
        "DELETE",
        "/items/batch",
        &json!({"filters": {"color": "red"}}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    let r = reply.json();
    assert_eq!(r["deleted_count"], 5);
    assert_eq!(r["not_found_count"], 0);
    assert_eq!(r["deleted"], json!([1, 3, 5, 7, 9]));
    assert_eq!(calls.get(), 6, "one GET, five DELETEs");
    assert_eq!(store.ids(), [2, 4, 6, 8, 10]);

    // Nothing matches: nothing to do.
    let reply = send(
        &http,
        "DELETE",
        "/items/batch",
        &json!({"filters": {"color": "red"}}),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["deleted_count"], 0);
}

#[tokio::test]
async fn a_filter_that_matches_too_many_deletes_nothing() {
    let store = seeded(10);
    let (http, calls) = store::start(
        BatchLayer::new("/batch").resource(items().max_items(4)),
        store.clone(),
    )
    .await;
    let p = send(
        &http,
        "DELETE",
        "/items/batch",
        &json!({"filters": {"color": "blue"}}),
    )
    .await
    .problem(400);
    assert_eq!(
        p["detail"],
        "the filters match 5 items; the limit is 4 (max_items); nothing was deleted"
    );
    assert_eq!(calls.get(), 1, "only the listing ran");
    assert_eq!(store.ids().len(), 10);

    // The same limit holds for a list of ids, and for creates.
    let p = send(
        &http,
        "DELETE",
        "/items/batch",
        &json!({"ids": [1, 2, 3, 4, 5]}),
    )
    .await
    .problem(400);
    assert_eq!(
        p["errors"][0]["detail"],
        "holds 5 items; the limit is 4 (max_items)"
    );
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn the_listing_may_be_wrapped_and_its_failures_are_reported() {
    let store = seeded(6);
    let (http, calls) = store::start(
        BatchLayer::new("/batch")
            .resource(
                Resource::new("/items-wrapped")
                    .list_key("data")
                    .filters(["color"]),
            )
            .resource(items()),
        store.clone(),
    )
    .await;
    // `/items-wrapped/{id}` has no route: the deletes answer 404 (not found).
    let reply = send(
        &http,
        "DELETE",
        "/items-wrapped/batch",
        &json!({"filters": {"color": "red"}}),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["not_found"], json!([1, 3, 5]));

    // A listing that fails: its status and message, and nothing is deleted.
    let before = calls.get();
    let p = send(
        &http,
        "DELETE",
        "/items/batch",
        &json!({"filters": {"broken": true}}),
    )
    .await
    .problem(400);
    assert_eq!(
        p["detail"],
        "GET /items?broken=true answered 400: no such filter: broken; nothing was deleted"
    );
    assert_eq!(calls.get(), before + 1);

    // No filter at all would delete everything: refused.
    let p = send(&http, "DELETE", "/items/batch", &json!({"filters": {}}))
        .await
        .problem(400);
    assert_eq!(p["errors"][0]["field"], "filters");
    let p = send(
        &http,
        "DELETE",
        "/items/batch",
        &json!({"filters": {"color": {"$ne": 1}}}),
    )
    .await
    .problem(400);
    assert_eq!(p["errors"][0]["field"], "filters.color");
    let p = send(
        &http,
        "DELETE",
        "/items/batch",
        &json!({"filters": {"color": "red"}, "ids": [1]}),
    )
    .await
    .problem(400);
    assert_eq!(
        p["errors"][0]["detail"],
        "give either `ids` or `filters`, not both"
    );
    assert_eq!(calls.get(), before + 1);
    assert_eq!(store.ids().len(), 6);
}

#[tokio::test]
async fn malformed_requests_are_refused_whole() {
    let store = seeded(2);
    let (http, calls) = store::start(layer(), store.clone()).await;
    for (method, body, field) in [
        ("POST", json!({"items": []}), "items"),
        ("POST", json!({"items": {"name": "a"}}), "items"),
        (
            "POST",
            json!({"items": [{"name": "a"}], "extra": 1}),
            "extra",
        ),
        (
            "POST",
            json!({"items": [{"name": "a"}], "atomic": "yes"}),
            "atomic",
        ),
        ("PATCH", json!({}), "updates"),
        ("DELETE", json!({"ids": 5}), "ids"),
        ("POST", json!("text"), "body"),
    ] {
        let p = send(&http, method, "/items/batch", &body)
            .await
            .problem(400);
        assert_eq!(p["errors"][0]["field"], field, "{method} {body}: {p}");
    }
    let p = http
        .send(
            "POST",
            "/items/batch",
            &[("content-type", "application/json")],
            "{\"items\": [",
        )
        .await
        .problem(400);
    assert!(
        p["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("is not valid JSON"),
        "{p}"
    );
    let p = http
        .send(
            "POST",
            "/items/batch?atomic=maybe",
            &[("content-type", "application/json")],
            "[]",
        )
        .await
        .problem(400);
    assert_eq!(p["errors"][0]["field"], "?atomic");
    // Other methods: 405 with the allowed ones.
    let reply = http.send("GET", "/items/batch", &[], "").await;
    reply.problem(405);
    assert_eq!(reply.headers["allow"], "POST, PATCH, DELETE");
    // Not JSON: 415.
    http.send(
        "POST",
        "/items/batch",
        &[("content-type", "text/csv")],
        "a,b",
    )
    .await
    .problem(415);
    assert_eq!(calls.get(), 0, "nothing ran");
    assert_eq!(store.ids(), [1, 2]);
    // The collection itself is untouched by the layer.
    let reply = http.send("GET", "/items/1", &[], "").await;
    assert_eq!(reply.json()["name"], "item 1");
}

#[tokio::test]
async fn sub_requests_act_as_the_sender() {
    let store = seeded(0);
    let (http, _) = store::start(layer(), store.clone()).await;
    // The auth layer outside refuses a bad token once, for the whole request.
    let reply = http
        .send(
            "POST",
            "/items/batch",
            &[
                ("content-type", "application/json"),
                ("authorization", "Basic x"),
            ],
            json!([{"name": "a"}]).to_string(),
        )
        .await;
    assert_eq!(reply.status, 401);
    assert!(store.ids().is_empty());
}

#[tokio::test]
async fn chunks_run_one_after_another_with_concurrency_inside() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // Each handler waits for a partner: with chunks of 2 and a concurrency of 4, the items
    // meet in pairs, and never more than 2 are in flight.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let (f, m, b) = (in_flight.clone(), most.clone(), barrier.clone());
    let router = axum::Router::new().route(
        "/pairs",
        axum::routing::post(move || {
            let (f, m, b) = (f.clone(), m.clone(), b.clone());
            async move {
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                b.wait().await;
                f.fetch_sub(1, Ordering::SeqCst);
                (
                    axum::http::StatusCode::CREATED,
                    axum::Json(json!({"ok": true})),
                )
            }
        }),
    );
    let app = BatchLayer::new("/batch")
        .concurrency(4)
        .resource(Resource::new("/pairs").chunk_size(2))
        .layer_router(router);
    let http = Http::new(common::serve(app).await);
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        send(
            &http,
            "POST",
            "/pairs/batch",
            &json!([{}, {}, {}, {}, {}, {}]),
        ),
    )
    .await
    .expect("pairs met: the items of a chunk run together");
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json()["success_count"], 6);
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

#[test]
#[should_panic(expected = "names a collection")]
fn a_resource_path_is_a_collection() {
    let _ = Resource::new("/");
}

#[tokio::test]
async fn odd_bodies_get_clear_answers_and_never_a_server_error() {
    let store = seeded(3);
    let (http, _) = store::start(layer(), store.clone()).await;
    let bodies = [
        "",
        " ",
        "null",
        "true",
        "1",
        "\"x\"",
        "[]",
        "{}",
        "[null]",
        "[[]]",
        "[{}]",
        "{\"items\": null}",
        "{\"items\": [1, \"a\", null, true, [], {}]}",
        "{\"updates\": [{\"id\": null}, {\"id\": 1.5}, {\"id\": -1}, {\"id\": \"%2e%2e\"}]}",
        "{\"ids\": [\"\\u0000\", \"é\", \"a/b\", \"?x\", \"#\", 18446744073709551615, 1e400]}",
        "{\"filters\": {\"a\": [null]}}",
        "{\"filters\": {\"\": \"x\"}}",
        "{\"filters\": []}",
        "{\"ids\": [1], \"atomic\": null}",
        "[1, 2",
        "\u{feff}[1]",
        "{\"items\": [{}], \"items\": []}",
    ];
    for method in ["POST", "PATCH", "DELETE"] {
        for body in bodies {
            let reply = http
                .send(
                    method,
                    "/items/batch",
                    &[("content-type", "application/json")],
                    body,
                )
                .await;
            let status = reply.status.as_u16();
            assert!(
                (200..300).contains(&status) || (400..500).contains(&status),
                "{method} {body:?}: {status} {}",
                String::from_utf8_lossy(&reply.body)
            );
            if status >= 400 {
                reply.problem(status);
            } else {
                let r = reply.json();
                assert!(
                    r.get("failed").is_some_and(Value::is_array),
                    "{method} {body:?}: {r}"
                );
            }
        }
    }
    // No body above names an item that exists or is valid to create: nothing changed.
    assert_eq!(store.ids(), [1, 2, 3]);
}

#[tokio::test]
async fn resource_endpoints_need_no_batch_endpoint() {
    let store = seeded(2);
    let only = BatchLayer::default().resource("/items");
    let (http, calls) = store::start(only, store.clone()).await;
    let reply = send(&http, "DELETE", "/items/batch", &json!({"ids": [1, 2]})).await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    assert_eq!(reply.json()["deleted_count"], 2);
    // `/batch` is no endpoint of this layer: it reaches the router, which has no such route.
    let before = calls.get();
    let reply = send(
        &http,
        "POST",
        "/batch",
        &json!({"requests": [{"url": "/items"}]}),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(calls.get(), before + 1, "the request went to the router");
}

/// A delete by filters run as a job: its listing, then its deletes, both recorded; a
/// listing that leads to a refusal is the job's answer, as it would have been at once.
#[tokio::test]
async fn a_delete_by_filters_runs_as_a_job_and_a_refusal_is_its_reply() {
    let store = seeded(10);
    let (http, _calls) = store::start(
        BatchLayer::new("/batch").resource(items().max_items(4)),
        store.clone(),
    )
    .await;
    let job = |filters: Value| {
        let http = http.clone();
        async move {
            let headers = [
                ("content-type", "application/json"),
                ("prefer", "respond-async"),
            ];
            let body = json!({ "filters": filters }).to_string();
            let accepted = http.send("DELETE", "/items/batch", &headers, body).await;
            assert_eq!(accepted.status, 202, "{:?}", accepted.body);
            let monitor = accepted.headers["location"].to_str().unwrap().to_owned();
            assert!(monitor.starts_with("/items/batch/jobs/"), "{monitor}");
            common::jobs::finished(&http, &monitor, &[]).await
        }
    };
    let refused = job(json!({"color": "blue"})).await.problem(400);
    assert_eq!(
        refused["detail"],
        "the filters match 5 items; the limit is 4 (max_items); nothing was deleted"
    );
    assert_eq!(store.ids().len(), 10);
    store.items.lock().unwrap().remove(&2);
    let deleted = job(json!({"color": "blue"})).await;
    assert_eq!(deleted.status, 200, "{:?}", deleted.body);
    assert_eq!(deleted.json()["deleted_count"], 4);
    assert_eq!(store.ids(), [1, 3, 5, 7, 9]);
}
