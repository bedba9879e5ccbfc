//! The JSON batch on the wire, from the client's side: items into a request body, a reply
//! body into one response per id. Bodies are carried as the server reads them: JSON as it
//! is (never re-serialized, so numbers and key order stay), text as a string, anything
//! else as base64; a body the server could not take (no content type and not JSON, or
//! invalid JSON under a JSON type) is refused before anything is sent. Replies are read
//! the same way back: either base64 alphabet (Microsoft Graph writes the standard one), a
//! repeated header as an array, `bodyOmitted` as an `X-Batch-Body-Omitted` header.

use super::item::Item;
use crate::batch::media::{MediaKind, MediaType};
use crate::batch::outcome::{decode_base64, encode_base64};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// A request's body as the batch carries it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum WireBody {
    Json(Box<RawValue>),
    Text(String),
}

/// Each item's body, checked: `Err` names the item whose body no server could take.
pub(super) fn bodies(items: &[Item]) -> Result<Vec<Option<WireBody>>, String> {
    let body = |item: &Item| -> Result<Option<WireBody>, String> {
        let (headers, bytes) = (item.request.headers(), item.request.body());
        if bytes.is_empty() {
            return Ok(None);
        }
        let json = || serde_json::from_slice::<Box<RawValue>>(bytes).ok();
        let body = match kind(headers) {
            None => json()
                .map(WireBody::Json)
                .ok_or("has a body and no content-type (only a JSON body may go without one)"),
            Some(MediaKind::Json) => json()
                .map(WireBody::Json)
                .ok_or("has a JSON content-type and a body that is not JSON"),
            Some(MediaKind::Text) => std::str::from_utf8(bytes)
                .map(|t| WireBody::Text(t.to_string()))
                .map_err(|_| "has a text content-type and a body that is not UTF-8"),
            Some(MediaKind::Binary) => Ok(WireBody::Text(encode_base64(bytes))),
        };
        body.map(Some).map_err(|why| format!("{:?} {why}", item.id))
    };
    items.iter().map(body).collect()
}

#[derive(Serialize)]
struct WireItem<'a> {
    id: &'a str,
    method: &'a str,
    url: &'a str,
    #[serde(skip_serializing_if = "Map::is_empty")]
    headers: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a WireBody>,
    #[serde(rename = "dependsOn", skip_serializing_if = "Vec::is_empty")]
    depends_on: Vec<&'a str>,
}

/// The body of the batch request of items `group`: each item's `dependsOn` names the
/// items of `deps` in the group, by their ids as given.
pub(super) fn encode(
    items: &[Item],
    bodies: &[Option<WireBody>],
    deps: &[Vec<usize>],
    group: &[usize],
) -> Bytes {
    let requests: Vec<WireItem<'_>> = group
        .iter()
        .map(|&i| {
            let r = &items[i].request;
            let url = r.uri().path_and_query().map_or("/", |p| p.as_str());
            let depends_on = deps[i].iter().filter(|d| group.contains(d));
            WireItem {
                id: &items[i].id,
                method: r.method().as_str(),
                url,
                headers: headers_object(r.headers()),
                body: bodies[i].as_ref(),
                depends_on: depends_on.map(|&d| items[d].id.as_str()).collect(),
            }
        })
        .collect();
    #[derive(Serialize)]
    struct Doc<'a> {
        requests: Vec<WireItem<'a>>,
    }
    // Strings, numbers and valid raw JSON always serialize; raw bodies go as they are.
    Bytes::from(serde_json::to_vec(&Doc { requests }).unwrap_or_default())
}

/// Header values as one string each (several values joined by `, `); values that are
/// not text cannot be carried in JSON and are left out.
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

/// A reply item, as the JSON batch writes it.
#[derive(Deserialize)]
struct ReplyItem {
    id: Value,
    status: u16,
    #[serde(default)]
    headers: HashMap<String, Value>,
    #[serde(default)]
    body: Option<Box<RawValue>>,
    #[serde(default, rename = "bodyOmitted")]
    body_omitted: Option<String>,
    #[serde(default, rename = "bodyNote")]
    body_note: Option<String>,
}

#[derive(Deserialize)]
struct ReplyDoc {
    responses: Vec<ReplyItem>,
}

/// Each response of a reply, by id in lower case (ids ignore case, as the server's do).
pub(super) fn decode(body: &[u8]) -> Result<HashMap<String, Response<Bytes>>, String> {
    let doc: ReplyDoc = serde_json::from_slice(body)
        .map_err(|e| format!("the batch reply is not a JSON batch reply: {e}"))?;
    let mut out = HashMap::with_capacity(doc.responses.len());
    for item in doc.responses {
        let id = match &item.id {
            Value::String(s) => s.to_ascii_lowercase(),
            other => other.to_string(),
        };
        let status = StatusCode::from_u16(item.status)
            .map_err(|_| format!("item {id:?} has status {}", item.status))?;
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = status;
        for (name, value) in &item.headers {
            add_header(response.headers_mut(), name, value);
        }
        if let Some(why) = &item.body_omitted {
            add_header(
                response.headers_mut(),
                "x-batch-body-omitted",
                &Value::from(why.as_str()),
            );
        }
        let text = item.body_note.is_some();
        *response.body_mut() = body_bytes(response.headers(), item.body, text);
        out.insert(id, response);
    }
    Ok(out)
}

/// One reply header: a string or a number, or an array of them (a repeated header).
fn add_header(headers: &mut HeaderMap, name: &str, value: &Value) {
    let Ok(name) = HeaderName::try_from(name) else {
        return;
    };
    let values = match value {
        Value::Array(values) => values.iter().collect(),
        one => vec![one],
    };
    for value in values {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let Ok(value) = HeaderValue::try_from(text) {
            headers.append(name.clone(), value);
        }
    }
}

/// A reply item's body back to bytes. `text`: the server noted that the body is carried
/// as a string (declared JSON that was not strict JSON).
fn body_bytes(headers: &HeaderMap, body: Option<Box<RawValue>>, text: bool) -> Bytes {
    let Some(raw) = body else {
        return Bytes::new();
    };
    let string = || serde_json::from_str::<String>(raw.get()).ok();
    match (kind(headers), raw.get()) {
        // Graph writes `"body": null` for no body.
        (_, "null") => Bytes::new(),
        (Some(MediaKind::Json), json) if !text => Bytes::copy_from_slice(json.as_bytes()),
        (Some(MediaKind::Binary), _) => match string() {
            Some(s) => decode_base64(&s).map_or_else(|| Bytes::from(s), Bytes::from),
            None => Bytes::copy_from_slice(raw.get().as_bytes()),
        },
        (_, json) => string().map_or_else(|| Bytes::copy_from_slice(json.as_bytes()), Bytes::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn item(id: &str, ct: Option<&str>, body: &'static [u8]) -> Item {
        let mut r = Request::post("/x");
        if let Some(ct) = ct {
            r = r.header(header::CONTENT_TYPE, ct);
        }
        Item::new(r.body(Bytes::from_static(body)).unwrap()).id(id)
    }

    #[test]
    fn bodies_go_as_the_server_reads_them() {
        let items = [
            item(
                "a",
                Some("application/json"),
                br#"{"n": 123456789012345678901234567890, "b": 1}"#,
            ),
            item("b", Some("text/plain"), b"hello"),
            item("c", Some("image/png"), b"\x89PNG"),
            item("d", None, b"[1,2]"),
        ];
        let bodies = bodies(&items).unwrap();
        let deps = vec![vec![], vec![0], vec![], vec![]];
        let wire = encode(&items, &bodies, &deps, &[0, 1, 2, 3]);
        let text = std::str::from_utf8(&wire).unwrap();
        assert!(
            text.contains(r#""body":{"n": 123456789012345678901234567890, "b": 1}"#),
            "{text}"
        );
        assert!(
            text.contains(r#""body":"hello""#) && text.contains(r#""body":"iVBORw""#),
            "{text}"
        );
        assert!(
            text.contains(r#""dependsOn":["a"]"#) && text.contains(r#""body":[1,2]"#),
            "{text}"
        );
        for (ct, body) in [
            (None, &b"hello"[..]),
            (Some("application/json"), b"{"),
            (Some("text/plain"), b"\xff"),
        ] {
            let mut one = item("x", ct, b"");
            *one.request.body_mut() = Bytes::copy_from_slice(body);
            assert!(super::bodies(&[one]).is_err(), "{ct:?} {body:?}");
        }
    }

    #[test]
    fn replies_are_read_back_whole() {
        let reply = br#"{"responses": [
            {"id": "A", "status": 200, "headers": {"Content-Type": "application/json", "Set-Cookie": ["a=1", "b=2"], "X-N": 5},
             "body": {"n": 123456789012345678901234567890}},
            {"id": 2, "status": 200, "headers": {"content-type": "application/octet-stream"}, "body": "iVBORw=="},
            {"id": "c", "status": 204, "headers": {"content-type": "application/json"}, "body": null},
            {"id": "d", "status": 200, "headers": {"Content-Type": "application/json"}, "body": "{nope", "bodyNote": "not strict"},
            {"id": "e", "status": 200, "headers": {"Content-Type": "text/plain"}, "bodyOmitted": "too big"}
        ]}"#;
        let by_id = decode(reply).unwrap();
        let a = &by_id["a"];
        assert_eq!(&a.body()[..], br#"{"n": 123456789012345678901234567890}"#);
        let cookies: Vec<_> = a.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(a.headers()["x-n"], "5");
        assert_eq!(&by_id["2"].body()[..], b"\x89PNG");
        assert!(by_id["c"].body().is_empty());
        assert_eq!(&by_id["d"].body()[..], b"{nope");
        assert_eq!(by_id["e"].headers()["x-batch-body-omitted"], "too big");
    }
}
