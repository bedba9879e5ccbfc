//! Wire formats. A codec decodes the outer body into a [`Plan`](crate::plan::Plan) (a
//! pure function over bytes and limits) and encodes the engine's outcomes into one reply.
//! Codecs know nothing about execution; the engine knows nothing about formats.

pub(crate) mod json;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap};

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
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (top, sub) = essence.split_once('/').unwrap_or((essence.as_str(), ""));
    Some(match (top, sub) {
        ("application", "json") => MediaKind::Json,
        (_, s) if s.ends_with("+json") => MediaKind::Json,
        ("text", _) => MediaKind::Text,
        (_, s) if s.ends_with("+xml") => MediaKind::Text,
        (
            "application",
            "xml" | "javascript" | "ecmascript" | "x-www-form-urlencoded" | "graphql",
        ) => MediaKind::Text,
        _ => MediaKind::Binary,
    })
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
