//! Reading sub-request headers from JSON: an object of names to a string (or an array of
//! strings), or (SugarCRM) an array of `"Name: value"` strings. Every header is kept as the
//! client wrote it; `identity` drops those a sub-request may not set when it builds the
//! request.

use super::fields::{string, type_name};
use super::object::{raw_members, ObjectError};
use crate::batch::reference::Template;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Where header values go: into the map, or (with references) into templates.
pub(crate) struct HeaderSink<'a> {
    pub(crate) map: &'a mut HeaderMap,
    /// `None` for a format without references: `{{` in a value is then literal text.
    pub(crate) templates: Option<&'a mut Vec<(HeaderName, Template)>>,
    /// Whether the header is kept (`DecodeContext::keeps_header`): no reference is read in
    /// a header that will be dropped.
    pub(crate) keeps: &'a (dyn Fn(&HeaderName) -> bool + Sync),
}

/// The most header values one sub-request may set, and their bytes (names and values):
/// `HeaderMap` holds at most 32,768 entries and panics beyond, and a batch must not carry
/// more to a handler than a request would.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderCaps {
    pub(crate) count: usize,
    pub(crate) bytes: usize,
}

/// Reads a `headers` field; `lines` also takes an array of `"Name: value"` strings. Each
/// problem goes to `err` with its field (`headers`, `headers.x-name`); past a cap, the
/// rest is not read.
pub(crate) fn decode_headers(
    raw: &RawValue,
    lines: bool,
    caps: HeaderCaps,
    mut into: HeaderSink<'_>,
    err: &mut impl FnMut(&str, String),
) {
    let parsed = if lines && raw.get().starts_with('[') {
        header_lines(raw)
    } else {
        match raw_members(raw) {
            Ok(members) => Ok(members
                .into_iter()
                .map(|(k, v)| (k, HeaderValues::Raw(v)))
                .collect()),
            Err(ObjectError::Repeated(name)) => {
                return err(&format!("headers.{name}"), ObjectError::repeated(&name));
            }
            Err(ObjectError::NotObject(_)) => Err(()),
        }
    };
    let Ok(map) = parsed else {
        let expected = if lines {
            "an object of header names to values, or an array of \"Name: value\" strings"
        } else {
            "an object of header names to values"
        };
        err(
            "headers",
            format!("must be {expected}, not {}", type_name(raw)),
        );
        return;
    };
    if map.len() > caps.count {
        return err("headers", caps.too_many(map.len()));
    }
    let (mut count, mut bytes) = (0usize, 0usize);
    for (name, value) in map {
        let field = format!("headers.{name}");
        let (header_name, values) = match (HeaderName::from_bytes(name.as_bytes()), values(value)) {
            (Err(_), _) => {
                err(&field, "is not a valid HTTP header name".into());
                continue;
            }
            (Ok(_), Err(detail)) => {
                err(&field, detail);
                continue;
            }
            (Ok(header_name), Ok(values)) => (header_name, values),
        };
        count += values.len();
        bytes = values
            .iter()
            .fold(bytes, |b, v| b.saturating_add(name.len() + v.len()));
        if count > caps.count {
            return err("headers", caps.too_many(count));
        }
        if bytes > caps.bytes {
            return err("headers", caps.too_large());
        }
        for v in values {
            into.push(&header_name, v, &mut |detail| err(&field, detail));
        }
    }
}

impl HeaderCaps {
    fn too_many(&self, n: usize) -> String {
        let max = self.count;
        format!("holds {n} or more header values; the limit is {max} (max_item_headers)")
    }

    fn too_large(&self) -> String {
        let max = self.bytes;
        format!("holds more than {max} bytes of header names and values; the limit is {max} (max_item_header_bytes)")
    }
}

impl HeaderSink<'_> {
    /// One value: a template when it holds references (and the format has them), else text.
    fn push(&mut self, name: &HeaderName, value: String, err: &mut impl FnMut(String)) {
        const INVALID: &str = "is not a valid HTTP header value (control characters or CR/LF)";
        let templated = value.contains("{{") && (self.keeps)(name);
        if let Some(templates) = self.templates.as_deref_mut().filter(|_| templated) {
            match Template::parse(&value) {
                Ok(Some(t)) if HeaderValue::try_from(t.with_placeholder("x")).is_ok() => {
                    templates.push((name.clone(), t));
                }
                Ok(_) => err(INVALID.into()),
                Err(e) => err(e),
            }
            return;
        }
        match HeaderValue::try_from(value) {
            // Within the caps, the map has room: `try_append` only guards against a bug.
            Ok(v) => {
                if self.map.try_append(name.clone(), v).is_err() {
                    err("cannot be added: the sub-request has too many headers".into());
                }
            }
            Err(_) => err(INVALID.into()),
        }
    }
}

/// A header's values as written: a JSON value, or (SugarCRM) the text of one line.
enum HeaderValues<'a> {
    Raw(&'a RawValue),
    Line(String),
}

/// A header's values: a string, a number (as its text) or an array of strings.
fn values(value: HeaderValues<'_>) -> Result<Vec<String>, String> {
    const EXPECTED: &str = "must be a string or an array of strings";
    let raw = match value {
        HeaderValues::Line(text) => return Ok(vec![text]),
        HeaderValues::Raw(raw) => raw,
    };
    match type_name(raw) {
        "a string" => string(raw, "a string").map(|s| vec![s.into_owned()]),
        "a number" => serde_json::from_str::<serde_json::Number>(raw.get())
            .map(|n| vec![n.to_string()])
            .map_err(|e| format!("{EXPECTED}, not a number serde_json reads ({e})")),
        "an array" => serde_json::from_str::<Vec<String>>(raw.get())
            .map_err(|_| format!("{EXPECTED}, not an array of non-strings")),
        other => Err(format!("{EXPECTED}, not {other}")),
    }
}

/// `["Name: value", …]` as (name, value) pairs; `Err` when it is not that shape.
fn header_lines(raw: &RawValue) -> Result<Vec<(Cow<'_, str>, HeaderValues<'_>)>, ()> {
    let lines: Vec<String> = serde_json::from_str(raw.get()).map_err(|_| ())?;
    lines
        .into_iter()
        .map(|line| {
            let (name, value) = line.split_once(':').ok_or(())?;
            Ok((
                Cow::Owned(name.trim().to_string()),
                HeaderValues::Line(value.trim().to_string()),
            ))
        })
        .collect()
}
