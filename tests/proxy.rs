//! `batch-proxy` in front of a legacy service that is not Rust (Python's http.server).
#![cfg(feature = "proxy")]

mod common;

use common::process::{proxy, start_reading, Running};
use common::Http;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

fn legacy_reading() -> (Running, u16, BufReader<std::process::ChildStdout>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/legacy/app.py");
    let (child, line, rest) = start_reading(Command::new("python3").arg(script));
    (child, line.parse().expect("a port"), rest)
}

fn legacy() -> (Running, u16) {
    let (child, port, _) = legacy_reading();
    (child, port)
}

#[tokio::test]
async fn a_mixed_batch_through_the_proxy() {
    let (_legacy, port) = legacy();
    let (_proxy, http) = proxy(&format!("http://127.0.0.1:{port}"), &[]);
    let items = http
        .batch(
            &json!({"requests": [
                {"id": "new", "method": "POST", "url": "/items", "body": {"name": "Ada"}},
                {"id": "read", "url": "/items/{{new#/body/id}}", "dependsOn": ["new"]},
                {"id": "missing", "url": "/items/999"},
                {"id": "text", "url": "/plain"},
            ]}),
            &[],
        )
        .await
        .items();
    assert_eq!(items[0]["status"], 201);
    assert_eq!(items[0]["body"]["name"], "Ada");
    assert_eq!(items[1]["status"], 200);
    assert_eq!(items[1]["body"]["id"], items[0]["body"]["id"]);
    assert_eq!(items[2]["status"], 404);
    assert_eq!(items[2]["body"], json!({"error": "not found"}));
    assert_eq!(items[3]["body"], "legacy says hi");

    // The proxy has no transaction hook: an atomic batch of two requests is refused
    // before anything runs.
    let p = http
        .batch(
            &json!({"atomic": true, "requests": [
                {"method": "POST", "url": "/items", "body": {"name": "Bo"}},
                {"method": "POST", "url": "/items", "body": {"name": "Cy"}},
            ]}),
            &[],
        )
        .await
        .problem(400);
    assert_eq!(p["errors"][0]["field"], "atomic");
    let next = items[0]["body"]["id"].as_i64().unwrap() + 1;
    let reply = http.send("GET", &format!("/items/{next}"), &[], "").await;
    assert_eq!(reply.status, 404, "nothing was created");
}

#[tokio::test]
async fn a_changeset_of_one_request_needs_no_hook() {
    // What @odata/client sends for every write: a changeset of one request.
    let (_legacy, port) = legacy();
    let (_proxy, http) = proxy(&format!("http://127.0.0.1:{port}"), &[]);
    let body = "--batch_1\r\ncontent-type: multipart/mixed; boundary=changeset_1\r\n\r\n\
        --changeset_1\r\ncontent-type: application/http\r\ncontent-transfer-encoding: binary\r\ncontent-id: 1\r\n\r\n\
        POST /items HTTP/1.1\r\ncontent-type: application/json\r\n\r\n{\"name\": \"Ada\"}\r\n\
        --changeset_1--\r\n--batch_1--\r\n";
    let headers = [("content-type", "multipart/mixed; boundary=batch_1")];
    let reply = http.send("POST", "/batch", &headers, body).await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(text.contains("HTTP/1.1 201"), "{text}");
    assert!(
        text.contains("multipart/mixed; boundary=changesetresponse"),
        "a changeset reply: {text}"
    );
    assert!(text.contains("\"name\": \"Ada\""), "{text}");
}

#[tokio::test]
async fn identity_is_the_outer_request_s() {
    let (_legacy, port) = legacy();
    let (_proxy, http) = proxy(&format!("http://127.0.0.1:{port}"), &[]);
    let items = http
        .batch(
            &json!({"requests": [{"url": "/whoami", "headers": {
                "authorization": "Bearer bob", "cookie": "stolen=1", "x-forwarded-for": "10.0.0.9", "x-custom": "kept"
            }}]}),
            &[("authorization", "Bearer alice"), ("cookie", "session=alice"), ("x-forwarded-for", "203.0.113.7")],
        )
        .await
        .items();
    let seen = &items[0]["body"];
    assert_eq!(seen["authorization"], json!(["Bearer alice"]));
    assert_eq!(seen["cookie"], json!(["session=alice"]));
    assert_eq!(seen["x-forwarded-for"], json!(["203.0.113.7"]));
    assert_eq!(seen["x-custom"], json!(["kept"]));
    assert_eq!(
        seen["host"],
        json!([format!("127.0.0.1:{port}")]),
        "only ever the upstream"
    );
}

#[tokio::test]
async fn identity_and_dropped_headers_are_configurable() {
    let (_legacy, port) = legacy();
    let flags = [
        "--identity-header",
        "x-api-key",
        "--drop-header",
        "x-tenant",
    ];
    let (_proxy, http) = proxy(&format!("http://127.0.0.1:{port}"), &flags);
    let items = http
        .batch(
            &json!({"requests": [{"url": "/whoami", "headers": {
                "x_api_key": "stolen", "x-api-key": "stolen", "x-tenant": "other", "X_Forwarded_For": "10.0.0.9"
            }}]}),
            &[("x-api-key", "mine")],
        )
        .await
        .items();
    let seen = &items[0]["body"];
    assert_eq!(seen["x-api-key"], json!(["mine"]));
    // Python's `get_all` answers null for a header it did not receive.
    assert_eq!(seen["x-tenant"], json!(null));
    assert_eq!(seen["x-forwarded-for"], json!(null));
}

#[tokio::test]
async fn refused_paths_are_never_batched() {
    let (_legacy, port) = legacy();
    let flags = ["--refuse-path", "/items", "--refuse-path", "/release"];
    let (_proxy, http) = proxy(&format!("http://127.0.0.1:{port}"), &flags);
    let batch = json!({"requests": [
        {"id": "1", "method": "POST", "url": "/items", "body": {"name": "x"}},
        {"id": "2", "url": "/%49tems/1"},
        {"id": "3", "url": "/whoami/../release"},
        {"id": "4", "url": "/plain"},
    ]});
    let items = http.batch(&batch, &[]).await.items();
    let status: Vec<&Value> = items.iter().map(|i| &i["status"]).collect();
    assert_eq!(status, [403, 403, 403, 200], "{items:#?}");
    // Plain requests still reach them.
    let json = [("content-type", "application/json")];
    let created = http.send("POST", "/items", &json, r#"{"name":"x"}"#).await;
    assert_eq!(created.status, 201);
}

#[tokio::test]
async fn plain_requests_pass_through() {
    let (_legacy, port) = legacy();
    let (_proxy, http) = proxy(&format!("http://127.0.0.1:{port}"), &[]);
    let text = http.send("GET", "/plain", &[], "").await;
    assert_eq!(text.status, 200);
    assert_eq!(text.body, "legacy says hi");
    let created = http
        .send(
            "POST",
            "/items",
            &[("content-type", "application/json")],
            r#"{"name":"direct"}"#,
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(
        created.headers["location"],
        format!("/items/{}", created.json()["id"])
    );
    assert_eq!(http.send("GET", "/nothing", &[], "").await.status, 404);
}

#[tokio::test]
async fn the_bulk_format_through_the_proxy() {
    let (_legacy, port) = legacy();
    let (_proxy, http) = proxy(
        &format!("http://127.0.0.1:{port}"),
        &["--bulk-path", "/rest/v10/bulk", "--bulk-base", ""],
    );
    let reply = http
        .send(
            "POST",
            "/rest/v10/bulk",
            &[("content-type", "application/json")],
            r#"{"requests": [{"url": "/items", "method": "POST", "data": "{\"name\": \"test123\"}"}, {"url": "/plain"}]}"#,
        )
        .await;
    let items = reply.json();
    assert_eq!(items[0]["status"], 201);
    assert_eq!(items[0]["contents"]["name"], "test123");
    assert_eq!(items[1]["contents"], "legacy says hi");
}

#[tokio::test]
async fn an_upstream_that_is_down_gives_502_items() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_proxy, http) = proxy(&format!("http://127.0.0.1:{port}"), &[]);
    let reply = http
        .batch(&json!({"requests": [{"url": "/a"}, {"url": "/b"}]}), &[])
        .await;
    let items = reply.items();
    for item in &items {
        assert_eq!(item["status"], 502);
        assert!(
            item["body"]["detail"]
                .as_str()
                .unwrap()
                .contains("did not answer"),
            "{item}"
        );
    }
    let direct = http.send("GET", "/a", &[], "").await;
    assert_eq!(direct.status, 502);
    assert_eq!(direct.headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn sigterm_stops_the_proxy_cleanly() {
    let (_legacy, port) = legacy();
    let (mut proxy, http) = proxy(&format!("http://127.0.0.1:{port}"), &[]);
    assert_eq!(http.send("GET", "/plain", &[], "").await.status, 200);
    let pid = proxy.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || proxy.0.wait()),
    )
    .await
    .expect("the proxy stops")
    .unwrap()
    .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn shutdown_finishes_the_batch_in_flight() {
    let (_legacy, port, mut legacy_out) = legacy_reading();
    let (mut proxy, http) = proxy(&format!("http://127.0.0.1:{port}"), &[]);
    let batch = tokio::spawn({
        let http = http.clone();
        async move {
            http.batch(
                &json!({"requests": [{"url": "/plain"}, {"url": "/wait"}]}),
                &[],
            )
            .await
        }
    });
    // The upstream says when the batch's second sub-request has reached it.
    let waiting = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        legacy_out.read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the sub-request arrives");
    assert_eq!(line.unwrap().unwrap().trim(), "waiting");

    let pid = proxy.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // Release the upstream directly: the proxy no longer takes new connections.
    assert_eq!(
        Http::new(format!("127.0.0.1:{port}").parse().unwrap())
            .send("GET", "/release", &[], "")
            .await
            .status,
        200
    );

    let reply = tokio::time::timeout(Duration::from_secs(20), batch)
        .await
        .expect("the batch finishes")
        .unwrap();
    let items = reply.items();
    assert_eq!(items[1]["status"], 200);
    assert_eq!(items[1]["body"], "released");
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || proxy.0.wait()),
    )
    .await
    .expect("the proxy stops")
    .unwrap()
    .unwrap();
    assert!(status.success(), "{status:?}");
}

/// Everything the proxy writes on a raw connection until it closes it (bounded, so that a
/// connection held for ever fails the test).
async fn raw_until_closed(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut got))
        .await
        .expect("the proxy closes the connection")
        .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn heads_bodies_and_upstreams_have_deadlines() {
    // `/wait` prints to the upstream's stdout: keep the pipe open.
    let (_legacy, port, _stdout) = legacy_reading();
    let flags = [
        "--header-timeout-secs",
        "1",
        "--body-timeout-secs",
        "1",
        "--upstream-timeout-secs",
        "1",
    ];
    let (_proxy, http) = proxy(&format!("http://127.0.0.1:{port}"), &flags);
    // An unfinished request head, a connection that sends nothing, an HTTP/2 preface
    // (HTTP/1.1 only: an idle h2 connection could stay for ever).
    for head in [
        "GET /plain HTTP/1.1\r\nhost: x\r\n",
        "",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        let reply = raw_until_closed(http.addr, head).await;
        assert!(!reply.contains("200 OK"), "{reply}");
    }
    // A batch body shorter than its content-length.
    let short = "POST /batch HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"requests\"";
    let reply = raw_until_closed(http.addr, short).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    // A plain request to an upstream that does not answer.
    let reply = tokio::time::timeout(Duration::from_secs(20), http.send("GET", "/wait", &[], ""))
        .await
        .expect("the proxy answers");
    assert_eq!(reply.status, 504);
    assert!(String::from_utf8_lossy(&reply.body).contains("--upstream-timeout-secs"));
    // Let the upstream's waiting thread go.
    let upstream = Http::new(format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(upstream.send("GET", "/release", &[], "").await.status, 200);
}

/// Through the proxy, an NDJSON reply streams in completion order: the quick item's line
/// arrives while the legacy service still holds the slow one (released only once the test
/// has read that line). Sub-requests carry ids derived from the batch's
/// (`--request-id-header`).
#[tokio::test]
async fn an_ndjson_reply_streams_through_the_proxy_with_request_ids() {
    use http_body_util::{BodyExt, Full};
    let (_legacy, port, mut legacy_out) = legacy_reading();
    let upstream = format!("http://127.0.0.1:{port}");
    let extra = [
        "--concurrency",
        "2",
        "--request-id-header",
        "x-correlation-id",
    ];
    let (_proxy, http) = proxy(&upstream, &extra);
    let batch = json!({"requests": [
        {"id": "slow", "url": "/wait"},
        {"id": "who", "url": "/whoami"},
    ]});
    let req = http::Request::post(format!("http://{}/batch", http.addr))
        .header("content-type", "application/json")
        .header("accept", "application/x-ndjson")
        .header("x-correlation-id", "c-1")
        .body(Full::new(bytes::Bytes::from(batch.to_string())))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let mut body = client.request(req).await.unwrap().into_body();
    let mut text = String::new();
    let first_line = async {
        while !text.contains('\n') {
            let frame = body.frame().await.expect("more of the reply").unwrap();
            text.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(20), first_line)
        .await
        .expect("a first line");
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], "who");
    assert_eq!(first["body"]["x-correlation-id"], json!(["c-1.who"]));
    assert_eq!(first["headers"]["X-Correlation-Id"], "c-1.who");
    // The slow item is waiting in the legacy service; let it go.
    let mut line = String::new();
    legacy_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "waiting");
    http.send("GET", "/release", &[], "").await;
    let rest = body.collect().await.unwrap().to_bytes();
    text.push_str(std::str::from_utf8(&rest).unwrap());
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[1]["id"], "slow");
    assert_eq!(lines[1]["body"], "released");
    assert_eq!(lines[2]["done"], true);
}

/// A burst waits for places instead of being turned away; a client that never reads its
/// reply has it cut once its waits pass `--reply-grace-secs` (at `--reply-min-rate`), and
/// its place goes to the batch waiting for it.
#[tokio::test]
async fn a_burst_waits_and_a_reader_that_never_reads_gives_its_place_back() {
    let (_legacy, port) = legacy();
    let flags = ["--max-concurrent-batches", "1", "--reply-grace-secs", "1"];
    let (_proxy, http) = proxy(&format!("http://127.0.0.1:{port}"), &flags);
    let plain = json!({"requests": [{"url": "/plain"}, {"url": "/plain"}]});
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let (http, plain) = (http.clone(), plain.clone());
            tokio::spawn(async move { http.batch(&plain, &[]).await.status })
        })
        .collect();
    for status in burst {
        assert_eq!(status.await.unwrap(), 200);
    }
    // 10 MB of reply to a client that reads nothing.
    let requests: Vec<Value> = (0..20).map(|_| json!({"url": "/big"})).collect();
    let body = json!({ "requests": requests }).to_string();
    let mut slow = common::post_slowly(http.addr, &body).await;
    // Its head has come: it holds the one place. Nothing more is read.
    assert!(common::read_head(&mut slow)
        .await
        .starts_with(b"HTTP/1.1 200"));
    // The one place is its; this batch waits for it (up to --admission-timeout-secs,
    // 10 s), and gets it once the slow reply is cut.
    let reply = http.batch(&plain, &[]).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

/// Under `--service-root`, no reading of an item's path leaves the root.
#[tokio::test]
async fn no_reading_of_a_path_leaves_the_service_root() {
    let (_legacy, port) = legacy();
    let flags = ["--service-root", "/v1.0"];
    let (_proxy, http) = proxy(&format!("http://127.0.0.1:{port}"), &flags);
    let batch = json!({"requests": [
        {"url": "/v1.0/..%2f..%2fplain"},
        {"url": "/users/..%2F..%2F..%2Fplain"},
    ]});
    let headers = [("content-type", "application/json")];
    let reply = http
        .send("POST", "/v1.0/$batch", &headers, batch.to_string())
        .await;
    for item in reply.items() {
        assert_eq!(item["status"], 403, "{item}");
    }
}
