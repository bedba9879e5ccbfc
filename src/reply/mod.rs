//! A batch's reply, written while its plan runs. Most formats stream: the response leaves
//! as soon as the batch is decoded (or, when it finishes before it first waits, whole),
//! and the run goes on on a task of its own, writing each outcome into a buffer the body
//! takes from (`stream`). A format whose status depends on every outcome (resource bulk)
//! is run to the end and sent whole.
//!
//! A streamed reply holds what is written and not yet read: while that passes
//! [`HIGH_WATER`], the run starts nothing new (what is in flight, a transaction included,
//! goes on, and the deadline holds). So memory follows the items finished and not yet sent,
//! not the batch; and a client that goes away drops the body, which aborts the run and
//! every call in flight (a commit or rollback in flight runs on, on its own task). The run
//! yields between items that answer at once, so the abort lands within one item.
//!
//! A batch keeps its place among those in flight while its run goes on and while more than
//! [`HIGH_WATER`] of its reply wait to be taken. Its waits on a slow reader are bounded by
//! [`pace`]: past the budget the reply is cut and the place is free.
//!
//! Each write to a socket costs a system call and wakes the reader: when items finish
//! faster than one per 1 ms, the body gathers what comes within that time of its last write
//! (up to 16 KiB) and gives it as one frame. An item that finishes after a quiet spell
//! leaves at once. (Tokio's timer ticks in whole milliseconds: the wait can reach 2 ms.)

mod pace;
mod stream;

use crate::admission::Place;
use crate::batch::outcome::Outcome;
use crate::batch::plan::Plan;
use crate::body::BatchResponseBody;
use crate::codec::{Reply, ReplyWriter};
use crate::config::Config;
use crate::engine::{self, Inner, InnerBody};
use crate::identity::Outer;
use crate::trace::BatchTrace;
use http::{header, HeaderValue, Response, StatusCode};
use pace::Pace;
use std::collections::VecDeque;
use std::future::Future as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use stream::{Shared, Writing, HIGH_WATER};
use tracing::Instrument as _;

/// Runs `plan` to the end, then answers with the reply whole.
pub(crate) async fn whole<S, B, ResBody>(
    svc: S,
    outer: &Outer,
    plan: Plan,
    mut reply: Box<dyn Reply>,
    config: &Config,
    trace: &BatchTrace,
    place: Place,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Inner<B, ResBody>,
    B: Send + 'static,
    ResBody: InnerBody,
{
    let mut w = ReplyWriter::new(config.run.max_response_bytes);
    reply.begin(&mut w);
    let emit = |i: usize, outcome: &Outcome| reply.item(i, outcome, &mut w);
    let traced = trace.is_enabled();
    let hold: engine::Hold = place.clone();
    let summary = engine::run(svc, outer, plan, &config.run, emit, traced, Some(hold)).await;
    trace.finished(&summary);
    let content_type = reply.content_type();
    let status = reply.finish(&mut w, &summary);
    let shared = Shared::new(None, w, Pace::new(config.reply_min_rate));
    shared.end();
    response(status, content_type, hand_over(shared, place))
}

/// Answers `200 OK` with a body that takes the reply as `plan` runs. The run starts here:
/// a batch that finishes before it first waits (yielding between items is no wait, but a
/// reply that reaches [`HIGH_WATER`] is) is sent whole, with its length; the rest
/// runs on a task of its own (so it goes on, and its deadline holds, however slowly the
/// client reads), which the body cancels when it is dropped, and which cuts the reply
/// when the reader proves slower than the layer's minimum rate.
pub(crate) async fn streamed<S, B, ResBody>(
    svc: S,
    outer: Outer,
    plan: Plan,
    mut reply: Box<dyn Reply>,
    config: Arc<Config>,
    trace: BatchTrace,
    place: Place,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Inner<B, ResBody>,
    B: Send + 'static,
    ResBody: InnerBody,
{
    let content_type = reply.content_type();
    let mut w = ReplyWriter::new(config.run.max_response_bytes);
    reply.begin(&mut w);
    let shared = Shared::new(Some(reply), w, Pace::new(config.reply_min_rate));
    let sink = shared.clone();
    let span = trace.span().clone();
    let hold: engine::Hold = place.clone();
    let run = async move {
        // Marks the reply done however the run ends, so its body never waits for ever.
        let done = Done(sink.clone());
        let traced = trace.is_enabled();
        let (opts, emit) = (&config.run, sink.sink());
        let summary = engine::run(svc, &outer, plan, opts, emit, traced, Some(hold)).await;
        trace.finished(&summary);
        let mut writing = sink.lock();
        let Writing { reply, w, .. } = &mut *writing;
        if let Some(reply) = reply.take() {
            let status = reply.finish(w, &summary);
            debug_assert_eq!(
                status,
                StatusCode::OK,
                "a streamed reply's status is sent first"
            );
        }
        drop(writing);
        drop(done);
    };
    let mut run = Box::pin(run.instrument(span));
    // Polled here until it first waits: a run that only yields between items (handlers
    // that answer at once) goes on here when woken, and is handed over whole if it ends so.
    let yielded = &shared.signals().yielded;
    let finished = std::future::poll_fn(|cx| match run.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(true),
        Poll::Pending if yielded.swap(false, Ordering::Relaxed) => Poll::Pending,
        Poll::Pending => Poll::Ready(false),
    });
    let body = if finished.await {
        hand_over(shared, place)
    } else {
        let carried = shared.clone();
        let task = async move {
            // The run, until it ends or its reader proves too slow (`Sink::poll_room`).
            let cut = std::future::poll_fn(|cx| {
                let cut = || carried.signals().cut.load(Ordering::Acquire);
                match run.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(cut()),
                    Poll::Pending if cut() => Poll::Ready(true),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            drop(run);
            match cut {
                true => carried.cut(),
                false => finish(carried, place).await,
            }
        };
        fed_by(shared, task)
    };
    response(StatusCode::OK, content_type, body)
}

/// A reply whose run is over. When little is left it goes whole, and its place is free at
/// once (the connection holds no more than any response's); else a task feeds the body
/// and holds the place until the reader has taken the reply, or has proved too slow.
fn hand_over<ResBody>(shared: Shared, place: Place) -> BatchResponseBody<ResBody> {
    let mut writing = shared.lock();
    if writing.w.pending() <= HIGH_WATER {
        let mut out = VecDeque::new();
        writing.w.take(&mut out);
        drop(place);
        return BatchResponseBody::chunks(out.into());
    }
    drop(writing);
    fed_by(shared.clone(), finish(shared, place))
}

/// A body that `task` feeds, on a task of its own that the body aborts when dropped; the
/// reply's head leaves with it, so waits on its reader count from now on.
fn fed_by<ResBody>(
    shared: Shared,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> BatchResponseBody<ResBody> {
    shared.reading();
    let task = tokio::spawn(task).abort_handle();
    BatchResponseBody::streamed(Box::pin(shared.stream(task)))
}

/// After the run: keeps `place` until the reader has taken the reply, or cuts the reply
/// when the reader proves too slow.
async fn finish(shared: Shared, place: Place) {
    if !std::future::poll_fn(|cx| shared.poll_taken(cx)).await {
        shared.cut();
    }
    drop(place);
}

fn response<B>(status: StatusCode, content_type: HeaderValue, body: B) -> Response<B> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

/// Ends the reply when the run ends (or is dropped, or panics), and wakes the body.
struct Done(Shared);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.end();
    }
}
