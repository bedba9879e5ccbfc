//! A batch from the caller's requests to one response each: split at the server's limit
//! ([`split`](super::split)), each part sent as one batch request ([`send`](super::send)),
//! then only the items the server throttled sent again, after the longest `Retry-After`
//! among them, within the retry budget and the deadline. An item that was not sent
//! (`424`) because one it waits for was throttled goes with it, when each of its other
//! dependencies succeeded and it holds no `{{id#…}}` reference (which would need an item
//! the resend leaves out). Nothing else is ever sent twice: in particular not an item the
//! client answered for itself ([`NotAnswered`]).

use super::item::Batch;
use super::responses::{not_answered, ClientError, NotAnswered, Report, Responses};
use super::send::{repeatable, retry_after, Sender, Unsent};
use super::split::split;
use super::wire::{self, WireBody};
use super::Settings;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::time::Instant;
use tower::Service;

/// Sends `batch` through `inner`; `limit` is the server's, as configured or learned (by
/// any clone of the client).
pub(super) async fn run<S, B>(
    inner: S,
    settings: &Settings,
    limit: &AtomicUsize,
    batch: Batch,
) -> Result<Responses, ClientError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Into<crate::BoxError>,
    B: Body,
    B::Error: Into<crate::BoxError>,
{
    let deps = batch.dependencies().map_err(ClientError::Invalid)?;
    let bodies = wire::bodies(&batch.items).map_err(ClientError::Invalid)?;
    settings.budget.0.deposit();
    let mut sender = Sender {
        inner,
        settings,
        headers: &batch.headers,
        deadline: settings.deadline.map(|d| Instant::now() + d),
    };
    let mut sending = Sending {
        batch: &batch,
        deps: &deps,
        bodies: &bodies,
        results: batch.items.iter().map(|_| None).collect(),
        report: Report::default(),
        limit,
        answered: false,
        last_failure: None,
    };
    let mut pending: Vec<usize> = (0..batch.items.len()).collect();
    for round in 0.. {
        sending.send_all(&mut sender, &pending).await?;
        let resend = sending.to_resend(&pending);
        let waits = resend
            .iter()
            .filter_map(|&i| retry_after(sending.results[i].as_ref()?.headers()));
        let wait = waits.max().unwrap_or(settings.default_wait);
        // A server that asks for longer than the client waits is not asked early.
        let in_time = wait <= settings.max_wait && sender.in_time(wait);
        // The budget last: it is drawn on only for a retry that would start.
        let within_budget = || settings.budget.0.withdraw();
        if resend.is_empty() || round >= settings.item_retries || !in_time || !within_budget() {
            break;
        }
        tracing::debug!(items = resend.len(), ?wait, "sending throttled items again");
        tokio::time::sleep(wait).await;
        sending.report.waited += wait;
        sending.report.items_resent += resend.len();
        pending = resend;
    }
    if !sending.answered {
        // Nothing was answered: an error, for layers around the client to see.
        return Err(sending
            .last_failure
            .unwrap_or(ClientError::Reply("no reply".into())));
    }
    let answered = sending.results.into_iter().zip(&batch.items);
    let reason = "the batch reply held no response for it";
    let responses = answered
        .map(|(r, item)| {
            r.unwrap_or_else(|| {
                not_answered(&item.id, StatusCode::BAD_GATEWAY, reason.into(), true)
            })
        })
        .collect();
    Ok(Responses {
        responses,
        report: sending.report,
    })
}

/// One batch on its way.
struct Sending<'a> {
    batch: &'a Batch,
    deps: &'a [Vec<usize>],
    bodies: &'a [Option<WireBody>],
    /// Each item's latest response.
    results: Vec<Option<Response<Bytes>>>,
    report: Report,
    limit: &'a AtomicUsize,
    /// Whether any batch request was answered.
    answered: bool,
    last_failure: Option<ClientError>,
}

impl Sending<'_> {
    /// Sends items `pending` in as few batch requests as the limit allows.
    async fn send_all<S, B>(
        &mut self,
        sender: &mut Sender<'_, S>,
        pending: &[usize],
    ) -> Result<(), ClientError>
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
        S::Error: Into<crate::BoxError>,
        B: Body,
        B::Error: Into<crate::BoxError>,
    {
        let mut queue: VecDeque<Vec<usize>> = self.split(pending)?.into();
        while let Some(group) = queue.pop_front() {
            let items = &self.batch.items;
            let spans: Vec<_> = group
                .iter()
                .map(|&i| tracing::info_span!("batch_item", id = %items[i].id, status = tracing::field::Empty))
                .collect();
            let body = wire::encode(items, self.bodies, self.deps, &group);
            let methods: Vec<_> = group.iter().map(|&i| items[i].request.method()).collect();
            match sender.send(body, &methods, &mut self.report).await {
                Ok(mut by_id) => {
                    self.answered = true;
                    for (&i, span) in group.iter().zip(&spans) {
                        let response = by_id.remove(&items[i].id.to_ascii_lowercase());
                        span.record("status", response.as_ref().map(|r| r.status().as_u16()));
                        self.results[i] = response;
                    }
                }
                // Nothing ran: the server names a smaller limit. What is still to send
                // is split again at it.
                Err(Unsent::Limit(limit)) => {
                    self.limit.fetch_min(limit, Ordering::Relaxed);
                    let rest: Vec<usize> =
                        group.into_iter().chain(queue.drain(..).flatten()).collect();
                    queue = self.split(&rest)?.into();
                }
                Err(Unsent::Failed(e, maybe_ran)) => {
                    tracing::warn!(error = %e, items = group.len(), "a batch request failed");
                    self.fail(&group, &e, maybe_ran);
                    self.last_failure = Some(e);
                }
            }
        }
        Ok(())
    }

    /// Each item of `group` answered by the client: its batch request failed.
    fn fail(&mut self, group: &[usize], e: &ClientError, maybe_ran: bool) {
        let status = match e {
            ClientError::Rejected { status, .. } => *status,
            _ => StatusCode::BAD_GATEWAY,
        };
        for &i in group {
            let id = &self.batch.items[i].id;
            self.results[i] = Some(not_answered(id, status, e.to_string(), maybe_ran));
        }
    }

    /// The batch requests for `pending`. A chain longer than the limit is an error before
    /// anything was sent; after, its items are answered so (what ran is kept).
    fn split(&mut self, pending: &[usize]) -> Result<Vec<Vec<usize>>, ClientError> {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut pending = pending.to_vec();
        loop {
            match split(&pending, self.deps, limit) {
                Ok(groups) => return Ok(groups),
                Err(chain) => {
                    let ids = chain
                        .iter()
                        .map(|&i| self.batch.items[i].id.clone())
                        .collect();
                    let e = ClientError::ChainTooLong { ids, limit };
                    if self.report.batch_requests == 0 {
                        return Err(e);
                    }
                    self.fail(&chain, &e, false);
                    pending.retain(|i| !chain.contains(i));
                }
            }
        }
    }

    /// The items of `pending` to send again: those throttled (`429`, `503`; `504` when
    /// the method may be repeated), and those not sent (`424`) that wait for one of them
    /// and otherwise only for items that succeeded.
    fn to_resend(&self, pending: &[usize]) -> Vec<usize> {
        let status = |i: usize| {
            let r = self.results[i].as_ref()?;
            r.extensions()
                .get::<NotAnswered>()
                .is_none()
                .then(|| r.status())
        };
        let mut again = vec![false; self.results.len()];
        for &i in pending {
            let throttled = match status(i).map(|s| s.as_u16()) {
                Some(429 | 503) => true,
                Some(504) => repeatable(self.batch.items[i].request.method()),
                _ => false,
            };
            again[i] = throttled;
        }
        // Dependencies come before their items (`Batch::dependencies` sees to it), so one
        // pass in order decides each after those it waits for.
        for &i in pending {
            if status(i) != Some(StatusCode::FAILED_DEPENDENCY) || self.has_references(i) {
                continue;
            }
            let deps = &self.deps[i];
            let succeeded = |d: usize| status(d).is_some_and(|s| s.as_u16() < 400);
            again[i] =
                deps.iter().any(|&d| again[d]) && deps.iter().all(|&d| again[d] || succeeded(d));
        }
        pending.iter().copied().filter(|&i| again[i]).collect()
    }

    /// Whether item `i` reads another's result (`{{id#…}}` in its headers or body).
    fn has_references(&self, i: usize) -> bool {
        let request = &self.batch.items[i].request;
        let in_headers = request
            .headers()
            .values()
            .any(|v| memchr::memmem::find(v.as_bytes(), b"{{").is_some());
        in_headers || memchr::memmem::find(request.body(), b"{{").is_some()
    }
}
