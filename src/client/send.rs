//! One batch request, sent until it is answered: a reset connection, a body cut short, or
//! a server that is busy (`429`, `503`, `502`, `504`) or still running the same batch
//! (`409`) is retried with the same `Idempotency-Key`, so nothing runs twice; the wait is
//! the server's `Retry-After`, else a doubling backoff. A `400`/`413` that names a limit
//! smaller than the batch is handed back, for the caller to split again (nothing ran).

use super::item::Item;
use super::responses::{ClientError, Report};
use super::{wire, Settings};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tracing::Instrument;

/// How a batch request ended, when it brought no reply.
pub(super) enum Unsent {
    /// The server's limit is this, smaller than the batch: split again.
    Limit(usize),
    /// Given up.
    Failed(ClientError),
}

/// The inner HTTP client and what every batch request is sent with.
pub(super) struct Sender<'a, S> {
    pub(super) inner: &'a S,
    pub(super) settings: &'a Settings,
    pub(super) headers: &'a HeaderMap,
    pub(super) deadline: Option<Instant>,
}

impl<S, B> Sender<'_, S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Into<crate::BoxError>,
    B: Body,
    B::Error: Into<crate::BoxError>,
{
    /// Sends `items` as one batch request; their responses by id (lower case).
    pub(super) async fn send(
        &self,
        items: &[&Item],
        report: &mut Report,
    ) -> Result<HashMap<String, Response<Bytes>>, Unsent> {
        let key = super::new_key();
        let body = wire::encode(items);
        let span = tracing::info_span!("batch_request", size = items.len(), idempotency_key = %key, attempts = tracing::field::Empty);
        let mut attempt = 0;
        let last = loop {
            attempt += 1;
            report.batch_requests += 1;
            let request = self.request(&key, body.clone());
            let sent = self.inner.clone().oneshot(request).instrument(span.clone());
            let (failure, wait) = match self.answer(sent.await, items.len()).await {
                Ok(reply) => {
                    span.record("attempts", attempt);
                    return wire::decode(&reply).map_err(|e| Unsent::Failed(ClientError::Reply(e)));
                }
                Err(Answer::Final(unsent)) => return Err(unsent),
                Err(Answer::Retry(failure, wait)) => (failure, wait),
            };
            let wait = wait.unwrap_or_else(|| backoff(attempt));
            if attempt >= self.settings.batch_attempts || !self.in_time(wait) {
                break failure;
            }
            tracing::debug!(parent: &span, ?wait, "retrying the batch request with the same key");
            tokio::time::sleep(wait).await;
            report.waited += wait;
        };
        span.record("attempts", attempt);
        Err(Unsent::Failed(last))
    }

    fn request(&self, key: &str, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.settings.endpoint.clone();
        let headers = request.headers_mut();
        headers.clone_from(self.headers);
        let json = HeaderValue::from_static("application/json");
        headers.insert(header::CONTENT_TYPE, json.clone());
        headers.insert(header::ACCEPT, json);
        if self.settings.keys {
            // A key is 32 hex digits: always a valid header value.
            if let Ok(key) = HeaderValue::try_from(format!("\"{key}\"")) {
                headers.insert("idempotency-key", key);
            }
        }
        request
    }

    /// Whether a wait of `wait` still ends before the deadline.
    pub(super) fn in_time(&self, wait: Duration) -> bool {
        self.deadline.is_none_or(|d| Instant::now() + wait < d)
    }

    /// The reply's body, or what to do about its absence.
    async fn answer(
        &self,
        sent: Result<Response<B>, S::Error>,
        size: usize,
    ) -> Result<Bytes, Answer> {
        let response = sent.map_err(|e| Answer::Retry(ClientError::Transport(e.into()), None))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let limited = Limited::new(response.into_body(), self.settings.max_reply_bytes);
        let body = match limited.collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return Err(Answer::Retry(ClientError::Transport(e), None)),
        };
        if status.is_success() {
            return Ok(body);
        }
        if let Some(limit) = named_limit(status, &body).filter(|&n| n < size) {
            return Err(Answer::Final(Unsent::Limit(limit)));
        }
        let refused = ClientError::Rejected { status, body };
        match status.as_u16() {
            409 | 429 | 502 | 503 | 504 => Err(Answer::Retry(refused, retry_after)),
            _ => Err(Answer::Final(Unsent::Failed(refused))),
        }
    }
}

/// Why a batch request brought no reply.
enum Answer {
    Retry(ClientError, Option<Duration>),
    Final(Unsent),
}

/// 0.5 s, then twice as long each time, at most 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64 << attempt.saturating_sub(1).min(4))
}

/// `Retry-After` in seconds (an HTTP date is not read: the caller's backoff applies).
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The limit on sub-requests a `400`/`413` names: "sub-requests; the limit is N" (this
/// layer), "steps exceeds the maximum of N" (Microsoft Graph).
fn named_limit(status: StatusCode, body: &[u8]) -> Option<usize> {
    if !matches!(status.as_u16(), 400 | 413) {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    [
        "sub-requests; the limit is ",
        "steps exceeds the maximum of ",
    ]
    .iter()
    .find_map(|marker| {
        let at = text.find(marker)? + marker.len();
        let digits: String = text[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok().filter(|&n| n > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_from_the_servers_words() {
        let ours = br#"{"detail":"field `requests`: holds 250 sub-requests; the limit is 100"}"#;
        assert_eq!(named_limit(StatusCode::BAD_REQUEST, ours), Some(100));
        let graph =
            br#"{"error":{"message":"Number of batch request steps exceeds the maximum of 20."}}"#;
        assert_eq!(named_limit(StatusCode::BAD_REQUEST, graph), Some(20));
        assert_eq!(named_limit(StatusCode::CONFLICT, ours), None);
        assert_eq!(
            named_limit(StatusCode::BAD_REQUEST, b"sub-requests; the limit is 0"),
            None
        );
        let headers = br#"{"detail":"holds more than 100 header values; the limit is 100"}"#;
        assert_eq!(named_limit(StatusCode::BAD_REQUEST, headers), None);
    }

    #[test]
    fn waits() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static(" 3 "));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(40), Duration::from_secs(8));
    }
}
