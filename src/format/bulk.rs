//! The bulk format of SugarCRM's `POST /rest/v10/bulk` (seed 002).
//!
//! Request: `{"requests": [{"url", "method", "data", "headers"}]}`. `url` starts with the
//! API version (`/v10/Accounts`) and resolves under the endpoint's base (`/rest`); `method`
//! defaults to `GET`; `data` is the body as a JSON-encoded string (a JSON object or array is
//! taken too, and sent as its JSON); `headers` is an array of `"Name: value"` strings or an
//! object. The items run in order and a failure does not stop the rest.
//!
//! Reply: a bare array with one `{"contents", "headers", "status"}` per request: `contents`
//! is the parsed JSON when the sub-response is JSON, else its text (base64url when binary,
//! `""` when empty); `headers` is an object, or `[]` when there are none, as SugarCRM's PHP
//! writes an empty associative array.

use super::{
    decode_headers, parse_envelope, parse_item, parse_method_field, request_list, type_name,
    Limits, ReplyWriter,
};
use crate::error::FieldError;
use crate::execute::Outcome;
use crate::plan::{parse_url, Plan, PlanItem, UrlContext};
use bytes::Bytes;
use http::header;
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct RawBulk<'a> {
    #[serde(borrow)]
    requests: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawItem<'a> {
    #[serde(borrow)]
    url: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    headers: Option<&'a RawValue>,
}

/// Decodes a bulk request; `base` is the prefix sub-URLs resolve under (`/rest`).
pub(crate) fn decode(
    bytes: &Bytes,
    limits: &Limits<'_>,
    base: &str,
) -> Result<Plan, Vec<FieldError>> {
    let raw: RawBulk<'_> = parse_envelope(bytes).map_err(|e| vec![e])?;
    let items = request_list(raw.requests, limits.config.max_requests).map_err(|e| vec![e])?;
    let url_ctx = UrlContext {
        batch_paths: limits.url.batch_paths,
        base: "/",
    };
    let mut errors = Vec::new();
    let mut plan = Vec::with_capacity(items.len());
    for (index, raw) in items.into_iter().enumerate() {
        if let Some(item) = decode_item(index, raw, base, url_ctx, limits, &mut errors) {
            plan.push(item);
        }
    }
    if errors.is_empty() {
        Ok(Plan::new(plan, false))
    } else {
        Err(errors)
    }
}

fn decode_item(
    index: usize,
    raw: &RawValue,
    base: &str,
    url_ctx: UrlContext<'_>,
    limits: &Limits<'_>,
    errors: &mut Vec<FieldError>,
) -> Option<PlanItem> {
    let before = errors.len();
    let mut err = |field: &str, detail: String| errors.push(FieldError::item(index, field, detail));
    let item: RawItem<'_> = match parse_item(raw) {
        Ok(item) => item,
        Err(e) => {
            err("requests", e);
            return None;
        }
    };

    let string = |v: &RawValue| {
        serde_json::from_str::<String>(v.get())
            .map_err(|_| format!("must be a string, not {}", type_name(v)))
    };
    let method = parse_method_field(item.method)
        .map_err(|e| err("method", e))
        .ok();

    let uri = match item.url {
        None => {
            err("url", "is required".into());
            None
        }
        Some(v) => match string(v).and_then(|u| {
            if !u.starts_with('/') {
                return Err(format!(
                    "must start with the API version, like \"/v10/Accounts\", not {u:?}"
                ));
            }
            parse_url(&format!("{base}{u}"), url_ctx)
        }) {
            Ok(u) => Some(u),
            Err(e) => {
                err("url", e);
                None
            }
        },
    };
    let mut headers = HeaderMap::new();
    if let Some(v) = item.headers {
        // This format has no references: `{{` in a header is literal text.
        decode_headers(v, true, limits.config, &mut headers, None, &mut err);
    }
    let body = match item.data {
        None => Bytes::new(),
        Some(v) if v.get() == "null" => Bytes::new(),
        Some(v) => match serde_json::from_str::<String>(v.get()) {
            Ok(data) if serde_json::from_str::<serde::de::IgnoredAny>(&data).is_ok() => {
                Bytes::from(data)
            }
            Ok(_) => {
                err(
                    "data",
                    "must be a JSON-encoded string, like \"{\\\"name\\\": \\\"test\\\"}\"".into(),
                );
                Bytes::new()
            }
            Err(_) if v.get().starts_with(['{', '[']) => Bytes::copy_from_slice(v.get().as_bytes()),
            Err(_) => {
                err(
                    "data",
                    format!("must be a JSON-encoded string, not {}", type_name(v)),
                );
                Bytes::new()
            }
        },
    };
    if !body.is_empty() && !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if errors.len() > before {
        return None;
    }
    Some(PlanItem {
        id: index.to_string(),
        method: method?,
        uri: uri?,
        headers,
        body,
        depends_on: Vec::new(),
        refs: None,
    })
}

/// Writes the reply: a bare array of `{"contents", "headers", "status"}`, in chunks.
pub(crate) fn encode(outcomes: &[Outcome]) -> Vec<Bytes> {
    let mut w = ReplyWriter::new(outcomes.iter().map(|o| &o.body), 96);
    w.put(b"[");
    for (i, o) in outcomes.iter().enumerate() {
        if i > 0 {
            w.put(b",");
        }
        w.put(b"{\"contents\":");
        w.body(&o.headers, &o.body, b"\"\"");
        w.put(b",\"headers\":");
        if o.headers.is_empty() {
            w.put(b"[]");
        } else {
            w.headers(&o.headers);
        }
        w.put(b",\"status\":");
        w.put(o.status.as_str().as_bytes());
        if let Some(reason) = &o.body_omitted {
            w.put(b",\"bodyOmitted\":");
            w.str(reason);
        }
        w.put(b"}");
    }
    w.put(b"]");
    w.finish()
}
