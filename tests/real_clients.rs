//! The real client packages, as their users call them, against the demo and against
//! `batch-proxy` in front of a small Python service under `/v1.0`, over real HTTP:
//! `@microsoft/microsoft-graph-client` 3.0.7 (npm), `msgraph-core` 1.5.2 (PyPI) and
//! `odata-batch-request` 0.8.0 (npm, OData 4.0 multipart), `pyodata` 1.12.1 (PyPI, SAP's
//! OData V2 client) and `batchelor` 2.0.2 (npm, Google-style multipart: request lines
//! without a version, LF line ends, parts that are all head). Each prints what its own
//! parser returns; the tests assert it. And the demo's OpenAPI document, checked by
//! `openapi-spec-validator` 0.9.0 (PyPI). `tests/clients/install.sh` installs the packages first
//! (node, npm and python3 must be on the PATH; `.ci/run` sees to it).
#![cfg(feature = "proxy")]

#[path = "../examples/demo/app.rs"]
mod app;
mod common;

use common::process::{self, start, Running};
use common::Http;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn clients() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Installs the packages once per test run.
fn install() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        let status = Command::new("bash")
            .arg(clients().join("install.sh"))
            .status();
        match status {
            Ok(s) if s.success() => Ok(()),
            other => Err(format!("tests/clients/install.sh failed: {other:?}")),
        }
    });
    installed.as_ref().expect("the client packages install");
}

/// Runs a client script against `base` and returns the JSON lines it printed.
async fn run(dir: &str, program: &str, script: &str, base: String, scenario: &str) -> Vec<Value> {
    run_with(dir, program, script, base, scenario, &[]).await
}

/// [`run`] with more environment variables.
async fn run_with(
    dir: &str,
    program: &str,
    script: &str,
    base: String,
    scenario: &str,
    env: &[(&str, &str)],
) -> Vec<Value> {
    install();
    let dir = clients().join(dir);
    let program = if program == "python" {
        dir.join(".venv/bin/python")
    } else {
        program.into()
    };
    let (script, scenario) = (script.to_string(), scenario.to_string());
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .arg(script)
            .current_dir(dir)
            .env("BASE", base)
            .env("SCENARIO", scenario)
            .envs(env)
            .output()
            .expect("the client runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

async fn demo() -> Http {
    Http::new(common::serve(app::app(app::Db::open(None).unwrap())).await)
}

/// `batch-proxy --service-root /v1.0` in front of `tests/clients/upstream.py`.
fn proxy() -> (Running, Running, String) {
    let (upstream, port) = start(Command::new("python3").arg(clients().join("upstream.py")));
    let upstream_url = format!("http://127.0.0.1:{port}");
    let (proxy, http) = process::proxy(&upstream_url, &["--service-root", "/v1.0"]);
    (upstream, proxy, format!("http://{}", http.addr))
}

/// What both Graph clients print for their four items, each depending on the one before:
/// a create, a read, a read that fails, and one that is not sent for it.
fn assert_graph_items(items: &[Value], created: &str, read: &str) {
    let statuses: Vec<&Value> = items.iter().map(|i| &i["status"]).collect();
    assert_eq!(statuses, [201, 200, 404, 424], "{items:#?}");
    assert_eq!(items[0]["body"]["name"], created);
    assert_eq!(items[1]["body"]["id"], 1);
    assert_eq!(items[1]["body"]["name"], read);
    assert!(items[2]["body"]["error"].is_object() || items[2]["body"]["error"].is_string());
    assert_eq!(items[3]["body"]["status"], 424, "{:#?}", items[3]);
}

#[tokio::test]
async fn graph_js_sdk_against_the_demo() {
    let http = demo().await;
    let items = run(
        "graph_js",
        "node",
        "batch.js",
        format!("http://{}", http.addr),
        "",
    )
    .await;
    assert_graph_items(&items, "Ada", "User 1");
}

#[tokio::test]
async fn graph_js_sdk_through_the_proxy() {
    let (_upstream, _proxy, base) = proxy();
    let items = run("graph_js", "node", "batch.js", base, "").await;
    assert_graph_items(&items, "Ada", "First");
}

#[tokio::test]
async fn msgraph_core_against_the_demo() {
    let http = demo().await;
    let items = run(
        "msgraph_py",
        "python",
        "batch.py",
        format!("http://{}", http.addr),
        "",
    )
    .await;
    assert_graph_items(&items, "Ada", "User 1");
}

#[tokio::test]
async fn msgraph_core_through_the_proxy() {
    let (_upstream, _proxy, base) = proxy();
    let items = run("msgraph_py", "python", "batch.py", base, "").await;
    assert_graph_items(&items, "Ada", "First");
}

/// Each operation's index, status and body name (or id) as the OData parser returned them.
fn odata(items: &[Value]) -> Vec<Value> {
    items
        .iter()
        .map(|i| match i.get("hasError") {
            Some(e) => json!({ "hasError": e }),
            None => json!([i["index"], i["status"], i["body"]["name"]]),
        })
        .collect()
}

#[tokio::test]
async fn odata_multipart_changesets_against_the_demo() {
    let http = demo().await;
    let base = format!("http://{}", http.addr);
    let committed = run("odata_js", "node", "batch.js", base.clone(), "commit").await;
    assert_eq!(
        odata(&committed),
        [
            json!(["0.0", 201, "Ann"]),
            json!(["0.1", 201, "Bea"]),
            json!(["1", 200, "User 1"]),
            json!({"hasError": false})
        ]
    );
    let before = http.send("GET", "/v1.0/users", &[], "").await.json();
    let rolled = run("odata_js", "node", "batch.js", base, "rollback").await;
    // The failed changeset is one response, its failure (the parser's changeset failure,
    // not an array), and OData 4.0 (the client sends `OData-Version: 4.0`) stops there:
    // the read after it is left out.
    assert_eq!(
        odata(&rolled),
        [json!(["0", 422, null]), json!({"hasError": true})]
    );
    let after = http.send("GET", "/v1.0/users", &[], "").await.json();
    assert_eq!(after, before, "the changeset left the data as it was");
}

#[tokio::test]
async fn odata_multipart_through_the_proxy() {
    let (_upstream, _proxy, base) = proxy();
    let items = run("odata_js", "node", "batch.js", base.clone(), "plain").await;
    assert_eq!(
        odata(&items),
        [
            json!(["0", 201, "Ann"]),
            json!(["1", 201, "Bea"]),
            json!(["2", 200, "First"]),
            json!({"hasError": false})
        ]
    );
}

#[tokio::test]
async fn batchelor_google_style_against_the_demo() {
    let http = demo().await;
    let items = run(
        "google_js",
        "node",
        "batch.js",
        format!("http://{}", http.addr),
        "mixed",
    )
    .await;
    let seen: Vec<Value> = items
        .iter()
        .map(|i| json!([i["id"], i["status"], i["body"]["name"]]))
        .collect();
    assert_eq!(
        seen,
        [
            json!(["read-1", "200", "User 1"]),
            json!(["create", "201", "Gus"]),
            json!(["missing", "404", null]),
            json!(["read-again", "200", "User 1"]),
            json!([null, null, null]),
        ],
        "{items:#?}"
    );
    assert_eq!(items[4], json!({"parts": 4, "errors": 0}));
    // Each request's own callback, picked by the Content-ID echoed back.
    let items = run(
        "google_js",
        "node",
        "batch.js",
        format!("http://{}", http.addr),
        "callbacks",
    )
    .await;
    let tags: Vec<&Value> = items.iter().map(|i| &i["tag"]).collect();
    assert_eq!(tags[..4], ["read-1", "create", "missing", "read-again"]);
    // A part's own Authorization is dropped: the batch's identity is every item's.
    let items = run(
        "google_js",
        "node",
        "batch.js",
        format!("http://{}", http.addr),
        "auth",
    )
    .await;
    let users: Vec<&Value> = items.iter().map(|i| &i["body"]["user"]).collect();
    assert_eq!(users[..2], ["alice", "alice"]);
}

#[tokio::test]
async fn batchelor_google_style_through_the_proxy() {
    let (_upstream, _proxy, base) = proxy();
    let prefix = [("PREFIX", "/v1.0")];
    let items = run_with("google_js", "node", "batch.js", base, "mixed", &prefix).await;
    let seen: Vec<Value> = items
        .iter()
        .map(|i| json!([i["id"], i["status"], i["body"]["name"]]))
        .collect();
    assert_eq!(
        seen[..4],
        [
            json!(["read-1", "200", "First"]),
            json!(["create", "201", "Gus"]),
            json!(["missing", "404", null]),
            json!(["read-again", "200", "First"]),
        ],
        "{items:#?}"
    );
}

#[tokio::test]
async fn pyodata_v2_changesets_against_the_demo() {
    let http = demo().await;
    let base = format!("http://{}", http.addr);
    let committed = run(
        "pyodata_py",
        "python",
        "batch.py",
        base.clone(),
        "demo-commit",
    )
    .await;
    assert_eq!(
        committed,
        [
            json!({"index": "0.0", "status": 201, "name": "Ann"}),
            json!({"index": "0.1", "status": 201, "name": "Bea"}),
            json!({"index": "1", "status": 200, "name": "User 1"}),
        ]
    );
    // The failed changeset is one response, which pyodata raises as the changeset's
    // failure; the demo's transaction left the users as they were.
    let rolled = run("pyodata_py", "python", "batch.py", base, "demo-rollback").await;
    assert_eq!(rolled.len(), 3, "{rolled:#?}");
    assert_eq!(rolled[1]["raised"], "HttpError");
    assert_eq!(rolled[1]["status"], 422);
    assert!(rolled[1]["message"]
        .as_str()
        .unwrap()
        .contains("single response"));
    assert_eq!(
        rolled[0], rolled[2],
        "the changeset left the data as it was"
    );
}

#[tokio::test]
async fn pyodata_v2_entity_sets_through_the_proxy() {
    let v2 = [
        "--json-path",
        "none",
        "--odata-v2-path",
        "/sap/opu/odata/sap/DEMO_SRV/$batch",
    ];
    let (_upstream, port) =
        start(Command::new("python3").arg(clients().join("odata_v2_upstream.py")));
    let (_proxy, http) = process::proxy(&format!("http://127.0.0.1:{port}"), &v2);
    let base = format!("http://{}", http.addr);
    let reads = run(
        "pyodata_py",
        "python",
        "batch.py",
        base.clone(),
        "proxy-reads",
    )
    .await;
    assert_eq!(
        reads,
        [
            json!({"index": "0", "ID": 1, "Name": "First"}),
            json!({"index": "1", "names": ["First"]}),
        ]
    );
    // A changeset of one create needs no transaction hook; one of two is refused (400)
    // before anything runs.
    let writes = run("pyodata_py", "python", "batch.py", base, "proxy-writes").await;
    assert_eq!(
        writes[0],
        json!({"index": "0.0", "ID": 2, "Name": "Second"})
    );
    assert_eq!(writes[1], json!({"index": "1", "ID": 1, "Name": "First"}));
    assert_eq!(
        (&writes[2]["raised"], &writes[2]["status"]),
        (&json!("HttpError"), &json!(400))
    );
    assert_eq!(writes[2]["body"]["errors"][0]["field"], "changeset");
    assert_eq!(writes[3], json!({"listed": ["First", "Second"]}));
}

#[tokio::test]
async fn the_demos_openapi_document_validates_and_names_every_batch_path() {
    install();
    let http = demo().await;
    let reply = http.send("GET", "/openapi.json", &[], "").await;
    assert_eq!(reply.status, 200);
    let doc = reply.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    paths.sort();
    let endpoints = [
        "/$batch",
        "/batch",
        "/rest/v10/bulk",
        "/users/batch",
        "/v1.0/$batch",
        "/v2/$batch",
    ];
    let mut expected: Vec<String> = endpoints
        .iter()
        .flat_map(|p| [p.to_string(), format!("{p}/jobs/{{jobId}}")])
        .collect();
    expected.sort();
    assert_eq!(paths, expected, "each endpoint and its jobs' monitor");
    let monitor = &doc["paths"]["/batch/jobs/{jobId}"];
    assert!(monitor["get"]["responses"]["202"]["content"]["application/json"].is_object());
    assert!(monitor["delete"]["responses"]["409"].is_object());
    let batch = &doc["paths"]["/batch"]["post"];
    let json = &batch["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(json["properties"]["requests"]["maxItems"], 100);
    assert!(batch["requestBody"]["content"]["multipart/mixed"].is_object());
    assert!(batch["responses"]["200"]["content"]["application/x-ndjson"].is_object());
    assert!(batch["responses"]["400"]["content"]["application/problem+json"].is_object());
    assert_eq!(batch["parameters"][0]["name"], "Idempotency-Key");
    assert_eq!(batch["parameters"][1]["name"], "Prefer");
    assert!(batch["responses"]["202"]["headers"]["Location"].is_object());
    assert_eq!(batch["x-batch-limits"]["maxRequests"], 100);
    assert!(doc["paths"]["/v2/$batch"]["post"]["responses"]["202"].is_object());
    let users = doc["paths"]["/users/batch"].as_object().unwrap();
    assert_eq!(users.len(), 3, "create, update, delete");

    schemas_take_what_the_demo_takes_and_sends(&http, &doc).await;

    let file = std::env::temp_dir().join(format!("openapi-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let validator = clients().join("openapi_py/.venv/bin/openapi-spec-validator");
    let out = Command::new(validator)
        .arg(&file)
        .output()
        .expect("the validator runs");
    let _ = std::fs::remove_file(&file);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim_end().ends_with(": OK"),
        "{said}"
    );
}

/// The document's schemas against real requests and the demo's real replies, checked by
/// `jsonschema` (draft 2020-12, as OpenAPI 3.1): each must be valid, and a wrong one not.
async fn schemas_take_what_the_demo_takes_and_sends(http: &Http, doc: &Value) {
    let schema = |path: &str, method: &str, at: &str| {
        let op = &doc["paths"][path][method];
        match at {
            "request" => op["requestBody"]["content"]["application/json"]["schema"].clone(),
            status => op["responses"][status]["content"]["application/json"]["schema"].clone(),
        }
    };
    let alice = [
        ("authorization", "Bearer alice-token"),
        ("content-type", "application/json"),
    ];
    let batch = json!({"requests": [
        {"id": "first", "url": "/users/1"},
        {"id": 2, "method": "POST", "url": "/users", "headers": {"content-type": "application/json", "x-n": 5},
         "body": {"name": "Schema", "email": "schema@example.com"}, "dependsOn": ["first"]}
    ]});
    let reply = http
        .send("POST", "/batch", &alice, batch.to_string())
        .await
        .json();
    let bulk = json!({"requests": [
        {"url": "/v10/Accounts", "method": "POST", "data": "{\"name\": \"A\"}", "headers": ["Content-Type: application/json"]},
        {"url": "/v10/Accounts", "method": "POST", "data": {"name": "B"}, "headers": {"content-type": "application/json"}},
        {"url": "/v10/Accounts"}
    ]});
    let bulk_reply = http
        .send("POST", "/rest/v10/bulk", &alice, bulk.to_string())
        .await
        .json();
    let create = json!({"users": [{"name": "R", "email": "r@example.com"}, {"name": ""}]});
    let created = http
        .send("POST", "/users/batch", &alice, create.to_string())
        .await
        .json();
    let cases = json!([
        {"schema": schema("/batch", "post", "request"), "instance": batch, "valid": true},
        {"schema": schema("/batch", "post", "200"), "instance": reply, "valid": true},
        {"schema": schema("/rest/v10/bulk", "post", "request"), "instance": bulk, "valid": true},
        {"schema": schema("/rest/v10/bulk", "post", "200"), "instance": bulk_reply, "valid": true},
        {"schema": schema("/users/batch", "post", "request"), "instance": create, "valid": true},
        {"schema": schema("/users/batch", "post", "207"), "instance": created, "valid": true},
        {"schema": schema("/batch", "post", "request"), "instance": {"requests": [{"method": "GET"}]}, "valid": false},
        {"schema": schema("/batch", "post", "request"), "instance": {"requests": "all"}, "valid": false},
    ]);
    let file = std::env::temp_dir().join(format!("schema-cases-{}.json", std::process::id()));
    std::fs::write(&file, cases.to_string()).unwrap();
    let check = "import json, sys, jsonschema\n\
        for i, c in enumerate(json.load(open(sys.argv[1]))):\n\
        \x20   errors = list(jsonschema.Draft202012Validator(c['schema']).iter_errors(c['instance']))\n\
        \x20   print(i, not errors, [e.message for e in errors][:2])";
    let python = clients().join("openapi_py/.venv/bin/python");
    let out = Command::new(python)
        .args(["-c", check])
        .arg(&file)
        .output()
        .expect("python runs");
    let _ = std::fs::remove_file(&file);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = cases
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["valid"].as_bool().unwrap());
    for (line, valid) in said.lines().zip(expected) {
        let mut words = line.splitn(3, ' ');
        let (_, verdict) = (words.next(), words.next());
        let wanted = if valid { "True" } else { "False" };
        assert_eq!(verdict, Some(wanted), "{line}");
    }
    assert_eq!(
        said.lines().count(),
        cases.as_array().unwrap().len(),
        "{said}"
    );
}
