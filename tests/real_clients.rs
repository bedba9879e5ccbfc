//! The real client packages, as their users call them, against the demo and against
//! `batch-proxy` in front of a small Python service under `/v1.0`, over real HTTP:
//! `@microsoft/microsoft-graph-client` 3.0.7 (npm), `msgraph-core` 1.5.2 (PyPI) and
//! `odata-batch-request` 0.8.0 (npm, OData 4.0 multipart). Each prints what its own parser
//! returns; the tests assert it. `tests/clients/install.sh` installs the packages first
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
    install();
    let dir = clients().join(dir);
    let program = if program == "python" {
        dir.join(".venv/bin/python")
    } else {
        program.into()
    };
    let (script, scenario) = (script.to_string(), scenario.to_string());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .arg(script)
            .current_dir(dir)
            .env("BASE", base)
            .env("SCENARIO", scenario)
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
    assert_eq!(
        odata(&rolled)[..2],
        [json!(["0.0", 424, null]), json!(["0.1", 422, null])]
    );
    assert_eq!(odata(&rolled)[3], json!({"hasError": true}));
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
