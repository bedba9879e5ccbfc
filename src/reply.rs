//! A batch's reply, written while its plan runs. Most formats stream: the response leaves
//! as soon as the batch is decoded, and its body *is* the run, so each poll of the body
//! runs the batch until there is something to send. A format whose status depends on every
//! outcome (resource bulk) is run to the end and sent whole.
//!
//! A streamed reply holds what is written and not yet read: when that passes
//! [`HIGH_WATER`], the run pauses (its calls in flight wait) until the client has read it.
//! So memory follows the items finished and not yet sent, not the batch; and a client that
//! goes away drops the body, which drops the run and every call in flight.

use crate::batch::outcome::Outcome;
use crate::batch::plan::Plan;
use crate::batch::summary::Summary;
use crate::body::{BatchRequestBody, BatchResponseBody};
use crate::codec::{Reply, ReplyWriter};
use crate::config::Config;
use crate::engine::{self, Emit};
use crate::identity::Outer;
use crate::trace::BatchTrace;
use crate::BoxError;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::Stream;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use tower_service::Service;
use tracing::Instrument as _;

/// The bytes a streamed reply may hold, written and not yet read, before its run pauses.
const HIGH_WATER: usize = 64 * 1024;

/// Runs `plan` to the end, then answers with the reply whole.
pub(crate) async fn whole<S, B, ResBody>(
    svc: S,
    outer: &Outer,
    plan: Plan,
    mut reply: Box<dyn Reply>,
    config: &Config,
    trace: &BatchTrace,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let mut w = ReplyWriter::new(config.run.max_response_bytes);
    reply.begin(&mut w);
    let emit = |i: usize, outcome: &Outcome| reply.item(i, outcome, &mut w);
    let traced = trace.is_enabled();
    let summary = engine::run(svc, outer, plan, &config.run, emit, traced).await;
    trace.finished(&summary);
    let content_type = reply.content_type();
    let status = reply.finish(&mut w, &summary);
    response(status, content_type, BatchResponseBody::chunks(w.finish()))
}

/// Answers `200 OK` with a body that runs `plan` as it is read. The run starts here: a
/// batch that finishes before it first waits is sent whole, with its length.
pub(crate) async fn streamed<S, B, ResBody>(
    svc: S,
    outer: Outer,
    plan: Plan,
    mut reply: Box<dyn Reply>,
    config: Arc<Config>,
    trace: BatchTrace,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let content_type = reply.content_type();
    let mut w = ReplyWriter::new(config.run.max_response_bytes);
    reply.begin(&mut w);
    let writing = Shared(Arc::new(Mutex::new(Writing {
        reply: Some(reply),
        w,
    })));
    let sink = writing.clone();
    let span = trace.span().clone();
    let run = async move {
        let traced = trace.is_enabled();
        let summary = engine::run(svc, &outer, plan, &config.run, sink, traced).await;
        trace.finished(&summary);
        summary
    };
    let mut stream = ReplyStream {
        run: Some(Box::pin(run.instrument(span))),
        writing,
        out: VecDeque::new(),
    };
    let first = std::future::poll_fn(|cx| Poll::Ready(stream.poll_run(cx).is_ready()));
    let body = if first.await {
        BatchResponseBody::chunks(stream.out.into())
    } else {
        BatchResponseBody::streamed(Box::pin(stream))
    };
    response(StatusCode::OK, content_type, body)
}

fn response<B>(status: StatusCode, content_type: HeaderValue, body: B) -> Response<B> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

/// A reply being written, shared by its run (which writes the outcomes) and its body
/// (which takes what is written). Both are polled by the one task that sends the body: the
/// lock is never contended.
struct Writing {
    /// Until the run ends.
    reply: Option<Box<dyn Reply>>,
    w: ReplyWriter,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Writing>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Writing> {
        // A panic while writing leaves a reply cut short, which the client sees as
        // malformed; it does not make the body panic too.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Emit for Shared {
    fn emit(&mut self, index: usize, outcome: &Outcome) {
        let mut writing = self.lock();
        let Writing { reply, w } = &mut *writing;
        if let Some(reply) = reply {
            reply.item(index, outcome, w);
        }
    }

    fn is_full(&self) -> bool {
        self.lock().w.pending() >= HIGH_WATER
    }
}

/// The body of a streamed reply: the chunks written so far, then the run's next ones.
struct ReplyStream {
    /// Until it ends.
    run: Option<BoxFuture<'static, Summary>>,
    writing: Shared,
    /// Taken from the writer, not yet sent.
    out: VecDeque<Bytes>,
}

impl ReplyStream {
    /// Runs the batch until it waits (or pauses), taking what it wrote; `Ready` once the
    /// run is over and the reply finished.
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(run) = self.run.as_mut() else {
            return Poll::Ready(());
        };
        let polled = run.as_mut().poll(cx);
        let mut writing = self.writing.lock();
        let Writing { reply, w } = &mut *writing;
        if let Poll::Ready(summary) = &polled {
            if let Some(reply) = reply.take() {
                reply.finish(w, summary);
            }
        }
        w.take(&mut self.out);
        drop(writing);
        if polled.is_ready() {
            // Let go of what the run held (the service's clone, the plan) at once.
            self.run = None;
        }
        polled.map(drop)
    }
}

impl Stream for ReplyStream {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        loop {
            if let Some(chunk) = this.out.pop_front() {
                return Poll::Ready(Some(chunk));
            }
            if this.run.is_none() {
                return Poll::Ready(None);
            }
            // The run goes on only once what it wrote has been sent.
            if this.poll_run(cx).is_pending() && this.out.is_empty() {
                return Poll::Pending;
            }
        }
    }
}
