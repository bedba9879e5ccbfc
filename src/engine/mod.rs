//! The engine: runs a validated [`Plan`] against the wrapped service and hands each
//! outcome, in the plan's order, to its caller as soon as that outcome is final. It knows no
//! wire format.
//!
//! Its parts: [`schedule`] decides what may start (pure bookkeeping, with [`ready`] the
//! items that may); [`group`] is an atomic group's state machine; [`slots`] holds each
//! item until its outcome is handed on; [`one`] runs one sub-request, and [`in_flight`]
//! the calls in flight; [`trace`] gives items spans; [`run()`] (here) ties them to the
//! futures in flight and the batch's deadline.

mod group;
mod in_flight;
mod one;
mod ready;
mod run;
mod schedule;
mod slots;
mod trace;

use crate::batch::outcome::Outcome;
use crate::batch::plan::Plan;
use crate::batch::reach::Reach;
use crate::batch::summary::Summary;
use crate::batch::url::BatchPaths;
use crate::body::BatchRequestBody;
use crate::identity::Outer;
use crate::transaction::{Hook, OpenTx};
use crate::BoxError;
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use group::TxError;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use in_flight::{InFlight, Spawned};
use run::{Launch, Run};
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use tower_service::Service;
use tracing::Instrument as _;

/// The wrapped service as a batch calls it: a clone per sub-request, and `Send`, so that
/// the rest of a batch, or a sub-request, can run on a task of its own.
pub(crate) trait Inner<B, ResBody>:
    Service<
        Request<BatchRequestBody<B>>,
        Response = Response<ResBody>,
        Future: Send,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B, ResBody> Inner<B, ResBody> for S where
    S: Service<
            Request<BatchRequestBody<B>>,
            Response = Response<ResBody>,
            Future: Send,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + 'static
{
}

/// The body of the wrapped service's responses, as a batch reads it.
pub(crate) trait InnerBody:
    Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<T> InnerBody for T where T: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

/// What work that outlives a run keeps alive: a commit or rollback on its own task holds it
/// (the caller's bound on batches in flight, so that such work counts against it).
pub(crate) type Hold = Arc<dyn Send + Sync>;

/// What the engine reads of the layer's configuration.
#[derive(Debug, Clone)]
pub(crate) struct RunOptions {
    /// Sub-requests (or atomic groups) of one batch in flight at once.
    pub(crate) concurrency: usize,
    /// Bounds each sub-request, and each call of the transaction hook.
    pub(crate) timeout: Option<Duration>,
    pub(crate) batch_timeout: Option<Duration>,
    pub(crate) max_item_response_bytes: usize,
    /// What bodies and headers may take of the reply, as written (the service gives it to
    /// the reply's writer), and what the bodies a batch holds, waiting to be written or
    /// read, may take (the engine).
    pub(crate) max_response_bytes: usize,
    /// What references may read and copy in one batch.
    pub(crate) max_reference_bytes: usize,
    pub(crate) transactions: Option<Hook>,
    /// What URLs resolved from references are checked against: none may reach a batch
    /// endpoint.
    pub(crate) batch_paths: BatchPaths,
    /// What sub-requests may reach at all (`403` for the rest).
    pub(crate) reach: Reach,
}

impl RunOptions {
    /// What bounds each call, copied into it.
    fn limits(&self) -> one::Limits {
        one::Limits {
            timeout: self.timeout,
            max_item_response_bytes: self.max_item_response_bytes,
        }
    }
}

/// Where the engine hands outcomes: the reply, or what a lookup keeps. Any
/// `FnMut(usize, &Outcome)` is one that never pauses the run.
pub(crate) trait Emit {
    /// The outcome of plan item `index`, final.
    fn emit(&mut self, index: usize, outcome: &Outcome);

    /// `Ready` while it may take more outcomes; `Pending` (waking `cx` once it may) while
    /// it holds as much as it should until it is read. The run then starts nothing new.
    fn poll_room(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }

    /// The run is about to yield to the runtime though nothing it waits for is pending
    /// (see [`run`]): what polls it may tell this pause from a real wait.
    fn yielding(&mut self) {}
}

impl<F: FnMut(usize, &Outcome)> Emit for F {
    #[inline]
    fn emit(&mut self, index: usize, outcome: &Outcome) {
        self(index, outcome)
    }
}

/// Runs the items of `plan` and hands each outcome to `emit` with the item's index, in
/// the plan's order: request order (each once it and every item before it are final), or
/// completion order (each as soon as it is final). Returns how the run ended.
///
/// At most `concurrency` sub-requests are in flight (one with `stop_on_error`). An item
/// starts once every item it `dependsOn` has finished; among the items that may start, the
/// lowest index goes first, so with a concurrency of one the batch runs in request order.
/// An item whose dependency failed (status >= 400, or never sent) is not sent: it reports
/// `424 Failed Dependency`. With `stop_on_error`, nothing starts after the first failure,
/// and what never started is left out. With chunks, an item starts only when every chunk
/// before its own has finished.
///
/// An atomic group takes one place of the concurrency from `begin` to `commit` or
/// `rollback`: its members run one after another, each with the transaction's handle in
/// its extensions. Items that depend on a member wait for the whole group. Each call of
/// the transaction hook is bounded by the per-sub-request timeout.
///
/// Each item reads at most `max_item_response_bytes` of its body.
///
/// When `batch_timeout` passes, the items in flight are dropped and report `504`, and the
/// items not started report `424` (with `stop_on_error`, they are left out); an open
/// transaction is dropped, and its members report that they were rolled back. A commit or
/// rollback already in flight is waited for (within the per-sub-request timeout, or
/// without one a second `batch_timeout`), so the reply says what became of the data.
/// Dropping this future (the client went away) drops every sub-request in flight and
/// starts no other; a commit or rollback in flight runs on, on its own task (see [`end`]).
/// After an item that came without a wait, the run yields to the runtime, so whatever
/// polls it (hyper's connection) sees a client that left before the next item starts.
///
/// With a concurrency above one, sub-requests that prove heavy to poll run on tokio tasks
/// of their own, so the runtime's threads share the batch (see `in_flight`); light ones,
/// and all at a concurrency of one, are polled in this future.
///
/// With `traced`, each item has a span (see `trace`), a child of the span current when
/// this runs.
pub(crate) async fn run<S, B, ResBody, E>(
    svc: S,
    outer: &Outer,
    plan: Plan,
    opts: &RunOptions,
    emit: E,
    traced: bool,
    hold: Option<Hold>,
) -> Summary
where
    S: Inner<B, ResBody>,
    B: Send + 'static,
    ResBody: InnerBody,
    E: Emit,
{
    let mut run = Run::new(plan, opts, emit, outer, traced);
    let limits = opts.limits();
    let mut calls = InFlight::new(run.places());
    // Commits and rollbacks; made when a group first ends (most batches have none).
    let mut endings = None;
    let mut deadline = pin!(opts.batch_timeout.map(tokio::time::sleep));
    // One place creates the futures, so their types are inferred and never boxed.
    macro_rules! launch {
        ($launch:expr) => {
            match $launch {
                Launch::Send(i, req) => {
                    let call = one::Call::new(svc.clone(), req, i, run.span(i), limits);
                    // Each push makes its `Either`s at once: a call is moved as few times
                    // as it can be. Spawned in the span current here, as when polled here.
                    match calls.spawns() {
                        true => calls.push(Either::Left(Either::Right(Spawned::new(
                            i,
                            call.in_current_span(),
                        )))),
                        false => calls.push(Either::Left(Either::Left(call))),
                    }
                }
                Launch::Begin(g) => calls.push(Either::Right(begin(g, outer.parts(), opts))),
                Launch::End(g, tx, commit) => endings
                    .get_or_insert_with(FuturesUnordered::new)
                    .push(end(g, tx, commit, opts, hold.clone())),
            }
        };
    }
    let deadline_passed = loop {
        // While the reply holds as much as it should, nothing new starts; what is in
        // flight (sub-requests, a group's next member, commits) and the deadline go on.
        let room = std::future::poll_fn(|cx| Poll::Ready(run.poll_room(cx).is_ready())).await;
        if room {
            while let Some(next) = run.next_launch(outer) {
                launch!(next);
            }
        }
        let deadline = deadline.as_mut().as_pin_mut();
        // Room matters only while something is ready to start (else idle means over).
        let waits = !room && run.has_ready();
        let wait_room = waits.then_some(|cx: &mut Context<'_>| run.poll_room(cx));
        let (event, waited) = next_event(&mut calls, &mut endings, deadline, wait_room).await;
        let next = match event {
            Event::Done(Done::Sent(i, outcome)) => run.on_sent(i, outcome, outer),
            Event::Done(Done::Begun(g, result)) => run.on_begun(g, result, outer),
            Event::Ended(g, result) => {
                run.on_ended(g, result);
                None
            }
            Event::Room => None,
            Event::Idle => break false,
            Event::Deadline => {
                drop(calls);
                expire(&mut run, endings.as_mut(), opts).await;
                break true;
            }
        };
        if let Some(next) = next {
            launch!(next);
        }
        run.emit_final();
        yield_unless(waited, &mut run).await;
    };
    run.emit_rest(deadline_passed)
}

/// Unless the run `waited` for its last event, a yield: an event that came without a wait
/// (a handler that answered at once) is followed by one, so the runtime polls the rest of
/// its work, the connection included, before anything else starts: a client that left is
/// seen within one item (the batch is dropped, or its task aborted), and the other
/// connections on this thread are served.
async fn yield_unless<E: Emit>(waited: bool, run: &mut Run<'_, E>) {
    if !waited {
        run.yielding();
        tokio::task::yield_now().await;
    }
}

/// The batch deadline passed: open transactions are dropped, commits and rollbacks in
/// flight may finish (see [`finish_endings`]), and every item without an outcome gets one.
async fn expire<E, G>(
    run: &mut Run<'_, E>,
    endings: Option<&mut FuturesUnordered<G>>,
    opts: &RunOptions,
) where
    E: Emit,
    G: Future<Output = (usize, Result<(), TxError>)>,
{
    run.expire_groups();
    if let Some(endings) = endings {
        finish_endings(run, endings, opts).await;
    }
    run.expire_items();
}

/// The batch deadline passed while commits or rollbacks were in flight: each may finish,
/// so the reply says what became of the data, but within a bound: the per-sub-request
/// timeout, or without one a second `batch_timeout`. A group whose call is still in flight
/// then reports that it did not finish.
async fn finish_endings<E, G>(
    run: &mut Run<'_, E>,
    endings: &mut FuturesUnordered<G>,
    opts: &RunOptions,
) where
    E: Emit,
    G: Future<Output = (usize, Result<(), TxError>)>,
{
    let grace = opts.timeout.or(opts.batch_timeout).unwrap_or_default();
    let until = tokio::time::Instant::now() + grace;
    loop {
        match tokio::time::timeout_at(until, endings.next()).await {
            Ok(Some((g, result))) => run.on_ended(g, result),
            Ok(None) => return,
            Err(_) => return run.end_unfinished(grace),
        }
    }
}

/// What a future in `calls` reports.
enum Done {
    /// A sub-request answered (or the layer answered for it).
    Sent(usize, Outcome),
    /// A group's transaction began, or could not.
    Begun(usize, Result<Box<dyn OpenTx>, TxError>),
}

/// What the run loop waits for.
enum Event {
    Done(Done),
    /// A group's commit or rollback returned.
    Ended(usize, Result<(), TxError>),
    /// The reply may take more outcomes again.
    Room,
    /// Nothing is in flight.
    Idle,
    /// The batch deadline passed.
    Deadline,
}

/// The next event, and whether the run waited for it (was pending at least once); with
/// `room`, the run waits for the reply to take more too (and is not idle while it waits).
async fn next_event<F, G, R>(
    calls: &mut InFlight<F>,
    endings: &mut Option<FuturesUnordered<G>>,
    mut deadline: Option<Pin<&mut Sleep>>,
    mut room: Option<R>,
) -> (Event, bool)
where
    F: Future<Output = Done>,
    G: Future<Output = (usize, Result<(), TxError>)>,
    R: FnMut(&mut Context<'_>) -> Poll<()>,
{
    let mut waited = false;
    let event = std::future::poll_fn(|cx| {
        let event = poll_event(calls, endings, deadline.as_mut(), room.as_mut(), cx);
        waited |= event.is_pending();
        event
    })
    .await;
    (event, waited)
}

/// One look at what the run waits for.
fn poll_event<F, G, R>(
    calls: &mut InFlight<F>,
    endings: &mut Option<FuturesUnordered<G>>,
    deadline: Option<&mut Pin<&mut Sleep>>,
    room: Option<&mut R>,
    cx: &mut Context<'_>,
) -> Poll<Event>
where
    F: Future<Output = Done>,
    G: Future<Output = (usize, Result<(), TxError>)>,
    R: FnMut(&mut Context<'_>) -> Poll<()>,
{
    {
        if let Poll::Ready(Some(done)) = calls.poll_next(cx) {
            return Poll::Ready(Event::Done(done));
        }
        if let Some(endings) = endings.as_mut() {
            if let Poll::Ready(Some((g, result))) = endings.poll_next_unpin(cx) {
                return Poll::Ready(Event::Ended(g, result));
            }
        }
        let waits_room = room.is_some();
        if let Some(room) = room {
            if room(cx).is_ready() {
                return Poll::Ready(Event::Room);
            }
        }
        let idle = calls.is_empty() && endings.as_ref().is_none_or(FuturesUnordered::is_empty);
        if idle && !waits_room {
            return Poll::Ready(Event::Idle);
        }
        match deadline.map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Event::Deadline),
            _ => Poll::Pending,
        }
    }
}

async fn begin(g: usize, outer: &Parts, opts: &RunOptions) -> Done {
    let began = match &opts.transactions {
        Some(hook) => bounded(opts.timeout, hook.begin(outer)).await,
        None => Err(TxError::Failed(
            "this server has no transaction hook".into(),
        )),
    };
    Done::Begun(g, began)
}

/// A group's commit or rollback, on a task of its own: it finishes even when the batch is
/// dropped (its client went away), since one cut off half-way leaves data that no reply
/// describes. It holds `hold` (the batch's place) until it returns, so that commits left
/// to finish count against the bound on batches in flight. It is bounded by the
/// per-sub-request timeout, or without one by three times `batch_timeout` from its start
/// (later than the batch deadline's own bound, one more `batch_timeout` past the deadline,
/// so that bound reports first); with neither, by the hook.
fn end(
    g: usize,
    tx: Box<dyn OpenTx>,
    commit: bool,
    opts: &RunOptions,
    hold: Option<Hold>,
) -> impl Future<Output = (usize, Result<(), TxError>)> + use<> {
    let call = bounded(opts.timeout, tx.finish(commit));
    let limit = opts.batch_timeout.filter(|_| opts.timeout.is_none());
    let limit = limit.map(|t| t.saturating_mul(3));
    let task = async move {
        // The batch's place stays taken until this returns.
        let _hold = hold;
        match limit {
            Some(limit) => tokio::time::timeout(limit, call)
                .await
                .unwrap_or(Err(TxError::TimedOut(limit))),
            None => call.await,
        }
    };
    let task = tokio::spawn(task.in_current_span());
    async move {
        let result = task.await.unwrap_or_else(|e| {
            let why = format!("the transaction hook's call ended without an answer: {e}");
            Err(TxError::Failed(why.into()))
        });
        (g, result)
    }
}

/// A call of the transaction hook, within the per-sub-request timeout.
async fn bounded<T>(
    timeout: Option<Duration>,
    call: impl Future<Output = Result<T, BoxError>>,
) -> Result<T, TxError> {
    match timeout {
        Some(t) => match tokio::time::timeout(t, call).await {
            Ok(result) => result.map_err(TxError::Failed),
            Err(_) => Err(TxError::TimedOut(t)),
        },
        None => call.await.map_err(TxError::Failed),
    }
}
