//! A batch's reply, written while its plan runs. Most formats stream: the response leaves
//! as soon as the batch is decoded (or, when it finishes before it first waits, whole),
//! and the run goes on on a task of its own, writing each outcome into a channel the body
//! takes from ([`channel`]). A format whose status depends on every outcome (resource
//! bulk) is run to the end and sent whole.
//!
//! The channel holds at most [`HIGH_WATER`](channel::HIGH_WATER) bytes: while more wait to
//! go into it, the run starts nothing new (what is in flight, a transaction included, goes
//! on, and the deadline holds). So memory follows the items finished and not yet sent,
//! not the batch; and a client that goes away drops the body, which aborts the run and
//! every call in flight (a commit or rollback in flight runs on, on its own task). The run
//! yields between items that answer at once, so the abort lands within one item.
//!
//! A batch keeps its place among those in flight while its run goes on and until the rest
//! of its reply is in the channel. Its waits on a slow reader are bounded by [`pace`]:
//! past the budget the reply is cut and the place is free.

mod channel;
mod pace;

use crate::batch::outcome::Outcome;
use crate::batch::plan::Plan;
use crate::body::BatchResponseBody;
use crate::codec::{Reply, ReplyWriter};
use crate::config::Config;
use crate::engine::{self, Emit, Hold, Keyed, PerRun, Wrapped, WrappedBody};
use crate::subrequest::Outer;
use crate::trace::BatchTrace;
use channel::{Feed, Receiving};
use futures_util::future::select;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use tracing::Instrument as _;

/// One batch on its way to its reply: who sent it, what it may take, and what its run
/// resumes from when it has an idempotency key.
pub(crate) struct Setting {
    pub(crate) outer: Outer,
    pub(crate) config: Arc<Config>,
    pub(crate) trace: BatchTrace,
    /// Its place among the batches in flight (a job's: among the jobs running).
    pub(crate) place: Hold,
    pub(crate) keyed: Option<Keyed>,
}

impl Setting {
    /// Its parts, with what its run is given, and whether the run goes on when its
    /// reader leaves or is cut off (a keyed batch that is run, not replayed): its reply is
    /// then let go as it is written.
    fn split(self) -> (Outer, Arc<Config>, BatchTrace, Hold, PerRun, bool) {
        let detached = self.keyed.as_ref().is_some_and(|k| k.journal.is_some());
        let per_run = PerRun {
            traced: self.trace.is_enabled(),
            hold: self.place.clone(),
            keyed: self.keyed,
        };
        (
            self.outer,
            self.config,
            self.trace,
            self.place,
            per_run,
            detached,
        )
    }
}

/// Runs `plan` to the end, then answers with the reply whole.
pub(crate) async fn whole<S, B, ResBody>(
    svc: S,
    plan: Plan,
    mut reply: Box<dyn Reply>,
    batch: Setting,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    let (outer, config, trace, place, per_run, detached) = batch.split();
    let mut w = ReplyWriter::new(config.run.max_response_bytes);
    reply.begin(&mut w);
    let emit = |i: usize, id: &str, outcome: &Outcome| reply.item(i, id, outcome, &mut w);
    let summary = engine::run(svc, &outer, plan, &config.run, emit, per_run).await;
    trace.finished(&summary);
    let head = (reply.content_type(), reply.headers());
    let status = reply.finish(&mut w, &summary);
    let (feed, receiving) = channel::open(w, config.reply_min_rate, detached);
    response(status, head, hand_over(feed, receiving, place, detached))
}

/// Answers `200 OK` with a body that takes the reply as `plan` runs. The run starts here:
/// a batch that finishes before it first waits (yielding between items is no wait, but a
/// full channel is) is sent whole, with its length; the rest runs on a task of its own
/// (so it goes on, and its deadline holds, however slowly the client reads), which the
/// body cancels when it is dropped (unless the run is detached), and which ends when the
/// reader proves slower than the layer's minimum rate.
pub(crate) async fn streamed<S, B, ResBody>(
    svc: S,
    plan: Plan,
    mut reply: Box<dyn Reply>,
    batch: Setting,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    let (outer, config, trace, place, per_run, detached) = batch.split();
    let (status, head) = (reply.status(), (reply.content_type(), reply.headers()));
    let mut w = ReplyWriter::new(config.run.max_response_bytes);
    reply.begin(&mut w);
    let (feed, receiving) = channel::open(w, config.reply_min_rate, detached);
    let mut sink = Sink::new(feed, reply);
    let (yielded, cut) = (sink.yielded.clone(), sink.feed.cut());
    let span = trace.span().clone();
    let run = async move {
        let summary = engine::run(svc, &outer, plan, &config.run, &mut sink, per_run).await;
        trace.finished(&summary);
        sink.finish(&summary)
    };
    let mut run = Box::pin(run.instrument(span));
    // Polled here until it first waits: a run that only yields between items (handlers
    // that answer at once) goes on here when woken, and is handed over whole if it ends so.
    let finished = std::future::poll_fn(|cx| match run.as_mut().poll(cx) {
        Poll::Ready(feed) => Poll::Ready(Some(feed)),
        Poll::Pending if yielded.swap(false, Ordering::Relaxed) => Poll::Pending,
        Poll::Pending => Poll::Ready(None),
    });
    let body = match finished.await {
        Some(feed) => hand_over(feed, receiving, place, detached),
        None => {
            let task = async move {
                let rest = pin!(async move { run.await.send_all().await });
                // The run ends here too when its reader proves too slow, unless detached.
                if detached {
                    rest.await;
                } else {
                    select(rest, pin!(cut.cancelled())).await;
                }
                drop(place);
            };
            fed_by(receiving, task, detached)
        }
    };
    response(status, head, body)
}

/// A reply whose run is over. When what is left fits the channel it goes whole, and its
/// place is free at once (the connection holds no more than any response's); else a task
/// feeds the body, and holds the place until the rest is in the channel, or the reader
/// has proved too slow.
fn hand_over<ResBody>(
    mut feed: Feed,
    mut receiving: Receiving,
    place: Hold,
    detached: bool,
) -> BatchResponseBody<ResBody> {
    feed.send_some();
    if feed.has_room() {
        drop(place);
        return BatchResponseBody::full(receiving.drain());
    }
    let task = async move {
        feed.send_all().await;
        drop(place);
    };
    fed_by(receiving, task, detached)
}

/// A body that `task` feeds, on a task of its own that the body aborts when dropped
/// (unless `detached`).
fn fed_by<ResBody>(
    receiving: Receiving,
    task: impl Future<Output = ()> + Send + 'static,
    detached: bool,
) -> BatchResponseBody<ResBody> {
    let mut tasks = tokio::task::JoinSet::new();
    match detached {
        true => drop(tokio::spawn(task)),
        false => drop(tasks.spawn(task)),
    }
    BatchResponseBody::streamed(Box::pin(receiving.into_body(tasks)))
}

/// A reply's response: its status, its content type and the headers its format adds.
fn response<B>(status: StatusCode, head: (HeaderValue, HeaderMap), body: B) -> Response<B> {
    let (content_type, headers) = head;
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

/// Where a streamed run hands its outcomes: the reply's format writes them, and they go
/// into the channel as it has room.
struct Sink {
    feed: Feed,
    reply: Box<dyn Reply>,
    /// The run yielded with nothing pending (see `engine::run`).
    yielded: Arc<AtomicBool>,
}

impl Sink {
    fn new(mut feed: Feed, reply: Box<dyn Reply>) -> Self {
        // The head leaves at once.
        feed.send_some();
        let yielded = Arc::default();
        Self {
            feed,
            reply,
            yielded,
        }
    }

    /// The run is over: the reply's end is written.
    fn finish(mut self, summary: &crate::batch::summary::Summary) -> Feed {
        let sent = self.reply.status();
        let status = self.reply.finish(&mut self.feed.w, summary);
        debug_assert_eq!(status, sent, "a streamed reply's status is sent first");
        self.feed
    }
}

impl Emit for &mut Sink {
    fn emit(&mut self, index: usize, id: &str, outcome: &Outcome) {
        self.reply.item(index, id, outcome, &mut self.feed.w);
        self.feed.send_some();
    }

    fn has_room(&self) -> bool {
        self.feed.has_room()
    }

    async fn room(&mut self) {
        if !self.feed.send_all().await {
            // Cut: the task that carries the run ends it.
            std::future::pending::<()>().await;
        }
    }

    fn yielding(&mut self) {
        self.yielded.store(true, Ordering::Relaxed);
    }
}
