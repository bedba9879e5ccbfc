//! A keyed batch's record as its run writes it, and what a retry reads back from it.
//!
//! An item is recorded as about to be sent (`{phase}.s.{index}`) in the same store call
//! that sends it on its way: the call is the item's first step, and the item goes out
//! once the store has it. Final outcomes (`{phase}.o.{index}`) wait in memory and go with
//! the next such call, or when the run ends, which also marks the record finished. So a
//! store that answers at once (the memory store) adds no wait, and one that does I/O adds
//! one round trip per item sent. A task renews the run's lease while the run lives (and
//! stops when it is dropped, so that the lease runs out). Phase 0 is the batch's run, or
//! its lookup when it has one (resource bulk deletes by filter), whose outcomes decide the
//! plan that follows.

use super::{record, within};
use crate::batch::outcome::reply_limit_reached;
use crate::batch::outcome::Outcome;
use crate::batch::plan::Plan;
use crate::engine::{Journal, Keyed, Prior};
use crate::store::{IdempotencyStore, State};
use crate::BoxError;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// One keyed run's hold on its record.
pub(crate) struct Writer {
    shared: Arc<Shared>,
}

/// What the journals of a run's phases and its lease's renewal share.
struct Shared {
    store: Arc<dyn IdempotencyStore>,
    key: String,
    owner: u64,
    /// Final outcomes not yet written: they go with the next write.
    pending: Mutex<Vec<(String, Bytes)>>,
    /// The record's state as this run holds it; held across a renewal or the finish, so
    /// that the two never race.
    state: tokio::sync::Mutex<State>,
    /// Another run took the record over: nothing more is sent.
    lost: AtomicBool,
    /// A write failed: the record is not marked finished (once the lease passes, a retry
    /// resumes it, and runs what was not recorded).
    failed: AtomicBool,
    /// Items whose mark could not be written (they were not sent): their outcomes, the
    /// layer's own `503`, are not recorded, so that a retry runs them.
    unsent: Mutex<HashSet<String>>,
}

impl Writer {
    /// Holds the record at `key`, which run `owner` holds as `state`, renewing its lease.
    pub(crate) fn start(
        store: Arc<dyn IdempotencyStore>,
        key: String,
        owner: u64,
        state: State,
        lease: Duration,
    ) -> Self {
        let shared = Arc::new(Shared {
            store,
            key,
            owner,
            pending: Mutex::default(),
            state: tokio::sync::Mutex::new(state),
            lost: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            unsent: Mutex::default(),
        });
        tokio::spawn(renew(Arc::downgrade(&shared), lease));
        Self { shared }
    }
}

/// Renews the lease a third of the way through, while the run lives and holds it.
async fn renew(shared: Weak<Shared>, lease: Duration) {
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // A renewal whose answer was lost may have been made: the state it would have set.
    let mut unsure = None;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut state = shared.state.lock().await;
        let State::Running { owner, .. } = *state else {
            return;
        };
        let lease_until = super::now_ms().saturating_add(lease.as_millis() as u64);
        let renewed = State::Running { owner, lease_until };
        let store = &shared.store;
        let mut done = within(store.replace(&shared.key, *state, renewed)).await;
        if let (Ok(false), Some(made)) = (&done, unsure.take()) {
            done = within(store.replace(&shared.key, made, renewed)).await;
        }
        match done {
            Ok(true) => *state = renewed,
            Ok(false) => return shared.lost.store(true, Ordering::Release),
            Err(e) => {
                tracing::warn!(error = %e, "could not renew a keyed batch's lease");
                unsure = Some(renewed);
            }
        }
    }
}

const TAKEN_OVER: &str = "another run of this batch took its record over";

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<(String, Bytes)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unsent(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.unsent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `entries`: an error when the store failed or another run holds the record.
    async fn append(&self, entries: &[(String, Bytes)]) -> Result<(), BoxError> {
        if self.lost.load(Ordering::Acquire) {
            return Err(TAKEN_OVER.into());
        }
        let written = within(self.store.append(&self.key, self.owner, entries)).await;
        let written = match written {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.lost.store(true, Ordering::Release);
                Err(TAKEN_OVER.into())
            }
            Err(e) => Err(e),
        };
        if written.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        written
    }

    /// The run has ended: what is pending is written, then the record is finished, unless
    /// a write failed: then it is left running, and once its lease has passed a retry
    /// resumes it.
    async fn finish(&self) {
        let mut state = self.state.lock().await;
        let entries = std::mem::take(&mut *self.pending());
        if !entries.is_empty() {
            if let Err(e) = self.append(&entries).await {
                return tracing::error!(error = %e, "could not record a keyed batch's last items");
            }
        }
        if self.failed.load(Ordering::Acquire) {
            return tracing::warn!("a keyed batch is left to resume: some of it was not recorded");
        }
        match within(self.store.replace(&self.key, *state, State::Finished)).await {
            Ok(true) => *state = State::Finished,
            Ok(false) => tracing::warn!("a keyed batch's record was taken over before it finished"),
            Err(e) => tracing::error!(error = %e, "could not mark a keyed batch finished"),
        }
    }
}

/// One phase of a keyed run, as the engine records it.
struct StoreJournal {
    shared: Arc<Shared>,
    phase: usize,
    /// The run's last phase: once it ends, the batch is finished.
    last: bool,
    /// The body bytes recorded, and the most that may be (the reply's own bound: a body
    /// past it would be left out of the reply, and of its replay, anyway).
    recorded: AtomicUsize,
    max_bytes: usize,
}

impl Journal for StoreJournal {
    fn sending(&self, index: usize) -> BoxFuture<'static, Result<(), BoxError>> {
        let mut entries = std::mem::take(&mut *self.shared.pending());
        entries.push((name(self.phase, 's', index), Bytes::new()));
        let shared = self.shared.clone();
        let unsent = name(self.phase, 'o', index);
        Box::pin(async move {
            let written = shared.append(&entries).await;
            if let Err(e) = &written {
                tracing::error!(error = %e, "could not record a keyed batch's item");
                // The outcomes taken for this write go with the next one.
                entries.pop();
                let mut pending = shared.pending();
                entries.append(&mut pending);
                *pending = entries;
                drop(pending);
                shared.unsent().insert(unsent);
            }
            written
        })
    }

    fn finished(&self, index: usize, outcome: &Outcome) {
        let name = name(self.phase, 'o', index);
        if self.shared.unsent().remove(&name) {
            return;
        }
        let size = outcome.body.len();
        let recorded = self.recorded.fetch_add(size, Ordering::Relaxed) + size;
        let entry = match recorded > self.max_bytes {
            false => record::encode(outcome),
            true => {
                let mut omitted = outcome.clone();
                omitted.body = Bytes::new();
                omitted.body_omitted = Some(reply_limit_reached(self.max_bytes));
                record::encode(&omitted)
            }
        };
        self.shared.pending().push((name, entry));
    }

    fn ended(&self) -> BoxFuture<'static, ()> {
        let shared = self.shared.clone();
        let last = self.last;
        Box::pin(async move {
            if last {
                shared.finish().await;
            }
        })
    }
}

fn name(phase: usize, kind: char, index: usize) -> String {
    format!("{phase}.{kind}.{index}")
}

/// What `plan` (phase `phase` of a keyed batch, its `last`) resumes from in `entries`,
/// and, unless the batch is replayed (no `writer`), where its run records itself.
///
/// An item with a final outcome replays it. One sent without a recorded outcome is sent
/// again when its method is idempotent (RFC 9110 §9.2.2), and else reports that its
/// outcome is unknown. In a replay nothing is sent: an item without an outcome reports
/// that it is unknown (an item the run left out, after a failure with `stop_on_error`,
/// is left out again, since the replayed failure stops the schedule as it did).
pub(crate) fn keyed_for(
    plan: &Plan,
    phase: usize,
    entries: &[(String, Bytes)],
    writer: Option<&Writer>,
    last: bool,
    max_bytes: usize,
) -> Keyed {
    let mut outcomes = HashMap::new();
    let mut sent = HashSet::new();
    let prefix = format!("{phase}.");
    for (name, value) in entries {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Some((kind, index)) = rest.split_once('.') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        match kind {
            "o" => drop(outcomes.insert(index, value.clone())),
            "s" => drop(sent.insert(index)),
            _ => {}
        }
    }
    let replay = writer.is_none();
    let priors = plan.items.iter().enumerate().map(|(i, item)| {
        if let Some(stored) = outcomes.remove(&i) {
            return Some(record::decode(stored).map_or(Prior::Unknown, Prior::Finished));
        }
        let unsafe_again = sent.contains(&i) && !item.method.is_idempotent();
        (replay || unsafe_again).then_some(Prior::Unknown)
    });
    Keyed {
        priors: priors.collect(),
        journal: writer.map(|w| {
            let journal = StoreJournal {
                shared: w.shared.clone(),
                phase,
                last,
                recorded: AtomicUsize::new(0),
                max_bytes,
            };
            Arc::new(journal) as Arc<dyn Journal>
        }),
    }
}
