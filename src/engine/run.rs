//! [`Run`]: the state of one batch while the engine runs it: the items not yet sent, the
//! outcomes so far, the schedule and the atomic groups. It decides what to launch next
//! and what each finished future means; the loop in `engine/mod.rs` owns the futures.

use super::group::{AtomicGroup, Next, TxError};
use super::schedule::{Expired, Schedule, Start};
use super::RunOptions;
use crate::batch::outcome::{reply_limit_reached, Outcome};
use crate::batch::plan::{Plan, PlanItem};
use crate::batch::reference::Resolvable;
use crate::batch::results::{Results, Views};
use crate::body::BatchRequestBody;
use crate::identity::Outer;
use crate::transaction::OpenTx;
use http::{Request, StatusCode};
use std::time::Duration;

/// A future the loop should start. (Moved once, straight into its future: the size of
/// a request in one variant costs nothing, and boxing it would cost an allocation per
/// sub-request.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Launch<B> {
    /// Send item `i`.
    Send(usize, Request<BatchRequestBody<B>>),
    /// Begin group `g`'s transaction.
    Begin(usize),
    /// Commit (`true`) or roll back group `g`'s transaction.
    End(usize, Box<dyn OpenTx>, bool),
}

/// One batch being run.
pub(super) struct Run<'a, E> {
    opts: &'a RunOptions,
    slots: Vec<Slot>,
    schedule: Schedule,
    groups: Vec<AtomicGroup>,
    /// What references read, shared by the batch.
    results: Results,
    stop_on_error: bool,
    /// How many outcomes have been handed to `emit`.
    emitted: usize,
    /// Bytes of the bodies recorded and not yet let go (waiting to be written, or for a
    /// reference to read them), at most `max_response_bytes`.
    held: usize,
    emit: E,
}

/// One item.
struct Slot {
    /// The item, until it is sent.
    item: Option<PlanItem>,
    /// Its id, until it moves into its outcome.
    id: String,
    outcome: Option<Outcome>,
    /// How many items not yet prepared have references that may read this one's body.
    /// Once it is written and this is 0, the body is let go: a batch holds the bodies
    /// still to write or to read, not every body it received.
    readers: usize,
}

impl<'a, E: FnMut(usize, &Outcome)> Run<'a, E> {
    pub(super) fn new(plan: Plan, opts: &'a RunOptions, emit: E) -> Self {
        let Plan {
            mut items,
            stop_on_error,
            groups,
            chunk_size,
        } = plan;
        let depends_on = items.iter_mut().map(|i| std::mem::take(&mut i.depends_on));
        let members = groups.iter().map(|g| g.members.clone()).collect();
        let schedule = Schedule::new(
            depends_on,
            members,
            chunk_size,
            stop_on_error,
            opts.concurrency,
        );
        let mut slots: Vec<Slot> = items
            .into_iter()
            .map(|mut item| Slot {
                id: std::mem::take(&mut item.id),
                item: Some(item),
                outcome: None,
                readers: 0,
            })
            .collect();
        for i in 0..slots.len() {
            if slots[i]
                .item
                .as_ref()
                .is_some_and(|item| item.refs.is_some())
            {
                for &d in schedule.depends_on(i) {
                    slots[d].readers += 1;
                }
            }
        }
        Self {
            opts,
            slots,
            schedule,
            groups: groups.into_iter().map(AtomicGroup::new).collect(),
            results: Results::new(opts.max_reference_bytes),
            stop_on_error,
            emitted: 0,
            held: 0,
            emit,
        }
    }

    pub(super) fn places(&self) -> usize {
        self.schedule.places()
    }

    /// The next future to start, if the schedule lets one start. Items that cannot be sent
    /// (a failed dependency, a reference that finds nothing) get their `424` on the way.
    pub(super) fn next_launch<B>(&mut self, outer: &Outer<'_>) -> Option<Launch<B>> {
        while let Some(start) = self.schedule.next() {
            match start {
                Start::Item(i) => match self.prepare(i, outer) {
                    Ok(req) => return Some(Launch::Send(i, req)),
                    Err(outcome) => self.settle(i, *outcome),
                },
                Start::Group(g) => match self.schedule.failed_dependency_of_group(g) {
                    None => {
                        self.groups[g].begin();
                        return Some(Launch::Begin(g));
                    }
                    Some(d) => {
                        self.groups[g].not_started();
                        self.fail_group(g, failed_dependency(d, self.slots[d].outcome.as_ref()));
                    }
                },
            }
        }
        None
    }

    /// Sub-request `i` answered: what follows, if its group goes on.
    pub(super) fn on_sent<B>(
        &mut self,
        i: usize,
        outcome: Outcome,
        outer: &Outer<'_>,
    ) -> Option<Launch<B>> {
        let Some(g) = self.schedule.group_of(i) else {
            self.settle(i, outcome);
            return None;
        };
        let failed = outcome.failed();
        self.record(i, outcome);
        self.schedule.finish_member(i, failed);
        let next = self.groups[g].member_done(i, failed)?;
        self.continue_group(g, next, outer)
    }

    /// Group `g`'s transaction began (its first member follows), or could not (none is
    /// sent).
    pub(super) fn on_begun<B>(
        &mut self,
        g: usize,
        began: Result<Box<dyn OpenTx>, TxError>,
        outer: &Outer<'_>,
    ) -> Option<Launch<B>> {
        match began {
            Ok(tx) => {
                let first = self.groups[g].begun(tx);
                self.continue_group(g, Next::Send(first), outer)
            }
            Err(e) => {
                let outcome = self.groups[g].not_begun(e);
                self.fail_group(g, outcome);
                None
            }
        }
    }

    /// Group `g`'s commit or rollback returned: its members' outcomes are final, and what
    /// waited for the group may start.
    pub(super) fn on_ended(&mut self, g: usize, result: Result<(), TxError>) {
        let slots = &self.slots;
        let outcome_of = |m: usize| slots[m].outcome.as_ref();
        let changed = self.groups[g].ended(result, outcome_of, self.stop_on_error);
        for (m, outcome) in changed {
            self.record(m, outcome);
        }
        let slots = &self.slots;
        let failed = |m: usize| slots[m].outcome.as_ref().is_none_or(Outcome::failed);
        self.schedule.end_group(g, failed);
    }

    /// Sends the group's next member; a member that cannot be sent fails the group.
    fn continue_group<B>(
        &mut self,
        g: usize,
        mut next: Next,
        outer: &Outer<'_>,
    ) -> Option<Launch<B>> {
        loop {
            let m = match next {
                Next::End(tx, commit) => return Some(Launch::End(g, tx, commit)),
                Next::Send(m) => m,
            };
            match self.prepare(m, outer) {
                Ok(req) => return Some(Launch::Send(m, req)),
                Err(outcome) => {
                    self.record(m, *outcome);
                    self.schedule.finish_member(m, true);
                    next = self.groups[g].member_done(m, true)?;
                }
            }
        }
    }

    /// The request for item `i`, with its references resolved and its group's transaction
    /// in its extensions; or the `424` (or `403`) to report when it cannot be sent.
    /// (Inlined: the request is built where it is launched, not copied through return
    /// values.)
    #[inline(always)]
    fn prepare<B>(
        &mut self,
        i: usize,
        outer: &Outer<'_>,
    ) -> Result<Request<BatchRequestBody<B>>, Box<Outcome>> {
        let reads = self.slots[i]
            .item
            .as_ref()
            .is_some_and(|item| item.refs.is_some());
        let prepared = self.prepare_item(i, outer);
        if reads {
            self.read(i);
        }
        prepared
    }

    /// Item `i`, which has references, no longer needs its dependencies' bodies: those
    /// already written and needed by no one else are let go.
    fn read(&mut self, i: usize) {
        for &d in self.schedule.depends_on(i) {
            let slot = &mut self.slots[d];
            slot.readers = slot.readers.saturating_sub(1);
            if d < self.emitted && slot.readers == 0 {
                self.held -= release_body(slot);
            }
        }
    }

    #[inline(always)]
    fn prepare_item<B>(
        &mut self,
        i: usize,
        outer: &Outer<'_>,
    ) -> Result<Request<BatchRequestBody<B>>, Box<Outcome>> {
        let not_sent = |why: String| {
            Box::new(Outcome::problem(
                StatusCode::FAILED_DEPENDENCY,
                "Failed dependency",
                why,
            ))
        };
        let Some(mut item) = self.slots[i].item.take() else {
            // The schedule starts each item once; a bug there costs this item, not the batch.
            debug_assert!(false, "request {i} was started twice");
            return Err(not_sent(format!("not sent: request {i} was started twice")));
        };
        if let Some(d) = self.schedule.failed_dependency(i) {
            return Err(Box::new(failed_dependency(
                d,
                self.slots[d].outcome.as_ref(),
            )));
        }
        if let Some(refs) = item.refs.take() {
            let slots = &self.slots;
            let deps = self.schedule.depends_on(i).iter();
            let deps = deps.filter_map(|&d| Some((d, slots[d].outcome.as_ref()?)));
            let mut views = Views::new(&mut self.results, deps);
            let into = Resolvable {
                uri: &mut item.uri,
                headers: &mut item.headers,
                body: &mut item.body,
            };
            let batch_paths = &self.opts.batch_paths;
            refs.resolve(&mut views, batch_paths, into)
                .map_err(not_sent)?;
        }
        // Checked last, on the path as it will be sent.
        let reach = &self.opts.reach;
        if !reach.is_open() {
            if let Some(why) = reach.refusal(&item.method, item.uri.path()) {
                let title = "Not reachable from a batch";
                return Err(Box::new(Outcome::problem(
                    StatusCode::FORBIDDEN,
                    title,
                    why,
                )));
            }
        }
        let mut req = outer.sub_request(item);
        if let Some(g) = self.schedule.group_of(i) {
            self.groups[g].insert_handle(req.extensions_mut());
        }
        self.schedule.sent(i);
        Ok(req)
    }

    /// Every member of group `g` reports `outcome`; none was sent.
    fn fail_group(&mut self, g: usize, outcome: Outcome) {
        for m in self.groups[g].members() {
            self.record(m, outcome.clone());
        }
        self.schedule.end_group(g, |_| true);
    }

    /// Item `i`, outside any group, has its outcome.
    fn settle(&mut self, i: usize, outcome: Outcome) {
        let failed = outcome.failed();
        self.record(i, outcome);
        self.schedule.finish(i, failed);
    }

    /// Stores an item's outcome with its id (an outcome that replaces another keeps the
    /// id).
    ///
    /// Its body is held until it is written (and read, when a reference may read it): one
    /// that would take the bodies held past `max_response_bytes` is left out at once, as the
    /// reply would leave it out (it counts every body, and more), so that a slow early
    /// item cannot make the batch hold every later body.
    fn record(&mut self, i: usize, mut outcome: Outcome) {
        let slot = &mut self.slots[i];
        outcome.id = match slot.outcome.take() {
            Some(old) => {
                self.held -= old.body.len();
                old.id
            }
            None => std::mem::take(&mut slot.id),
        };
        let max = self.opts.max_response_bytes;
        if outcome.body.len() > max - self.held.min(max) {
            outcome.body = bytes::Bytes::new();
            outcome.body_omitted = Some(reply_limit_reached(max));
        }
        self.held += outcome.body.len();
        slot.outcome = Some(outcome);
    }

    /// Every group whose commit or rollback is still in flight after `grace` ends as timed
    /// out.
    pub(super) fn end_unfinished(&mut self, grace: Duration) {
        for g in 0..self.groups.len() {
            if self.groups[g].is_ending() {
                self.on_ended(g, Err(TxError::TimedOut(grace)));
            }
        }
    }

    /// The batch deadline passed: open transactions are dropped.
    pub(super) fn expire_groups(&mut self) {
        let limit = self.opts.batch_timeout.unwrap_or_default();
        for g in 0..self.groups.len() {
            let slots = &self.slots;
            let changed = self.groups[g].expire(limit, |m| slots[m].outcome.is_some());
            for (m, outcome) in changed {
                self.record(m, outcome);
            }
        }
    }

    /// The batch deadline passed: what was in flight is `504`, what never started `424`.
    pub(super) fn expire_items(&mut self) {
        let limit = self.opts.batch_timeout.unwrap_or_default();
        let expired: Vec<_> = self.schedule.expire().collect();
        for (i, how) in expired {
            let outcome = match how {
                Expired::InFlight => Outcome::problem(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Batch timed out",
                    format!("did not finish within the batch's deadline of {limit:?} (batch_timeout)"),
                ),
                Expired::NotStarted => Outcome::problem(
                    StatusCode::FAILED_DEPENDENCY,
                    "Not sent",
                    format!("not sent: the batch's deadline of {limit:?} (batch_timeout) passed before it could start"),
                ),
            };
            self.record(i, outcome);
        }
    }

    /// Hands on every outcome that is final, in request order, up to the first that is not:
    /// a group member's is final once its group has ended.
    pub(super) fn emit_final(&mut self) {
        while let Some(Slot {
            outcome: Some(outcome),
            ..
        }) = self.slots.get(self.emitted)
        {
            let group = self.schedule.group_of(self.emitted);
            if group.is_some_and(|g| !self.groups[g].is_ended()) {
                return;
            }
            (self.emit)(self.emitted, outcome);
            if self.slots[self.emitted].readers == 0 {
                self.held -= release_body(&mut self.slots[self.emitted]);
            }
            self.emitted += 1;
        }
    }

    /// The run is over: hands on the rest, leaving out items that never ran.
    pub(super) fn emit_rest(mut self) {
        for (i, slot) in self.slots.iter().enumerate().skip(self.emitted) {
            if let Some(outcome) = &slot.outcome {
                (self.emit)(i, outcome);
            }
        }
    }
}

/// Lets go of a written body no reference will read (the reply may still share it);
/// returns its size.
fn release_body(slot: &mut Slot) -> usize {
    let body = slot.outcome.as_mut().map(|o| std::mem::take(&mut o.body));
    body.map_or(0, |b| b.len())
}

/// `424` for an item that was not sent because dependency `d` failed or never ran.
fn failed_dependency(d: usize, dep: Option<&Outcome>) -> Outcome {
    let detail = match dep {
        Some(o) if o.status == StatusCode::FAILED_DEPENDENCY => format!(
            "not sent: request {:?} (index {d}), which it depends on, did not take effect (it was not sent, or was rolled back)",
            o.id
        ),
        Some(o) => format!(
            "not sent: request {:?} (index {d}), which it depends on, failed with status {}",
            o.id,
            o.status.as_u16()
        ),
        None => format!("not sent: request at index {d}, which it depends on, did not run"),
    };
    Outcome::problem(StatusCode::FAILED_DEPENDENCY, "Failed dependency", detail)
}
