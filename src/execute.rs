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
use crate::transaction::OpenTx;
use crate::BoxError;
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use futures_util::FutureExt as _;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{ready, Poll};
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
/// the first failure. With chunks, an item starts only when every chunk before its own has
/// finished.
///
/// An atomic group takes one place of the concurrency from `begin` to `commit` or
/// `rollback`: its members run one after another, each with the transaction's handle in
/// its extensions. Items that depend on a member wait for the whole group.
///
/// Each item reads at most `max_item_response_bytes` of its body; the reply's total
/// (`max_response_bytes`) is charged as items finish, and a body that no longer fits is
/// left out (`bodyOmitted`). With concurrency, which items those are follows the order
/// they finish in.
///
/// When `batch_timeout` passes, the items in flight are dropped and report `504`, and the
/// items not started report `424` (with `stop_on_error`, only the ones in flight report);
/// an open transaction is dropped, and its members report that they were rolled back.
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
    let mut graph = Graph::new(plan);
    let mut in_flight = InFlight::new(capacity);
    let mut budget = config.max_response_bytes;
    let mut stopped = false;
    loop {
        while !stopped && in_flight.len() < capacity {
            let Some((i, item)) = graph.next_ready() else {
                break;
            };
            if let Some(g) = graph.leading(i) {
                graph.items[i] = Some(item);
                match graph.check_group_dependencies(g) {
                    Some(outcome) => {
                        stopped = stop_on_error;
                        graph.fail_group_unsent(g, outcome);
                    }
                    None => {
                        graph.groups[g].phase = Phase::Beginning;
                        let hook = config.transactions.as_ref().map(|h| h.0.clone());
                        let outer = template.outer();
                        in_flight.push(Either::Right(
                            async move {
                                let begun = match &hook {
                                    Some(hook) => hook.begin(outer).await,
                                    None => Err("this server has no transaction hook".into()),
                                };
                                Done::Begun(g, begun)
                            }
                            .boxed(),
                        ));
                    }
                }
                continue;
            }
            match graph.start(i, item, template, config) {
                Ok(req) => in_flight.push(Either::Left(ran(svc.clone(), req, i, config))),
                Err(outcome) => {
                    stopped = stop_on_error;
                    graph.finish(i, *outcome);
                }
            }
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
        let Some(done) = next else { break };
        // What a group does next: run its next member, or end.
        let mut continue_group = None;
        match done {
            Done::Ran(i, mut outcome) => {
                if outcome.body.len() > budget {
                    outcome.body = Bytes::new();
                    outcome.body_omitted = Some(format!(
                        "the batch reply reached its limit of {} bytes (max_response_bytes)",
                        config.max_response_bytes
                    ));
                } else {
                    budget -= outcome.body.len();
                }
                let is_failure = failed(&outcome);
                stopped |= stop_on_error && is_failure;
                match graph.group_of(i) {
                    None => graph.finish(i, outcome),
                    Some(g) => {
                        graph.record(i, outcome);
                        continue_group = Some((g, i + 1, is_failure.then_some(i)));
                    }
                }
            }
            Done::Begun(g, Ok(tx)) => {
                graph.groups[g].phase = Phase::Open(tx);
                continue_group = Some((g, graph.groups[g].members.start, None));
            }
            Done::Begun(g, Err(e)) => {
                tracing::error!(group = %graph.groups[g].name, error = %e, "could not begin a transaction for an atomic group");
                graph.fail_group_unsent(
                    g,
                    Outcome::problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Transaction not started",
                        format!(
                            "not sent: the transaction for atomic group {:?} could not begin: {e}",
                            graph.groups[g].name
                        ),
                    ),
                );
            }
            Done::Ended(g, result) => graph.end_group(g, result),
        }
        // A group whose member just answered goes on with its next member, or ends.
        while let Some((g, next, failed_at)) = continue_group.take() {
            let members = graph.groups[g].members.clone();
            let failure = failed_at.or_else(|| graph.groups[g].failed_at);
            if failure.is_none() && next < members.end {
                let Some(item) = graph.items[next].take() else {
                    continue_group = Some((g, next + 1, None));
                    continue;
                };
                match graph.start(next, item, template, config) {
                    Ok(req) => in_flight.push(Either::Left(ran(svc.clone(), req, next, config))),
                    Err(outcome) => {
                        stopped |= stop_on_error;
                        graph.record(next, *outcome);
                        continue_group = Some((g, next + 1, Some(next)));
                    }
                }
                continue;
            }
            graph.groups[g].failed_at = failure;
            let Phase::Open(tx) = std::mem::replace(&mut graph.groups[g].phase, Phase::Ending)
            else {
                // Members run only while the transaction is open; nothing to end otherwise.
                graph.end_group(g, Err("the group's transaction was not open".into()));
                continue;
            };
            let commit = failure.is_none();
            in_flight.push(Either::Right(
                async move { Done::Ended(g, tx.finish(commit).await) }.boxed(),
            ));
        }
    }
    graph.into_outcomes()
}

/// The futures in flight: one reusable slot when only one may be (no allocation per
/// sub-request), else a `FuturesUnordered`.
enum InFlight<F> {
    One(Pin<Box<Option<F>>>),
    Many(FuturesUnordered<F>),
}

impl<F: Future> InFlight<F> {
    fn new(capacity: usize) -> Self {
        if capacity == 1 {
            Self::One(Box::pin(None))
        } else {
            Self::Many(FuturesUnordered::new())
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::One(slot) => usize::from(slot.is_some()),
            Self::Many(futures) => futures.len(),
        }
    }

    /// Adds a future; the caller keeps to the capacity.
    fn push(&mut self, future: F) {
        match self {
            Self::One(slot) => {
                debug_assert!(slot.is_none(), "one future at a time");
                slot.set(Some(future));
            }
            Self::Many(futures) => futures.push(future),
        }
    }

    /// The output of the next future to finish; `None` when there is none.
    async fn next(&mut self) -> Option<F::Output> {
        std::future::poll_fn(|cx| match self {
            Self::One(slot) => {
                let Some(future) = slot.as_mut().as_pin_mut() else {
                    return Poll::Ready(None);
                };
                let output = ready!(future.poll(cx));
                slot.set(None);
                Poll::Ready(Some(output))
            }
            Self::Many(futures) => futures.poll_next_unpin(cx),
        })
        .await
    }
}

/// What an in-flight future reports.
enum Done {
    /// A sub-request answered.
    Ran(usize, Outcome),
    /// A group's transaction began (or could not).
    Begun(usize, Result<Box<dyn OpenTx>, BoxError>),
    /// A group's commit or rollback finished.
    Ended(usize, Result<(), BoxError>),
}

async fn ran<S, B, ResBody>(
    svc: S,
    req: Request<BatchRequestBody<B>>,
    i: usize,
    config: &Config,
) -> Done
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    Done::Ran(i, run_one(svc, req, i, config).await)
}

fn failed(outcome: &Outcome) -> bool {
    outcome.status.as_u16() >= 400
}

/// Where an atomic group is.
enum Phase {
    /// Its leader has not been picked.
    Waiting,
    /// `begin` is in flight.
    Beginning,
    /// Its members run with this transaction.
    Open(Box<dyn OpenTx>),
    /// `commit` or `rollback` is in flight.
    Ending,
    /// Done; its members' outcomes are final.
    Ended,
}

struct GroupState {
    name: String,
    members: std::ops::Range<usize>,
    phase: Phase,
    /// The member whose failure rolls the group back.
    failed_at: Option<usize>,
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
    /// Each item's group; empty when the plan has none.
    group_of: Vec<Option<usize>>,
    groups: Vec<GroupState>,
    chunk_size: usize,
    /// How many items have an outcome.
    finished: usize,
    stop_on_error: bool,
}

impl Graph {
    fn new(plan: Plan) -> Self {
        let mut items = plan.items;
        let n = items.len();
        let ids = items
            .iter_mut()
            .map(|i| std::mem::take(&mut i.id))
            .collect();
        let mut waiting_on: Vec<usize> = items.iter().map(|i| i.depends_on.len()).collect();
        let mut dependants = vec![Vec::new(); n];
        let mut group_of = Vec::new();
        if !plan.groups.is_empty() {
            group_of = vec![None; n];
            for (g, group) in plan.groups.iter().enumerate() {
                for m in group.members.clone() {
                    group_of[m] = Some(g);
                }
            }
        }
        for (i, item) in items.iter().enumerate() {
            // A group waits as one, at its leader, for what any member depends on outside
            // it; members after the leader are started by the group itself.
            let group = group_of.get(i).copied().flatten();
            let waiter = group.map_or(i, |g| plan.groups[g].members.start);
            if waiter != i {
                waiting_on[i] = 0;
            }
            for &d in &item.depends_on {
                if group.is_some() && group_of[d] == group {
                    if waiter == i {
                        waiting_on[i] -= 1;
                    }
                    continue;
                }
                if waiter != i {
                    waiting_on[waiter] += 1;
                }
                dependants[d].push(waiter);
            }
        }
        let ready = (0..n)
            .filter(|&i| {
                waiting_on[i] == 0
                    && group_of
                        .get(i)
                        .copied()
                        .flatten()
                        .is_none_or(|g| plan.groups[g].members.start == i)
            })
            .map(Reverse)
            .collect();
        let groups = plan
            .groups
            .into_iter()
            .map(|g| GroupState {
                name: g.name,
                members: g.members,
                phase: Phase::Waiting,
                failed_at: None,
            })
            .collect();
        Self {
            ids,
            items: items.into_iter().map(Some).collect(),
            results: (0..n).map(|_| None).collect(),
            running: vec![false; n],
            waiting_on,
            dependants,
            ready,
            group_of,
            groups,
            chunk_size: plan.chunk_size.unwrap_or(usize::MAX).max(1),
            finished: 0,
            stop_on_error: plan.stop_on_error,
        }
    }

    /// The lowest-index item whose dependencies have all finished, and whose chunk may
    /// start.
    fn next_ready(&mut self) -> Option<(usize, PlanItem)> {
        while let Some(&Reverse(i)) = self.ready.peek() {
            if self.chunk_size != usize::MAX
                && self.finished < i / self.chunk_size * self.chunk_size
            {
                return None;
            }
            self.ready.pop();
            if let Some(item) = self.items[i].take() {
                return Some((i, item));
            }
        }
        None
    }

    #[inline]
    fn group_of(&self, i: usize) -> Option<usize> {
        self.group_of.get(i).copied().flatten()
    }

    /// The group that item `i` leads, if any.
    fn leading(&self, i: usize) -> Option<usize> {
        self.group_of(i)
            .filter(|&g| self.groups[g].members.start == i)
    }

    /// The open transaction of item `i`'s group.
    fn transaction_of(&self, i: usize) -> Option<&dyn OpenTx> {
        match &self.groups[self.group_of(i)?].phase {
            Phase::Open(tx) => Some(tx.as_ref()),
            _ => None,
        }
    }

    /// The request for item `i` (not a group leader before its transaction began), with
    /// its group's transaction in the extensions; or its outcome when it cannot be sent.
    fn start<B>(
        &mut self,
        i: usize,
        mut item: PlanItem,
        template: &Template,
        config: &Config,
    ) -> Result<Request<BatchRequestBody<B>>, Box<Outcome>> {
        if let Some(outcome) = self.prepare(&mut item, config) {
            return Err(Box::new(outcome));
        }
        let mut req = template.request(item);
        if let Some(tx) = self.transaction_of(i) {
            tx.insert_into(req.extensions_mut());
        }
        self.running[i] = true;
        Ok(req)
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

    /// The `424` for group `g` when something one of its members depends on outside the
    /// group failed: then nothing of it is sent, and no transaction begins.
    fn check_group_dependencies(&self, g: usize) -> Option<Outcome> {
        let members = self.groups[g].members.clone();
        members.clone().find_map(|m| {
            let item = self.items[m].as_ref()?;
            let d =
                item.depends_on.iter().copied().find(|&d| {
                    !members.contains(&d) && self.results[d].as_ref().is_none_or(failed)
                })?;
            Some(failed_dependency(d, self.results[d].as_ref()))
        })
    }

    /// Every member of group `g` reports `outcome`'s status and reason; none was sent.
    fn fail_group_unsent(&mut self, g: usize, outcome: Outcome) {
        for m in self.groups[g].members.clone() {
            self.items[m] = None;
            self.record(
                m,
                Outcome {
                    id: String::new(),
                    status: outcome.status,
                    headers: outcome.headers.clone(),
                    body: outcome.body.clone(),
                    body_omitted: None,
                },
            );
        }
        self.groups[g].phase = Phase::Ended;
        self.release_group(g);
    }

    /// The group's commit or rollback finished: its members' final outcomes, and the
    /// items that waited for it may start.
    fn end_group(&mut self, g: usize, result: Result<(), BoxError>) {
        let group = &mut self.groups[g];
        group.phase = Phase::Ended;
        let name = group.name.clone();
        let members = group.members.clone();
        match (group.failed_at, result) {
            (None, Ok(())) => {}
            (None, Err(e)) => {
                tracing::error!(group = %name, error = %e, "an atomic group's commit failed");
                for m in members {
                    self.record(
                        m,
                        Outcome::problem(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Transaction failed",
                            format!(
                                "the transaction of atomic group {name:?} could not be committed: {e}"
                            ),
                        ),
                    );
                }
            }
            (Some(f), result) => {
                let culprit = format!(
                    "request {:?} (index {f}) in atomic group {name:?} failed with status {}",
                    self.results[f].as_ref().map_or("", |o| o.id.as_str()),
                    self.results[f].as_ref().map_or(0, |o| o.status.as_u16())
                );
                if let Err(e) = &result {
                    tracing::error!(group = %name, error = %e, "an atomic group's rollback failed");
                }
                for m in members {
                    if m == f {
                        continue;
                    }
                    let outcome = match &result {
                        Err(e) => Outcome::problem(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Rollback failed",
                            format!("{culprit}, and the transaction could not be rolled back: {e}"),
                        ),
                        Ok(()) if m < f => Outcome::problem(
                            StatusCode::FAILED_DEPENDENCY,
                            "Rolled back",
                            format!("rolled back: {culprit}"),
                        ),
                        Ok(()) => Outcome::problem(
                            StatusCode::FAILED_DEPENDENCY,
                            "Not sent",
                            format!("not sent: {culprit}, and the group was rolled back"),
                        ),
                    };
                    if m > f && self.results[m].is_none() {
                        self.items[m] = None;
                        if self.stop_on_error {
                            // The reply ends at the failure: what was not sent is left out.
                            continue;
                        }
                    }
                    self.record(m, outcome);
                }
            }
        }
        self.release_group(g);
    }

    /// Releases what waited for the group.
    fn release_group(&mut self, g: usize) {
        for m in self.groups[g].members.clone() {
            self.release(m);
        }
    }

    /// Stores an item's outcome with its id (an outcome that replaces another keeps the
    /// id), without releasing anything.
    fn record(&mut self, i: usize, mut outcome: Outcome) {
        self.running[i] = false;
        match self.results[i].take() {
            Some(old) => outcome.id = old.id,
            None => {
                outcome.id = std::mem::take(&mut self.ids[i]);
                self.finished += 1;
            }
        }
        self.results[i] = Some(outcome);
    }

    /// Records an item's outcome and releases the items that waited for it.
    fn finish(&mut self, i: usize, outcome: Outcome) {
        self.record(i, outcome);
        self.release(i);
    }

    fn release(&mut self, i: usize) {
        for k in 0..self.dependants[i].len() {
            let j = self.dependants[i][k];
            self.waiting_on[j] -= 1;
            if self.waiting_on[j] == 0 {
                self.ready.push(Reverse(j));
            }
        }
    }

    /// The batch deadline passed: what was in flight is `504`, what never started `424`;
    /// an open group's finished members were rolled back.
    fn expire(&mut self, config: &Config, stop_on_error: bool) {
        let limit = config.batch_timeout.unwrap_or_default();
        for g in 0..self.groups.len() {
            if matches!(self.groups[g].phase, Phase::Waiting | Phase::Ended) {
                continue;
            }
            // Dropping the transaction rolls it back (the hook's handle must on drop).
            self.groups[g].phase = Phase::Ended;
            for m in self.groups[g].members.clone() {
                if self.results[m].is_some() {
                    self.record(m, Outcome::problem(
                        StatusCode::GATEWAY_TIMEOUT,
                        "Batch timed out",
                        format!("rolled back: its atomic group did not finish within the batch's deadline of {limit:?} (batch_timeout)"),
                    ));
                }
            }
        }
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
                "not sent: request {:?} (index {d}), which it depends on, did not take effect (it was not sent, or was rolled back)",
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
