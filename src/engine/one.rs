//! One sub-request: the wrapped service made ready and called, its response body read
//! within the per-item limit, all within the per-sub-request timeout, with a panic caught.
//! Whatever happens becomes the item's [`Outcome`]; nothing escapes to the rest of the
//! batch.
//!
//! [`Call`] is written by hand, one flat state machine, because it runs once per
//! sub-request: the same steps as `async` blocks (`oneshot`, a body reader, `timeout`,
//! `catch_unwind`, `instrument`) nest a future in a future, and each level moves the one
//! inside it on its first poll. Its timer is made only if the call waits: most in-memory
//! handlers answer on their first poll, and never need one.

use super::Done;
use crate::batch::outcome::Outcome;
use crate::body::{BatchRequestBody, Gathered, ReadError};
use crate::identity::strip_response_framing;
use crate::BoxError;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::task::coop;
use tokio::time::{Instant, Sleep};
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

pin_project! {
    /// The call of item `index`'s sub-request; it gives the item's outcome (its id is set
    /// by the engine).
    pub(super) struct Call<S, B, ResBody>
    where
        S: Service<Request<BatchRequestBody<B>>>,
    {
        #[pin]
        step: CallStep<S, B, ResBody>,
        // Made when the call first waits, for `deadline`; boxed, as most calls never wait,
        // and the call is moved whole before it starts.
        timer: Option<Pin<Box<Sleep>>>,
        // The per-sub-request timeout from the first poll.
        deadline: Option<Instant>,
        span: Option<tracing::Span>,
        index: usize,
        limits: Limits,
    }

    impl<S, B, ResBody> PinnedDrop for Call<S, B, ResBody>
    where
        S: Service<Request<BatchRequestBody<B>>>,
    {
        // A call dropped in flight (the batch's deadline, the client gone) drops what it
        // holds in its span, as `Instrumented` does.
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let _entered = this.span.as_ref().map(tracing::Span::enter);
            end(this.step);
        }
    }
}

/// The steps of a call of `S` with a sub-request.
type CallStep<S, B, ResBody> = Step<
    S,
    Request<BatchRequestBody<B>>,
    <S as Service<Request<BatchRequestBody<B>>>>::Future,
    ResBody,
>;

pin_project! {
    #[project = StepProj]
    enum Step<S, Req, F, ResBody> {
        /// The service is made ready, then called (as `oneshot` does).
        Ready { svc: S, req: Option<Req> },
        Calling { #[pin] response: F },
        Reading { #[pin] body: ResBody, status: StatusCode, headers: HeaderMap, gathered: Gathered },
        Over,
    }
}

impl<S, B, ResBody> Call<S, B, ResBody>
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    /// Item `index`'s call of `svc` with `req`, polled in `span` if there is one.
    #[inline(always)]
    pub(super) fn new(
        svc: S,
        req: Request<BatchRequestBody<B>>,
        index: usize,
        span: Option<tracing::Span>,
        limits: Limits,
    ) -> Self {
        Self {
            step: Step::Ready {
                svc,
                req: Some(req),
            },
            timer: None,
            deadline: None,
            span,
            index,
            limits,
        }
    }
}

impl<S, B, ResBody> Future for Call<S, B, ResBody>
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    type Output = Done;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Done> {
        let mut this = self.project();
        if matches!(this.step.as_ref().get_ref(), Step::Over) {
            panic!("a sub-request's call was polled after it ended");
        }
        let _entered = this.span.as_ref().map(tracing::Span::enter);
        let (index, limits) = (*this.index, *this.limits);
        if let (Some(timeout), None) = (limits.timeout, *this.deadline) {
            *this.deadline = Some(
                Instant::now()
                    .checked_add(timeout)
                    .unwrap_or_else(far_future),
            );
        }
        let had_budget = coop::has_budget_remaining();
        let mut step = this.step.as_mut();
        let polled = catch_unwind(AssertUnwindSafe(|| {
            let polled = poll_step(step.as_mut(), cx, limits);
            if polled.is_ready() {
                // What the call held (the service, its future, the body) goes now, its
                // drops caught as its polls are.
                step.set(Step::Over);
            }
            polled
        }));
        // Each arm makes the outcome where it is returned: an outcome is moved as few
        // times as it can be.
        let deadline = match polled {
            Ok(Poll::Ready(Ok(outcome))) => return Poll::Ready(Done::Sent(index, outcome)),
            Ok(Poll::Ready(Err(failed))) => {
                return Poll::Ready(Done::Sent(index, failure(failed, index, limits)))
            }
            Ok(Poll::Pending) => *this.deadline,
            Err(panic) => {
                log_panic(&*panic, index);
                end(this.step.as_mut());
                return Poll::Ready(Done::Sent(index, failure(Failed::Panicked, index, limits)));
            }
        };
        let outcome = match deadline {
            Some(until) => {
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                // As `tokio::time::timeout` does: a call that used up the task's budget
                // (a body always ready with empty frames) still meets its deadline.
                ready!(match had_budget && !coop::has_budget_remaining() {
                    true => Pin::new(&mut coop::unconstrained(timer.as_mut())).poll(cx),
                    false => timer.as_mut().poll(cx),
                });
                end(this.step.as_mut());
                failure(Failed::TimedOut, index, limits)
            }
            None => return Poll::Pending,
        };
        Poll::Ready(Done::Sent(index, outcome))
    }
}

/// Drops what a call still holds, a panic there caught: the call already has its outcome.
fn end<S, B, ResBody>(mut step: Pin<&mut CallStep<S, B, ResBody>>)
where
    S: Service<Request<BatchRequestBody<B>>>,
{
    let _ = catch_unwind(AssertUnwindSafe(|| step.set(Step::Over)));
}

/// Far enough not to matter: a timeout too long to add to the clock never fires.
fn far_future() -> Instant {
    Instant::now() + std::time::Duration::from_secs(86400 * 365 * 30)
}

/// Moves the call on as far as it can go: readiness, the call, the response's body.
fn poll_step<S, B, ResBody>(
    mut step: Pin<&mut CallStep<S, B, ResBody>>,
    cx: &mut Context<'_>,
    limits: Limits,
) -> Poll<Result<Outcome, Failed>>
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    loop {
        match step.as_mut().project() {
            StepProj::Ready { svc, req } => {
                ready!(svc.poll_ready(cx)).map_err(|e| Failed::Service(e.into()))?;
                let req = req.take().expect("called once");
                let response = svc.call(req);
                step.set(Step::Calling { response });
            }
            StepProj::Calling { response } => {
                let response = ready!(response.poll(cx)).map_err(|e| Failed::Service(e.into()))?;
                let (parts, body) = response.into_parts();
                let (status, headers) = (parts.status, parts.headers);
                let gathered = match Gathered::new(&body, limits.max_item_response_bytes) {
                    Ok(gathered) => gathered,
                    Err(_) => return Poll::Ready(Ok(too_large(status, headers, limits))),
                };
                step.set(Step::Reading {
                    body,
                    status,
                    headers,
                    gathered,
                });
            }
            StepProj::Reading {
                body,
                status,
                headers,
                gathered,
            } => {
                let read = ready!(gathered.poll_read(body, cx));
                let (status, headers) = (*status, std::mem::take(headers));
                return Poll::Ready(match read {
                    Ok(body) => Ok(answered(status, headers, body, None)),
                    Err(ReadError::TooLarge) => Ok(too_large(status, headers, limits)),
                    Err(ReadError::Failed(e)) => Err(Failed::Body(status, e)),
                });
            }
            // `Call::poll` never polls an ended call.
            StepProj::Over => return Poll::Pending,
        }
    }
}

/// The service's answer, as the item reports it.
fn answered(
    status: StatusCode,
    mut headers: HeaderMap,
    body: Bytes,
    body_omitted: Option<String>,
) -> Outcome {
    strip_response_framing(&mut headers);
    Outcome {
        id: Default::default(),
        status,
        headers,
        body,
        body_omitted,
        answered: None,
    }
}

/// The service's answer without its body, which is larger than the per-item limit.
fn too_large(status: StatusCode, headers: HeaderMap, limits: Limits) -> Outcome {
    let limit = limits.max_item_response_bytes;
    let why = format!(
        "the response body is larger than the per-item limit of {limit} bytes (max_item_response_bytes)"
    );
    answered(status, headers, Bytes::new(), Some(why))
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use std::convert::Infallible;

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
            ready!(std::pin::pin!(coop::consume_budget()).poll(cx));
            Poll::Ready(Some(Ok(Frame::data(Bytes::new()))))
        }
    }

    /// Item 0's call of a service that answers with the body `make` gives, within
    /// `timeout`.
    fn call_answering<Bd>(
        make: fn() -> Bd,
        timeout: Option<std::time::Duration>,
    ) -> impl Future<Output = Done>
    where
        Bd: Body<Data = Bytes, Error = Infallible>,
    {
        let svc = tower::service_fn(move |_: Request<BatchRequestBody<()>>| async move {
            Ok::<_, Infallible>(Response::new(make()))
        });
        let req = Request::new(BatchRequestBody::buffered(Bytes::new()));
        let limits = Limits {
            timeout,
            max_item_response_bytes: 1024,
        };
        Call::new(svc, req, 0, None, limits)
    }

    #[tokio::test]
    async fn a_call_that_uses_up_the_budget_still_times_out() {
        let call = call_answering(|| Endless, Some(std::time::Duration::from_millis(20)));
        // Without the timer polled past the budget this never ends: the guard makes that a
        // failure, not a hang.
        let guard = std::time::Duration::from_secs(10);
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
}
