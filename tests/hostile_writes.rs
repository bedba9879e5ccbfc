//! Writes that a mistake cannot turn into data loss, tried as a careless or hostile client
//! would, over real HTTP: a delete by filters sends only the filters its resource
//! declares, and a key or option given twice is refused in every format, before anything
//! runs.

mod common;

use common::store::{self, seeded};
use common::Http;
use tower_http_batch::{BatchLayer, Resource};

fn layer() -> BatchLayer {
    BatchLayer::new("/batch").resource(Resource::new("/items").filters(["color"]))
}

async fn send(http: &Http, method: &str, path: &str, body: &str) -> common::Reply {
    let body = bytes::Bytes::copy_from_slice(body.as_bytes());
    http.send(method, path, &[("content-type", "application/json")], body)
        .await
}

#[tokio::test]
async fn a_misspelled_filter_deletes_nothing() {
    let store = seeded(10);
    let (http, calls) = store::start(layer(), store.clone()).await;
    for body in [
        r#"{"filters": {"colour": "red"}}"#,
        r#"{"filters": {"color": "red", "stauts": "x"}}"#,
        r#"{"filters": {"Color": "red"}}"#,
        r#"{"filters": {"color ": "red"}}"#,
        r#"{"filters": {"": "red"}}"#,
    ] {
        let p = send(&http, "DELETE", "/items/batch", body)
            .await
            .problem(400);
        let field = p["errors"][0]["field"].as_str().unwrap();
        assert!(
            field.starts_with("filters.") && field != "filters.color",
            "{body}: {p}"
        );
        assert_eq!(
            p["errors"][0]["detail"],
            "is not a filter of /items; its filters are \"color\" (Resource::filters)",
            "{body}"
        );
    }
    // Every unknown filter is named at once.
    let p = send(
        &http,
        "DELETE",
        "/items/batch",
        r#"{"filters": {"a": 1, "color": "red", "b": 2}}"#,
    )
    .await
    .problem(400);
    let fields: Vec<_> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].clone())
        .collect();
    assert_eq!(fields, ["filters.a", "filters.b"]);
    assert_eq!(calls.get(), 0, "not even the listing ran");
    assert_eq!(store.ids().len(), 10);

    // A declared filter works.
    let reply = send(
        &http,
        "DELETE",
        "/items/batch",
        r#"{"filters": {"color": "red"}}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.json());
    assert_eq!(reply.json()["deleted_count"], 5);
}

#[tokio::test]
async fn a_resource_without_declared_filters_deletes_by_ids_only() {
    let store = seeded(4);
    let (http, calls) =
        store::start(BatchLayer::new("/batch").resource("/items"), store.clone()).await;
    let p = send(
        &http,
        "DELETE",
        "/items/batch",
        r#"{"filters": {"color": "red"}}"#,
    )
    .await
    .problem(400);
    assert_eq!(p["errors"][0]["field"], "filters");
    assert_eq!(
        p["errors"][0]["detail"],
        "/items declares no filters (Resource::filters), so nothing is deleted by filters; list the ids to delete"
    );
    assert_eq!(calls.get(), 0);
    let reply = send(&http, "DELETE", "/items/batch", r#"{"ids": [1, 2]}"#).await;
    assert_eq!(reply.json()["deleted_count"], 2);
    assert_eq!(store.ids(), [3, 4]);
}

#[tokio::test]
async fn a_key_given_twice_in_a_resource_request_is_refused() {
    let store = seeded(4);
    let (http, calls) = store::start(layer(), store.clone()).await;
    for (method, path, body, field) in [
        (
            "DELETE",
            "/items/batch",
            r#"{"ids": [1], "ids": [2]}"#,
            "ids",
        ),
        (
            "DELETE",
            "/items/batch",
            r#"{"ids": [1], "\u0069ds": [2]}"#,
            "ids",
        ),
        (
            "DELETE",
            "/items/batch",
            r#"{"ids": [1], "atomic": false, "atomic": true}"#,
            "atomic",
        ),
        (
            "DELETE",
            "/items/batch",
            r#"{"filters": {"color": "red", "color": "blue"}}"#,
            "filters.color",
        ),
        (
            "POST",
            "/items/batch",
            r#"{"items": [{"name": "a"}], "items": []}"#,
            "items",
        ),
        (
            "PATCH",
            "/items/batch",
            r#"{"updates": [], "updates": [{"id": 1}]}"#,
            "updates",
        ),
        (
            "DELETE",
            "/items/batch?atomic=false&atomic=true",
            r#"{"ids": [1]}"#,
            "?atomic",
        ),
        (
            "DELETE",
            "/items/batch?atomic=true&atomic=true",
            r#"{"ids": [1]}"#,
            "?atomic",
        ),
        (
            "DELETE",
            "/items/batch?atomic=false",
            r#"{"ids": [1], "atomic": true}"#,
            "atomic",
        ),
        (
            "DELETE",
            "/items/batch",
            r#"{"filters": {"color": []}}"#,
            "filters.color",
        ),
    ] {
        let p = send(&http, method, path, body).await.problem(400);
        assert_eq!(
            p["errors"][0]["field"], field,
            "{method} {path} {body}: {p}"
        );
    }
    assert_eq!(calls.get(), 0, "nothing ran");
    assert_eq!(store.ids(), [1, 2, 3, 4]);
}

#[tokio::test]
async fn an_update_that_gives_a_key_twice_is_not_sent() {
    let store = seeded(3);
    let (http, calls) = store::start(layer(), store.clone()).await;
    let reply = send(
        &http,
        "PATCH",
        "/items/batch",
        r#"{"updates": [{"id": 1, "name": "a", "id": 2}, {"id": 3, "name": "x", "name": "y"}, {"id": 2, "name": "ok"}]}"#,
    )
    .await;
    assert_eq!(reply.status, 207);
    let r = reply.json();
    assert_eq!(r["success_count"], 1);
    assert_eq!(r["failed"][0]["index"], 0);
    assert_eq!(r["failed"][0]["status"], 422);
    assert_eq!(
        r["failed"][0]["error"],
        "`id`: is given twice: \"id\" (a JSON object holds each key once)"
    );
    assert_eq!(r["failed"][1]["index"], 1);
    assert_eq!(calls.get(), 1, "only the valid update was sent");
    // The valid update's other members reach the handler as written.
    assert_eq!(r["succeeded"][0]["name"], "ok");

    // Atomic: one such item refuses the whole request.
    let p = send(
        &http,
        "PATCH",
        "/items/batch?atomic=true",
        r#"{"updates": [{"id": 1, "id": 2}]}"#,
    )
    .await;
    assert!(p.status.is_client_error(), "{:?}", p.status);
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn a_key_given_twice_in_a_batch_is_refused_in_every_format() {
    let (http, calls) =
        common::start(BatchLayer::new("/batch").bulk("/rest/v10/bulk", "/rest")).await;
    for (path, body, field) in [
        (
            "/batch",
            r#"{"requests": [{"url": "/a"}], "requests": [{"url": "/b"}]}"#,
            "requests",
        ),
        (
            "/batch",
            r#"{"requests": [{"url": "/a", "url": "/b"}]}"#,
            "url",
        ),
        (
            "/batch",
            r#"{"requests": [{"url": "/a", "body": 1, "body": 2}]}"#,
            "body",
        ),
        (
            "/batch",
            r#"{"requests": [{"url": "/a", "headers": {"x-a": "1", "x-a": "2"}}]}"#,
            "headers.x-a",
        ),
        (
            "/batch",
            r#"{"requests": [{"url": "/a"}], "stop_on_error": true, "stop_on_error": false}"#,
            "stop_on_error",
        ),
        (
            "/rest/v10/bulk",
            r#"{"requests": [{"url": "/v10/a", "method": "GET", "method": "DELETE"}]}"#,
            "method",
        ),
        (
            "/rest/v10/bulk",
            r#"{"requests": [{"url": "/v10/a", "headers": {"x-a": "1", "x-a": "2"}}]}"#,
            "headers.x-a",
        ),
    ] {
        let reply = send(&http, "POST", path, body).await;
        let p = reply.problem(400);
        let errors = p["errors"].as_array().unwrap();
        let named = errors.iter().any(|e| {
            let at = e["field"].as_str().unwrap_or_default();
            let detail = e["detail"].as_str().unwrap_or_default();
            at == field && detail.starts_with("is given twice")
        });
        assert!(named, "{path} {body}: {p}");
    }
    assert_eq!(calls.get(), 0, "nothing ran");
}
