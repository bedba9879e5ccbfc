//! [`Run`]: the state of one batch while the engine runs it: the items not yet sent, the
//! outcomes so far, the schedule and the atomic groups. It decides what to launch next
//! and what each finished future means; the loop in `engine/mod.rs` owns the futures.

use super::group::{AtomicGroup, Next, TxError};
use super::journal::Prior;
use super::schedule::{Expired, Schedule, Start};
use super::slots::Slots;
use super::{Emit, RunOptions};
use crate::batch::failures;
use crate::batch::outcome::Outcome;
use crate::batch::plan::{Plan, PlanItem};
use crate::batch::reference::Resolvable;
use crate::batch::results::{Results, Views};
use crate::batch::summary::{CutShort, Summary};
use crate::body::BatchRequestBody;
use crate::subrequest::Outer;
use crate::transaction::OpenTx;
use http::Request;
use std::time::Duration;

/// What the loop should start. (A request is moved into its call at once: boxing it
/// would cost an allocation per sub-request.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Launch<B> {
    /// A call, among those the run waits for.
    Call(Call<B>),
    /// Commit (`true`) or roll back group `g`'s transaction.
    End(usize, Box<dyn OpenTx>, bool),
}

/// A call the run waits for.
#[allow(clippy::large_enum_variant)]
pub(super) enum Call<B> {
    /// Send item `i`, in its span if items have spans.
    Send(usize, Request<BatchRequestBody<B>>, Option<tracing::Span>),
    /// Begin group `g`'s transaction (`true`: the group is one request).
    Begin(usize, bool),
}

/// One batch being run.
pub(super) struct Run<'a> {
    opts: &'a RunOptions,
    slots: Slots,
    schedule: Schedule,
    groups: Vec<AtomicGroup>,
    /// What references read, shared by the batch.
    results: Results,
    stop_on_error: bool,
    /// Whether every final path must stay under the service root, in both readings.
    under_root: bool,
}

impl<'a> Run<'a> {
    pub(super) fn new(
        plan: Plan,
        opts: &'a RunOptions,
        outer: &Outer,
        traced: bool,
        priors: Option<Vec<Option<Prior>>>,
    ) -> Self {
        let Plan {
            mut items,
            stop_on_error,
            groups,
            chunk_size,
            order,
            under_root,
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
        let id_header = outer.request_id_header().cloned();
        let mut slots = Slots::new(items, order, opts.max_response_bytes, traced, id_header);
        slots.set_priors(priors.unwrap_or_default());
        for i in 0..slots.len() {
            if slots.has_refs(i) {
                for &d in schedule.depends_on(i) {
                    slots.add_reader(d);
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
            under_root,
        }
    }

    pub(super) fn places(&self) -> usize {
        self.schedule.places()
    }

    /// Whether something could start now, were there room in the reply.
    pub(super) fn has_ready(&self) -> bool {
        self.schedule.has_ready()
    }

    /// The next future to start, if the schedule lets one start. Items that cannot be sent
    /// (a failed dependency, a reference that finds nothing) get their `424` on the way.
    pub(super) fn next_launch<B>(&mut self, outer: &Outer) -> Option<Launch<B>> {
        while let Some(start) = self.schedule.next() {
            match start {
                Start::Item(i) => match self.replayed(i) {
                    Some(outcome) => self.settle(i, outcome),
                    None => match self.prepare(i, outer) {
                        Ok(req) => return Some(self.send(i, req)),
                        Err(outcome) => self.settle(i, *outcome),
                    },
                },
                Start::Group(g) if self.groups[g].members().any(|m| self.slots.has_prior(m)) => {
                    self.replay_group(g);
                }
                Start::Group(g) => match self.schedule.failed_dependency_of_group(g) {
                    None => {
                        self.groups[g].begin();
                        let single = self.groups[g].members().len() == 1;
                        return Some(Launch::Call(Call::Begin(g, single)));
                    }
                    Some(d) => {
                        self.groups[g].not_started();
                        let dep = self.slots.outcome(d);
                        self.fail_group(g, failures::failed_dependency(d, self.slots.id(d), dep));
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
        outer: &Outer,
    ) -> Option<Launch<B>> {
        self.slots.call_finished(i);
        let Some(g) = self.schedule.group_of(i) else {
            self.settle(i, outcome);
            return None;
        };
        let failed = outcome.failed();
        self.slots.record(i, outcome);
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
        outer: &Outer,
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
        let outcome_of = |m: usize| Some((slots.id(m), slots.outcome(m)?));
        let changed = self.groups[g].ended(result, outcome_of, self.stop_on_error);
        for (m, outcome) in changed {
            self.slots.record(m, outcome);
        }
        self.slots.touch(self.groups[g].members());
        let slots = &self.slots;
        let failed = |m: usize| slots.outcome(m).is_none_or(Outcome::failed);
        self.schedule.end_group(g, failed);
    }

    /// Item `i`'s outcome from an earlier run of its keyed batch, if it has one: then it
    /// is not sent, and what its references would have read may go.
    fn replayed(&mut self, i: usize) -> Option<Outcome> {
        let prior = self.slots.take_prior(i)?;
        self.not_sending(i);
        Some(match prior {
            Prior::Finished(outcome) => outcome,
            Prior::Unknown => failures::outcome_unknown(),
        })
    }

    /// Group `g`, some of whose members an earlier run of its keyed batch sent: no
    /// transaction begins. Each member reports its final outcome from that run; one
    /// without reports that its outcome is unknown (the transaction was open, or its end
    /// not recorded).
    fn replay_group(&mut self, g: usize) {
        self.groups[g].not_started();
        for m in self.groups[g].members() {
            let outcome = self.replayed(m).unwrap_or_else(|| {
                self.not_sending(m);
                failures::outcome_unknown()
            });
            self.slots.record(m, outcome);
        }
        self.slots.touch(self.groups[g].members());
        let slots = &self.slots;
        let failed = |m: usize| slots.outcome(m).is_none_or(Outcome::failed);
        self.schedule.end_group(g, failed);
    }

    /// Item `i` will not be sent: it is let go, and so is what its references would read.
    fn not_sending(&mut self, i: usize) {
        if self.slots.has_refs(i) {
            self.read(i);
        }
        self.slots.take_item(i);
    }

    /// Sends the group's next member; a member that cannot be sent fails the group.
    fn continue_group<B>(&mut self, g: usize, mut next: Next, outer: &Outer) -> Option<Launch<B>> {
        loop {
            let m = match next {
                Next::End(tx, commit) => return Some(Launch::End(g, tx, commit)),
                Next::Send(m) => m,
            };
            match self.prepare(m, outer) {
                Ok(req) => return Some(self.send(m, req)),
                Err(outcome) => {
                    self.slots.record(m, *outcome);
                    self.schedule.finish_member(m, true);
                    next = self.groups[g].member_done(m, true)?;
                }
            }
        }
    }

    /// Sends item `i`'s request, in its span.
    fn send<B>(&self, i: usize, req: Request<BatchRequestBody<B>>) -> Launch<B> {
        Launch::Call(Call::Send(i, req, self.slots.span(i)))
    }

    /// Item `i`, which has references, no longer needs its dependencies' bodies: those
    /// already written and needed by no one else are let go.
    fn read(&mut self, i: usize) {
        for &d in self.schedule.depends_on(i) {
            self.slots.read(d);
        }
    }

    /// The request for item `i`, with its references resolved and its group's transaction
    /// in its extensions; or the `424` (or `403`) to report when it cannot be sent.
    fn prepare<B>(
        &mut self,
        i: usize,
        outer: &Outer,
    ) -> Result<Request<BatchRequestBody<B>>, Box<Outcome>> {
        let reads = self.slots.has_refs(i);
        let Some(mut item) = self.slots.take_item(i) else {
            // The schedule starts each item once; a bug there costs this item, not the batch.
            debug_assert!(false, "request {i} was started twice");
            let why = format!("not sent: request {i} was started twice");
            return Err(Box::new(failures::not_sent(why)));
        };
        let checked = self.check_item(i, &mut item);
        // Its references are resolved (or never will be): what they read may go.
        if reads {
            self.read(i);
        }
        // Its span names the path as sent (or as far as it was resolved).
        self.slots.start_trace(i, &item);
        checked?;
        let request_id = outer.request_id_of(i, self.slots.id(i));
        if let Some(id) = &request_id {
            self.slots.sent_with(i, id.clone());
        }
        let mut req = outer.sub_request(item, request_id);
        if let Some(g) = self.schedule.group_of(i) {
            self.groups[g].insert_handle(req.extensions_mut());
        }
        self.schedule.sent(i);
        Ok(req)
    }

    /// Whether item `i` may be sent: its dependencies succeeded, its references resolve
    /// (into `item`), and what it would reach is reachable.
    fn check_item(&mut self, i: usize, item: &mut PlanItem) -> Result<(), Box<Outcome>> {
        if let Some(d) = self.schedule.failed_dependency(i) {
            let dep = self.slots.outcome(d);
            return Err(Box::new(failures::failed_dependency(
                d,
                self.slots.id(d),
                dep,
            )));
        }
        if let Some(refs) = item.refs.take() {
            let slots = &self.slots;
            let deps = self.schedule.depends_on(i).iter();
            let deps = deps.filter_map(|&d| Some((d, slots.id(d), slots.outcome(d)?)));
            let mut views = Views::new(&mut self.results, deps);
            let into = Resolvable {
                uri: &mut item.uri,
                headers: &mut item.headers,
                body: &mut item.body,
            };
            let batch_paths = &self.opts.batch_paths;
            refs.resolve(&mut views, batch_paths, into)
                .map_err(|why| Box::new(failures::not_sent(why)))?;
        }
        // Checked last, on the path as it will be sent.
        let reach = &self.opts.reach;
        let root = self
            .opts
            .service_root
            .as_deref()
            .filter(|_| self.under_root);
        if let Some(why) = reach.refusal(&item.method, item.uri.path(), root) {
            return Err(Box::new(failures::unreachable(why)));
        }
        Ok(())
    }

    /// Every member of group `g` reports `outcome`; none was sent.
    fn fail_group(&mut self, g: usize, outcome: Outcome) {
        for m in self.groups[g].members() {
            self.slots.record(m, outcome.clone());
        }
        self.schedule.end_group(g, |_| true);
    }

    /// Item `i`, outside any group, has its outcome.
    fn settle(&mut self, i: usize, outcome: Outcome) {
        let failed = outcome.failed();
        self.slots.record(i, outcome);
        self.schedule.finish(i, failed);
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
            let changed = self.groups[g].expire(limit, |m| slots.outcome(m).is_some());
            for (m, outcome) in changed {
                self.slots.record(m, outcome);
            }
            self.slots.touch(self.groups[g].members());
        }
    }

    /// The batch deadline passed: what was in flight is `504`, what never started `424`.
    /// (An item in flight was sent with a request id: its `504` gives it back.)
    pub(super) fn expire_items(&mut self) {
        let limit = self.opts.batch_timeout.unwrap_or_default();
        let expired: Vec<_> = self.schedule.expire().collect();
        for (i, how) in expired {
            let outcome = match how {
                Expired::InFlight => failures::batch_timed_out(limit),
                Expired::NotStarted => failures::not_started(limit),
            };
            self.slots.record(i, outcome);
        }
    }

    /// Hands on every outcome that is final; a group member's is final once its group
    /// has ended.
    pub(super) fn emit_final(&mut self, emit: &mut impl Emit) {
        let (schedule, groups) = (&self.schedule, &self.groups);
        let open = |i| schedule.group_of(i).is_some_and(|g| !groups[g].is_ended());
        self.slots.emit_final(open, emit);
    }

    /// The run is over: hands on the rest, leaving out items that never ran; how it ended.
    pub(super) fn emit_rest(self, deadline_passed: bool, emit: &mut impl Emit) -> Summary {
        let cut_short = if deadline_passed {
            Some(CutShort::BatchTimeout)
        } else if self.slots.any_left_out() {
            Some(CutShort::StopOnError)
        } else {
            None
        };
        let mut summary = self.slots.emit_rest(emit);
        summary.cut_short = cut_short;
        summary
    }
}
