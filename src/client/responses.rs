//! What the client hands back: one response per request, in request order, with helpers
//! to see what failed and a report of what it took; or why the batch could not be sent.

use bytes::Bytes;
use http::{Response, StatusCode};
use std::fmt;
use std::time::Duration;

/// One response per request of the [`Batch`](super::Batch), in its order.
#[derive(Debug)]
pub struct Responses {
    pub(crate) responses: Vec<Response<Bytes>>,
    pub(crate) report: Report,
}

/// What sending a batch took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Batch requests sent, whole-batch retries included.
    pub batch_requests: usize,
    /// Items sent again because they were throttled (or waited for one that was).
    pub items_resent: usize,
    /// The time spent waiting before retries, as `Retry-After` asked.
    pub waited: Duration,
    /// The `Idempotency-Key` of each batch request (its retries share it): sent again
    /// with the same body, a batch request that was left unanswered is replayed.
    pub idempotency_keys: Vec<String>,
}

/// In the extensions of a response the client wrote itself, because the server's reply
/// held none for the item: why, and whether the request may have run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotAnswered {
    /// Why no answer came.
    pub reason: String,
    /// Whether the request may have run: its batch request was sent and no reply said
    /// what became of it (retry it only with the same key).
    pub maybe_ran: bool,
}

impl Responses {
    /// The responses, in request order.
    pub fn iter(&self) -> std::slice::Iter<'_, Response<Bytes>> {
        self.responses.iter()
    }

    /// The response to request `index`.
    pub fn get(&self, index: usize) -> Option<&Response<Bytes>> {
        self.responses.get(index)
    }

    /// How many responses there are (as many as requests).
    pub fn len(&self) -> usize {
        self.responses.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.responses.is_empty()
    }

    /// The requests that failed (status 400 or more), with their index.
    pub fn failed(&self) -> impl Iterator<Item = (usize, &Response<Bytes>)> {
        let all = self.responses.iter().enumerate();
        all.filter(|(_, r)| r.status().as_u16() >= 400)
    }

    /// Whether every request succeeded.
    pub fn all_succeeded(&self) -> bool {
        self.failed().next().is_none()
    }

    /// The requests the server's replies said nothing of (see [`NotAnswered`]).
    pub fn not_answered(&self) -> impl Iterator<Item = (usize, &NotAnswered)> {
        let all = self.responses.iter().enumerate();
        all.filter_map(|(i, r)| Some((i, r.extensions().get::<NotAnswered>()?)))
    }

    /// What sending took.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The responses, in request order.
    pub fn into_vec(self) -> Vec<Response<Bytes>> {
        self.responses
    }
}

impl IntoIterator for Responses {
    type Item = Response<Bytes>;
    type IntoIter = std::vec::IntoIter<Response<Bytes>>;

    fn into_iter(self) -> Self::IntoIter {
        self.responses.into_iter()
    }
}

/// A response for an item the server said nothing of: `status` (`502` when no answer came
/// at all), a problem body, and [`NotAnswered`] in its extensions.
pub(crate) fn not_answered(
    id: &str,
    status: StatusCode,
    reason: String,
    maybe_ran: bool,
) -> Response<Bytes> {
    let body = serde_json::json!({
        "title": "Not answered",
        "status": status.as_u16(),
        "detail": format!("{id:?}: {reason}"),
    });
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/problem+json"),
    );
    response
        .extensions_mut()
        .insert(NotAnswered { reason, maybe_ran });
    response
}

/// Why a batch could not be sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The batch is malformed (a repeated id, an unknown dependency); nothing was sent.
    Invalid(String),
    /// A `dependsOn` chain is longer than the server's limit: it cannot go in one batch
    /// request. Nothing was sent.
    ChainTooLong {
        /// The chain's ids.
        ids: Vec<String>,
        /// The limit.
        limit: usize,
    },
    /// The server refused every batch request as a whole (after retries, when its status
    /// allowed them): nothing was answered.
    Rejected {
        /// Its status.
        status: StatusCode,
        /// Its body.
        body: Bytes,
    },
    /// The HTTP client failed (after retries with the same `Idempotency-Key`), and
    /// nothing was answered.
    Transport(crate::BoxError),
    /// No reply was a JSON batch reply.
    Reply(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(why) => write!(f, "invalid batch: {why}"),
            Self::ChainTooLong { ids, limit } => write!(
                f,
                "a dependsOn chain of {} requests ({}) is longer than the server's limit of {limit}",
                ids.len(),
                ids.join(", ")
            ),
            Self::Rejected { status, body } => write!(
                f,
                "the server refused the batch with {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            ),
            Self::Transport(e) => write!(f, "the batch request failed: {e}"),
            Self::Reply(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Transport(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}
