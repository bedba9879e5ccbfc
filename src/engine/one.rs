//! One sub-request: the wrapped service made ready and called (`oneshot`), its response
//! body read within the per-item limit, all within the per-sub-request timeout, with a
//! panic caught. Whatever happens becomes the item's [`Outcome`]; nothing escapes to the
//! rest of the batch.

use crate::batch::outcome::Outcome;
use crate::body::{read_limited, BatchRequestBody, ReadError};
use crate::identity::strip_response_framing;
use crate::BoxError;
use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{Request, Response, StatusCode};
use http_body::Body;
use std::panic::AssertUnwindSafe;
use tower::ServiceExt as _;
use tower_service::Service;

/// What bounds one call: copied into it, so that it can run on a task of its own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The per-sub-request timeout.
    pub(crate) timeout: Option<std::time::Duration>,
    /// What the response body may hold.
    pub(crate) max_item_response_bytes: usize,
}

/// Why a sub-request has no response to report.
enum Failed {
    Panicked,
    TimedOut,
    Service(BoxError),
    Body(StatusCode, BoxError),
}

/// Calls the service for one sub-request and reads its response. The outcome's id is set
/// by the engine; `index` names the item in logs.
pub(crate) async fn call<S, B, ResBody>(
    svc: S,
    req: Request<BatchRequestBody<B>>,
    index: usize,
    limits: Limits,
) -> Outcome
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let limit = limits.max_item_response_bytes;
    let call = AssertUnwindSafe(async move {
        let response = svc
            .oneshot(req)
            .await
            .map_err(|e| Failed::Service(e.into()))?;
        let (mut parts, body) = response.into_parts();
        let body = match read_limited(body, limit).await {
            Ok(body) => Ok(body),
            Err(ReadError::TooLarge) => Err(format!(
                "the response body is larger than the per-item limit of {limit} bytes (max_item_response_bytes)"
            )),
            Err(ReadError::Failed(e)) => return Err(Failed::Body(parts.status, e)),
        };
        strip_response_framing(&mut parts.headers);
        Ok((parts, body))
    })
    .catch_unwind();
    let result = match limits.timeout {
        Some(t) => tokio::time::timeout(t, call)
            .await
            .unwrap_or(Ok(Err(Failed::TimedOut))),
        None => call.await,
    };
    let failed = match result {
        Ok(Ok((parts, body))) => {
            let (body, body_omitted) = match body {
                Ok(body) => (body, None),
                Err(why) => (Bytes::new(), Some(why)),
            };
            return Outcome {
                id: String::new(),
                status: parts.status,
                headers: parts.headers,
                body,
                body_omitted,
                answered: None,
            };
        }
        Ok(Err(failed)) => failed,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(index, panic = %message, "a batch sub-request panicked");
            Failed::Panicked
        }
    };
    failure(failed, index, limits)
}

/// The item the layer reports in place of a response.
fn failure(failed: Failed, index: usize, limits: Limits) -> Outcome {
    match failed {
        Failed::Panicked => panicked(),
        Failed::TimedOut => Outcome::problem(
            StatusCode::GATEWAY_TIMEOUT,
            "Sub-request timed out",
            format!(
                "no complete response within {:?} (the layer's per-sub-request timeout)",
                limits.timeout.unwrap_or_default()
            ),
        ),
        Failed::Service(e) => {
            tracing::warn!(index, error = %e, "the wrapped service failed a batch sub-request");
            Outcome::problem(
                StatusCode::BAD_GATEWAY,
                "Service error",
                format!("the service failed: {e}"),
            )
        }
        Failed::Body(status, e) => {
            tracing::warn!(index, error = %e, "a batch sub-response body failed");
            Outcome::problem(
                StatusCode::BAD_GATEWAY,
                "Response body error",
                format!(
                    "the response (status {}) failed while its body was read: {e}",
                    status.as_u16()
                ),
            )
        }
    }
}

/// The item of a sub-request whose handler panicked.
pub(super) fn panicked() -> Outcome {
    Outcome::problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Sub-request panicked",
        "the handler panicked while answering this sub-request".into(),
    )
}

/// The item of a sub-request whose task the runtime cancelled (it is shutting down).
pub(super) fn cancelled() -> Outcome {
    Outcome::problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sub-request cancelled",
        "the server cancelled this sub-request (it is shutting down)".into(),
    )
}
