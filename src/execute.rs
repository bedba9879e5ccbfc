//! The engine: runs a validated plan against the wrapped service and reports every
//! sub-request that ran, in request order.
//!
//! Sequential: each sub-request starts when the one before has answered and its body has
//! been read. Each is isolated: a handler that panics gives its item `500`, one that passes
//! the timeout `504`, a service error `502`; the others are kept.

use crate::body::{collect_limited, BatchRequestBody, Collected};
use crate::error::{Problem, PROBLEM_JSON};
use crate::identity::{strip_response_framing, Template};
use crate::layer::Config;
use crate::plan::Plan;
use crate::BoxError;
use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use std::panic::AssertUnwindSafe;
use tower::ServiceExt as _;
use tower_service::Service;

/// What one sub-request produced.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) id: String,
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// Set when the sub-response had a body that the reply leaves out, and why.
    pub(crate) body_omitted: Option<String>,
}

impl Outcome {
    /// An item the layer answers itself, with a problem+json body.
    fn problem(id: String, status: StatusCode, title: &'static str, detail: String) -> Self {
        let problem = Problem::new(
            status,
            "urn:tower-http-batch:sub-request-failed",
            title,
            detail,
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, PROBLEM_JSON);
        Self {
            id,
            status,
            headers,
            body: problem.to_bytes(),
            body_omitted: None,
        }
    }
}

/// Runs every item of `plan` in order and reports each that ran.
pub(crate) async fn run<S, B, ResBody>(
    svc: S,
    template: &Template,
    plan: Plan,
    config: &Config,
) -> Vec<Outcome>
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let mut outcomes = Vec::with_capacity(plan.items.len());
    let mut budget = config.max_response_bytes;
    for mut item in plan.items {
        let id = std::mem::take(&mut item.id);
        let req = template.request(item);
        let outcome = run_one(svc.clone(), req, id, config, budget).await;
        budget = budget.saturating_sub(outcome.body.len());
        let failed = outcome.status.as_u16() >= 400;
        outcomes.push(outcome);
        if failed && plan.stop_on_error {
            break;
        }
    }
    outcomes
}

/// Calls the service for one sub-request (made ready first, by `oneshot`) and reads its
/// response, within the timeout, catching a panic.
async fn run_one<S, B, ResBody>(
    svc: S,
    req: Request<BatchRequestBody<B>>,
    id: String,
    config: &Config,
    budget: usize,
) -> Outcome
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let limit = config.max_item_response_bytes.min(budget);
    let call = AssertUnwindSafe(async move {
        let response = svc
            .oneshot(req)
            .await
            .map_err(|e| Failed::Service(e.into()))?;
        let (parts, body) = response.into_parts();
        let body = collect_limited(body, limit)
            .await
            .map_err(|e| Failed::Body(parts.status, e.into()))?;
        Ok::<_, Failed>((parts, body))
    })
    .catch_unwind();
    let result = match config.timeout {
        Some(t) => tokio::time::timeout(t, call)
            .await
            .unwrap_or(Ok(Err(Failed::TimedOut))),
        None => call.await,
    };
    let failed = match result {
        Ok(Ok((mut parts, collected))) => {
            strip_response_framing(&mut parts.headers);
            let (body, body_omitted) = match collected {
                Collected::Complete(body) => (body, None),
                Collected::TooLarge if limit == config.max_item_response_bytes => (
                    Bytes::new(),
                    Some(format!(
                        "the response body is larger than the per-item limit of {limit} bytes (max_item_response_bytes)"
                    )),
                ),
                Collected::TooLarge => (
                    Bytes::new(),
                    Some(format!(
                        "the batch reply reached its limit of {} bytes (max_response_bytes)",
                        config.max_response_bytes
                    )),
                ),
            };
            return Outcome {
                id,
                status: parts.status,
                headers: parts.headers,
                body,
                body_omitted,
            };
        }
        Ok(Err(failed)) => failed,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(id = %id, panic = %message, "a batch sub-request panicked");
            Failed::Panicked
        }
    };
    match failed {
        Failed::Panicked => Outcome::problem(
            id,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sub-request panicked",
            "the handler panicked while answering this sub-request".into(),
        ),
        Failed::TimedOut => Outcome::problem(
            id,
            StatusCode::GATEWAY_TIMEOUT,
            "Sub-request timed out",
            format!(
                "no complete response within {:?} (the layer's per-sub-request timeout)",
                config.timeout.unwrap_or_default()
            ),
        ),
        Failed::Service(e) => {
            tracing::warn!(id = %id, error = %e, "the wrapped service failed a batch sub-request");
            Outcome::problem(
                id,
                StatusCode::BAD_GATEWAY,
                "Service error",
                format!("the service failed: {e}"),
            )
        }
        Failed::Body(status, e) => {
            tracing::warn!(id = %id, error = %e, "a batch sub-response body failed");
            Outcome::problem(
                id,
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

enum Failed {
    Panicked,
    TimedOut,
    Service(BoxError),
    Body(StatusCode, BoxError),
}
