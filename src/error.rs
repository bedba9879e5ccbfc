//! `application/problem+json` (RFC 9457) bodies: for a batch the layer refuses, and for
//! items the layer answers itself (panic, timeout, service error).

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

/// The media type of every error the layer writes.
pub(crate) const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

/// One bad field of one sub-request.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct FieldError {
    /// The sub-request's position in the batch, from 0; absent for batch-level fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) index: Option<usize>,
    /// The field, as the client spelled it (`url`, `headers.if-match`, `stop_on_error`, …).
    pub(crate) field: String,
    /// What is wrong with it.
    pub(crate) detail: String,
}

impl FieldError {
    pub(crate) fn item(index: usize, field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            index: Some(index),
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn batch(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            index: None,
            field: field.into(),
            detail: detail.into(),
        }
    }
}

/// A problem details object.
#[derive(Debug, Serialize)]
pub(crate) struct Problem {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) title: &'static str,
    #[serde(serialize_with = "ser_status")]
    pub(crate) status: StatusCode,
    pub(crate) detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) errors: Vec<FieldError>,
    /// Headers the response also needs (`allow`, `accept`, `retry-after`).
    #[serde(skip)]
    pub(crate) headers: Vec<(header::HeaderName, HeaderValue)>,
}

fn ser_status<S: serde::Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(status.as_u16())
}

impl Problem {
    pub(crate) fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            title,
            status,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// `400`: the batch is malformed; `errors` says where.
    pub(crate) fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => match one.index {
                Some(i) => format!("request {i}, field `{}`: {}", one.field, one.detail),
                None => format!("field `{}`: {}", one.field, one.detail),
            },
            many => format!("{} problems; see `errors`. Nothing was run.", many.len()),
        };
        let mut p = Self::new(
            StatusCode::BAD_REQUEST,
            "urn:tower-http-batch:invalid-batch",
            "Invalid batch request",
            detail,
        );
        p.errors = errors;
        p
    }

    pub(crate) fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Its status.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body.
    pub(crate) fn to_bytes(&self) -> Bytes {
        // Serializing plain strings and numbers cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

impl Problem {
    /// The problem as the outer response.
    pub(crate) fn into_response<B>(self) -> http::Response<crate::body::BatchResponseBody<B>> {
        let body = self.to_bytes();
        let mut response = http::Response::new(crate::body::BatchResponseBody::full(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, PROBLEM_JSON);
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}
