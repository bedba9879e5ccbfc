//! Hostile input: paths a batch may never reach (`refuse_path`, `reachable`). Every
//! spelling a server behind might read as a refused path is refused, after dot segments and
//! references; the item reports `403`, nothing reaches the handler, and the rest of the
//! batch runs.

mod common;

use common::start;
use http::Method;
use serde_json::{json, Value};
use tower_http_batch::BatchLayer;

const ALICE: (&str, &str) = ("authorization", "Bearer alice-token");

#[tokio::test]
async fn a_refused_prefix_is_refused_in_every_spelling() {
    let (http, calls) = start(BatchLayer::new("/batch").refuse_path("/echo/admin")).await;
    let spellings = [
        "/echo/admin",
        "/echo/admin/",
        "/echo/admin/users?x=1",
        "/ECHO/Admin",
        "/echo/%61dmin",
        "/echo/%2561dmin",
        "/echo/x/../admin",
        "/echo/x/%2e%2e/admin",
        "/echo/admin;jsessionid=1/users",
        "/echo//admin",
        "/echo/admin%2fusers",
        "/echo/x/..%2fadmin",
        // A router that splits before decoding reads this under `/echo/admin`.
        "/echo/admin/users/..%2f..%2fx",
        "/echo/%25252561dmin",
        "echo/admin",
    ];
    let requests: Vec<Value> = spellings
        .iter()
        .enumerate()
        .map(|(i, url)| json!({"id": i.to_string(), "method": "DELETE", "url": url}))
        .collect();
    let reply = http.batch(&json!({ "requests": requests }), &[ALICE]).await;
    let items = reply.items();
    for (item, url) in items.iter().zip(spellings) {
        assert_eq!(item["status"], 403, "{url}: {item:#}");
        let detail = item["body"]["detail"].as_str().unwrap();
        assert!(detail.contains("may not reach"), "{detail}");
    }
    assert_eq!(items.len(), spellings.len());
    // Encoded more than four times over, a path may spell anything: refused as invalid.
    let deep = json!({"requests": [{"url": "/echo/%252525252561dmin"}]});
    let p = http.batch(&deep, &[ALICE]).await.problem(400);
    assert_eq!(p["errors"][0]["field"], "url", "{p}");
    assert_eq!(calls.get(), 0, "nothing refused reached the handler");
}

#[tokio::test]
async fn the_rest_of_the_batch_runs_and_dependants_report_424() {
    let (http, calls) = start(BatchLayer::new("/batch").refuse_path("/echo/admin")).await;
    let batch = json!({"requests": [
        {"id": "1", "url": "/echo/admin/x"},
        {"id": "2", "url": "/echo/administrator"},
        {"id": "3", "url": "/echo/users/admin"},
        {"id": "4", "url": "/echo/y", "dependsOn": ["1"]},
    ]});
    let items = http.batch(&batch, &[ALICE]).await.items();
    let status: Vec<&Value> = items.iter().map(|i| &i["status"]).collect();
    assert_eq!(status, [403, 200, 200, 424], "{items:#?}");
    assert_eq!(calls.get(), 2);
    // The path itself is still served to a plain request: only batches are kept away.
    let plain = http.send("GET", "/echo/admin/x", &[ALICE], "").await;
    assert_eq!(plain.status, 200);
}

#[tokio::test]
async fn a_path_built_by_a_reference_is_checked_as_sent() {
    let (http, calls) = start(BatchLayer::new("/batch").refuse_path("/echo/admin")).await;
    for value in ["admin", "ADMIN", "%61dmin", "admin;x", "x/../admin"] {
        let batch = json!({"requests": [
            {"id": "a", "method": "POST", "url": "/json", "body": {"p": value},
             "headers": {"content-type": "application/json"}},
            {"id": "b", "url": "/echo/{{a#/body/p}}", "dependsOn": ["a"]},
        ]});
        let items = http.batch(&batch, &[ALICE]).await.items();
        assert_eq!(items[0]["status"], 200, "{value}: {items:#?}");
        // Either refused, or sent as one harmless segment: never to the refused path.
        let b = &items[1];
        match b["status"].as_u64() {
            Some(403) => {}
            Some(200) => {
                let uri = b["body"]["uri"].as_str().unwrap();
                assert!(
                    !uri.to_ascii_lowercase().starts_with("/echo/admin"),
                    "{value}: {uri}"
                );
            }
            other => panic!("{value}: {other:?} {b:#}"),
        }
    }
    // The plain spelling is refused for certain: the check ran after the substitution.
    let batch = json!({"requests": [
        {"id": "a", "method": "POST", "url": "/json", "body": {"p": "admin"},
         "headers": {"content-type": "application/json"}},
        {"id": "b", "url": "/echo/{{a#/body/p}}/x", "dependsOn": ["a"]},
    ]});
    let items = http.batch(&batch, &[ALICE]).await.items();
    assert_eq!(items[1]["status"], 403, "{items:#?}");
    assert_eq!(
        calls.get(),
        6,
        "only the `/json` items and harmless spellings ran"
    );
}

#[tokio::test]
async fn an_allow_list_fails_closed() {
    let only_reads_and_echo = |method: &Method, path: &str| {
        method == Method::GET || path == "/echo" || path.starts_with("/echo/public/")
    };
    let layer = BatchLayer::new("/batch").reachable(only_reads_and_echo);
    let (http, calls) = start(layer).await;
    let batch = json!({"requests": [
        {"id": "1", "url": "/whoami"},
        {"id": "2", "method": "POST", "url": "/echo/public/1"},
        {"id": "3", "method": "POST", "url": "/ECHO/Public/%31"},
        {"id": "4", "method": "POST", "url": "/echo/public/..%2f..%2fstatus/200"},
        {"id": "5", "method": "DELETE", "url": "/echo/private"},
        // Decoded, `/echo/public/1`; routed, `/status/{code}` with code `../echo/public/1`.
        {"id": "6", "method": "POST", "url": "/status/..%2fecho%2fpublic%2f1"},
    ]});
    let items = http.batch(&batch, &[ALICE]).await.items();
    let status: Vec<&Value> = items.iter().map(|i| &i["status"]).collect();
    // The predicate reads `/ECHO/Public/%31` as `/echo/public/1` and lets it through; the
    // router, case-sensitive, answers it 404.
    assert_eq!(status, [200, 200, 404, 403, 403, 403], "{items:#?}");
    let detail = items[4]["body"]["detail"].as_str().unwrap();
    assert!(detail.contains("DELETE /echo/private"), "{detail}");
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn an_ambiguous_path_is_refused_for_what_makes_it_so() {
    let (http, calls) = start(BatchLayer::new("/batch").refuse_path("/echo/admin")).await;
    let batch = json!({"requests": [
        {"url": "/echo/users/1%3Fx"},
        {"url": "/echo/users/%u0031"},
        {"url": "/echo/users/%c0%ae"},
    ]});
    let items = http.batch(&batch, &[ALICE]).await.items();
    let details: Vec<&str> = items
        .iter()
        .map(|i| {
            assert_eq!(i["status"], 403, "{i}");
            i["body"]["detail"].as_str().unwrap()
        })
        .collect();
    assert!(
        details[0].contains("encoded `?`, `#` or NUL (`%3F`, `%23`, `%00`)"),
        "{}",
        details[0]
    );
    assert!(!details[0].contains("four times"), "{}", details[0]);
    assert!(details[1].contains("`%u` escape"), "{}", details[1]);
    assert!(
        details[2].contains("not UTF-8 once decoded"),
        "{}",
        details[2]
    );
    assert_eq!(calls.get(), 0);
}
