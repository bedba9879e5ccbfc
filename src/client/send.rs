//! One batch request, sent until it is answered. A server that is busy (`429`, `503`:
//! nothing ran) is asked again after its `Retry-After`; a reset connection, a body cut
//! short, a gateway's `502`/`504` or a `409` while the same batch still runs are retried
//! with the same `Idempotency-Key`, so that a server honouring keys (this crate's layer)
//! runs the batch once. Without keys those are retried only when every item may be
//! repeated (`GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`). Waits are the server's
//! `Retry-After` (one longer than the client's longest wait ends the retries), else a
//! doubling backoff. A `400`/`413` that names a limit smaller than the batch is handed
//! back, for the caller to split again (nothing ran).

use super::responses::{ClientError, Report};
use super::Settings;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tracing::Instrument;

/// How a batch request ended, when it brought no reply.
pub(super) enum Unsent {
    /// The server's limit is this, smaller than the batch: split again.
    Limit(usize),
    /// Given up; whether the items may have run.
    Failed(ClientError, bool),
}

/// The inner HTTP client and what every batch request is sent with.
pub(super) struct Sender<'a, S> {
    pub(super) inner: S,
    pub(super) settings: &'a Settings,
    pub(super) headers: &'a HeaderMap,
    pub(super) deadline: Option<Instant>,
}

/// Why an attempt brought no reply, and what may follow.
enum Answer {
    /// Retry after the wait (the server's, else the backoff), if the items may be.
    Retry {
        failure: ClientError,
        wait: Option<Duration>,
        /// Whether the server may have run the items.
        maybe_ran: bool,
    },
    Final(Unsent),
}

impl<S, B> Sender<'_, S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Into<crate::BoxError>,
    B: Body,
    B::Error: Into<crate::BoxError>,
{
    /// Sends `body` (the items, whose `methods` are these) as one batch request; their
    /// responses by id (lower case).
    pub(super) async fn send(
        &mut self,
        body: Bytes,
        methods: &[&Method],
        report: &mut Report,
    ) -> Result<HashMap<String, Response<Bytes>>, Unsent> {
        let key = super::new_key();
        report.idempotency_keys.push(key.clone());
        let repeatable = methods.iter().all(|m| repeatable(m));
        let span = tracing::info_span!("batch_request", size = methods.len(), idempotency_key = %key, attempts = tracing::field::Empty);
        let mut attempt = 0;
        loop {
            attempt += 1;
            span.record("attempts", attempt);
            report.batch_requests += 1;
            let request = self.request(&key, body.clone());
            let sent = self
                .inner
                .clone()
                .oneshot(request)
                .instrument(span.clone())
                .await;
            let (failure, wait, maybe_ran) =
                match answer(sent, methods.len(), self.settings.max_reply_bytes).await {
                    Ok(reply) => {
                        let decoded = super::wire::decode(&reply);
                        return decoded.map_err(|e| Unsent::Failed(ClientError::Reply(e), true));
                    }
                    Err(Answer::Final(unsent)) => return Err(unsent),
                    Err(Answer::Retry {
                        failure,
                        wait,
                        maybe_ran,
                    }) => (failure, wait, maybe_ran),
                };
            let may_retry = !maybe_ran || self.settings.keys || repeatable;
            let wait = wait.unwrap_or_else(|| backoff(attempt));
            let too_long = wait > self.settings.max_wait || !self.in_time(wait);
            let spent = attempt >= self.settings.batch_attempts;
            // The budget last: it is drawn on only for a retry that would start.
            if !may_retry || too_long || spent || !self.settings.budget.0.withdraw() {
                return Err(Unsent::Failed(failure, maybe_ran));
            }
            tracing::debug!(parent: &span, ?wait, "sending the batch request again with the same key");
            tokio::time::sleep(wait).await;
            report.waited += wait;
        }
    }

    fn request(&self, key: &str, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
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
        let ends = Instant::now().checked_add(wait);
        self.deadline
            .is_none_or(|d| ends.is_some_and(|ends| ends < d))
    }
}

/// The reply's body, or what to do about its absence.
async fn answer<B, E>(
    sent: Result<Response<B>, E>,
    size: usize,
    max_reply_bytes: usize,
) -> Result<Bytes, Answer>
where
    B: Body,
    B::Error: Into<crate::BoxError>,
    E: Into<crate::BoxError>,
{
    let retry = |failure, wait, maybe_ran| Answer::Retry {
        failure,
        wait,
        maybe_ran,
    };
    let response = sent.map_err(|e| retry(ClientError::Transport(e.into()), None, true))?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let limited = Limited::new(response.into_body(), max_reply_bytes);
    let body = match limited.collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            let max = max_reply_bytes;
            let why =
                format!("the reply is larger than {max} bytes (BatchClient::max_reply_bytes)");
            return Err(Answer::Final(Unsent::Failed(ClientError::Reply(why), true)));
        }
        Err(e) => return Err(retry(ClientError::Transport(e), None, true)),
    };
    if status.is_success() {
        return Ok(body);
    }
    if let Some(limit) = named_limit(status, &body).filter(|&n| n < size) {
        return Err(Answer::Final(Unsent::Limit(limit)));
    }
    let refused = ClientError::Rejected { status, body };
    match status.as_u16() {
        // Busy: nothing ran.
        429 | 503 => Err(retry(refused, retry_after, false)),
        409 | 502 | 504 => Err(retry(refused, retry_after, true)),
        _ => Err(Answer::Final(Unsent::Failed(refused, false))),
    }
}

/// Whether a request with this method may be sent twice.
pub(super) fn repeatable(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// 0.5 s, then twice as long each time, at most 8 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64 << attempt.saturating_sub(1).min(4))
}

/// `Retry-After`: seconds, or an HTTP date (a date already past asks for no wait).
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
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
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date past");
        let later = std::time::SystemTime::now() + Duration::from_secs(3600);
        let date = HeaderValue::try_from(httpdate::fmt_http_date(later)).unwrap();
        h.insert(header::RETRY_AFTER, date);
        let wait = retry_after(&h).unwrap();
        assert!(wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("18446744073709551615"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(u64::MAX)));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(40), Duration::from_secs(8));
    }
}
