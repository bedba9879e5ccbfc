//! One sub-request, called: the wrapped service made ready and called (tower's
//! `oneshot`), its response's body read within the per-item limit, the whole within the
//! per-sub-request timeout (tokio's), a panic anywhere in it caught, in the item's span.
//! A call that must run on a task of its own is [`spawned`].

use super::Done;
use crate::batch::failures;
use crate::batch::outcome::Outcome;
use crate::body::{read_limited, BatchRequestBody, ReadError};
use crate::subrequest::strip_response_framing;
use crate::BoxError;
use futures_util::future::Either;
use futures_util::{FutureExt as _, TryFutureExt as _};
use http::{Request, Response, StatusCode};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tower::ServiceExt as _;
use tracing::Instrument as _;

/// What bounds one call: copied into it, so that it can run on a task of its own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The per-sub-request timeout.
    pub(crate) timeout: Option<Duration>,
    /// What the response body may hold.
    pub(crate) max_item_response_bytes: usize,
}

/// Why a sub-request has no response to report.
enum Failed {
    TimedOut,
    Service(BoxError),
    Body(StatusCode, BoxError),
}

/// Item `index`'s sub-request `req`, sent to `svc`: its outcome. Runs in `span` when items have spans.
///
/// Composed here rather than written as one `async fn`: each `async` level keeps its own
/// copy of what it was given, and the future is moved whole when it starts (measured: an
/// `async fn` around the same parts made it 2,384 bytes, and cost ~1,000 instructions
/// per item in copies).
pub(super) fn call<S, B, ResBody>(
    svc: S,
    req: Request<BatchRequestBody<B>>,
    index: usize,
    span: Option<tracing::Span>,
    limits: Limits,
) -> impl Future<Output = Done> + Send + 'static
where
    S: super::Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: super::WrappedBody,
{
    let answer = answer(svc, req, limits.max_item_response_bytes);
    // No timer at all without a timeout (a runtime may have no time driver).
    let bounded = match limits.timeout {
        Some(t) => Either::Left(tokio::time::timeout(t, answer)),
        None => Either::Right(answer.map(Ok)),
    };
    // Fused: what the call held is dropped as it ends (its timeout included), inside
    // `catch_unwind`.
    AssertUnwindSafe(bounded.fuse())
        .catch_unwind()
        .instrument(span.unwrap_or_else(tracing::Span::none))
        .map(move |caught| {
            let outcome = match caught {
                Ok(Ok(Ok(outcome))) => outcome,
                Ok(Ok(Err(failed))) => failure(failed, index, limits),
                Ok(Err(_elapsed)) => failure(Failed::TimedOut, index, limits),
                Err(panic) => {
                    log_panic(&*panic, index);
                    failures::panicked()
                }
            };
            Done::Sent(index, outcome)
        })
}

/// The service's answer to `req`, with its body read within `limit`.
fn answer<S, B, ResBody>(
    svc: S,
    req: Request<BatchRequestBody<B>>,
    limit: usize,
) -> impl Future<Output = Result<Outcome, Failed>>
where
    S: super::Wrapped<B, ResBody>,
    ResBody: super::WrappedBody,
{
    svc.oneshot(req)
        .map_err(|e| Failed::Service(e.into()))
        .and_then(move |response| read(response, limit))
}

/// `response`, as the item reports it, with its body read within `limit`.
async fn read<ResBody: super::WrappedBody>(
    response: Response<ResBody>,
    limit: usize,
) -> Result<Outcome, Failed> {
    let (parts, body) = response.into_parts();
    let (status, mut headers) = (parts.status, parts.headers);
    strip_response_framing(&mut headers);
    let mut outcome = Outcome {
        status,
        headers,
        body: Default::default(),
        body_omitted: None,
        answered: None,
    };
    match read_limited(body, limit).await {
        Ok(body) => outcome.body = body,
        Err(ReadError::TooLarge) => outcome.body_omitted = Some(failures::body_too_large(limit)),
        Err(ReadError::Failed(e)) => return Err(Failed::Body(status, e)),
    }
    Ok(outcome)
}

/// Runs `call`, item `index`'s, on a task of its own, so that the runtime's threads share
/// a batch's sub-requests; the task is aborted when this is dropped (the batch's deadline
/// passed, or the batch was dropped).
pub(super) async fn spawned<F>(index: usize, call: F) -> Done
where
    F: Future<Output = Done> + Send + 'static,
{
    let mut task = tokio::task::JoinSet::new();
    task.spawn(call);
    // The call catches its handler's panics: a task fails only if the layer's own code
    // around it panicked (or the runtime is shutting down).
    match task.join_next().await {
        Some(Ok(done)) => done,
        Some(Err(e)) if e.is_panic() => Done::Sent(index, failures::panicked()),
        _ => Done::Sent(index, failures::cancelled()),
    }
}

/// Logs a handler's panic, with its message when it has one.
fn log_panic(panic: &(dyn std::any::Any + Send), index: usize) {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(index, panic = %message, "a batch sub-request panicked");
}

/// The item the layer reports in place of a response.
fn failure(failed: Failed, index: usize, limits: Limits) -> Outcome {
    match failed {
        Failed::TimedOut => failures::timed_out(limits.timeout.unwrap_or_default()),
        Failed::Service(e) => {
            tracing::warn!(index, error = %e, "the wrapped service failed a batch sub-request");
            failures::service_failed(&e)
        }
        Failed::Body(status, e) => {
            tracing::warn!(index, error = %e, "a batch sub-response body failed");
            failures::body_failed(status, &e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body::{Body, Frame};
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{ready, Context, Poll};

    /// A body that is always ready with another empty frame, each taking some of the
    /// task's budget, as a body fed by a tokio channel would.
    struct Endless;

    impl Body for Endless {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            ready!(std::pin::pin!(tokio::task::coop::consume_budget()).poll(cx));
            Poll::Ready(Some(Ok(Frame::data(Bytes::new()))))
        }
    }

    /// Item 0's call of a service that answers with the body `make` gives, within
    /// `timeout`.
    fn call_answering<Bd>(make: fn() -> Bd, timeout: Option<Duration>) -> impl Future<Output = Done>
    where
        Bd: Body<Data = Bytes, Error = Infallible> + Send + 'static,
    {
        let svc = tower::service_fn(move |_: Request<BatchRequestBody<()>>| async move {
            Ok::<_, Infallible>(Response::new(make()))
        });
        let req = Request::new(BatchRequestBody::buffered(Bytes::new()));
        let limits = Limits {
            timeout,
            max_item_response_bytes: 1024,
        };
        call(svc, req, 0, None, limits)
    }

    #[tokio::test]
    async fn a_call_that_uses_up_the_budget_still_times_out() {
        let call = call_answering(|| Endless, Some(Duration::from_millis(20)));
        // Without the timer polled past the budget this never ends: the guard makes that a
        // failure, not a hang.
        let guard = Duration::from_secs(10);
        let done = tokio::time::timeout(guard, call)
            .await
            .expect("the timeout fired");
        let Done::Sent(0, outcome) = done else {
            panic!("not item 0");
        };
        assert_eq!(outcome.status, StatusCode::GATEWAY_TIMEOUT);
    }

    /// A body that ends at once, and panics when dropped.
    struct PanicsOnDrop;

    impl Body for PanicsOnDrop {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(None)
        }
    }

    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("a body that panics when dropped");
        }
    }

    #[tokio::test]
    async fn a_body_that_panics_when_dropped_answers_500() {
        let Done::Sent(0, outcome) = call_answering(|| PanicsOnDrop, None).await else {
            panic!("not item 0");
        };
        assert_eq!(outcome.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn a_task_that_panics_answers_500_and_one_cancelled_503() {
        let panics = spawned(3, async { panic!("a layer bug") });
        let Done::Sent(3, outcome) = runtime().block_on(panics) else {
            panic!("not item 3");
        };
        assert_eq!(outcome.status, 500);
        let mut pending = Box::pin(spawned(4, std::future::pending()));
        // Spawned on a runtime that is then shut down, which cancels the task.
        runtime().block_on(async {
            assert!(futures_util::poll!(pending.as_mut()).is_pending());
        });
        let Done::Sent(4, outcome) = runtime().block_on(pending) else {
            panic!("not item 4");
        };
        assert_eq!(outcome.status, 503);
    }
}
