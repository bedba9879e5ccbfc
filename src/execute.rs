//! The engine: runs a validated plan against the wrapped service and reports every
//! sub-request that ran, in request order.
//!
//! Sequential by default: each sub-request starts when the one before has answered and
//! its body has been read; `BatchLayer::concurrency` lets independent ones overlap. Each is
//! isolated: a handler that panics gives its item `500`, one that passes
//! the timeout `504`, a service error `502`; the others are kept.

use crate::body::{collect_limited, BatchRequestBody, Collected};
use crate::error::{Problem, PROBLEM_JSON};
use crate::identity::{strip_response_framing, Template};
use crate::layer::Config;
use crate::plan::{Plan, PlanItem};
use crate::reference;
use crate::BoxError;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use futures_util::FutureExt as _;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
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
    /// The id is set when the item finishes.
    fn problem(status: StatusCode, title: &'static str, detail: String) -> Self {
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
}

/// Runs the items of `plan` and reports each that ran, in request order.
///
/// At most `config.concurrency` sub-requests are in flight (one with `stop_on_error`). An
/// item starts once every item it `dependsOn` has finished; among the items that may
/// start, the lowest index goes first, so with a concurrency of one the batch runs in
/// request order. An item whose dependency failed (status >= 400, or never sent) is not
/// sent: it reports `424 Failed Dependency`. With `stop_on_error`, nothing starts after
/// the first failure.
///
/// Each item reads at most `max_item_response_bytes` of its body; the reply's total
/// (`max_response_bytes`) is charged as items finish, and a body that no longer fits is
/// left out (`bodyOmitted`). With concurrency, which items those are follows the order
/// they finish in.
///
/// When `batch_timeout` passes, the items in flight are dropped and report `504`, and the
/// items not started report `424` (with `stop_on_error`, only the ones in flight report).
/// Dropping this future (the client went away) drops every sub-request in flight and
/// starts no other.
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
    let stop_on_error = plan.stop_on_error;
    let capacity = if stop_on_error {
        1
    } else {
        config.concurrency.max(1)
    };
    let deadline = config
        .batch_timeout
        .map(|t| tokio::time::Instant::now() + t);
    let mut graph = Graph::new(plan.items);
    let mut in_flight = FuturesUnordered::new();
    let mut budget = config.max_response_bytes;
    let mut stopped = false;

    loop {
        while !stopped && in_flight.len() < capacity {
            let Some((i, mut item)) = graph.next_ready() else {
                break;
            };
            if let Some(outcome) = graph.prepare(&mut item, config) {
                stopped = stop_on_error;
                graph.finish(i, outcome);
                continue;
            }
            let req = template.request(item);
            let svc = svc.clone();
            graph.running[i] = true;
            in_flight.push(async move { (i, run_one(svc, req, i, config).await) });
        }
        let next = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, in_flight.next()).await {
                Ok(next) => next,
                Err(_) => {
                    drop(in_flight);
                    graph.expire(config, stop_on_error);
                    break;
                }
            },
            None => in_flight.next().await,
        };
        let Some((i, mut outcome)) = next else { break };
        if outcome.body.len() > budget {
            outcome.body = Bytes::new();
            outcome.body_omitted = Some(format!(
                "the batch reply reached its limit of {} bytes (max_response_bytes)",
                config.max_response_bytes
            ));
        } else {
            budget -= outcome.body.len();
        }
        stopped |= stop_on_error && failed(&outcome);
        graph.finish(i, outcome);
    }
    graph.into_outcomes()
}

fn failed(outcome: &Outcome) -> bool {
    outcome.status.as_u16() >= 400
}

/// The state of one batch's items: which wait, which may start, which ran.
struct Graph {
    /// Each item's id, moved into its outcome when it finishes.
    ids: Vec<String>,
    items: Vec<Option<PlanItem>>,
    results: Vec<Option<Outcome>>,
    running: Vec<bool>,
    /// How many dependencies each item still waits for.
    waiting_on: Vec<usize>,
    dependants: Vec<Vec<usize>>,
    ready: BinaryHeap<Reverse<usize>>,
}

impl Graph {
    fn new(mut items: Vec<PlanItem>) -> Self {
        let n = items.len();
        let ids = items
            .iter_mut()
            .map(|i| std::mem::take(&mut i.id))
            .collect();
        let waiting_on: Vec<usize> = items.iter().map(|i| i.depends_on.len()).collect();
        let mut dependants = vec![Vec::new(); n];
        for (i, item) in items.iter().enumerate() {
            for &d in &item.depends_on {
                dependants[d].push(i);
            }
        }
        let ready = (0..n)
            .filter(|&i| waiting_on[i] == 0)
            .map(Reverse)
            .collect();
        Self {
            ids,
            items: items.into_iter().map(Some).collect(),
            results: (0..n).map(|_| None).collect(),
            running: vec![false; n],
            waiting_on,
            dependants,
            ready,
        }
    }

    /// The lowest-index item whose dependencies have all finished.
    fn next_ready(&mut self) -> Option<(usize, PlanItem)> {
        while let Some(Reverse(i)) = self.ready.pop() {
            if let Some(item) = self.items[i].take() {
                return Some((i, item));
            }
        }
        None
    }

    /// Checks the item's dependencies and resolves its references; the `424` to report
    /// instead when it cannot be sent.
    fn prepare(&self, item: &mut PlanItem, config: &Config) -> Option<Outcome> {
        let failed_dep = item
            .depends_on
            .iter()
            .copied()
            .find(|&d| self.results[d].as_ref().is_none_or(failed));
        if let Some(d) = failed_dep {
            return Some(failed_dependency(d, self.results[d].as_ref()));
        }
        let refs = item.refs.take()?;
        reference::apply(*refs, item, &self.results, &config.canonical_paths)
            .err()
            .map(|why| Outcome::problem(StatusCode::FAILED_DEPENDENCY, "Failed dependency", why))
    }

    /// Records an item's outcome and releases the items that waited for it.
    fn finish(&mut self, i: usize, mut outcome: Outcome) {
        outcome.id = std::mem::take(&mut self.ids[i]);
        self.running[i] = false;
        self.results[i] = Some(outcome);
        for &j in &self.dependants[i] {
            self.waiting_on[j] -= 1;
            if self.waiting_on[j] == 0 {
                self.ready.push(Reverse(j));
            }
        }
    }

    /// The batch deadline passed: what was in flight is `504`, what never started `424`.
    fn expire(&mut self, config: &Config, stop_on_error: bool) {
        let limit = config.batch_timeout.unwrap_or_default();
        for i in 0..self.results.len() {
            if self.results[i].is_some() {
                continue;
            }
            let outcome = if self.running[i] {
                Outcome::problem(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Batch timed out",
                    format!(
                        "did not finish within the batch's deadline of {limit:?} (batch_timeout)"
                    ),
                )
            } else if stop_on_error {
                continue;
            } else {
                Outcome::problem(
                    StatusCode::FAILED_DEPENDENCY,
                    "Not sent",
                    format!("not sent: the batch's deadline of {limit:?} (batch_timeout) passed before it could start"),
                )
            };
            self.finish(i, outcome);
        }
    }

    fn into_outcomes(self) -> Vec<Outcome> {
        self.results.into_iter().flatten().collect()
    }
}

/// `424` for an item that was not sent because dependency `d` failed or never ran.
fn failed_dependency(d: usize, dep: Option<&Outcome>) -> Outcome {
    let detail = match dep {
        Some(o) if o.status == StatusCode::FAILED_DEPENDENCY => {
            format!(
                "not sent: request {:?} (index {d}), which it depends on, was not sent either",
                o.id
            )
        }
        Some(o) => format!(
            "not sent: request {:?} (index {d}), which it depends on, failed with status {}",
            o.id,
            o.status.as_u16()
        ),
        None => format!("not sent: request at index {d}, which it depends on, did not run"),
    };
    Outcome::problem(StatusCode::FAILED_DEPENDENCY, "Failed dependency", detail)
}

/// Calls the service for one sub-request (made ready first, by `oneshot`) and reads its
/// response, within the timeout, catching a panic. The outcome's id is set by the caller.
async fn run_one<S, B, ResBody>(
    svc: S,
    req: Request<BatchRequestBody<B>>,
    index: usize,
    config: &Config,
) -> Outcome
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let limit = config.max_item_response_bytes;
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
                Collected::TooLarge => (
                    Bytes::new(),
                    Some(format!(
                        "the response body is larger than the per-item limit of {limit} bytes (max_item_response_bytes)"
                    )),
                ),
            };
            return Outcome {
                id: String::new(),
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
            tracing::error!(index, panic = %message, "a batch sub-request panicked");
            Failed::Panicked
        }
    };
    match failed {
        Failed::Panicked => Outcome::problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sub-request panicked",
            "the handler panicked while answering this sub-request".into(),
        ),
        Failed::TimedOut => Outcome::problem(
            StatusCode::GATEWAY_TIMEOUT,
            "Sub-request timed out",
            format!(
                "no complete response within {:?} (the layer's per-sub-request timeout)",
                config.timeout.unwrap_or_default()
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

enum Failed {
    Panicked,
    TimedOut,
    Service(BoxError),
    Body(StatusCode, BoxError),
}
