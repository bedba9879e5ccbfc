//! Result references `{{id#/pointer}}` and the OData `$id` URL prefix.

mod common;

use common::start;
use serde_json::{json, Value};
use tower_http_batch::BatchLayer;

fn item<'a>(items: &'a [Value], id: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item {id}"))
}

#[tokio::test]
async fn references_into_urls_headers_and_bodies() {
    let (http, _) = start(BatchLayer::new("/batch").concurrency(4)).await;
    let tricky = "a/b?c#d%e f ü";
    let items = http
        .batch(
            &json!({"requests": [
                {"id": "a", "method": "POST", "url": "/json",
                 "body": {"id": 7, "v": tricky, "arr": [10, 20], "obj": {"k": "v"}}},
                {"id": "path", "url": "/echo/{{a#/body/v}}/x?q={{a#/body/v}}&n={{a#/body/id}}", "dependsOn": ["a"]},
                {"id": "hdr", "url": "/echo", "dependsOn": ["a"],
                 "headers": {"x-ref": "{{a#/body/arr/1}}", "x-ct": "type {{a#/headers/content-type}}"}},
                {"id": "body", "method": "POST", "url": "/json", "dependsOn": ["a"],
                 "body": {"whole": "{{a#/body/id}}", "arr": "{{a#/body/arr}}", "obj": "{{a#/body/obj}}",
                          "mixed": "id={{a#/body/id}}!", "status": "{{a#/status}}", "plain": "no refs"}},
                {"id": "missing", "url": "/echo/{{a#/body/nothing}}", "dependsOn": ["a"]},
            ]}),
            &[],
        )
        .await
        .items();
    let path = &item(&items, "path")["body"]["uri"];
    assert_eq!(
        path, "/echo/a%2Fb%3Fc%23d%25e%20f%20%C3%BC/x?q=a%2Fb%3Fc%23d%25e%20f%20%C3%BC&n=7",
        "one escaped segment, one escaped query value"
    );
    let headers = &item(&items, "hdr")["body"]["headers"];
    assert_eq!(headers["x-ref"], json!(["20"]));
    assert_eq!(headers["x-ct"], json!(["type application/json"]));
    assert_eq!(
        item(&items, "body")["body"],
        json!({"whole": 7, "arr": [10, 20], "obj": {"k": "v"}, "mixed": "id=7!", "status": 200, "plain": "no refs"}),
        "a whole-string reference keeps its JSON type"
    );
    let missing = item(&items, "missing");
    assert_eq!(missing["status"], 424);
    assert!(
        missing["body"]["detail"]
            .as_str()
            .unwrap()
            .contains("{{a#/body/nothing}}"),
        "{missing}"
    );
}

#[tokio::test]
async fn dollar_id_resolves_against_location() {
    let (http, calls) = start(BatchLayer::new("/batch")).await;
    let items = http
        .batch(
            &json!({"requests": [
                {"id": "made", "method": "POST", "url": "/created"},
                {"id": "sub", "url": "$made/sub?x=1", "dependsOn": ["made"]},
                {"id": "self", "url": "$made", "dependsOn": ["made"]},
                {"id": "plain", "url": "/text"},
                {"id": "noloc", "url": "$plain/x", "dependsOn": ["plain"]},
            ]}),
            &[],
        )
        .await
        .items();
    assert_eq!(
        item(&items, "sub")["body"]["uri"],
        "/echo/created/7/sub?x=1",
        "only the location's path is used"
    );
    assert_eq!(item(&items, "self")["body"]["uri"], "/echo/created/7");
    let noloc = item(&items, "noloc");
    assert_eq!(noloc["status"], 424);
    assert!(
        noloc["body"]["detail"]
            .as_str()
            .unwrap()
            .contains("location"),
        "{noloc}"
    );
    assert_eq!(calls.get(), 4);
}

#[tokio::test]
async fn a_reference_cannot_reach_the_batch_endpoint() {
    let (http, calls) = start(BatchLayer::new("/batch")).await;
    let items = http
        .batch(
            &json!({"requests": [
                {"id": "a", "method": "POST", "url": "/json", "body": {"p": "batch", "dots": ".."}},
                {"id": "direct", "method": "POST", "url": "/{{a#/body/p}}", "dependsOn": ["a"]},
                {"id": "dots", "method": "POST", "url": "/x/{{a#/body/dots}}/batch", "dependsOn": ["a"]},
                {"id": "slash", "url": "/{{a#/body/p}}/../x", "dependsOn": ["a"]},
            ]}),
            &[],
        )
        .await
        .items();
    // `..` from a reference is refused as a dot segment before any path is made of it.
    for (id, why) in [("direct", "nest"), ("dots", "dot segment")] {
        let it = item(&items, id);
        assert_eq!(it["status"], 424, "{it}");
        assert!(it["body"]["detail"].as_str().unwrap().contains(why), "{it}");
    }
    assert_eq!(
        item(&items, "slash")["status"],
        404,
        "an ordinary path of the service"
    );
    assert_eq!(calls.get(), 2, "the two nested batches were not sent");
}

#[tokio::test]
async fn references_in_headers_that_are_dropped_are_not_read() {
    let (http, _) = start(BatchLayer::new("/batch")).await;
    let items = http
        .batch(
            &json!({"requests": [
                {"id": "a", "url": "/whoami"},
                // Undeclared, and finding nothing: both would refuse or hold back a kept
                // header. An identity header is dropped, so neither matters.
                {"id": "b", "url": "/echo", "dependsOn": ["a"], "headers": {
                    "authorization": "Bearer {{nobody#/token}}",
                    "cookie": "session={{a#/body/no/such/field}}"
                }},
            ]}),
            &[("authorization", "Bearer alice-token")],
        )
        .await
        .items();
    assert_eq!(item(&items, "b")["status"], 200, "{items:#?}");
    let echo = &item(&items, "b")["body"];
    assert_eq!(echo["user"], "alice");
    assert_eq!(
        echo["headers"]["authorization"],
        json!(["Bearer alice-token"])
    );
    assert!(echo["headers"].get("cookie").is_none(), "{echo}");
}
