//! An atomic group's life: its transaction begins, its members run one after another with
//! the transaction's handle, and it ends in a commit (every member below 400) or a
//! rollback (as soon as one failed). [`AtomicGroup`] is that state machine; the engine
//! drives it and applies the outcomes it gives.

use crate::batch::failures;
use crate::batch::outcome::Outcome;
use crate::batch::plan::Group;
use crate::transaction::OpenTx;
use crate::BoxError;
use http::Extensions;
use std::ops::Range;
use std::time::Duration;

/// One atomic group of a batch.
pub(crate) struct AtomicGroup {
    name: String,
    members: Range<usize>,
    state: State,
}

/// Where a group is.
enum State {
    /// Not started.
    Waiting,
    /// `begin` is in flight.
    Beginning,
    /// The transaction is open: its members run with its handle.
    Open(Box<dyn OpenTx>),
    /// `commit` (no member failed) or `rollback` (after the member that did) is in flight.
    Ending { failed_at: Option<usize> },
    /// Done: its members' outcomes are final.
    Ended,
}

/// What follows a member that finished.
pub(crate) enum Next {
    /// Send this member.
    Send(usize),
    /// End the transaction: commit (`true`) or roll back.
    End(Box<dyn OpenTx>, bool),
}

/// How a `begin`, `commit` or `rollback` call ended, when it did not succeed.
#[derive(Debug)]
pub(crate) enum TxError {
    Failed(BoxError),
    /// It did not finish within the per-sub-request timeout.
    TimedOut(Duration),
}

impl std::fmt::Display for TxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(e) => e.fmt(f),
            Self::TimedOut(t) => write!(f, "it did not finish within {t:?}"),
        }
    }
}

impl AtomicGroup {
    pub(crate) fn new(group: Group) -> Self {
        Self {
            name: group.name,
            members: group.members,
            state: State::Waiting,
        }
    }

    pub(crate) fn members(&self) -> Range<usize> {
        self.members.clone()
    }

    pub(crate) fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    /// Its commit or rollback is in flight.
    pub(crate) fn is_ending(&self) -> bool {
        matches!(self.state, State::Ending { .. })
    }

    /// Its transaction's `begin` is in flight.
    pub(crate) fn begin(&mut self) {
        self.state = State::Beginning;
    }

    /// The transaction began: the first member to send.
    pub(crate) fn begun(&mut self, tx: Box<dyn OpenTx>) -> usize {
        self.state = State::Open(tx);
        self.members.start
    }

    /// The transaction could not begin: what every member reports. None was sent.
    pub(crate) fn not_begun(&mut self, e: TxError) -> Outcome {
        tracing::error!(group = %self.name, error = %e, "could not begin a transaction for an atomic group");
        self.state = State::Ended;
        failures::not_begun(&self.name, &e)
    }

    /// Something a member depends on outside the group failed: nothing was sent.
    pub(crate) fn not_started(&mut self) {
        self.state = State::Ended;
    }

    /// Puts a clone of the transaction's handle into a member's request.
    pub(crate) fn insert_handle(&self, extensions: &mut Extensions) {
        if let State::Open(tx) = &self.state {
            tx.insert_into(extensions);
        }
    }

    /// Member `m` finished (or could not be sent): the next member, or the end of the
    /// transaction. `None` when the transaction is not open, which the engine never lets
    /// happen: members are sent only while it is.
    pub(crate) fn member_done(&mut self, m: usize, failed: bool) -> Option<Next> {
        if !failed && m + 1 < self.members.end {
            return Some(Next::Send(m + 1));
        }
        let failed_at = failed.then_some(m);
        match std::mem::replace(&mut self.state, State::Ending { failed_at }) {
            State::Open(tx) => Some(Next::End(tx, !failed)),
            other => {
                debug_assert!(false, "a member finished while its group was not open");
                self.state = other;
                None
            }
        }
    }

    /// The commit or rollback returned: the members' outcomes that change. `outcome_of`
    /// gives each member's id and outcome so far (none for members never sent); with
    /// `stop_on_error`, members never sent are left out of the reply.
    pub(crate) fn ended<'o>(
        &mut self,
        result: Result<(), TxError>,
        outcome_of: impl Fn(usize) -> Option<(&'o str, &'o Outcome)>,
        stop_on_error: bool,
    ) -> Vec<(usize, Outcome)> {
        let State::Ending { failed_at } = std::mem::replace(&mut self.state, State::Ended) else {
            return Vec::new();
        };
        let Some(f) = failed_at else {
            let Err(e) = result else { return Vec::new() };
            tracing::error!(group = %self.name, error = %e, "an atomic group's commit failed");
            let outcome = self.commit_failed(&e);
            return self.members().map(|m| (m, outcome.clone())).collect();
        };
        let (id, status) = outcome_of(f).map_or(("", 0), |(id, o)| (id, o.status.as_u16()));
        let culprit = format!(
            "request {id:?} (index {f}) in atomic group {:?} failed with status {status}",
            self.name
        );
        if let Err(e) = &result {
            tracing::error!(group = %self.name, error = %e, "an atomic group's rollback failed");
        }
        let unsent = |m: usize| m > f && outcome_of(m).is_none();
        self.members()
            .filter(|&m| m != f && !(stop_on_error && unsent(m)))
            .map(|m| {
                let error = result.as_ref().err().map(|e| e as &dyn std::fmt::Display);
                (m, failures::rolled_back(&culprit, error, m < f))
            })
            .collect()
    }

    fn commit_failed(&self, e: &TxError) -> Outcome {
        match e {
            TxError::Failed(e) => failures::commit_failed(&self.name, e),
            TxError::TimedOut(t) => failures::commit_timed_out(&self.name, *t),
        }
    }

    /// The batch deadline passed: the members' outcomes that change. An open transaction
    /// is dropped (a handle rolls back on drop, as `TransactionHook` asks), and the
    /// members that finished report that they were rolled back; members in flight or not
    /// sent are the engine's to report. A commit or rollback in flight is left to finish:
    /// the engine waits for it, so the reply says what really happened.
    pub(crate) fn expire(
        &mut self,
        limit: Duration,
        has_outcome: impl Fn(usize) -> bool,
    ) -> Vec<(usize, Outcome)> {
        match self.state {
            State::Beginning => self.state = State::Ended,
            State::Open(_) => {
                self.state = State::Ended;
                let outcome = failures::group_timed_out(limit);
                let finished = self.members().filter(|&m| has_outcome(m));
                return finished.map(|m| (m, outcome.clone())).collect();
            }
            State::Waiting | State::Ending { .. } | State::Ended => {}
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::BoxFuture;
    use http::StatusCode;
    use std::sync::{Arc, Mutex};

    /// A transaction that records what was asked of it.
    struct Tx(Arc<Mutex<Vec<&'static str>>>);

    impl OpenTx for Tx {
        fn insert_into(&self, extensions: &mut Extensions) {
            extensions.insert("handle");
        }
        fn finish(self: Box<Self>, commit: bool) -> BoxFuture<'static, Result<(), BoxError>> {
            self.0
                .lock()
                .unwrap()
                .push(if commit { "commit" } else { "rollback" });
            Box::pin(async { Ok(()) })
        }
    }

    fn group() -> (AtomicGroup, Arc<Mutex<Vec<&'static str>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut g = AtomicGroup::new(Group {
            name: "g".into(),
            members: 2..5,
        });
        g.begin();
        assert_eq!(g.begun(Box::new(Tx(log.clone()))), 2);
        (g, log)
    }

    fn outcome(id: &'static str, status: u16) -> (&'static str, Outcome) {
        let mut o = Outcome::problem(StatusCode::OK, "t", String::new());
        o.status = StatusCode::from_u16(status).unwrap();
        (id, o)
    }

    #[test]
    fn members_run_in_order_then_commit() {
        let (mut g, _) = group();
        let mut extensions = Extensions::new();
        g.insert_handle(&mut extensions);
        assert_eq!(extensions.get::<&str>(), Some(&"handle"));
        assert!(matches!(g.member_done(2, false), Some(Next::Send(3))));
        assert!(matches!(g.member_done(3, false), Some(Next::Send(4))));
        assert!(matches!(g.member_done(4, false), Some(Next::End(_, true))));
        assert!(!g.is_ended());
        assert!(g.ended(Ok(()), |_| None, false).is_empty());
        assert!(g.is_ended());
    }

    #[test]
    fn a_failure_rolls_back_and_names_the_culprit() {
        let (mut g, _) = group();
        g.member_done(2, false);
        assert!(matches!(g.member_done(3, true), Some(Next::End(_, false))));
        let outcomes = [outcome("a", 200), outcome("b", 422)];
        let changed = g.ended(
            Ok(()),
            |m| outcomes.get(m - 2).map(|(id, o)| (*id, o)),
            false,
        );
        let details: Vec<_> = changed
            .iter()
            .map(|(m, o)| {
                (
                    *m,
                    o.status.as_u16(),
                    String::from_utf8_lossy(&o.body).into_owned(),
                )
            })
            .collect();
        assert_eq!(details.len(), 2, "the culprit keeps its own outcome");
        assert_eq!((details[0].0, details[0].1), (2, 424));
        assert!(details[0]
            .2
            .contains("rolled back: request \\\"b\\\" (index 3)"));
        assert_eq!((details[1].0, details[1].1), (4, 424));
        assert!(details[1].2.contains("not sent: "));
        // With stop_on_error, what was never sent is left out.
        let (mut g, _) = group();
        g.member_done(2, true);
        let changed = g.ended(
            Ok(()),
            |m| (m == 2).then(|| (outcomes[1].0, &outcomes[1].1)),
            true,
        );
        assert!(changed.is_empty());
    }

    #[test]
    fn a_commit_that_fails_or_times_out_says_so_for_every_member() {
        for (error, status) in [
            (TxError::Failed("disk full".into()), 500),
            (TxError::TimedOut(Duration::from_secs(1)), 504),
        ] {
            let (mut g, _) = group();
            g.member_done(2, false);
            g.member_done(3, false);
            g.member_done(4, false);
            let changed = g.ended(Err(error), |_| None, false);
            let statuses: Vec<_> = changed
                .iter()
                .map(|(m, o)| (*m, o.status.as_u16()))
                .collect();
            assert_eq!(statuses, [(2, status), (3, status), (4, status)]);
        }
    }

    #[test]
    fn the_deadline_drops_an_open_transaction_but_not_a_commit_in_flight() {
        let (mut g, log) = group();
        g.member_done(2, false);
        let changed = g.expire(Duration::from_secs(1), |m| m == 2);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].1.status, StatusCode::GATEWAY_TIMEOUT);
        assert!(g.is_ended());
        assert!(log.lock().unwrap().is_empty(), "dropped, not called");

        let (mut g, _) = group();
        g.member_done(2, false);
        g.member_done(3, false);
        let Some(Next::End(tx, true)) = g.member_done(4, false) else {
            panic!("the group should commit")
        };
        assert!(g.expire(Duration::from_secs(1), |_| true).is_empty());
        assert!(!g.is_ended(), "the commit in flight is waited for");
        drop(tx);
        assert!(g.ended(Ok(()), |_| None, false).is_empty());
    }
}
