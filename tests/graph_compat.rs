//! What Microsoft Graph clients send and expect, over real HTTP: reply header names as Graph
//! spells them, a service root (`/v1.0`), absolute URLs of this server, literal spaces in
//! queries, `depends_on`, and ids that ignore letter case.

mod common;

use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::routing::any;
use axum::{Json, Router};
use common::{serve, Http, Reply};
use serde_json::{json, Value};
use tower_http_batch::BatchLayer;

/// Every path answers with the URI it was sent; `/…/fail/{code}` with that status.
fn app(layer: BatchLayer) -> tower_http_batch::BatchRouter {
    let router = Router::new()
        .route(
            "/{*rest}",
            any(|uri: Uri| async move { Json(json!({ "uri": uri.to_string() })) }),
        )
        .route(
            "/v1.0/fail/{code}",
            any(|Path(code): Path<u16>| async move {
                (
                    StatusCode::from_u16(code).unwrap(),
                    Json(json!({"error": code})),
                )
            }),
        );
    layer.layer_router(router)
}

async fn start(layer: BatchLayer) -> Http {
    Http::new(serve(app(layer)).await)
}

fn graph() -> BatchLayer {
    BatchLayer::new("/batch")
        .path("/v1.0/$batch")
        .service_root("/v1.0")
}

async fn post(http: &Http, path: &str, batch: Value) -> Reply {
    let headers = [("content-type", "application/json")];
    http.send("POST", path, &headers, batch.to_string()).await
}

/// The URI each item reached, in order; `None` for an item that did not answer 200.
fn reached(reply: &Reply) -> Vec<Option<String>> {
    reply
        .items()
        .iter()
        .map(|i| (i["status"] == 200).then(|| i["body"]["uri"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn header_names_are_spelled_as_graph_spells_them() {
    let http = start(graph()).await;
    let reply = post(
        &http,
        "/v1.0/$batch",
        json!({"requests": [{"id": "1", "url": "/me"}]}),
    )
    .await;
    let item = &reply.items()[0];
    let headers = item["headers"].as_object().unwrap();
    // The Graph JavaScript SDK parses a body only under this exact key.
    assert_eq!(headers["Content-Type"], "application/json");
    assert!(
        headers.keys().all(|k| k.starts_with(char::is_uppercase)),
        "{headers:?}"
    );
}

#[tokio::test]
async fn the_service_root_takes_absolute_paths_under_it() {
    let http = start(graph()).await;
    let batch = json!({"requests": [
        {"id": "1", "url": "/users/1"},
        {"id": "2", "url": "/v1.0/users/2"},
        {"id": "3", "url": "users/3?$select=id"},
        {"id": "4", "url": "/../admin"},
        {"id": "5", "url": "/v1.0x/users"},
        {"id": "6", "url": "/v1.0"},
    ]});
    let under_root = post(&http, "/v1.0/$batch", batch.clone()).await;
    let uris: Vec<Option<String>> = [
        "/v1.0/users/1",
        "/v1.0/users/2",
        "/v1.0/users/3?$select=id",
        "/v1.0/admin",
        "/v1.0/v1.0x/users",
        "/v1.0",
    ]
    .iter()
    .map(|u| Some(u.to_string()))
    .collect();
    assert_eq!(reached(&under_root), uris);
    // An endpoint outside the root keeps OData's rule: paths as they are.
    let outside = post(&http, "/batch", batch).await;
    assert_eq!(reached(&outside)[0].as_deref(), Some("/users/1"));
    assert_eq!(reached(&outside)[3].as_deref(), Some("/admin"));
    // Without a root, the Graph path is a path like any other.
    let http = start(BatchLayer::new("/v1.0/$batch")).await;
    let plain = post(
        &http,
        "/v1.0/$batch",
        json!({"requests": [{"url": "/users/1"}]}),
    )
    .await;
    assert_eq!(reached(&plain)[0].as_deref(), Some("/users/1"));
}

#[tokio::test]
async fn the_batch_endpoint_stays_out_of_reach_under_the_root() {
    let http = start(graph()).await;
    for url in ["/$batch", "/v1.0/$batch", "./$batch", "/%24batch"] {
        let reply = post(&http, "/v1.0/$batch", json!({"requests": [{"url": url}]})).await;
        let p = reply.problem(400);
        assert_eq!(p["errors"][0]["field"], "url", "{url}: {p}");
        let detail = p["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains("batch endpoint"), "{url}: {detail}");
    }
}

#[tokio::test]
async fn references_and_locations_resolve_under_the_root() {
    let http = start(graph()).await;
    let batch = json!({"requests": [
        {"id": "a", "url": "/users/7"},
        {"id": "b", "url": "/orders/{{a#/body/uri}}", "dependsOn": ["a"]},
    ]});
    let reply = post(&http, "/v1.0/$batch", batch).await;
    assert_eq!(
        reached(&reply)[1].as_deref(),
        Some("/v1.0/orders/%2Fv1.0%2Fusers%2F7")
    );
}

#[tokio::test]
async fn absolute_urls_of_this_server_are_taken_as_paths() {
    let http = start(graph()).await;
    let own = format!("http://{}", http.addr);
    let batch = json!({"requests": [
        {"id": "1", "url": format!("{own}/v1.0/users/1")},
        {"id": "2", "url": format!("{own}/users/2?$top=1")},
        {"id": "3", "url": format!("HTTPS://{}/v1.0/users/3", http.addr)},
    ]});
    let reply = post(&http, "/v1.0/$batch", batch).await;
    assert_eq!(
        reached(&reply),
        ["/v1.0/users/1", "/v1.0/users/2?$top=1", "/v1.0/users/3"].map(|u| Some(u.to_string()))
    );
    let other_port = format!("http://127.0.0.1:{}/v1.0/users/1", http.addr.port() ^ 1);
    for url in [
        "http://evil.example/v1.0/users/1".to_string(),
        other_port,
        format!("http://user@{}/v1.0/users/1", http.addr),
        format!("ftp://{}/v1.0/users/1", http.addr),
        format!("//{}/v1.0/users/1", http.addr),
    ] {
        let reply = post(&http, "/v1.0/$batch", json!({"requests": [{"url": url}]})).await;
        let p = reply.problem(400);
        assert_eq!(p["errors"][0]["field"], "url", "{url}: {p}");
    }
}

#[tokio::test]
async fn literal_spaces_in_a_query_are_encoded() {
    let http = start(graph()).await;
    // Graph's own documentation example.
    let url = "/me/drive/root/children?$filter=city eq null&$select=id";
    let reply = post(&http, "/v1.0/$batch", json!({"requests": [{"url": url}]})).await;
    assert_eq!(
        reached(&reply)[0].as_deref(),
        Some("/v1.0/me/drive/root/children?$filter=city%20eq%20null&$select=id")
    );
    for (url, says) in [
        ("/me drive?x=1", "spaces in its path"),
        ("/me?x=a\rb", "CR or LF"),
        ("/me?x=a\tb", "control character 0x09"),
    ] {
        let reply = post(&http, "/v1.0/$batch", json!({"requests": [{"url": url}]})).await;
        let p = reply.problem(400);
        let detail = p["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{url:?}: {detail}");
    }
}

#[tokio::test]
async fn depends_on_in_snake_case_is_honoured() {
    let http = start(graph().concurrency(4)).await;
    let batch = json!({"requests": [
        {"id": "1", "url": "/fail/500"},
        {"id": "2", "url": "/users/2", "depends_on": ["1"]},
        {"id": "3", "url": "/users/3", "depends_on": ["2"]},
    ]});
    let items = post(&http, "/v1.0/$batch", batch).await.items();
    let statuses: Vec<&Value> = items.iter().map(|i| &i["status"]).collect();
    assert_eq!(statuses, [500, 424, 424]);
    let both = json!({"requests": [
        {"id": "1", "url": "/users/1"},
        {"id": "2", "url": "/users/2", "dependsOn": ["1"], "depends_on": ["1"]},
    ]});
    let p = post(&http, "/v1.0/$batch", both).await.problem(400);
    assert_eq!(p["errors"][0]["field"], "dependsOn");
    assert_eq!(p["errors"][0]["index"], 1);
}

#[tokio::test]
async fn ids_ignore_letter_case() {
    let http = start(graph()).await;
    let batch = json!({"requests": [
        {"id": "Alpha", "url": "/users/1"},
        {"id": "b", "url": "/x/{{ALPHA#/body/uri}}", "dependsOn": ["alpha"]},
        {"id": "Fails", "url": "/fail/409"},
        {"id": "c", "url": "/users/3", "dependsOn": ["FAILS"]},
    ]});
    let reply = post(&http, "/v1.0/$batch", batch).await;
    assert_eq!(
        reached(&reply)[1].as_deref(),
        Some("/v1.0/x/%2Fv1.0%2Fusers%2F1")
    );
    let items = reply.items();
    assert_eq!(items[3]["status"], 424, "{items:?}");
    assert_eq!(items[3]["id"], "c");
    let duplicate = json!({"requests": [
        {"id": "A", "url": "/users/1"},
        {"id": "a", "url": "/users/2"},
    ]});
    let p = post(&http, "/v1.0/$batch", duplicate).await.problem(400);
    assert_eq!(p["errors"][0]["field"], "id");
    assert_eq!(p["errors"][0]["index"], 1);
}

#[tokio::test]
async fn no_reading_of_a_path_leaves_the_service_root() {
    let http = start(graph()).await;
    // A server that decodes before it resolves dot segments reads these outside `/v1.0`:
    // each is refused on its own (`403`), and the rest of the batch runs.
    let batch = json!({"requests": [
        {"id": "1", "url": "/v1.0/..%2f..%2fx"},
        {"id": "2", "url": "/users/..%2F..%2F..%2Fadmin"},
        {"id": "3", "url": "/v1.0/%252e%252e%252fadmin"},
        {"id": "4", "url": "/users/x%3f/..%2f..%2fadmin"},
        {"id": "5", "url": "/users/1"},
        {"id": "c", "url": "/users/..%2fgroups"},
    ]});
    let reply = post(&http, "/v1.0/$batch", batch).await;
    let items = reply.items();
    for item in &items[..4] {
        assert_eq!(item["status"], 403, "{item}");
        let reason = item["body"]["detail"].as_str().unwrap();
        assert!(
            reason.contains("outside the service root /v1.0"),
            "{reason}"
        );
    }
    assert_eq!(items[4]["status"], 200);
    // Still under the root when decoded: sent as written.
    assert_eq!(items[5]["status"], 200, "{}", items[5]);
    assert_eq!(items[5]["body"]["uri"], "/v1.0/users/..%2fgroups");
}

#[test]
fn a_service_root_is_a_path_every_server_reads_as_itself() {
    for root in ["/v1.0", "/v1.0/", "/api/beta"] {
        let _ = BatchLayer::new("/batch").service_root(root);
    }
    for root in [
        "v1.0", "/v1.0;x", "/a:b", "/v1.", "/a/../b", "/%76", "/a\\b", "//v1",
    ] {
        let refused = std::panic::catch_unwind(|| BatchLayer::new("/batch").service_root(root));
        assert!(refused.is_err(), "{root}");
    }
}
