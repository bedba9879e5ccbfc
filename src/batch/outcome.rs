//! [`Outcome`]: what one sub-request produced, as the engine records it and every codec
//! reads it.

use super::media::{media_kind, MediaKind};
use super::strict::strict_json;
use crate::error::Problem;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use std::sync::Arc;

/// What one sub-request produced, or what the layer answered in its place (a `424` for an
/// item that was not sent, a `504` for one that timed out, …).
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) status: StatusCode,
    /// The sub-response's headers, without its framing (see `identity`).
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// Set when the sub-response had a body that the reply leaves out, and why.
    pub(crate) body_omitted: Option<String>,
    /// Set when the layer answered in the service's place: what it said (for spans).
    pub(crate) answered: Option<Arc<Answered>>,
}

/// What the layer said when it answered for a sub-request: its problem's title (a short
/// fixed text: what kind of failure) and detail (why, for this item).
#[derive(Debug)]
pub(crate) struct Answered {
    pub(crate) title: &'static str,
    pub(crate) detail: String,
}

impl Outcome {
    /// An item the layer answers itself, with a problem document as its body.
    pub(crate) fn problem(status: StatusCode, title: &'static str, detail: String) -> Self {
        let answered = Arc::new(Answered {
            title,
            detail: detail.clone(),
        });
        let problem = Problem::new(
            status,
            "urn:tower-http-batch:sub-request-failed",
            title,
            detail,
        );
        let mut headers = HeaderMap::new();
        // A problem document (RFC 9457) labelled `application/json`, as Microsoft Graph
        // labels its own item errors: the Graph JavaScript SDK hands an item's body to
        // `.json()` only under that exact type.
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        Self {
            status,
            headers,
            body: problem.to_bytes(),
            body_omitted: None,
            answered: Some(answered),
        }
    }

    /// Whether it counts as a failure: for `dependsOn`, `stop_on_error` and atomic groups.
    #[inline]
    pub(crate) fn failed(&self) -> bool {
        self.status.as_u16() >= 400
    }

    /// How its body is carried in a JSON document: a JSON value for JSON media types (when
    /// strict parsers would take it: see [`strict_json`]), a string for text (and for valid
    /// UTF-8 without a content type), base64url for anything else.
    pub(crate) fn body_view(&self) -> BodyView<'_> {
        let body = &self.body;
        if body.is_empty() {
            return BodyView::Empty;
        }
        let kind = media_kind(&self.headers);
        if kind == Some(MediaKind::Json) {
            match strict_json(body) {
                Ok(()) => return BodyView::Json(body),
                Err(why) => return BodyView::NotStrictJson(body, why),
            }
        }
        if kind != Some(MediaKind::Binary) {
            if let Ok(text) = std::str::from_utf8(body) {
                return BodyView::Text(text);
            }
        }
        BodyView::Binary(body)
    }
}

/// A sub-response body as a JSON document carries it; see [`Outcome::body_view`].
#[derive(Debug)]
pub(crate) enum BodyView<'a> {
    /// No body.
    Empty,
    /// Valid JSON, to embed as it is.
    Json(&'a Bytes),
    /// Text, to embed as a JSON string.
    Text(&'a str),
    /// Bytes, to embed as a base64url string.
    Binary(&'a [u8]),
    /// Declared JSON, but not JSON a strict parser takes: embedded as a string (UTF-8) or
    /// base64url, with the reason, so that one body cannot make the whole reply unreadable.
    NotStrictJson(&'a [u8], String),
}

impl BodyView<'_> {
    /// The bytes it takes in a JSON document.
    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::Json(json) => json.len(),
            Self::Text(text) => quoted_len(text),
            Self::Binary(bytes) => base64_len(bytes.len()),
            Self::NotStrictJson(bytes, _) => match std::str::from_utf8(bytes) {
                Ok(text) => quoted_len(text),
                Err(_) => base64_len(bytes.len()),
            },
        }
    }
}

/// The length of `text` as a JSON string, quotes included, escaped as serde_json escapes.
pub(crate) fn quoted_len(text: &str) -> usize {
    let escapes: usize = text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..=0x1f => 5,
            _ => 0,
        })
        .sum();
    text.len() + escapes + 2
}

/// The length of `n` bytes in base64url without padding, as a JSON string.
fn base64_len(n: usize) -> usize {
    n / 3 * 4 + [0, 2, 3][n % 3] + 2
}

/// Why a body (or headers) was left out to keep to the reply's limit: the same words
/// whether the reply's writer or the engine, holding bodies for it, left it out.
pub(crate) fn reply_limit_reached(limit: usize) -> String {
    format!("the batch reply reached its limit of {limit} bytes (max_response_bytes)")
}

/// Base64url without padding, as OData writes binary bodies.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn outcome(ct: Option<&'static str>, body: &'static [u8]) -> Outcome {
        let mut headers = HeaderMap::new();
        if let Some(ct) = ct {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        Outcome {
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(body),
            body_omitted: None,
            answered: None,
        }
    }

    #[test]
    fn bodies_are_seen_by_their_media_type() {
        let json = outcome(Some("application/json"), b"{\"a\":1}");
        assert!(matches!(json.body_view(), BodyView::Json(_)));
        let broken = outcome(Some("application/json"), b"{\"a\":");
        assert!(matches!(
            broken.body_view(),
            BodyView::NotStrictJson(b"{\"a\":", _)
        ));
        let untyped = outcome(None, b"hello");
        assert!(matches!(untyped.body_view(), BodyView::Text("hello")));
        let binary = outcome(Some("image/png"), b"\x89PNG");
        assert!(matches!(binary.body_view(), BodyView::Binary(_)));
        let bytes = outcome(None, b"\xff\xfe");
        assert!(matches!(bytes.body_view(), BodyView::Binary(_)));
        assert!(matches!(outcome(None, b"").body_view(), BodyView::Empty));
        assert_eq!(encode_base64(b"\xff\xfe"), "__4");
    }

    #[test]
    fn encoded_lengths_are_what_the_writer_writes() {
        for text in ["", "plain", "q\"uote\\", "tab\tnl\n\u{1}\u{1f}", "ünï"] {
            assert_eq!(
                quoted_len(text),
                serde_json::to_string(text).unwrap().len(),
                "{text:?}"
            );
        }
        for n in 0..7 {
            assert_eq!(base64_len(n), encode_base64(&vec![7; n]).len() + 2, "{n}");
        }
    }

    #[test]
    fn failures_start_at_400() {
        let mut o = outcome(None, b"");
        assert!(!o.failed());
        o.status = StatusCode::BAD_REQUEST;
        assert!(o.failed());
    }
}
