//! One item of a JSON batch: each field read and checked on its own, every problem
//! collected with the item's index and the field's name.

use super::super::fields::{
    decode_base64, item_problem, parse_item, parse_method_field, string, type_name, Text,
};
use super::super::headers::{decode_headers, HeaderSink};
use super::super::object::repeated_anywhere;
use super::super::url_refs::{decode_url, UrlSyntax};
use super::super::DecodeContext;
use crate::batch::id::{index_id, same_id, ItemId};
use crate::batch::media::{media_kind, MediaKind};
use crate::batch::plan::PlanItem;
use crate::batch::reference::{self, Refs};
use crate::batch::url::UrlContext;
use crate::error::FieldError;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Uri};
use serde::Deserialize;
use serde_json::value::RawValue;

/// An item's fields, unread; its `url` read as text in the same pass (see [`parse`] for
/// when it is kept raw).
#[derive(Deserialize)]
pub(super) struct RawItem<'a, Url = Text<'a>> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a RawValue>,
    url: Option<Url>,
    #[serde(borrow)]
    headers: Option<&'a RawValue>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
    #[serde(borrow, rename = "dependsOn")]
    depends_on: Option<&'a RawValue>,
    /// `depends_on`, as `msgraph-core` (Python) writes it.
    #[serde(borrow, rename = "depends_on")]
    depends_on_snake: Option<&'a RawValue>,
    #[serde(borrow, rename = "atomicityGroup")]
    atomicity_group: Option<&'a RawValue>,
}

impl<'a, Url> RawItem<'a, Url> {
    /// The same fields, with `url` read by `read`.
    fn with_url<Read>(self, read: impl FnOnce(Url) -> Read) -> RawItem<'a, Read> {
        RawItem {
            id: self.id,
            method: self.method,
            url: self.url.map(read),
            headers: self.headers,
            body: self.body,
            depends_on: self.depends_on,
            depends_on_snake: self.depends_on_snake,
            atomicity_group: self.atomicity_group,
        }
    }
}

/// Reads item `raw` on its own (the batch was not read in one pass). An item serde refuses
/// only for what stands at `url` (a number past `f64`, a lone surrogate escape) is read
/// again with its `url` raw, so that the problem is named at `url`, and the item's other
/// fields are checked, as for any other wrong value there.
pub(super) fn parse(raw: &RawValue) -> Result<RawItem<'_>, String> {
    parse_item(raw).or_else(|why| match parse_item::<RawItem<'_, &RawValue>>(raw) {
        Ok(item) => Ok(item.with_url(Text::from_raw)),
        Err(_) => Err(why),
    })
}

/// What the checks across items need of one item. It is kept even when the item is
/// invalid, so that one pass reports every problem.
#[derive(Default)]
pub(super) struct Meta {
    /// `None` when the `id` field is invalid.
    pub(super) id: Option<ItemId>,
    /// The ids (or group names) in `dependsOn`.
    pub(super) depends_on: Vec<String>,
    pub(super) group: Option<String>,
}

/// Reads item `index`: the sub-request goes into `plan` when every field is valid, and
/// each problem into `errors`.
pub(super) fn decode(
    index: usize,
    raw: Result<RawItem<'_>, String>,
    outer: &Bytes,
    cx: &DecodeContext<'_>,
    plan: &mut Vec<PlanItem>,
    errors: &mut Vec<FieldError>,
) -> Meta {
    let before = errors.len();
    let mut err = |field: &str, detail: String| errors.push(FieldError::item(index, field, detail));
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            let (field, detail) = item_problem(e);
            err(&field, detail);
            return Meta::default();
        }
    };
    let id = read_id(raw.id, index, &mut err);
    let method = parse_method_field(raw.method)
        .map_err(|e| err("method", e))
        .ok();
    let mut refs = Refs::default();
    let uri = read_url(raw.url, cx.urls(), outer, &mut refs, &mut err);
    let mut headers = HeaderMap::new();
    if let Some(v) = raw.headers {
        let into = HeaderSink {
            map: &mut headers,
            templates: Some(&mut refs.headers),
            keeps: cx.keeps_header,
        };
        decode_headers(v, false, cx.header_caps(), into, &mut err);
    }
    let depends_on = match (raw.depends_on, raw.depends_on_snake) {
        (Some(_), Some(_)) => {
            err("dependsOn", "give dependsOn or depends_on, not both".into());
            Vec::new()
        }
        (camel, snake) => read_depends_on(camel.or(snake), &mut err),
    };
    let group = read_group(raw.atomicity_group, &mut err);
    let body = read_body(raw.body, outer, &mut headers, &mut refs, &mut err);
    check_reference_ids(&refs, &depends_on, &mut err);
    if let (Some(method), Some(uri), true) = (method, uri, errors.len() == before) {
        // The id is set once the checks across items have passed.
        let mut item = PlanItem::new(ItemId::default(), method, uri, headers, body);
        item.refs = (!refs.is_empty()).then(|| Box::new(refs));
        plan.push(item);
    }
    Meta {
        id,
        depends_on,
        group,
    }
}

/// `id`: a non-empty string, or a number taken as its text; the index when absent.
fn read_id(
    raw: Option<&RawValue>,
    index: usize,
    err: &mut impl FnMut(&str, String),
) -> Option<ItemId> {
    let Some(v) = raw else {
        return Some(index_id(index));
    };
    let text = match v.get().starts_with('"') {
        // A plain string is its text between the quotes.
        true => string(v, "a string").map(|s| s.into_owned()),
        false => serde_json::from_str::<serde_json::Number>(v.get())
            .map(|n| n.to_string())
            .map_err(|_| format!("must be a string, not {}", type_name(v))),
    };
    match text {
        Ok(id) if id.is_empty() => {
            err("id", "must not be empty".into());
            None
        }
        Ok(id) => Some(id.into()),
        Err(e) => {
            err("id", e);
            None
        }
    }
}

fn read_url(
    raw: Option<Text<'_>>,
    ctx: UrlContext<'_>,
    outer: &Bytes,
    refs: &mut Refs,
    err: &mut impl FnMut(&str, String),
) -> Option<Uri> {
    let Some(v) = raw else {
        err("url", "is required".into());
        return None;
    };
    let syntax = UrlSyntax {
        templates: true,
        location: true,
    };
    match v
        .string("a string")
        .and_then(|u| decode_url(&u, ctx, Some(outer), syntax))
    {
        Ok((uri, template)) => {
            // Most URLs have no template: nothing to put in (or to drop from) `refs`.
            if let Some(template) = template {
                refs.url = Some(template);
            }
            Some(uri)
        }
        Err(e) => {
            err("url", e);
            None
        }
    }
}

fn read_depends_on(raw: Option<&RawValue>, err: &mut impl FnMut(&str, String)) -> Vec<String> {
    let Some(v) = raw else {
        return Vec::new();
    };
    serde_json::from_str::<Vec<String>>(v.get()).unwrap_or_else(|_| {
        err(
            "dependsOn",
            format!("must be an array of request ids, not {}", type_name(v)),
        );
        Vec::new()
    })
}

fn read_group(raw: Option<&RawValue>, err: &mut impl FnMut(&str, String)) -> Option<String> {
    let v = raw?;
    match serde_json::from_str::<String>(v.get()) {
        Ok(g) if !g.is_empty() => Some(g),
        Ok(_) => {
            err("atomicityGroup", "must not be empty".into());
            None
        }
        Err(_) => {
            err(
                "atomicityGroup",
                format!("must be a string, not {}", type_name(v)),
            );
            None
        }
    }
}

/// The body's bytes; a JSON body whose strings hold references is also kept as a tree.
fn read_body(
    raw: Option<&RawValue>,
    outer: &Bytes,
    headers: &mut HeaderMap,
    refs: &mut Refs,
    err: &mut impl FnMut(&str, String),
) -> Bytes {
    let Some(v) = raw else {
        return Bytes::new();
    };
    let body = if v.get() == "null" {
        Bytes::new()
    } else {
        decode_body(v, outer, headers).unwrap_or_else(|e| {
            err("body", e);
            Bytes::new()
        })
    };
    if v.get().contains("{{") && media_kind(headers) == Some(MediaKind::Json) {
        match body_template(v) {
            Ok(template) => refs.body = template,
            Err(e) => err("body", e),
        }
    }
    body
}

/// The JSON body as a tree, when one of its strings holds a reference. Such a body is
/// rebuilt when it is sent, so a key given twice in one of its objects, which the tree would
/// keep once, is refused.
fn body_template(raw: &RawValue) -> Result<Option<serde_json::Value>, String> {
    let value: serde_json::Value = serde_json::from_str(raw.get())
        .map_err(|e| format!("cannot be read for its references: {e}"))?;
    if reference::body_ids(&value)?.is_empty() {
        return Ok(None);
    }
    if let Some(key) = repeated_anywhere(raw.get()) {
        return Err(format!(
            "holds the key {key:?} twice in one object; a body with references is rebuilt when it is sent, so each key must be given once"
        ));
    }
    Ok(Some(value))
}

/// Every id a reference names must be in the item's `dependsOn`.
fn check_reference_ids(refs: &Refs, depends_on: &[String], err: &mut impl FnMut(&str, String)) {
    let mut check = |field: &str, id: &str| {
        if !depends_on.iter().any(|d| same_id(d, id)) {
            err(
                field,
                format!("refers to request {id:?}, which is not in this request's dependsOn"),
            );
        }
    };
    if let Some(url) = &refs.url {
        url.location_of.iter().for_each(|id| check("url", id));
        url.rest.references().for_each(|r| check("url", &r.id));
    }
    for (name, t) in &refs.headers {
        t.references()
            .for_each(|r| check(&format!("headers.{name}"), &r.id));
    }
    if let Some(body) = &refs.body {
        for id in reference::body_ids(body).unwrap_or_default() {
            check("body", &id);
        }
    }
}

/// The bytes of a sub-request body, with `content-type` set when the body is JSON and the
/// sub-request named none.
fn decode_body(raw: &RawValue, outer: &Bytes, headers: &mut HeaderMap) -> Result<Bytes, String> {
    let is_string = raw.get().starts_with('"');
    match media_kind(headers) {
        None => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(outer.slice_ref(raw.get().as_bytes()))
        }
        Some(MediaKind::Json) => Ok(outer.slice_ref(raw.get().as_bytes())),
        Some(MediaKind::Text) if is_string => Ok(Bytes::from(
            serde_json::from_str::<String>(raw.get()).map_err(|e| e.to_string())?,
        )),
        Some(MediaKind::Binary) if is_string => {
            let s = serde_json::from_str::<std::borrow::Cow<'_, str>>(raw.get())
                .map_err(|e| e.to_string())?;
            decode_base64(&s)
                .map(Bytes::from)
                .ok_or_else(|| "must be base64 for a binary content-type".to_string())
        }
        Some(_) => Err(format!(
            "must be a string for content-type {:?}, not {}",
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            type_name(raw)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strings_or_numbers_as_written() {
        let read = |json: &str| {
            let raw: &RawValue = serde_json::from_str(json).unwrap();
            let mut errors = Vec::new();
            let id = read_id(Some(raw), 3, &mut |_: &str, e: String| errors.push(e));
            id.map(|id| id.into_owned()).ok_or(errors.join(""))
        };
        assert_eq!(read(r#""a-1""#), Ok("a-1".into()));
        assert_eq!(read(r#""a\u0062""#), Ok("ab".into()));
        assert_eq!(read("7"), Ok("7".into()));
        assert_eq!(read("-1.5"), Ok("-1.5".into()));
        assert_eq!(read(r#""""#), Err("must not be empty".into()));
        assert_eq!(read("{}"), Err("must be a string, not an object".into()));
        assert_eq!(read("null"), Err("must be a string, not null".into()));
        assert_eq!(read_id(None, 3, &mut |_, _| ()), Some("3".into()));
    }
}
