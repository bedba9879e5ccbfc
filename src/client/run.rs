//! A batch from the caller's requests to one response each: split at the server's limit
//! ([`split`](super::split)), each part sent as one batch request ([`send`](super::send)),
//! then only the items the server throttled sent again, after the longest `Retry-After`
//! among them, within the retry budget and the deadline. Items that waited for a
//! throttled one (`424`) go with it; nothing else is ever sent twice.

use super::item::{Batch, Item};
use super::responses::{not_answered, ClientError, Report, Responses};
use super::send::{retry_after, Sender, Unsent};
use super::split::split;
use super::Settings;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use std::collections::VecDeque;
use tokio::time::Instant;
use tower::Service;

/// Sends `batch` through `inner`.
pub(super) async fn run<S, B>(
    inner: S,
    settings: &Settings,
    batch: Batch,
) -> Result<Responses, ClientError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Into<crate::BoxError>,
    B: Body,
    B::Error: Into<crate::BoxError>,
{
    let deps = batch.dependencies().map_err(ClientError::Invalid)?;
    let sender = Sender {
        inner: &inner,
        settings,
        headers: &batch.headers,
        deadline: settings.deadline.map(|d| Instant::now() + d),
    };
    let mut sending = Sending {
        batch: &batch,
        deps: &deps,
        results: batch.items.iter().map(|_| None).collect(),
        report: Report::default(),
        limit: settings.max_requests,
    };
    let mut pending: Vec<usize> = (0..batch.items.len()).collect();
    for round in 0.. {
        sending.send_all(&sender, &pending).await?;
        let resend = sending.to_resend(&pending);
        let waits = resend.iter().filter_map(|&i| {
            let response = sending.results[i].as_ref()?;
            retry_after(response.headers())
        });
        let wait = waits.max().unwrap_or(settings.default_wait);
        let wait = wait.min(settings.max_wait);
        if resend.is_empty() || round >= settings.item_retries || !sender.in_time(wait) {
            break;
        }
        tracing::debug!(items = resend.len(), ?wait, "sending throttled items again");
        tokio::time::sleep(wait).await;
        sending.report.waited += wait;
        sending.report.items_resent += resend.len();
        pending = resend;
    }
    let answered = sending.results.into_iter().zip(&batch.items);
    let responses = answered
        .map(|(r, item)| r.unwrap_or_else(|| not_answered(&item.id)))
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
    /// Each item's latest response.
    results: Vec<Option<Response<Bytes>>>,
    report: Report,
    /// The server's limit, as configured or learned.
    limit: usize,
}

impl Sending<'_> {
    /// Sends items `pending` in as few batch requests as the limit allows.
    async fn send_all<S, B>(
        &mut self,
        sender: &Sender<'_, S>,
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
            let items: Vec<&Item> = group.iter().map(|&i| &self.batch.items[i]).collect();
            match sender.send(&items, &mut self.report).await {
                Ok(mut by_id) => {
                    for (&i, item) in group.iter().zip(&items) {
                        let response = by_id.remove(&item.id.to_ascii_lowercase());
                        let status = response.as_ref().map(|r| r.status().as_u16());
                        tracing::info_span!("batch_item", id = %item.id, status).in_scope(|| {});
                        self.results[i] = response;
                    }
                }
                // Nothing ran: the server names a smaller limit.
                Err(Unsent::Limit(limit)) => {
                    self.limit = limit;
                    for part in self.split(&group)?.into_iter().rev() {
                        queue.push_front(part);
                    }
                }
                Err(Unsent::Failed(e)) => {
                    tracing::warn!(error = %e, items = group.len(), "a batch request failed");
                    for &i in &group {
                        self.results[i] = Some(failed(&e));
                    }
                }
            }
        }
        Ok(())
    }

    fn split(&self, pending: &[usize]) -> Result<Vec<Vec<usize>>, ClientError> {
        split(pending, self.deps, self.limit).map_err(|chain| ClientError::ChainTooLong {
            ids: chain
                .iter()
                .map(|&i| self.batch.items[i].id.clone())
                .collect(),
            limit: self.limit,
        })
    }

    /// The items of `pending` to send again: those throttled (`429`, `503`; `504` when
    /// the method may be repeated), and those that were not sent (`424`) because one they
    /// wait for is sent again.
    fn to_resend(&self, pending: &[usize]) -> Vec<usize> {
        let mut again = vec![false; self.results.len()];
        for &i in pending {
            let status = self.results[i].as_ref().map(Response::status);
            let method = self.batch.items[i].request.method();
            again[i] = status.is_some_and(|s| throttled(s, method));
        }
        // Dependencies come first in request order, so one pass sees them decided.
        for &i in pending {
            let status = self.results[i].as_ref().map(Response::status);
            if status == Some(StatusCode::FAILED_DEPENDENCY) {
                again[i] = self.deps[i].iter().any(|&d| again[d]);
            }
        }
        pending.iter().copied().filter(|&i| again[i]).collect()
    }
}

/// Whether an item's status asks for it to be sent again later.
fn throttled(status: StatusCode, method: &Method) -> bool {
    let idempotent = matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    );
    match status.as_u16() {
        429 | 503 => true,
        504 => idempotent,
        _ => false,
    }
}

/// The response of an item whose batch request failed after its retries: the status the
/// server refused it with, else `502`.
fn failed(e: &ClientError) -> Response<Bytes> {
    let status = match e {
        ClientError::Rejected { status, .. } => *status,
        _ => StatusCode::BAD_GATEWAY,
    };
    let body = serde_json::json!({
        "title": "Batch request failed",
        "status": status.as_u16(),
        "detail": e.to_string(),
    });
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/problem+json"),
    );
    response
}
