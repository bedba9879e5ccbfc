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

use super::fields::{
    item_problem, parse_envelope, parse_item, parse_method_field, request_list, type_name,
};
use super::headers::{decode_headers, HeaderSink};
use super::list::ListReply;
use super::writer::Fit;
use super::{describe, Codec, DecodeContext, DecodeLimits, Decoded, ReplyWriter};
use crate::batch::id::index_id;
use crate::batch::outcome::Outcome;
use crate::batch::plan::{Plan, PlanItem};
use crate::batch::readings::{canonical, is_plain, Readings};
use crate::batch::url::{parse_url, UrlContext};
use crate::error::{FieldError, Problem};
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Uri};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The bulk codec; sub-URLs resolve under `base` (`/rest`).
#[derive(Debug)]
pub(crate) struct BulkCodec {
    base: String,
    /// `base` in [`canonical`] form, for the check that a URL stays under it.
    base_canon: String,
}

impl BulkCodec {
    pub(crate) fn new(base: impl Into<String>) -> Self {
        let base: String = base.into();
        let base_canon = canonical(base.trim_end_matches('/')).unwrap_or_default();
        Self { base, base_canon }
    }
}

impl Codec for BulkCodec {
    fn name(&self) -> &'static str {
        "bulk"
    }

    fn media_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn methods(&self) -> &'static [Method] {
        &[Method::POST]
    }

    fn describe(&self, limits: &DecodeLimits) -> Vec<describe::Operation> {
        describe::bulk(limits)
    }

    fn decode(
        &self,
        _outer: &Parts,
        body: &Bytes,
        cx: &DecodeContext<'_>,
    ) -> Result<Decoded, Problem> {
        let plan = self.decode_plan(body, cx).map_err(Problem::invalid)?;
        let reply = ListReply::new(b"[", b"]", entry, plan.items.len() * 96);
        Ok(Decoded::Run(plan, Box::new(reply)))
    }
}

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

impl BulkCodec {
    fn decode_plan(&self, bytes: &Bytes, cx: &DecodeContext<'_>) -> Result<Plan, Vec<FieldError>> {
        let raw: RawBulk<'_> = parse_envelope(bytes).map_err(|e| vec![e])?;
        let items = request_list(raw.requests, cx.limits.max_requests).map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        let mut plan = Vec::with_capacity(items.len());
        for (index, raw) in items.into_iter().enumerate() {
            if let Some(item) = self.decode_item(index, raw, cx, &mut errors) {
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
        &self,
        index: usize,
        raw: &RawValue,
        cx: &DecodeContext<'_>,
        errors: &mut Vec<FieldError>,
    ) -> Option<PlanItem> {
        let before = errors.len();
        let mut err =
            |field: &str, detail: String| errors.push(FieldError::item(index, field, detail));
        let item: RawItem<'_> = match parse_item(raw) {
            Ok(item) => item,
            Err(e) => {
                let (field, detail) = item_problem(e);
                err(&field, detail);
                return None;
            }
        };
        let method = parse_method_field(item.method)
            .map_err(|e| err("method", e))
            .ok();
        let uri = self
            .read_url(item.url, cx.root_urls())
            .map_err(|e| err("url", e))
            .ok();
        let mut headers = HeaderMap::new();
        if let Some(v) = item.headers {
            // This format has no references: `{{` in a header is literal text.
            let into = HeaderSink {
                map: &mut headers,
                templates: None,
                keeps: &|_| true,
            };
            decode_headers(v, true, cx.header_caps(), into, &mut err);
        }
        let body = read_data(item.data).unwrap_or_else(|e| {
            err("data", e);
            Bytes::new()
        });
        if !body.is_empty() && !headers.contains_key(header::CONTENT_TYPE) {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        if errors.len() > before {
            return None;
        }
        Some(PlanItem::new(index_id(index), method?, uri?, headers, body))
    }

    /// `url`: the API version first (`/v10/Accounts`), resolved under the base, where it
    /// must stay once its dot segments are removed.
    fn read_url(&self, raw: Option<&RawValue>, urls: UrlContext<'_>) -> Result<Uri, String> {
        let v = raw.ok_or("is required")?;
        let url = serde_json::from_str::<String>(v.get())
            .map_err(|_| format!("must be a string, not {}", type_name(v)))?;
        if !url.starts_with('/') {
            return Err(format!(
                "must start with the API version, like \"/v10/Accounts\", not {url:?}"
            ));
        }
        let base = self.base.trim_end_matches('/');
        let uri = parse_url(&format!("{base}{url}"), urls)?;
        let path = uri.path();
        let under = path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'));
        // Also as a server that decodes `%2f` before normalising would read it (a plain
        // path reads as itself).
        let escapes = || !is_plain(path) && !Readings::of(path).both_under(&self.base_canon);
        if !under || escapes() {
            return Err(format!(
                "must stay under {base:?}: {url:?} resolves to {path:?}"
            ));
        }
        Ok(uri)
    }
}

/// `data`: a JSON-encoded string, sent as the JSON it holds; a JSON object or array is
/// taken too.
fn read_data(raw: Option<&RawValue>) -> Result<Bytes, String> {
    let Some(v) = raw.filter(|v| v.get() != "null") else {
        return Ok(Bytes::new());
    };
    match serde_json::from_str::<String>(v.get()) {
        Ok(data) if serde_json::from_str::<serde::de::IgnoredAny>(&data).is_ok() => {
            Ok(Bytes::from(data))
        }
        Ok(_) => Err("must be a JSON-encoded string, like \"{\\\"name\\\": \\\"test\\\"}\"".into()),
        Err(_) if v.get().starts_with(['{', '[']) => Ok(Bytes::copy_from_slice(v.get().as_bytes())),
        Err(_) => Err(format!(
            "must be a JSON-encoded string, not {}",
            type_name(v)
        )),
    }
}

/// One entry of the bare array: `{"contents", "headers", "status"}`, and `bodyOmitted`,
/// `bodyNote` or `headersOmitted` when they apply.
fn entry(_id: &str, o: &Outcome, w: &mut ReplyWriter) {
    w.put(b"{\"contents\":");
    let (omitted, note) = match w.fit(o) {
        Fit::Fits(view) => (None, w.body(view, b"\"\"")),
        Fit::Omitted(why) => {
            w.put(b"\"\"");
            (Some(why), None)
        }
    };
    w.put(b",\"headers\":");
    let headers_omitted = if o.headers.is_empty() {
        w.put(b"[]");
        None
    } else {
        w.headers(&o.headers)
    };
    w.put(b",\"status\":");
    w.put(o.status.as_str().as_bytes());
    w.field(b"bodyOmitted", omitted.as_deref());
    w.field(b"bodyNote", note.as_deref());
    w.field(b"headersOmitted", headers_omitted.as_deref());
    w.put(b"}");
}
