//! Which item may start next, as pure bookkeeping over indices: dependencies, atomic
//! groups, chunks, the concurrency limit and `stop_on_error`. Nothing here sends, awaits
//! or reads a clock, so every rule is unit-tested without a runtime.
//!
//! The rules:
//! - an item may start once every item it depends on has finished; among those that may,
//!   the lowest index goes first (so with one place the batch runs in request order);
//! - an atomic group starts as one, at its first member, once everything any member
//!   depends on outside the group has finished; it holds one place from its start to its
//!   end, and items that depend on a member wait for the whole group;
//! - with chunks, an item starts only when every chunk before its own has finished;
//! - with `stop_on_error`, there is one place, and nothing starts after a failure.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;

/// What may start next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// One item outside any group.
    Item(usize),
    /// An atomic group: its transaction begins, then its members run in order.
    Group(usize),
}

/// What the batch deadline makes of an item that has no final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// It was in flight, and is dropped.
    InFlight,
    /// It never started.
    NotStarted,
}

/// Where an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Sent,
    Succeeded,
    /// Finished with a status of 400 or more, or never sent.
    Failed,
}

/// One item's place in the schedule.
#[derive(Debug)]
struct Node {
    depends_on: Vec<usize>,
    /// Who waits for it: its dependants, or their groups' first members.
    dependants: Vec<usize>,
    /// How many dependencies it (or its group, at its first member) still waits for.
    waiting_on: usize,
    state: State,
}

/// The schedule of one batch.
#[derive(Debug)]
pub(crate) struct Schedule {
    nodes: Vec<Node>,
    /// The items that may start, lowest index first.
    ready: BinaryHeap<Reverse<usize>>,
    /// Each item's group; empty when there is none.
    group_of: Vec<Option<usize>>,
    groups: Vec<Range<usize>>,
    /// `usize::MAX` without chunks.
    chunk_size: usize,
    finished: usize,
    places: usize,
    /// Places taken: items in flight, and groups from their start to their end.
    taken: usize,
    stop_on_error: bool,
    stopped: bool,
}

impl Schedule {
    /// `depends_on`: for each item, the earlier items it waits for; `groups`: adjacent
    /// members.
    pub(crate) fn new(
        depends_on: impl ExactSizeIterator<Item = Vec<usize>>,
        groups: Vec<Range<usize>>,
        chunk_size: Option<usize>,
        stop_on_error: bool,
        concurrency: usize,
    ) -> Self {
        let n = depends_on.len();
        let mut nodes: Vec<Node> = depends_on
            .map(|depends_on| Node {
                depends_on,
                dependants: Vec::new(),
                waiting_on: 0,
                state: State::Waiting,
            })
            .collect();
        let mut group_of = Vec::new();
        if !groups.is_empty() {
            group_of = vec![None; n];
            for (g, members) in groups.iter().enumerate() {
                group_of[members.clone()].fill(Some(g));
            }
        }
        for i in 0..n {
            let group = group_of.get(i).copied().flatten();
            // A group waits as one, at its first member, for what its members need outside it.
            let waiter = group.map_or(i, |g| groups[g].start);
            for k in 0..nodes[i].depends_on.len() {
                let d = nodes[i].depends_on[k];
                if group.is_none() || group_of[d] != group {
                    nodes[waiter].waiting_on += 1;
                    nodes[d].dependants.push(waiter);
                }
            }
        }
        let leads = |i: usize| {
            let group = group_of.get(i).copied().flatten();
            group.is_none_or(|g| groups[g].start == i)
        };
        let ready = (0..n)
            .filter(|&i| nodes[i].waiting_on == 0 && leads(i))
            .map(Reverse)
            .collect();
        Self {
            nodes,
            ready,
            group_of,
            groups,
            chunk_size: chunk_size.unwrap_or(usize::MAX).max(1),
            finished: 0,
            places: if stop_on_error { 1 } else { concurrency.max(1) },
            taken: 0,
            stop_on_error,
            stopped: false,
        }
    }

    /// Whether an item is ready to start (given a place): the run has more to launch
    /// without waiting for anything in flight.
    pub(crate) fn has_ready(&self) -> bool {
        !self.stopped && !self.ready.is_empty()
    }

    /// How many items or groups may be in flight at once.
    pub(crate) fn places(&self) -> usize {
        self.places
    }

    /// The next item or group that may start, taking a place; `None` when nothing may start
    /// now.
    pub(crate) fn next(&mut self) -> Option<Start> {
        if self.stopped || self.taken >= self.places {
            return None;
        }
        let Reverse(i) = *self.ready.peek()?;
        if self.chunk_size != usize::MAX && self.finished < i / self.chunk_size * self.chunk_size {
            return None;
        }
        self.ready.pop();
        self.taken += 1;
        Some(match self.group_of(i) {
            Some(g) => Start::Group(g),
            None => Start::Item(i),
        })
    }

    #[inline]
    pub(crate) fn group_of(&self, i: usize) -> Option<usize> {
        self.group_of.get(i).copied().flatten()
    }

    pub(crate) fn depends_on(&self, i: usize) -> &[usize] {
        &self.nodes[i].depends_on
    }

    /// Item `i` was sent.
    pub(crate) fn sent(&mut self, i: usize) {
        self.nodes[i].state = State::Sent;
    }

    fn succeeded(&self, d: usize) -> bool {
        self.nodes[d].state == State::Succeeded
    }

    /// The first dependency of item `i` that failed or never ran; then `i` is not sent.
    pub(crate) fn failed_dependency(&self, i: usize) -> Option<usize> {
        let depends_on = &self.nodes[i].depends_on;
        depends_on.iter().copied().find(|&d| !self.succeeded(d))
    }

    /// The first dependency outside group `g`, of any member, that failed or never ran;
    /// then nothing of the group is sent.
    pub(crate) fn failed_dependency_of_group(&self, g: usize) -> Option<usize> {
        let members = &self.groups[g];
        members.clone().find_map(|m| {
            let outside = self.nodes[m]
                .depends_on
                .iter()
                .filter(|d| !members.contains(d));
            outside.copied().find(|&d| !self.succeeded(d))
        })
    }

    /// Item `i`, outside any group, finished (or was not sent): its place is free, and what
    /// waited for it may start.
    pub(crate) fn finish(&mut self, i: usize, failed: bool) {
        self.set(i, failed);
        self.taken -= 1;
        self.release(i);
    }

    /// Member `m` of a group finished (or was not sent); nothing waiting for it is released
    /// until the group ends.
    pub(crate) fn finish_member(&mut self, m: usize, failed: bool) {
        self.set(m, failed);
    }

    /// Group `g` ended, each member `failed` or not in the end (a rollback fails them all):
    /// its place is free, and what waited for any member may start.
    pub(crate) fn end_group(&mut self, g: usize, failed: impl Fn(usize) -> bool) {
        let members = self.groups[g].clone();
        for m in members.clone() {
            self.set(m, failed(m));
        }
        self.taken -= 1;
        for m in members {
            self.release(m);
        }
    }

    /// The batch deadline passed: the items without a final state, and what becomes of
    /// each. With `stop_on_error`, items that never started are left out of the reply.
    pub(crate) fn expire(&self) -> impl Iterator<Item = (usize, Expired)> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, node)| match node.state {
                State::Sent => Some((i, Expired::InFlight)),
                State::Waiting if !self.stop_on_error => Some((i, Expired::NotStarted)),
                _ => None,
            })
    }

    fn set(&mut self, i: usize, failed: bool) {
        if matches!(self.nodes[i].state, State::Waiting | State::Sent) {
            self.finished += 1;
        }
        self.nodes[i].state = if failed {
            State::Failed
        } else {
            State::Succeeded
        };
        self.stopped |= failed && self.stop_on_error;
    }

    fn release(&mut self, i: usize) {
        for k in 0..self.nodes[i].dependants.len() {
            let j = self.nodes[i].dependants[k];
            self.nodes[j].waiting_on -= 1;
            if self.nodes[j].waiting_on == 0 {
                self.ready.push(Reverse(j));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(deps: &[&[usize]], places: usize) -> Schedule {
        let deps: Vec<Vec<usize>> = deps.iter().map(|d| d.to_vec()).collect();
        Schedule::new(deps.into_iter(), Vec::new(), None, false, places)
    }

    /// One group with these members.
    fn groups(members: Range<usize>) -> Vec<Range<usize>> {
        vec![members]
    }

    /// Everything `next` gives now.
    fn drain(s: &mut Schedule) -> Vec<Start> {
        std::iter::from_fn(|| s.next()).collect()
    }

    #[test]
    fn one_place_runs_in_request_order() {
        let mut s = schedule(&[&[], &[], &[]], 1);
        for i in 0..3 {
            assert_eq!(drain(&mut s), [Start::Item(i)]);
            s.sent(i);
            s.finish(i, false);
        }
        assert_eq!(drain(&mut s), []);
    }

    #[test]
    fn independent_items_fill_the_places_lowest_index_first() {
        let mut s = schedule(&[&[], &[], &[], &[]], 2);
        assert_eq!(drain(&mut s), [Start::Item(0), Start::Item(1)]);
        s.finish(1, false);
        assert_eq!(drain(&mut s), [Start::Item(2)]);
    }

    #[test]
    fn a_diamond_waits_for_both_sides() {
        // a → b, c → d
        let mut s = schedule(&[&[], &[0], &[0], &[1, 2]], 4);
        assert_eq!(drain(&mut s), [Start::Item(0)]);
        s.finish(0, false);
        assert_eq!(drain(&mut s), [Start::Item(1), Start::Item(2)]);
        s.finish(2, false);
        assert_eq!(drain(&mut s), []);
        s.finish(1, false);
        assert_eq!(drain(&mut s), [Start::Item(3)]);
        assert_eq!(s.failed_dependency(3), None);
    }

    #[test]
    fn a_failed_dependency_is_named_and_passed_on() {
        let mut s = schedule(&[&[], &[0], &[1], &[]], 1);
        assert_eq!(drain(&mut s), [Start::Item(0)]);
        s.finish(0, true);
        assert_eq!(drain(&mut s), [Start::Item(1)]);
        assert_eq!(s.failed_dependency(1), Some(0));
        // Not sent: it fails too, and so does what depends on it.
        s.finish(1, true);
        assert_eq!(drain(&mut s), [Start::Item(2)]);
        assert_eq!(s.failed_dependency(2), Some(1));
    }

    #[test]
    fn stop_on_error_has_one_place_and_stops_at_a_failure() {
        let deps = vec![Vec::new(); 3];
        let mut s = Schedule::new(deps.into_iter(), Vec::new(), None, true, 8);
        assert_eq!(s.places(), 1);
        assert_eq!(drain(&mut s), [Start::Item(0)]);
        s.sent(0);
        s.finish(0, true);
        assert_eq!(drain(&mut s), []);
        // What never started is left out of the reply when the deadline passes.
        assert_eq!(s.expire().count(), 0);
    }

    #[test]
    fn chunks_start_when_the_chunk_before_has_finished() {
        let deps = vec![Vec::new(); 5];
        let mut s = Schedule::new(deps.into_iter(), Vec::new(), Some(2), false, 8);
        assert_eq!(drain(&mut s), [Start::Item(0), Start::Item(1)]);
        s.finish(0, false);
        assert_eq!(drain(&mut s), []);
        s.finish(1, true);
        assert_eq!(drain(&mut s), [Start::Item(2), Start::Item(3)]);
        s.finish(2, false);
        s.finish(3, false);
        assert_eq!(drain(&mut s), [Start::Item(4)]);
    }

    #[test]
    fn a_group_starts_as_one_and_holds_one_place_until_it_ends() {
        // 0 outside; group 1..3 whose member 2 depends on 0; 3 depends on member 1.
        let deps = vec![vec![], vec![], vec![0, 1], vec![1]];
        let mut s = Schedule::new(deps.into_iter(), groups(1..3), None, false, 2);
        assert_eq!(drain(&mut s), [Start::Item(0)]);
        s.finish(0, false);
        assert_eq!(drain(&mut s), [Start::Group(0)]);
        assert_eq!(s.failed_dependency_of_group(0), None);
        s.sent(1);
        s.finish_member(1, false);
        assert_eq!(drain(&mut s), [], "item 3 waits for the whole group");
        assert_eq!(s.failed_dependency(2), None, "member 1 succeeded");
        s.finish_member(2, true);
        // Rolled back: both members failed in the end.
        s.end_group(0, |_| true);
        assert_eq!(drain(&mut s), [Start::Item(3)]);
        assert_eq!(s.failed_dependency(3), Some(1));
    }

    #[test]
    fn a_group_whose_outside_dependency_failed_is_not_begun() {
        let deps = vec![vec![], vec![], vec![0]];
        let mut s = Schedule::new(deps.into_iter(), groups(1..3), None, false, 1);
        assert_eq!(drain(&mut s), [Start::Item(0)]);
        s.finish(0, true);
        assert_eq!(drain(&mut s), [Start::Group(0)]);
        assert_eq!(s.failed_dependency_of_group(0), Some(0));
    }

    #[test]
    fn the_deadline_tells_in_flight_from_not_started() {
        let mut s = schedule(&[&[], &[], &[1], &[]], 2);
        assert_eq!(drain(&mut s), [Start::Item(0), Start::Item(1)]);
        s.sent(0);
        s.sent(1);
        s.finish(0, false);
        s.next();
        s.sent(3);
        let expired: Vec<_> = s.expire().collect();
        assert_eq!(
            expired,
            [
                (1, Expired::InFlight),
                (2, Expired::NotStarted),
                (3, Expired::InFlight)
            ]
        );
    }
}
