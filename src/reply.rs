//! A batch's reply, written while its plan runs. Most formats stream: the response leaves
//! as soon as the batch is decoded (or, when it finishes before it first waits, whole),
//! and the run goes on on a task of its own, writing each outcome into a buffer the body
//! takes from. A format whose status depends on every outcome (resource bulk) is run to
//! the end and sent whole.
//!
//! A streamed reply holds what is written and not yet read: while that passes
//! [`HIGH_WATER`], the run starts nothing new (what is in flight, a transaction included,
//! goes on, and the deadline holds). So memory follows the items finished and not yet sent,
//! not the batch; and a client that goes away drops the body, which aborts the run and
//! every call in flight (a commit or rollback in flight runs on, on its own task). The run
//! yields between items that answer at once, so the abort lands within one item.
//!
//! Each write to a socket costs a system call and wakes the reader: when items finish
//! faster than one per [`LINGER`], the body gathers what comes within that time of its
//! last write (up to [`GATHER`] bytes) and gives it as one frame. An item that finishes
//! after a quiet spell leaves at once. (Tokio's timer ticks in whole milliseconds: the
//! wait can reach 2 ms.)

use crate::batch::outcome::Outcome;
use crate::batch::plan::Plan;
use crate::body::BatchResponseBody;
use crate::codec::{Reply, ReplyWriter};
use crate::config::Config;
use crate::engine::{self, Emit, Inner, InnerBody};
use crate::identity::Outer;
use crate::trace::BatchTrace;
use bytes::Bytes;
use futures_util::Stream;
use http::{header, HeaderValue, Response, StatusCode};
use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};
use tracing::Instrument as _;

/// The bytes a streamed reply may hold, written and not yet taken by its body, before its
/// run starts nothing new. (The body holds what it took until the connection takes it, and
/// the connection buffers some too: the bound is this plus what those hold.)
const HIGH_WATER: usize = 64 * 1024;

/// How long after the body's last bytes it waits for more before taking what is there.
const LINGER: Duration = Duration::from_millis(1);

/// What the body takes at once, however recently it last did. Below [`HIGH_WATER`], so a
/// run waiting for room always has a reader that is awake or about to be.
const GATHER: usize = 16 * 1024;
const _: () = assert!(GATHER < HIGH_WATER);

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
    S: Inner<B, ResBody>,
    B: Send + 'static,
    ResBody: InnerBody,
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

/// Answers `200 OK` with a body that takes the reply as `plan` runs. The run starts here:
/// a batch that finishes before it first waits (yielding between items is no wait, but a
/// reply that reaches [`HIGH_WATER`] is) is sent whole, with its length; the rest
/// runs on a task of its own (so it goes on, and its deadline holds, however slowly the
/// client reads), which the body cancels when it is dropped.
pub(crate) async fn streamed<S, B, ResBody>(
    svc: S,
    outer: Outer,
    plan: Plan,
    mut reply: Box<dyn Reply>,
    config: Arc<Config>,
    trace: BatchTrace,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Inner<B, ResBody>,
    B: Send + 'static,
    ResBody: InnerBody,
{
    let content_type = reply.content_type();
    let mut w = ReplyWriter::new(config.run.max_response_bytes);
    reply.begin(&mut w);
    let writing = Shared(Arc::new(Mutex::new(Writing {
        reply: Some(reply),
        w,
        done: false,
        reader: None,
        lingering: false,
        writer: None,
    })));
    let sink = writing.clone();
    let yielded = Arc::new(AtomicBool::new(false));
    let yields = yielded.clone();
    let span = trace.span().clone();
    let run = async move {
        // Marks the reply done however the run ends, so its body never waits for ever.
        let done = Done(sink.clone());
        let traced = trace.is_enabled();
        // Asked once under the lock, then known after each write.
        let emit = Sink {
            shared: sink,
            room: false,
            yielded: yields,
        };
        let summary = engine::run(svc, &outer, plan, &config.run, emit, traced).await;
        trace.finished(&summary);
        let mut writing = done.0.lock();
        let Writing { reply, w, .. } = &mut *writing;
        if let Some(reply) = reply.take() {
            let status = reply.finish(w, &summary);
            debug_assert_eq!(
                status,
                StatusCode::OK,
                "a streamed reply's status is sent first"
            );
        }
    };
    let mut run = Box::pin(run.instrument(span));
    // Polled here until it first waits: a run that only yields between items (handlers
    // that answer at once) goes on here when woken, and is sent whole if it ends so.
    let finished = std::future::poll_fn(|cx| match run.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(true),
        Poll::Pending if yielded.swap(false, Ordering::Relaxed) => Poll::Pending,
        Poll::Pending => Poll::Ready(false),
    });
    let body = if finished.await {
        let mut out = VecDeque::new();
        writing.lock().w.take(&mut out);
        BatchResponseBody::chunks(out.into())
    } else {
        let task = tokio::spawn(run).abort_handle();
        let stream = ReplyStream {
            writing,
            out: VecDeque::new(),
            task,
            took_at: None,
            // Made here, on the runtime: the body may be polled anywhere.
            linger: Box::pin(tokio::time::sleep_until(Instant::now())),
        };
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
/// (which takes what is written), each waking the other.
struct Writing {
    /// Until the run ends.
    reply: Option<Box<dyn Reply>>,
    w: ReplyWriter,
    /// The run is over: what the writer holds is the end of the reply.
    done: bool,
    /// The body, waiting for bytes.
    reader: Option<Waker>,
    /// The body waits for [`LINGER`] to pass: wake it only once [`GATHER`] bytes wait.
    lingering: bool,
    /// The run, waiting for the body to take what it wrote.
    writer: Option<Waker>,
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

/// The run's side of a reply: whether the reply had room when the run last wrote to it.
/// Only the run's writes take room (the body's reads make more), so while it had, it
/// still has, and asking takes no lock.
struct Sink {
    shared: Shared,
    room: bool,
    /// Set when the run yields with nothing pending, for the poll that tells a yield from
    /// a wait.
    yielded: Arc<AtomicBool>,
}

impl Emit for Sink {
    fn emit(&mut self, index: usize, outcome: &Outcome) {
        let mut writing = self.shared.lock();
        let Writing {
            reply,
            w,
            reader,
            lingering,
            ..
        } = &mut *writing;
        if let Some(reply) = reply {
            reply.item(index, outcome, w);
        }
        let reader = match *lingering && w.pending() < GATHER {
            true => None,
            false => reader.take(),
        };
        self.room = w.pending() < HIGH_WATER;
        // Woken once the lock is let go, so the body does not wait for it.
        drop(writing);
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.room {
            return Poll::Ready(());
        }
        let mut writing = self.shared.lock();
        if writing.w.pending() < HIGH_WATER {
            self.room = true;
            return Poll::Ready(());
        }
        writing.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    fn yielding(&mut self) {
        self.yielded.store(true, Ordering::Relaxed);
    }
}

/// Sets `done` when the run ends (or is dropped, or panics), and wakes the body.
struct Done(Shared);

impl Drop for Done {
    fn drop(&mut self) {
        let mut writing = self.0.lock();
        writing.done = true;
        let reader = writing.reader.take();
        drop(writing);
        if let Some(reader) = reader {
            reader.wake();
        }
    }
}

/// The body of a streamed reply: the chunks the run has written, as they come.
struct ReplyStream {
    writing: Shared,
    /// Taken from the writer, not yet sent.
    out: VecDeque<Bytes>,
    /// The run's task: cancelled when the body is dropped (the client went away).
    task: AbortHandle,
    /// When the body last took bytes.
    took_at: Option<Instant>,
    /// Until [`LINGER`] after `took_at`, while little is written.
    linger: Pin<Box<Sleep>>,
}

/// Whether a body that last took bytes at `took_at` should wait before taking what is
/// written: it is little, more may come, and [`LINGER`] has not passed. Arms `linger`.
fn lingers(
    took_at: Option<Instant>,
    linger: &mut Pin<Box<Sleep>>,
    writing: &Writing,
    cx: &mut Context<'_>,
) -> bool {
    let pending = writing.w.pending();
    let Some(took_at) = took_at else {
        return false;
    };
    if pending == 0 || pending >= GATHER || writing.done {
        return false;
    }
    let due = took_at + LINGER;
    if linger.deadline() != due {
        linger.as_mut().reset(due);
    }
    linger.as_mut().poll(cx).is_pending()
}

impl Stream for ReplyStream {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        if let Some(chunk) = this.out.pop_front() {
            return Poll::Ready(Some(chunk));
        }
        let mut writing = this.writing.lock();
        let lingering = lingers(this.took_at, &mut this.linger, &writing, cx);
        writing.lingering = lingering;
        if lingering {
            writing.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        writing.w.take(&mut this.out);
        if let Some(chunk) = this.out.pop_front() {
            this.took_at = Some(Instant::now());
            // Room again: a run waiting for it goes on.
            let writer = writing.writer.take();
            drop(writing);
            if let Some(writer) = writer {
                writer.wake();
            }
            return Poll::Ready(Some(chunk));
        }
        if writing.done {
            return Poll::Ready(None);
        }
        writing.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ReplyStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
