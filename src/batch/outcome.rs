//! [`Outcome`]: what one sub-request produced, as the engine records it and every codec
//! reads it.

use super::media::{media_kind, MediaKind};
use crate::error::{Problem, PROBLEM_JSON};
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};

/// What one sub-request produced, or what the layer answered in its place (a `424` for an
/// item that was not sent, a `504` for one that timed out, …).
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// The item's id (`dependsOn` names it; the JSON reply echoes it).
    pub(crate) id: String,
    pub(crate) status: StatusCode,
    /// The sub-response's headers, without its framing (see `identity`).
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// Set when the sub-response had a body that the reply leaves out, and why.
    pub(crate) body_omitted: Option<String>,
}

impl Outcome {
    /// An item the layer answers itself, with a problem+json body. The id is set when the
    /// engine records it.
    pub(crate) fn problem(status: StatusCode, title: &'static str, detail: String) -> Self {
        let problem = Problem::new(
            status,
            "urn:tower-http-batch:sub-request-failed",
            title,
            detail,
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, PROBLEM_JSON);
        Self {
            id: String::new(),
            status,
            headers,
            body: problem.to_bytes(),
            body_omitted: None,
        }
    }

    /// Whether it counts as a failure: for `dependsOn`, `stop_on_error` and atomic groups.
    #[inline]
    pub(crate) fn failed(&self) -> bool {
        self.status.as_u16() >= 400
    }

    /// How its body is carried in a JSON document: a JSON value for JSON media types (when
    /// it is valid JSON), a string for text (and for valid UTF-8 without a content type),
    /// base64url for anything else.
    pub(crate) fn body_view(&self) -> BodyView<'_> {
        let body = &self.body;
        if body.is_empty() {
            return BodyView::Empty;
        }
        let kind = media_kind(&self.headers);
        if kind == Some(MediaKind::Json) && is_valid_json(body) {
            return BodyView::Json(body);
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
}

fn is_valid_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// Base64url without padding, as OData writes binary bodies.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
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
            id: "a".into(),
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(body),
            body_omitted: None,
        }
    }

    #[test]
    fn bodies_are_seen_by_their_media_type() {
        let json = outcome(Some("application/json"), b"{\"a\":1}");
        assert!(matches!(json.body_view(), BodyView::Json(_)));
        let broken = outcome(Some("application/json"), b"{\"a\":");
        assert!(matches!(broken.body_view(), BodyView::Text("{\"a\":")));
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
    fn failures_start_at_400() {
        let mut o = outcome(None, b"");
        assert!(!o.failed());
        o.status = StatusCode::BAD_REQUEST;
        assert!(o.failed());
    }
}
