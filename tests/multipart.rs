//! The multipart batch format (OData 4.0) over real HTTP: parts of `application/http`,
//! changesets run as atomicity groups on the transaction hook, `Content-ID` and
//! `$<content-id>`, the nested multipart reply; and what a hostile body gets.

mod common;

use common::multipart::{changeset, multipart, parts, request};
use common::store::{self, seeded, Store};
use common::{Http, Reply};
use serde_json::{json, Value};
use tower_http_batch::BatchLayer;

fn layer(store: &Store) -> BatchLayer {
    BatchLayer::new("/batch").transactions(store.clone())
}

async fn send(http: &Http, body: &str) -> Reply {
    let headers = [
        ("content-type", "multipart/mixed; boundary=batch_1"),
        ("authorization", "Bearer alice-token"),
    ];
    http.send("POST", "/batch", &headers, body.to_string())
        .await
}

async fn names(http: &Http) -> Vec<String> {
    let list = http.send("GET", "/items", &[], "").await.json();
    let names = list.as_array().unwrap().iter();
    names
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

/// What odata-batch-request sends: a changeset of two creates, the second refers to the
/// first; then a read outside it.
fn odata_batch(second_name: Option<&str>) -> String {
    let second = match second_name {
        Some(n) => format!("{{\"name\":\"{n}\"}}"),
        None => "{}".into(),
    };
    let set = changeset(
        "changeset_V",
        &[
            request(
                Some("1"),
                "POST items HTTP/1.1\r\nContent-Type: application/json",
                r#"{"name":"one"}"#,
            ),
            request(
                Some("2"),
                "PATCH $1 HTTP/1.1\r\nContent-Type: application/json",
                &second,
            ),
        ],
    );
    multipart("batch_1", &[set, request(None, "GET items HTTP/1.1", "")])
}

#[tokio::test]
async fn a_changeset_commits_and_the_reply_nests_it() {
    let store = seeded(0);
    let (http, _) = store::start(layer(&store), store.clone()).await;
    let reply = parts(&send(&http, &odata_batch(Some("two"))).await);
    let statuses: Vec<u16> = reply.iter().map(|p| p.status).collect();
    assert_eq!(statuses, [201, 200, 200]);
    let ids: Vec<Option<&str>> = reply.iter().map(|p| p.content_id.as_deref()).collect();
    assert_eq!(ids, [Some("1"), Some("2"), None]);
    assert_eq!(
        reply.iter().map(|p| p.changeset).collect::<Vec<_>>(),
        [Some(0), Some(0), None]
    );
    assert_eq!(reply[0].json(), json!({"id": 1, "name": "one"}));
    assert!(reply[0]
        .headers
        .contains(&("Location".into(), "/items/1".into())));
    // `$1` is the location of request 1: the PATCH reached /items/1.
    assert_eq!(reply[1].json(), json!({"id": 1, "name": "two"}));
    assert_eq!(reply[2].json(), json!([{"id": 1, "name": "two"}]));
    assert_eq!(store.log(), ["begin by alice", "commit"]);
    assert_eq!(names(&http).await, ["two"]);
}

#[tokio::test]
async fn a_changeset_with_a_failing_member_leaves_the_data_as_it_was() {
    let store = seeded(1);
    let (http, _) = store::start(layer(&store), store.clone()).await;
    let set = changeset(
        "cs",
        &[
            request(
                Some("a"),
                "POST /items HTTP/1.1\r\nContent-Type: application/json",
                r#"{"name":"new"}"#,
            ),
            request(
                Some("b"),
                "POST /items HTTP/1.1\r\nContent-Type: application/json",
                "{}",
            ),
        ],
    );
    let after = request(None, "GET /items/1 HTTP/1.1", "");
    let reply = parts(&send(&http, &multipart("batch_1", &[set, after])).await);
    // The failed changeset is answered with its failure alone (OData 4.0 §11.7.4), a
    // top-level part with the failing request's Content-ID, not the member rolled back.
    let statuses: Vec<u16> = reply.iter().map(|p| p.status).collect();
    assert_eq!(statuses, [422, 200], "{reply:#?}");
    assert_eq!(reply[0].changeset, None);
    assert_eq!(reply[0].content_id.as_deref(), Some("b"));
    assert_eq!(reply[0].json()["detail"], "name is required");
    assert_eq!(store.log(), ["begin by alice", "rollback"]);
    assert_eq!(names(&http).await, ["item 1"]);
}

#[tokio::test]
async fn without_a_hook_a_changeset_is_refused_and_nothing_runs() {
    let store = seeded(0);
    let (http, calls) = store::start(BatchLayer::new("/batch"), store.clone()).await;
    let p = send(&http, &odata_batch(Some("two"))).await.problem(400);
    assert_eq!(p["errors"][0]["field"], "changeset", "{p}");
    assert_eq!(p["errors"][0]["index"], 0);
    assert_eq!(calls.get(), 0);
    // Plain parts need no hook.
    let body = multipart("batch_1", &[request(None, "GET /items HTTP/1.1", "")]);
    assert_eq!(parts(&send(&http, &body).await)[0].status, 200);
}

#[tokio::test]
async fn identity_is_the_outer_requests() {
    let store = seeded(0);
    let (http, _) = common::start(BatchLayer::new("/batch")).await;
    let _ = store;
    let body = multipart(
        "batch_1",
        &[request(
            None,
            "GET /whoami HTTP/1.1\r\nAuthorization: Bearer mallory-token\r\nHost: evil.example",
            "",
        )],
    );
    let reply = parts(&send(&http, &body).await);
    assert_eq!(reply[0].json(), json!({"user": "alice"}));
}

#[tokio::test]
async fn urls_are_read_as_in_the_json_batch() {
    let (http, _) = common::start(BatchLayer::new("/batch")).await;
    let own = format!("http://{}", http.addr);
    let body = multipart(
        "batch_1",
        &[
            request(None, "GET echo/a HTTP/1.1", ""),
            request(None, &format!("GET {own}/echo/b?x=1 HTTP/1.1"), ""),
            request(None, "GET /echo/../echo/c HTTP/1.1", ""),
            request(None, "GET $metadata HTTP/1.1", ""),
        ],
    );
    let reply = parts(&send(&http, &body).await);
    let uris: Vec<Value> = reply[..3].iter().map(|p| p.json()["uri"].clone()).collect();
    assert_eq!(uris, ["/echo/a", "/echo/b?x=1", "/echo/c"]);
    // `$metadata` names no Content-ID: it is a path.
    assert_eq!(reply[3].status, 404);
}

#[tokio::test]
async fn google_style_parts_without_a_version_and_with_lf_line_ends() {
    // As Google's batch clients (batchelor and others) frame them: LF line ends, and
    // request lines without an HTTP version.
    let store = seeded(2);
    let (http, calls) = store::start(BatchLayer::new("/batch"), store.clone()).await;
    let part = |id: &str, head: &str, body: &str| {
        format!(
            "--batch_1\nContent-Type: application/http\nContent-ID: <{id}>\n\n{head}\n\n{body}\n"
        )
    };
    let body = [
        part("a", "GET /items/1", ""),
        part(
            "b",
            "POST /items\nContent-Type: application/json",
            r#"{"name": "lf"}"#,
        ),
    ]
    .concat()
        + "--batch_1--\n";
    let reply = parts(&send(&http, &body).await);
    let statuses: Vec<u16> = reply.iter().map(|p| p.status).collect();
    assert_eq!(statuses, [200, 201], "{reply:#?}");
    assert_eq!(reply[1].json()["name"], "lf");
    assert_eq!(calls.get(), 2);
    assert_eq!(store.ids().len(), 3);
}
