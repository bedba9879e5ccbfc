//! A multipart batch written by an attacker: every malformed body gets one `400`
//! problem naming the request and field, and nothing of it runs; a body cannot forge
//! parts of the reply.

mod common;

use common::{start, Http, Reply};
use serde_json::Value;
use tower_http_batch::BatchLayer;

fn part(head: &str, body: &str) -> String {
    format!("Content-Type: application/http\r\n\r\n{head}\r\n\r\n{body}")
}

fn multipart(parts: &[String]) -> String {
    let mut body: String = parts.iter().map(|p| format!("--b\r\n{p}\r\n")).collect();
    body.push_str("--b--\r\n");
    body
}

async fn send(http: &Http, content_type: &str, body: &str) -> Reply {
    let headers = [("content-type", content_type)];
    http.send("POST", "/batch", &headers, body.to_string())
        .await
}

/// Sends `body` and expects `400` naming `index` (or the batch) and `field`; nothing ran.
async fn refused(body: &str, index: Option<usize>, field: &str) -> Value {
    let (http, calls) = start(BatchLayer::new("/batch").max_requests(5)).await;
    let p = send(&http, "multipart/mixed; boundary=b", body)
        .await
        .problem(400);
    let named = |e: &Value| e["index"].as_u64().map(|i| i as usize) == index && e["field"] == field;
    assert!(p["errors"].as_array().unwrap().iter().any(named), "{p}");
    assert_eq!(calls.get(), 0, "nothing runs");
    p
}

#[tokio::test]
async fn the_boundary_must_be_given_and_valid() {
    let (http, _) = start(BatchLayer::new("/batch")).await;
    let body = multipart(&[part("GET /echo HTTP/1.1", "")]);
    for ct in [
        "multipart/mixed",
        "multipart/mixed; boundary=",
        "multipart/mixed; boundary=\"b",
        "multipart/mixed; boundary=a\\b",
    ] {
        let p = send(&http, ct, &body).await.problem(400);
        assert_eq!(p["errors"][0]["field"], "content-type", "{ct}: {p}");
    }
}

#[tokio::test]
async fn framing_that_does_not_close_or_has_no_parts() {
    let one = part("GET /echo HTTP/1.1", "");
    let p = refused(&format!("--b\r\n{one}\r\n"), None, "body").await;
    assert!(p["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("not closed"));
    refused("--b--\r\n", None, "body").await;
    refused("no delimiter at all", None, "body").await;
    // Repeated delimiters make empty parts, which hold no request.
    refused(&format!("--b\r\n--b\r\n{one}\r\n--b--"), Some(0), "part").await;
}

#[tokio::test]
async fn the_boundary_inside_a_body() {
    // At a line start it ends the part: what follows is no request.
    let forged = part(
        "POST /echo HTTP/1.1",
        "x\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi",
    );
    refused(&multipart(&[forged]), Some(1), "part").await;
    // Anywhere else it is text.
    let (http, _) = start(BatchLayer::new("/batch")).await;
    let inline = part("POST /echo HTTP/1.1\r\nContent-Type: text/plain", "a --b c");
    let reply = send(&http, "multipart/mixed; boundary=b", &multipart(&[inline])).await;
    assert_eq!(reply.status, 200);
    assert!(String::from_utf8_lossy(&reply.body).contains(r#""body":"a --b c""#));
}

#[tokio::test]
async fn parts_must_be_http_requests() {
    let text = "Content-Type: text/plain\r\n\r\nGET /echo HTTP/1.1\r\n\r\n".to_string();
    refused(
        &multipart(&[part("GET /echo HTTP/1.1", ""), text]),
        Some(1),
        "part",
    )
    .await;
    let untyped = "\r\nGET /echo HTTP/1.1\r\n\r\n".to_string();
    refused(&multipart(&[untyped]), Some(0), "part").await;
    // A request line of one word is no request (one of two, `GET /echo`, is read as
    // HTTP/1.1, as Google's batch clients write it).
    refused(&multipart(&[part("GET", "")]), Some(0), "request").await;
    refused(
        &multipart(&[part("CONNECT /echo HTTP/1.1", "")]),
        Some(0),
        "method",
    )
    .await;
    refused(
        &multipart(&[part("POST /batch HTTP/1.1", "")]),
        Some(0),
        "url",
    )
    .await;
    refused(
        &multipart(&[part("GET http://evil.example/x HTTP/1.1", "")]),
        Some(0),
        "url",
    )
    .await;
    let base64 = "Content-Type: application/http\r\nContent-Transfer-Encoding: base64\r\n\r\nR0VUIC8gSFRUUC8xLjENCg0K".to_string();
    refused(&multipart(&[base64]), Some(0), "Content-Transfer-Encoding").await;
}

#[tokio::test]
async fn changesets_do_not_nest() {
    let inner = format!(
        "Content-Type: multipart/mixed; boundary=c2\r\n\r\n--c2\r\n{}\r\n--c2--",
        part("GET /echo HTTP/1.1", "")
    );
    let outer =
        format!("Content-Type: multipart/mixed; boundary=c1\r\n\r\n--c1\r\n{inner}\r\n--c1--");
    let p = refused(&multipart(&[outer]), Some(0), "part").await;
    assert!(p.to_string().contains("changesets do not nest"), "{p}");
}

#[tokio::test]
async fn lengths_that_lie() {
    let huge = part("PUT /echo HTTP/1.1\r\nContent-Length: 1000000", "short");
    refused(&multipart(&[huge]), Some(0), "body").await;
    let overflow = part(
        "PUT /echo HTTP/1.1\r\nContent-Length: 99999999999999999999999",
        "x",
    );
    refused(&multipart(&[overflow]), Some(0), "headers").await;
    let short = part("PUT /echo HTTP/1.1\r\nContent-Length: 1", "smuggled");
    refused(&multipart(&[short]), Some(0), "body").await;
    let two = part(
        "PUT /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1",
        "x",
    );
    refused(&multipart(&[two]), Some(0), "headers").await;
    let chunked = part(
        "PUT /echo HTTP/1.1\r\nTransfer-Encoding: chunked",
        "1\r\nx\r\n0\r\n\r\n",
    );
    refused(&multipart(&[chunked]), Some(0), "headers").await;
}

#[tokio::test]
async fn header_floods() {
    let many: String = (0..101).map(|i| format!("\r\nX-{i}: v")).collect();
    refused(
        &multipart(&[part(&format!("GET /echo HTTP/1.1{many}"), "")]),
        Some(0),
        "headers",
    )
    .await;
    let big = format!("GET /echo HTTP/1.1\r\nX-Big: {}", "v".repeat(17 * 1024));
    refused(&multipart(&[part(&big, "")]), Some(0), "headers").await;
    let mime: String = (0..17).map(|i| format!("X-{i}: v\r\n")).collect();
    let flood = format!("{mime}Content-Type: application/http\r\n\r\nGET /echo HTTP/1.1\r\n\r\n");
    refused(&multipart(&[flood]), Some(0), "part").await;
}

#[tokio::test]
async fn counts_and_ids() {
    let one = part("GET /echo HTTP/1.1", "");
    // `max_requests(5)`: six plain parts, or five with a changeset of two.
    refused(&multipart(&vec![one.clone(); 6]), None, "body").await;
    let set = format!(
        "Content-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n{one}\r\n--c\r\n{one}\r\n--c--"
    );
    let mut parts = vec![one.clone(); 4];
    parts.push(set);
    refused(&multipart(&parts), None, "body").await;
    // The changeset first: the parts after it still count.
    parts.rotate_right(1);
    refused(&multipart(&parts), None, "body").await;
    let id = |id: &str| format!("Content-ID: {id}\r\n{one}");
    refused(&multipart(&[id("A"), id("a")]), Some(1), "Content-ID").await;
}

#[tokio::test]
async fn a_body_cannot_forge_reply_parts() {
    let (http, _) = start(BatchLayer::new("/batch")).await;
    let forged =
        "\r\n--batchresponse_0\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
    let echo = part("POST /json HTTP/1.1\r\nContent-Type: text/plain", forged);
    let body = format!("--q9\r\n{echo}\r\n--q9--");
    let reply = send(&http, "multipart/mixed; boundary=q9", &body).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let ct = reply.headers["content-type"].to_str().unwrap().to_string();
    let boundary = ct.split_once("boundary=").unwrap().1;
    assert_eq!(boundary.len(), "batchresponse_".len() + 32, "{ct}");
    let text = String::from_utf8_lossy(&reply.body);
    assert_eq!(
        text.matches(&format!("--{boundary}")).count(),
        2,
        "one part and the close"
    );
}

#[tokio::test]
async fn bodies_past_the_reply_limit_are_left_out() {
    let (http, _) = start(BatchLayer::new("/batch").max_response_bytes(600)).await;
    let big = part("GET /big?n=5000 HTTP/1.1", "");
    let reply = send(&http, "multipart/mixed; boundary=b", &multipart(&[big])).await;
    let text = String::from_utf8_lossy(&reply.body);
    assert!(text.contains("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("X-Batch-Body-Omitted: "), "{text}");
    assert!(text.contains("Content-Length: 0\r\n"), "{text}");
    assert!(reply.body.len() < 1000);
}
