//! Wire formats. A codec decodes the outer body into a [`Plan`](crate::plan::Plan) (a
//! pure function over bytes and limits) and encodes the engine's outcomes into one reply.
//! Codecs know nothing about execution; the engine knows nothing about formats.

pub(crate) mod bulk;
pub(crate) mod json;
pub(crate) mod resource;

use crate::error::FieldError;
use crate::identity::keep_sub_header;
use crate::layer::Config;
use crate::plan::UrlContext;
use crate::reference::Template;
use base64::Engine as _;
use bytes::Bytes;
use bytes::{BufMut, BytesMut};
use http::header::HeaderName;
use http::{header, HeaderMap, HeaderValue};
use serde_json::value::RawValue;

/// How a body is carried inside a JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaKind {
    /// `application/json` and `application/*+json`: embedded as a JSON value.
    Json,
    /// Text (`text/*`, XML, form data, JavaScript): embedded as a JSON string.
    Text,
    /// Anything else: a base64url string.
    Binary,
}

/// The kind of the body described by `headers`' `content-type`; `None` without one.
pub(crate) fn media_kind(headers: &HeaderMap) -> Option<MediaKind> {
    let ct = headers.get(header::CONTENT_TYPE)?.as_bytes();
    // The common case, spelled as frameworks write it.
    if ct == b"application/json" {
        return Some(MediaKind::Json);
    }
    let ct = std::str::from_utf8(ct).ok()?;
    let essence = ct.split(';').next().unwrap_or("").trim();
    let (top, sub) = essence.split_once('/').unwrap_or((essence, ""));
    let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    // On bytes: a suffix of a UTF-8 string need not start on a character boundary.
    let ends = |s: &str, suffix: &str| {
        s.len() >= suffix.len()
            && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    const TEXT_APPLICATIONS: [&str; 5] = [
        "xml",
        "javascript",
        "ecmascript",
        "x-www-form-urlencoded",
        "graphql",
    ];
    let text_application = is(top, "application") && TEXT_APPLICATIONS.iter().any(|t| is(sub, t));
    Some(
        if is(top, "application") && is(sub, "json") || ends(sub, "+json") {
            MediaKind::Json
        } else if is(top, "text") || ends(sub, "+xml") || text_application {
            MediaKind::Text
        } else {
            MediaKind::Binary
        },
    )
}

/// Decodes a base64 body in any common alphabet, padded or not.
pub(crate) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = s.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD_NO_PAD.decode(trimmed))
        .ok()
}

/// How a sub-response body goes into a JSON reply.
pub(crate) enum EncodedBody<'a> {
    /// No body.
    Empty,
    /// Valid JSON, embedded as is.
    Json(&'a [u8]),
    /// Text, to embed as a JSON string.
    Text(&'a str),
    /// Bytes, to embed as a base64url string.
    Binary(&'a [u8]),
}

/// Chooses how to carry a sub-response body: a JSON value for JSON media types (when it
/// is valid JSON), a string for text (and for valid UTF-8 without a content type), base64url
/// for anything else.
pub(crate) fn classify_body<'a>(headers: &HeaderMap, body: &'a Bytes) -> EncodedBody<'a> {
    if body.is_empty() {
        return EncodedBody::Empty;
    }
    let kind = media_kind(headers);
    if kind == Some(MediaKind::Json) && is_valid_json(body) {
        return EncodedBody::Json(body);
    }
    if kind != Some(MediaKind::Binary) {
        if let Ok(text) = std::str::from_utf8(body) {
            return EncodedBody::Text(text);
        }
    }
    EncodedBody::Binary(body)
}

fn is_valid_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// Base64url without padding, as OData writes binary bodies.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Why an atomic batch is refused when the layer has no transaction hook.
pub(crate) const NO_HOOK: &str =
    "atomic batches need a transaction hook, and this server has none (BatchLayer::transactions)";

/// What decoding needs besides the bytes.
pub(crate) struct Limits<'a> {
    pub(crate) config: &'a Config,
    pub(crate) url: UrlContext<'a>,
}

impl<'a> Limits<'a> {
    /// The layer's limits, with relative sub-request URLs resolved against `base`.
    pub(crate) fn new(config: &'a Config, base: &'a str) -> Self {
        Self {
            config,
            url: UrlContext {
                batch_paths: &config.canonical_paths,
                base,
            },
        }
    }
}

/// Reads sub-request headers: an object of names to a string (or an array of strings),
/// or with `lines` also an array of `"Name: value"` strings (SugarCRM's form). Identity,
/// client-address and framing headers are dropped here (see `identity`). With
/// `templates`, values holding references become templates; without (a format that has
/// no references), every value is literal text.
pub(crate) fn decode_headers(
    raw: &RawValue,
    lines: bool,
    config: &Config,
    out: &mut HeaderMap,
    mut templates: Option<&mut Vec<(HeaderName, Template)>>,
    err: &mut impl FnMut(&str, String),
) {
    let parsed = if lines && raw.get().starts_with('[') {
        header_lines(raw)
    } else {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw.get())
            .map(|m| m.into_iter().collect())
            .map_err(|_| ())
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
    for (name, value) in map {
        let field = format!("headers.{name}");
        let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else {
            err(&field, "is not a valid HTTP header name".into());
            continue;
        };
        let values: Vec<String> = match value {
            serde_json::Value::String(s) => vec![s],
            serde_json::Value::Number(n) => vec![n.to_string()],
            serde_json::Value::Array(a) if a.iter().all(|v| v.is_string()) => a
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            other => {
                err(
                    &field,
                    format!(
                        "must be a string or an array of strings, not {}",
                        value_type(&other)
                    ),
                );
                continue;
            }
        };
        let keep = keep_sub_header(&header_name, config);
        for v in values {
            if let Some(templates) = templates
                .as_deref_mut()
                .filter(|_| keep && v.contains("{{"))
            {
                match Template::parse(&v) {
                    Ok(Some(t)) if HeaderValue::try_from(t.with_placeholder("x")).is_ok() => {
                        templates.push((header_name.clone(), t));
                    }
                    Ok(_) => err(
                        &field,
                        "is not a valid HTTP header value (control characters or CR/LF)".into(),
                    ),
                    Err(e) => err(&field, e),
                }
                continue;
            }
            match HeaderValue::try_from(v) {
                Ok(v) if keep => {
                    out.append(header_name.clone(), v);
                }
                Ok(_) => {
                    tracing::debug!(header = %header_name, "dropped a header written inside a sub-request")
                }
                Err(_) => err(
                    &field,
                    "is not a valid HTTP header value (control characters or CR/LF)".into(),
                ),
            }
        }
    }
}

fn value_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Object(_) => "an object",
        serde_json::Value::Array(_) => "an array of non-strings",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Null => "null",
        _ => "a number",
    }
}

/// `["Name: value", …]` as (name, value) pairs; `Err` when it is not that shape.
fn header_lines(raw: &RawValue) -> Result<Vec<(String, serde_json::Value)>, ()> {
    let lines: Vec<String> = serde_json::from_str(raw.get()).map_err(|_| ())?;
    lines
        .into_iter()
        .map(|line| {
            let (name, value) = line.split_once(':').ok_or(())?;
            Ok((
                name.trim().to_string(),
                serde_json::Value::String(value.trim().to_string()),
            ))
        })
        .collect()
}

/// A JSON value's type, for messages.
pub(crate) fn type_name(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Bodies at least this long go into a reply by reference, not copied.
const REFERENCE_AT: usize = 2048;

/// A reply being written: the framing goes into one buffer, and a large body that goes in
/// as it is (JSON) is referenced, not copied. The result is a list of chunks.
pub(crate) struct ReplyWriter {
    w: bytes::buf::Writer<BytesMut>,
    chunks: Vec<Bytes>,
}

impl ReplyWriter {
    /// A writer for a reply with these bodies: room for the framing and the small ones.
    pub(crate) fn new<'a>(bodies: impl Iterator<Item = &'a Bytes>, per_item: usize) -> Self {
        let framing: usize = bodies.map(|b| per_item + b.len().min(REFERENCE_AT)).sum();
        Self {
            w: BytesMut::with_capacity(framing + 16).writer(),
            chunks: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        self.w.get_mut().put_slice(bytes);
    }

    /// `s` as a JSON string.
    #[inline]
    pub(crate) fn str(&mut self, s: &str) {
        write_str(&mut self.w, s);
    }

    /// Header names to values.
    pub(crate) fn headers(&mut self, headers: &HeaderMap) {
        write_headers(&mut self.w, headers);
    }

    /// `json`, valid JSON, as it is.
    pub(crate) fn raw(&mut self, json: &Bytes) {
        if json.len() < REFERENCE_AT {
            return self.put(json);
        }
        let framing = self.w.get_mut().split().freeze();
        self.chunks.push(framing);
        self.chunks.push(json.clone());
    }

    /// A body as `classify_body` sees it: JSON as is, text as a string, bytes in base64url.
    pub(crate) fn body(&mut self, headers: &HeaderMap, body: &Bytes, empty: &[u8]) {
        match classify_body(headers, body) {
            EncodedBody::Empty => self.put(empty),
            EncodedBody::Json(_) => self.raw(body),
            EncodedBody::Text(text) => self.str(text),
            EncodedBody::Binary(bytes) => self.str(&encode_base64(bytes)),
        }
    }

    pub(crate) fn finish(mut self) -> Vec<Bytes> {
        let rest = self.w.into_inner().freeze();
        self.chunks.push(rest);
        self.chunks
    }
}

/// Writes `s` as a JSON string.
pub(crate) fn write_str(w: &mut bytes::buf::Writer<BytesMut>, s: &str) {
    // Most strings (ids, header names and values) need no escape: copy them as they are.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        let buf = w.get_mut();
        buf.reserve(s.len() + 2);
        buf.put_u8(b'"');
        buf.put_slice(s.as_bytes());
        buf.put_u8(b'"');
        return;
    }
    // Writing a string into memory cannot fail.
    let _ = serde_json::to_writer(w, s);
}

/// Header names to values; a header with several values (`set-cookie`) gets an array.
pub(crate) fn write_headers(w: &mut bytes::buf::Writer<BytesMut>, headers: &HeaderMap) {
    let value = |w: &mut bytes::buf::Writer<BytesMut>, v: &HeaderValue| match v.to_str() {
        Ok(text) => write_str(w, text),
        Err(_) => write_str(w, &String::from_utf8_lossy(v.as_bytes())),
    };
    w.get_mut().put_u8(b'{');
    // `HeaderMap::iter` yields the values of one name one after another.
    let mut iter = headers.iter().peekable();
    let mut first = true;
    while let Some((name, v)) = iter.next() {
        if !first {
            w.get_mut().put_u8(b',');
        }
        first = false;
        write_str(w, name.as_str());
        w.get_mut().put_u8(b':');
        if iter.peek().is_some_and(|(next, _)| *next == name) {
            w.get_mut().put_u8(b'[');
            value(w, v);
            while let Some((_, v)) = iter.next_if(|(next, _)| *next == name) {
                w.get_mut().put_u8(b',');
                value(w, v);
            }
            w.get_mut().put_u8(b']');
        } else {
            value(w, v);
        }
    }
    w.get_mut().put_u8(b'}');
}

/// Parses the outer body's envelope; a body that is not JSON, or not of the envelope's
/// shape, is one problem at field `body`.
pub(crate) fn parse_envelope<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
) -> Result<T, FieldError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| FieldError::batch("body", format!("is not UTF-8 text: {e}")))?;
    serde_json::from_str(text).map_err(|e| {
        let detail = if e.is_data() {
            format!("must be a JSON object with a `requests` array ({e})")
        } else {
            format!("is not valid JSON: {e}")
        };
        FieldError::batch("body", detail)
    })
}

/// The `requests` array: present, an array, not empty, and within the limit.
pub(crate) fn request_list(
    requests: Option<&RawValue>,
    max: usize,
) -> Result<Vec<&RawValue>, FieldError> {
    let requests = requests
        .ok_or_else(|| FieldError::batch("requests", "is required: an array of sub-requests"))?;
    let items = serde_json::from_str::<Vec<&RawValue>>(requests.get()).map_err(|_| {
        FieldError::batch(
            "requests",
            format!("must be an array, not {}", type_name(requests)),
        )
    })?;
    if items.is_empty() {
        return Err(FieldError::batch(
            "requests",
            "must hold at least one sub-request",
        ));
    }
    if items.len() > max {
        return Err(FieldError::batch(
            "requests",
            format!("holds {} sub-requests; the limit is {max}", items.len()),
        ));
    }
    Ok(items)
}

/// One item of `requests` as the codec's item struct; the message when it is not one.
pub(crate) fn parse_item<'a, T: serde::Deserialize<'a>>(raw: &'a RawValue) -> Result<T, String> {
    serde_json::from_str(raw.get()).map_err(|e| {
        if raw.get().starts_with('{') {
            e.to_string()
        } else {
            format!("must be an object, not {}", type_name(raw))
        }
    })
}

/// A sub-request's `method`: `GET` when absent.
pub(crate) fn parse_method_field(raw: Option<&RawValue>) -> Result<http::Method, String> {
    match raw {
        None => Ok(http::Method::GET),
        Some(v) => {
            let s: std::borrow::Cow<'_, str> = serde_json::from_str(v.get())
                .map_err(|_| format!("must be a string, not {}", type_name(v)))?;
            crate::plan::parse_method(&s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ct: &str) -> Option<MediaKind> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        media_kind(&headers)
    }

    #[test]
    fn media_kinds() {
        assert_eq!(media_kind(&HeaderMap::new()), None);
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
            "application/vnd.api+JSON",
        ] {
            assert_eq!(kind(ct), Some(MediaKind::Json), "{ct}");
        }
        for ct in [
            "text/plain",
            "TEXT/html; charset=utf-8",
            "image/svg+xml",
            "application/xml",
            "application/x-www-form-urlencoded",
            "application/GraphQL",
        ] {
            assert_eq!(kind(ct), Some(MediaKind::Text), "{ct}");
        }
        for ct in [
            "application/octet-stream",
            "image/png",
            "json",
            "application/jsonx",
        ] {
            assert_eq!(kind(ct), Some(MediaKind::Binary), "{ct}");
        }
        // Bytes beyond ASCII, where a suffix would cut a character: no panic.
        let mut headers = HeaderMap::new();
        let odd = HeaderValue::from_bytes("a/xx\u{e9}json".as_bytes()).unwrap();
        headers.insert(header::CONTENT_TYPE, odd);
        assert_eq!(media_kind(&headers), Some(MediaKind::Binary));
    }

    #[test]
    fn headers_with_several_values_become_arrays() {
        let mut headers = HeaderMap::new();
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.insert("x-one", HeaderValue::from_static("q\"uote"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.append("x-bytes", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let mut w = BytesMut::new().writer();
        write_headers(&mut w, &headers);
        let v: serde_json::Value = serde_json::from_slice(&w.into_inner()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"set-cookie": ["a=1", "b=2"], "x-one": "q\"uote", "x-bytes": "caf\u{fffd}"})
        );
    }
}
