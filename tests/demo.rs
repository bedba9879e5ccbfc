//! The demo application (`cargo run --example demo`) through real HTTP.

#[path = "../examples/demo/app.rs"]
mod app;
mod common;

use common::Http;
use serde_json::{json, Value};

async fn demo() -> Http {
    Http::new(common::serve(app::app(app::Db::open(None).unwrap())).await)
}

const ALICE: (&str, &str) = ("authorization", "Bearer alice-token");
const BOB: (&str, &str) = ("authorization", "Bearer bob-token");

#[tokio::test]
async fn seed_data_is_as_documented() {
    let http = demo().await;
    let all = http.send("GET", "/users", &[], "").await.json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 100);
    let ids: Vec<_> = all.iter().map(|u| u["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (1..=100).collect::<Vec<_>>());
    let stale = http
        .send(
            "GET",
            "/users?status=inactive&last_login_before=2025-01-01",
            &[],
            "",
        )
        .await
        .json();
    assert_eq!(stale.as_array().unwrap().len(), 12);
    let inactive = http
        .send("GET", "/users?status=inactive", &[], "")
        .await
        .json();
    assert_eq!(
        inactive.as_array().unwrap().len(),
        12,
        "no other user is inactive"
    );
    let created = http
        .send(
            "POST",
            "/users",
            &[("content-type", "application/json")],
            r#"{"name":"Alice","email":"alice@example.com"}"#,
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["id"], 101);
    assert_eq!(created.headers["location"], "/users/101");
}

#[tokio::test]
async fn tokens_and_whoami() {
    let http = demo().await;
    assert_eq!(
        http.send("GET", "/whoami", &[], "").await.json(),
        json!({"user": "anonymous"})
    );
    assert_eq!(
        http.send("GET", "/whoami", &[ALICE], "").await.json(),
        json!({"user": "alice"})
    );
    assert_eq!(
        http.send("GET", "/whoami", &[BOB], "").await.json(),
        json!({"user": "bob"})
    );
    let wrong = http
        .send("GET", "/whoami", &[("authorization", "Bearer mallory")], "")
        .await;
    assert_eq!(wrong.status, 401);
    // The auth layer is outside the batch layer: a batch with a wrong token never starts.
    let batch = http
        .batch(
            &json!({"requests": [{"url": "/whoami"}]}),
            &[("authorization", "Bearer mallory")],
        )
        .await;
    assert_eq!(batch.status, 401);
}

#[tokio::test]
async fn admin_routes_are_never_batched() {
    let http = demo().await;
    let plain = http.send("GET", "/admin/whoami", &[ALICE], "").await;
    assert_eq!(plain.json(), json!({"user": "alice"}));
    let batch = json!({"requests": [
        {"id": "1", "url": "/admin/whoami"},
        {"id": "2", "url": "/Admin/%77hoami"},
        {"id": "3", "url": "/users/../admin/whoami"},
        {"id": "4", "url": "/whoami"},
    ]});
    let items = http.batch(&batch, &[ALICE]).await.items();
    let status: Vec<&Value> = items.iter().map(|i| &i["status"]).collect();
    assert_eq!(status, [403, 403, 403, 200], "{items:#?}");
}

#[tokio::test]
async fn users_crud_and_errors() {
    let http = demo().await;
    let json_ct = ("content-type", "application/json");
    let bad = http
        .send("POST", "/users", &[json_ct], r#"{"name":"","email":"x@y"}"#)
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.json()["error"].as_str().unwrap().contains("name"));
    assert_eq!(
        http.send(
            "POST",
            "/users",
            &[json_ct],
            r#"{"name":"A","email":"nope"}"#
        )
        .await
        .status,
        422
    );
    assert_eq!(
        http.send("POST", "/users", &[json_ct], "not json")
            .await
            .status,
        422
    );

    let got = http.send("GET", "/users/5", &[], "").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["email"], "user5@example.com");
    let etag = got.headers["etag"].to_str().unwrap().to_string();

    let patched = http
        .send(
            "PATCH",
            "/users/5",
            &[json_ct, ("if-match", &etag)],
            r#"{"status":"inactive"}"#,
        )
        .await;
    assert_eq!(patched.status, 200);
    assert_eq!(patched.json()["status"], "inactive");
    assert_eq!(
        patched.json()["name"],
        "User 5",
        "PATCH keeps what it does not name"
    );
    let stale = http
        .send(
            "PATCH",
            "/users/5",
            &[json_ct, ("if-match", &etag)],
            r#"{"name":"Z"}"#,
        )
        .await;
    assert_eq!(stale.status, 412, "the ETag changed with the update");

    let put = http
        .send(
            "PUT",
            "/users/5",
            &[json_ct],
            r#"{"name":"Five","email":"five@example.com"}"#,
        )
        .await;
    assert_eq!(put.json()["status"], "active", "PUT replaces");
    assert_eq!(
        http.send("PUT", "/users/5", &[json_ct], r#"{"name":"Five"}"#)
            .await
            .status,
        422
    );

    assert_eq!(http.send("DELETE", "/users/5", &[], "").await.status, 204);
    for method in ["GET", "DELETE"] {
        let gone = http.send(method, "/users/5", &[], "").await;
        assert_eq!(gone.status, 404);
        assert_eq!(gone.json(), json!({"error": "User not found"}));
    }
    let missing = http
        .send(
            "PATCH",
            "/users/999",
            &[json_ct],
            r#"{"name":"NonExistent"}"#,
        )
        .await;
    assert_eq!(missing.json(), json!({"error": "User not found"}));
}

#[tokio::test]
async fn a_batch_against_the_demo() {
    let http = demo().await;
    let reply = http
        .batch(
            &json!({"requests": [
                {"id": "me", "url": "/whoami", "headers": {"authorization": "Bearer alice-token"}},
                {"id": "new", "method": "POST", "url": "/users", "body": {"name": "Dana", "email": "dana@example.com"}},
                {"id": "bad", "method": "POST", "url": "/users", "body": {"name": "No Email"}},
                {"id": "get", "url": "/users/42"},
                {"id": "upd", "method": "PATCH", "url": "/users/42", "headers": {"if-match": "\"v1\""}, "body": {"name": "Forty-Two"}},
                {"id": "stale", "method": "PATCH", "url": "/users/42", "headers": {"if-match": "\"v1\""}, "body": {"name": "Again"}},
                {"id": "del", "method": "DELETE", "url": "/users/7"},
                {"id": "gone", "url": "/users/7"},
            ]}),
            &[BOB],
        )
        .await;
    let items = reply.items();
    let by_id = |id: &str| items.iter().find(|i| i["id"] == id).unwrap().clone();
    assert_eq!(
        by_id("me")["body"],
        json!({"user": "bob"}),
        "the sub-request's own token is ignored"
    );
    assert_eq!(by_id("new")["status"], 201);
    assert_eq!(by_id("new")["body"]["created_by"], "bob");
    assert_eq!(by_id("new")["body"]["id"], 101);
    assert_eq!(by_id("new")["headers"]["Location"], "/users/101");
    assert_eq!(by_id("bad")["status"], 422);
    assert_eq!(by_id("bad")["body"]["error"], "email is required");
    assert_eq!(by_id("get")["headers"]["ETag"], "\"v1\"");
    assert_eq!(by_id("upd")["status"], 200);
    assert_eq!(by_id("stale")["status"], 412);
    assert_eq!(by_id("del")["status"], 204);
    assert_eq!(by_id("gone")["status"], 404);
    let order: Vec<Value> = items.iter().map(|i| i["id"].clone()).collect();
    assert_eq!(
        order,
        json!(["me", "new", "bad", "get", "upd", "stale", "del", "gone"])
            .as_array()
            .unwrap()
            .clone()
    );
    // Everything the batch did is visible to ordinary requests.
    assert_eq!(
        http.send("GET", "/users/42", &[], "").await.json()["name"],
        "Forty-Two"
    );
}

#[tokio::test]
async fn a_database_file_keeps_the_data() {
    let path =
        std::env::temp_dir().join(format!("tower-http-batch-demo-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let file = path.to_str().unwrap();
    {
        let http = Http::new(common::serve(app::app(app::Db::open(Some(file)).unwrap())).await);
        let created = http
            .send(
                "POST",
                "/users",
                &[("content-type", "application/json")],
                r#"{"name":"Kept","email":"kept@example.com"}"#,
            )
            .await;
        assert_eq!(created.status, 201);
    }
    let http = Http::new(common::serve(app::app(app::Db::open(Some(file)).unwrap())).await);
    let users = http.send("GET", "/users", &[], "").await.json();
    assert_eq!(
        users.as_array().unwrap().len(),
        101,
        "reopened, not re-seeded"
    );
    assert_eq!(
        http.send("GET", "/users/101", &[], "").await.json()["name"],
        "Kept"
    );
    let _ = std::fs::remove_file(&path);
}

/// The README's worked example: create, read by the returned id, rename if unchanged.
#[tokio::test]
async fn the_readme_reference_example() {
    let http = demo().await;
    let items = http
        .batch(
            &json!({"requests": [
                {"id": "new", "method": "POST", "url": "/users", "body": {"name": "Ada", "email": "ada@example.com"}},
                {"id": "read", "url": "/users/{{new#/body/id}}", "dependsOn": ["new"]},
                {"id": "rename", "method": "PATCH", "url": "$new", "dependsOn": ["new"],
                 "headers": {"if-match": "{{new#/headers/etag}}"}, "body": {"name": "Ada Lovelace"}},
            ]}),
            &[ALICE],
        )
        .await
        .items();
    assert_eq!(items[0]["status"], 201);
    assert_eq!(items[0]["headers"]["Location"], "/users/101");
    assert_eq!(items[1]["status"], 200);
    assert_eq!(items[1]["body"]["id"], 101);
    assert_eq!(items[2]["status"], 200);
    assert_eq!(items[2]["body"]["name"], "Ada Lovelace");
    assert_eq!(items[2]["headers"]["ETag"], "\"v2\"");
}

/// Seed 002's request example, sent as is, gets a reply of the seed's shape.
#[tokio::test]
async fn the_sugarcrm_bulk_example() {
    let http = demo().await;
    let seed = r#"{"requests":
[
{
"url": "/v10/Accounts", "method": "POST", "data": "{\"name\": \"test123\"}"
},
{
"url": "/v10/Accounts", "method": "GET"
}
]
}"#;
    let reply = http
        .send(
            "POST",
            "/rest/v10/bulk",
            &[("content-type", "application/json"), ALICE],
            seed,
        )
        .await;
    assert_eq!(reply.status, 200);
    let items = reply.json();
    let items = items.as_array().expect("a bare array");
    assert_eq!(items.len(), 2);
    for item in items {
        let mut keys: Vec<_> = item.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["contents", "headers", "status"]);
    }
    let created = &items[0]["contents"];
    assert_eq!(items[0]["status"], 200);
    assert_eq!(created["name"], "test123");
    assert_eq!(created["_module"], "Accounts");
    assert_eq!(created["my_favorite"], false);
    assert_eq!(created["following"], true);
    let id = created["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(id.matches('-').count(), 4);
    assert!(created["date_entered"]
        .as_str()
        .unwrap()
        .ends_with("+00:00"));
    let listed = &items[1]["contents"];
    assert_eq!(listed["next_offset"], -1);
    assert_eq!(listed["records"][0]["id"], id);
    assert_eq!(listed["records"][0]["name"], "test123");
    assert!(listed["records"][0]["date_modified"].is_string());
}

/// Runs one of seed 000's Python examples (kept verbatim in `tests/seed000/`, indentation
/// restored) with its base URL pointed at `http`; what it printed.
async fn run_seed_example(http: &Http, name: &str) -> String {
    let path = format!("{}/tests/seed000/{name}", env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(&path).unwrap();
    assert!(
        script.contains("https://api.example.com/users/batch"),
        "{path}"
    );
    let script = script.replace("https://api.example.com", &format!("http://{}", http.addr));
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .await
        .expect("python3 runs the seed's examples (`.ci/run` installs `requests`)");
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The seed's expected output lost its leading spaces (as its code lost its indentation):
/// lines are compared without them.
fn lines(text: &str) -> Vec<&str> {
    text.lines().map(str::trim_start).collect()
}

#[tokio::test]
async fn the_seed_000_python_examples_print_the_seed_output() {
    let http = demo().await;
    let created = run_seed_example(&http, "bulk_create.py").await;
    assert_eq!(
        lines(&created),
        [
            "Created: 3 users",
            "Failed: 0",
            "101: Alice",
            "102: Bob",
            "103: Charlie"
        ]
    );
    let updated = run_seed_example(&http, "bulk_update.py").await;
    assert_eq!(
        lines(&updated),
        ["Succeeded: 2", "Failed: 1", "ID 999: User not found"]
    );
    let deleted = run_seed_example(&http, "bulk_delete.py").await;
    assert_eq!(lines(&deleted), ["Deleted: 12 users", "Not found: 0"]);

    // And the database agrees.
    let user = http.send("GET", "/users/42", &[], "").await.json();
    assert_eq!(user["name"], "Alice Updated");
    let inactive = http
        .send("GET", "/users?status=inactive", &[], "")
        .await
        .json();
    assert_eq!(inactive, json!([]));
    let all = http.send("GET", "/users", &[], "").await.json();
    assert_eq!(all.as_array().unwrap().len(), 100 + 3 - 12);
}

#[tokio::test]
async fn an_atomic_bulk_create_on_sqlite_is_all_or_nothing() {
    let http = demo().await;
    let before = http.send("GET", "/users", &[], "").await.body;
    let users = json!([
        {"name": "Ann", "email": "ann@example.com"},
        {"name": "Ben", "email": "ben@example.com"},
        {"name": "Cy", "email": "not an email"},
    ]);
    let send = |path: &'static str, body: Value| {
        let http = http.clone();
        async move {
            http.send(
                "POST",
                path,
                &[("content-type", "application/json"), ALICE],
                body.to_string(),
            )
            .await
        }
    };

    let reply = send("/users/batch", json!({"users": users, "atomic": true})).await;
    assert_eq!(reply.status, 207);
    let r = reply.json();
    assert_eq!(r["success_count"], 0);
    assert_eq!(r["rolled_back"], true);
    assert_eq!(r["failed"][2]["status"], 422);
    assert_eq!(r["failed"][2]["error"], "email must be an email address");
    assert_eq!(r["failed"][0]["status"], 424);
    assert_eq!(
        http.send("GET", "/users", &[], "").await.body,
        before,
        "the database is exactly as before"
    );

    // The same through the JSON batch endpoint with `"atomic": true`.
    let requests: Vec<Value> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| json!({"method": "POST", "url": "/users", "body": u}))
        .collect();
    let items = send("/batch", json!({"atomic": true, "requests": requests}))
        .await
        .items();
    let statuses: Vec<_> = items.iter().map(|i| i["status"].clone()).collect();
    assert_eq!(statuses, [424, 424, 422]);
    assert_eq!(http.send("GET", "/users", &[], "").await.body, before);

    // Best effort (the default) creates two; the ids the rollbacks did not use.
    let reply = send("/users/batch", json!({"users": users})).await;
    assert_eq!(reply.status, 207);
    let r = reply.json();
    assert_eq!(r["success_count"], 2);
    assert_eq!(r["created"][0]["id"], 101);
    assert_eq!(r["created"][1]["id"], 102);
    assert_eq!(r["created"][1]["created_by"], "alice");
    let all = http.send("GET", "/users", &[], "").await.json();
    assert_eq!(all.as_array().unwrap().len(), 102);
}

#[tokio::test]
async fn a_misspelled_filter_deletes_nobody_from_the_demo() {
    let http = demo().await;
    let json = [("content-type", "application/json")];
    for body in [
        r#"{"filters": {"stauts": "inactive"}}"#,
        r#"{"filters": {"status": "inactive", "last_login_befor": "2025-01-01"}}"#,
        r#"{"filters": {"status": "inactive", "status": "active"}}"#,
    ] {
        let reply = http.send("DELETE", "/users/batch", &json, body).await;
        let p = reply.problem(400);
        let field = p["errors"][0]["field"].as_str().unwrap();
        assert!(field.starts_with("filters."), "{body}: {p}");
    }
    // The listing itself refuses a parameter it does not know, or one given twice.
    for query in ["stauts=inactive", "status=inactive&status=active"] {
        let reply = http.send("GET", &format!("/users?{query}"), &[], "").await;
        assert_eq!(reply.status, 400, "{query}");
    }
    let all = http.send("GET", "/users", &[], "").await.json();
    assert_eq!(all.as_array().unwrap().len(), 100, "nobody was deleted");
    // The declared filters still work.
    let reply = http
        .send(
            "DELETE",
            "/users/batch",
            &json,
            r#"{"filters": {"status": "inactive"}}"#,
        )
        .await;
    assert_eq!(reply.json()["deleted_count"], 12);
}

#[tokio::test]
async fn annotations_in_bodies_are_ignored_as_an_odata_service_ignores_them() {
    let http = demo().await;
    // As Graph's typed models write a user.
    let body = json!({
        "@odata.type": "#microsoft.graph.user",
        "name": "Typed",
        "name@odata.type": "String",
        "email": "typed@example.com",
    });
    let created = http.send_json("POST", "/users", body.to_string()).await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert_eq!(created.json()["name"], "Typed");
    let batch = json!({"requests": [{"method": "POST", "url": "/users", "body": body}]});
    assert_eq!(http.batch(&batch, &[]).await.items()[0]["status"], 201);
    // Any other unknown field is still refused.
    let typo = json!({"name": "T", "emial": "t@example.com"});
    assert_eq!(
        http.send_json("POST", "/users", typo.to_string())
            .await
            .status,
        422
    );
}
