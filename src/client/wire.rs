//! The JSON batch on the wire, from the client's side: items into a request body, a reply
//! body into one response per id. Bodies are carried as the server carries them: a JSON
//! value for JSON media types, a string for text, base64 for anything else (either
//! alphabet is read back, as Microsoft Graph writes standard base64).

use super::item::Item;
use crate::batch::media::{MediaKind, MediaType};
use crate::batch::outcome::{decode_base64, encode_base64};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The body of a batch of `items`, `dependsOn` kept only for ids in the batch.
pub(super) fn encode(items: &[&Item]) -> Bytes {
    let within: std::collections::HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let requests: Vec<Value> = items
        .iter()
        .map(|item| request(item, &|id| within.contains(id)))
        .collect();
    let body = serde_json::json!({ "requests": requests });
    // A `Value` always serializes.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

fn request(item: &Item, within: &dyn Fn(&str) -> bool) -> Value {
    let r = &item.request;
    let url = r
        .uri()
        .path_and_query()
        .map_or_else(|| r.uri().to_string(), |p| p.as_str().to_string());
    let mut object = Map::new();
    object.insert("id".into(), item.id.clone().into());
    object.insert("method".into(), r.method().as_str().into());
    object.insert("url".into(), url.into());
    let headers = headers_object(r.headers());
    if !headers.is_empty() {
        object.insert("headers".into(), Value::Object(headers));
    }
    if !r.body().is_empty() {
        object.insert("body".into(), body_value(r.headers(), r.body()));
    }
    let depends: Vec<Value> = item
        .depends_on
        .iter()
        .filter(|d| within(d))
        .map(|d| Value::String(d.clone()))
        .collect();
    if !depends.is_empty() {
        object.insert("dependsOn".into(), Value::Array(depends));
    }
    Value::Object(object)
}

/// Header values as one string each (several values joined by `, `).
fn headers_object(headers: &HeaderMap) -> Map<String, Value> {
    let mut out = Map::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        out.insert(name.as_str().to_string(), values.join(", ").into());
    }
    out
}

fn kind(headers: &HeaderMap) -> Option<MediaKind> {
    let ct = headers.get(header::CONTENT_TYPE)?;
    MediaType::parse(ct.as_bytes()).map(|m| m.kind())
}

/// A body as a JSON document carries it.
fn body_value(headers: &HeaderMap, body: &Bytes) -> Value {
    match kind(headers) {
        Some(MediaKind::Json) => match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(_) => String::from_utf8_lossy(body).into_owned().into(),
        },
        Some(MediaKind::Binary) => encode_base64(body).into(),
        Some(MediaKind::Text) | None => match std::str::from_utf8(body) {
            Ok(text) => text.into(),
            Err(_) => encode_base64(body).into(),
        },
    }
}

/// A reply item, as the JSON batch writes it.
#[derive(Deserialize)]
struct ReplyItem {
    id: String,
    status: u16,
    #[serde(default)]
    headers: HashMap<String, Value>,
    #[serde(default)]
    body: Option<Value>,
}

#[derive(Deserialize)]
struct ReplyDoc {
    responses: Vec<ReplyItem>,
}

/// Each response of a reply, by id (ids compared ignoring case, as the server does).
pub(super) fn decode(body: &[u8]) -> Result<HashMap<String, Response<Bytes>>, String> {
    let doc: ReplyDoc = serde_json::from_slice(body)
        .map_err(|e| format!("the batch reply is not a JSON batch reply: {e}"))?;
    let mut out = HashMap::with_capacity(doc.responses.len());
    for item in doc.responses {
        let status = StatusCode::from_u16(item.status)
            .map_err(|_| format!("item {:?} has status {}", item.id, item.status))?;
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = status;
        for (name, value) in &item.headers {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let name = HeaderName::try_from(name.as_str());
            if let (Ok(name), Ok(value)) = (name, HeaderValue::try_from(text)) {
                response.headers_mut().append(name, value);
            }
        }
        *response.body_mut() = body_bytes(response.headers(), item.body);
        out.insert(item.id.to_ascii_lowercase(), response);
    }
    Ok(out)
}

/// A reply item's body back to bytes.
fn body_bytes(headers: &HeaderMap, body: Option<Value>) -> Bytes {
    let Some(body) = body else {
        return Bytes::new();
    };
    match (kind(headers), body) {
        (Some(MediaKind::Json), value) => Bytes::from(value.to_string()),
        (Some(MediaKind::Binary), Value::String(s)) => {
            decode_base64(&s).map_or_else(|| Bytes::from(s), Bytes::from)
        }
        (_, Value::String(s)) => Bytes::from(s),
        (_, Value::Null) => Bytes::new(),
        (_, value) => Bytes::from(value.to_string()),
    }
}
