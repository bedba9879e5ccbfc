//! Multipart batches as the tests write and read them: parts, changesets, and a reply read
//! as an OData client reads it (nested changesets included).

use super::Reply;
use serde_json::Value;

/// A request part: MIME headers, then the request.
pub fn request(content_id: Option<&str>, head: &str, body: &str) -> String {
    let id = content_id.map_or(String::new(), |id| format!("Content-ID: {id}\r\n"));
    format!("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n{id}\r\n{head}\r\n\r\n{body}")
}

/// A multipart body of `parts` under `boundary`, as odata-batch-request frames it.
pub fn multipart(boundary: &str, parts: &[String]) -> String {
    let mut body = String::new();
    for p in parts {
        body.push_str(&format!("--{boundary}\r\n{p}\r\n"));
    }
    body.push_str(&format!("--{boundary}--"));
    body
}

pub fn changeset(boundary: &str, parts: &[String]) -> String {
    format!(
        "Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{}",
        multipart(boundary, parts)
    )
}

/// One response of a multipart reply.
#[derive(Debug)]
pub struct Part {
    pub content_id: Option<String>,
    /// Its changeset's position among the changesets, when it is in one.
    pub changeset: Option<usize>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Part {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// The boundary of a `multipart/mixed` content type.
pub fn boundary_of(content_type: &str) -> String {
    let (_, b) = content_type.split_once("boundary=").expect("a boundary");
    assert!(!b.starts_with('"'), "unquoted, as OData's JS parsers need");
    b.to_string()
}

/// The parts between `--boundary` lines, CRLF framed.
pub fn split<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let close = format!("\r\n--{boundary}--\r\n");
    let body = body
        .strip_suffix(&close)
        .unwrap_or_else(|| panic!("closed: {body:?}"));
    let open = format!("--{boundary}\r\n");
    let body = body.strip_prefix(&open).expect("starts with a delimiter");
    body.split(&format!("\r\n--{boundary}\r\n")).collect()
}

/// Reads a reply as an OData client does, nested changesets included.
pub fn parts(reply: &Reply) -> Vec<Part> {
    parts_with(reply, 200)
}

/// [`parts`] of a reply with status `status`.
pub fn parts_with(reply: &Reply, status: u16) -> Vec<Part> {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let ct = reply.headers["content-type"].to_str().unwrap();
    assert!(ct.starts_with("multipart/mixed; boundary="), "{ct}");
    let body = std::str::from_utf8(&reply.body).unwrap();
    let mut out = Vec::new();
    let mut changesets = 0;
    for part in split(body, &boundary_of(ct)) {
        let (head, content) = part.split_once("\r\n\r\n").unwrap();
        if let Some(ct) = head.strip_prefix("Content-Type: multipart/mixed; boundary=") {
            let content = format!("{content}\r\n");
            let inner = split(&content, ct);
            out.extend(inner.into_iter().map(|p| one(p, Some(changesets))));
            changesets += 1;
        } else {
            out.push(one(part, None));
        }
    }
    out
}

pub fn one(part: &str, changeset: Option<usize>) -> Part {
    let (mime, http) = part.split_once("\r\n\r\n").unwrap();
    assert!(
        mime.contains("Content-Type: application/http\r\n"),
        "{mime}"
    );
    let content_id = mime
        .lines()
        .find_map(|l| l.strip_prefix("Content-ID: "))
        .map(str::to_string);
    let (head, body) = http.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()["HTTP/1.1 ".len()..][..3]
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_string(), v.to_string())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|h| h.0 == "Content-Length")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert_eq!(length, body.len(), "Content-Length is the body's");
    Part {
        content_id,
        changeset,
        status,
        headers,
        body: body.to_string(),
    }
}
