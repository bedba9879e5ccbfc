//! The engine: runs a validated [`Plan`] against the wrapped service and hands each
//! outcome, in the plan's order, to its caller as soon as that outcome is final. It knows no
//! wire format.
//!
//! Its parts: [`schedule`] decides what may start (pure bookkeeping); [`group`] is an
//! atomic group's state machine; [`slots`] holds each item until its outcome is handed
//! on; [`call`] runs one sub-request, and [`spawning`] decides whether it runs on a task
//! of its own; [`hook`] calls the transaction hook; [`waiting`] is what the run waits
//! for; [`run()`] (here) ties them to the futures in flight and the batch's deadline.

mod call;
mod group;
mod hook;
mod journal;
mod run;
mod schedule;
mod slots;
mod spawning;
mod waiting;

use crate::batch::outcome::Outcome;
use crate::batch::plan::Plan;
use crate::batch::reach::Reach;
use crate::batch::summary::Summary;
use crate::batch::url::BatchPaths;
use crate::body::BatchRequestBody;
use crate::subrequest::Outer;
use crate::transaction::Hook;
use crate::BoxError;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use group::TxError;
use hook::{begin, end};
use http::{Request, Response};
use http_body::Body;
use run::{Call, Launch, Run};
use spawning::Spawning;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tower_service::Service;
use tracing::Instrument as _;
use waiting::{Done, Event, InFlight, Waiting};

pub(crate) use journal::{Journal, Keyed, Prior};

/// The wrapped service as a batch calls it: a clone per sub-request, and `Send`, so that
/// the rest of a batch, or a sub-request, can run on a task of its own.
pub(crate) trait Wrapped<B, ResBody>:
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

impl<S, B, ResBody> Wrapped<B, ResBody> for S where
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
pub(crate) trait WrappedBody:
    Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<T> WrappedBody for T where T: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

/// What work that outlives a run keeps alive: a commit or rollback on its own task holds it
/// (the caller's bound on batches in flight, so that such work counts against it).
pub(crate) type Hold = Arc<dyn Send + Sync>;

/// What one run is given besides its plan and the layer's configuration.
pub(crate) struct PerRun {
    /// Whether items have spans (children of the span current when the run starts).
    pub(crate) traced: bool,
    pub(crate) hold: Hold,
    /// Set when the batch has an idempotency key (see [`journal`]).
    pub(crate) keyed: Option<Keyed>,
}

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
    /// `BatchLayer::service_root`: what the paths of a plan `under_root` stay under.
    pub(crate) service_root: Option<String>,
}

impl RunOptions {
    /// What bounds each call, copied into it.
    fn limits(&self) -> call::Limits {
        call::Limits {
            timeout: self.timeout,
            max_item_response_bytes: self.max_item_response_bytes,
        }
    }
}

/// Where the engine hands outcomes: the reply, or what a lookup keeps. Any
/// `FnMut(usize, &str, &Outcome)` is one that always has room.
pub(crate) trait Emit {
    /// The outcome of plan item `index`, whose id is `id`, final.
    fn emit(&mut self, index: usize, id: &str, outcome: &Outcome);

    /// Whether it may take more outcomes; while it may not, the run starts nothing new.
    fn has_room(&self) -> bool {
        true
    }

    /// Returns once it may take more outcomes.
    fn room(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// The run is about to yield to the runtime though nothing it waits for is pending
    /// (see [`run`]): what polls it may tell this pause from a real wait.
    fn yielding(&mut self) {}
}

impl<F: FnMut(usize, &str, &Outcome)> Emit for F {
    fn emit(&mut self, index: usize, id: &str, outcome: &Outcome) {
        self(index, id, outcome)
    }
}

/// Runs the items of `plan` and hands each outcome to `emit` with the item's index, in
/// the plan's order: request order (each once it and every item before it are final), or
/// completion order (each as soon as it is final). Returns how the run ended.
///
/// What may start, and when, is the [`schedule`]'s (dependencies, atomic groups, chunks,
/// `concurrency` places, `stop_on_error`). An item whose dependency failed, or whose
/// references find nothing, is not sent: it reports `424`. A group's members run one
/// after another with its transaction's handle ([`group`], [`hook`]).
///
/// When `batch_timeout` passes, the items in flight are dropped and report `504`, and the
/// items not started `424` (with `stop_on_error`, they are left out); an open transaction
/// is dropped, and a commit or rollback in flight is waited for (see [`expire`]).
/// Dropping this future (the client went away) drops every sub-request in flight and
/// starts no other; a commit or rollback in flight runs on, on its own task. With a
/// concurrency above one, sub-requests that prove heavy to poll run on tasks of their own
/// ([`spawning`]). With `traced`, each item has a span, a child of the current one.
pub(crate) async fn run<S, B, ResBody, E>(
    svc: S,
    outer: &Outer,
    plan: Plan,
    opts: &RunOptions,
    emit: E,
    per_run: PerRun,
) -> Summary
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
    E: Emit,
{
    let PerRun {
        traced,
        hold,
        keyed,
    } = per_run;
    let (priors, journal) = keyed.map(|k| (k.priors, k.journal)).unzip();
    let journal = journal.flatten();
    let journal = journal.as_deref();
    let emit = journal::Journaled::new(emit, journal, priors.as_deref());
    let run = Run::new(plan, opts, outer, traced, priors);
    let summary = drive(svc, outer, run, opts, emit, hold, journal).await;
    if let Some(journal) = journal {
        journal.ended().await;
    }
    summary
}

/// The run loop: starts what may start, waits for what is in flight, hands on what is
/// final, until nothing is left or the deadline passes.
async fn drive<S, B, ResBody, E>(
    svc: S,
    outer: &Outer,
    mut run: Run<'_>,
    opts: &RunOptions,
    mut emit: E,
    hold: Hold,
    journal: Option<&dyn Journal>,
) -> Summary
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
    E: Emit,
{
    let mut spawning = Spawning::new(run.places());
    let mut calls = InFlight(FuturesUnordered::new());
    let mut endings = FuturesUnordered::new();
    let mut deadline = pin!(opts.batch_timeout.map(tokio::time::sleep));
    // What follows a group's member: its next member, or its commit or rollback.
    let mut follow = None;
    // Events in a row that came without a wait (see the yield below).
    let mut unwaited = 0;
    let deadline_passed = loop {
        // While the reply holds as much as it should, nothing new starts (the rest goes on).
        let room = emit.has_room();
        let mut next = || {
            follow
                .take()
                .or_else(|| room.then(|| run.next_launch(outer))?)
        };
        while let Some(launch) = next() {
            match launch {
                Launch::Call(call) => {
                    let spawns = spawning.spawns();
                    calls
                        .0
                        .push(launched(call, &svc, outer, opts, spawns, journal));
                }
                Launch::End(g, tx, commit) => endings.push(end(g, tx, commit, opts, hold.clone())),
            }
        }
        // Room matters only while something is ready to start (else idle means over).
        let wait_room = (!room && run.has_ready()).then(|| emit.room());
        let waiting = Waiting {
            calls: &mut calls.0,
            spawning: &mut spawning,
            endings: &mut endings,
            deadline: deadline.as_mut().as_pin_mut(),
        };
        let (event, waited) = waiting.next_event(wait_room).await;
        follow = match event {
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
                expire(&mut run, &mut endings, opts).await;
                break true;
            }
        };
        run.emit_final(&mut emit);
        // After `concurrency` events in a row without a wait, the run yields: the runtime
        // polls its other work, the connection included, so a client that left is seen
        // within that many items. (`yield_now` polls the I/O driver first, ~0.5 µs:
        // answers that arrive together pay it once.)
        unwaited = if waited { 0 } else { unwaited + 1 };
        if unwaited >= opts.concurrency.max(1) {
            unwaited = 0;
            emit.yielding();
            tokio::task::yield_now().await;
        }
    };
    run.emit_rest(deadline_passed, &mut emit)
}

/// The future that runs `call`: a sub-request (in this task, or, when `spawn`, on a task
/// of its own, in the span current here), or a group's `begin`. Boxed: a call's future is
/// large (the wrapped service's own, the body being read, the timer: 944 bytes around an
/// axum `Router`), and a box is moved as a pointer (measured with `examples/driver.rs`:
/// 550 fewer instructions per item than an `Either` of the three, moved whole). When the
/// batch is keyed, a sub-request is sent once its `journal` has recorded that it is
/// (one that cannot be recorded is not sent: `503`; nor one of a cancelled job: `424`).
fn launched<'a, S, B, ResBody>(
    call: Call<B>,
    svc: &S,
    outer: &'a Outer,
    opts: &'a RunOptions,
    spawn: bool,
    journal: Option<&dyn Journal>,
) -> BoxFuture<'a, Done>
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    match call {
        Call::Send(i, req, span) => {
            let call = call::call(svc.clone(), req, i, span, opts.limits());
            let call: BoxFuture<'a, Done> = match spawn {
                true => Box::pin(call::spawned(i, call.in_current_span())),
                false => Box::pin(call),
            };
            let Some(sending) = journal.map(|j| j.sending(i)) else {
                return call;
            };
            Box::pin(async move {
                match sending.await {
                    Ok(()) => call.await,
                    Err(outcome) => Done::Sent(i, outcome),
                }
            })
        }
        Call::Begin(g, single) => Box::pin(begin(g, single, outer.parts(), opts)),
    }
}

/// The batch deadline passed: open transactions are dropped, and every item without an
/// outcome gets one. Commits and rollbacks in flight may finish, so the reply says what
/// became of the data, but within a bound: the per-sub-request timeout, or without one a
/// second `batch_timeout`; a group whose call is still in flight then reports that it did
/// not finish.
async fn expire<G>(run: &mut Run<'_>, endings: &mut FuturesUnordered<G>, opts: &RunOptions)
where
    G: Future<Output = (usize, Result<(), TxError>)>,
{
    run.expire_groups();
    let grace = opts.timeout.or(opts.batch_timeout).unwrap_or_default();
    let until = tokio::time::Instant::now() + grace;
    while !endings.is_empty() {
        match tokio::time::timeout_at(until, endings.next()).await {
            Ok(Some((g, result))) => run.on_ended(g, result),
            Ok(None) => break,
            Err(_) => {
                run.end_unfinished(grace);
                break;
            }
        }
    }
    run.expire_items();
}
