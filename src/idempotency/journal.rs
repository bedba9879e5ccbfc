//! A keyed batch's record as its run writes it.
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
//!
//! A batch job's run also has a [`JobRun`]: once it is cancelled (`DELETE` on its status
//! monitor, here at once or, from another instance, in a flag the renewal reads), no
//! item is sent: each reports `424` "Job cancelled", and that is recorded as its outcome.
//! And it tells its [`Progressing`] of each phase and outcome, so that its monitor here
//! reads no store.
//!
//! When a write fails, the record is not marked finished (once the lease has passed, a
//! retry resumes it), the item it was for is not sent and its mark is withdrawn
//! (`{phase}.u.{index}`: the write may have landed), and from then on only the outcomes
//! of items this run sent are recorded: the rest (the layer's `503`, a `424` that follows
//! from it) are worked out again by the retry.

use super::{record, within};
use crate::batch::failures;
use crate::batch::outcome::Outcome;
use crate::engine::Journal;
use crate::store::{IdempotencyStore, State};
use crate::BoxError;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a batch job's run shares with its monitor: how it learns it was cancelled
/// (`cancel` at once, when the instance that runs it was asked; or `flag`, a record
/// another instance created, which the run looks for each time it renews its lease), and
/// where it counts its progress.
#[derive(Clone)]
pub(crate) struct JobRun {
    pub(crate) cancel: CancellationToken,
    pub(crate) flag: String,
    pub(crate) progress: Arc<dyn Progressing>,
    /// The record under the job's `Idempotency-Key`, which names it: held in the same
    /// state as the job's own (so that no store lets it go while the job runs), and
    /// finished with it.
    pub(crate) alias: Option<String>,
}

/// What a batch job's run tells of its progress as it goes.
pub(crate) trait Progressing: Send + Sync {
    /// Phase `phase` begins, with `items` items.
    fn phase(&self, phase: usize, items: usize);
    /// An item of phase `phase` has its final outcome, of status `status`.
    fn finished(&self, phase: usize, status: http::StatusCode);
}

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
    /// The record's state as this run holds it, held across a renewal or the finish.
    held: tokio::sync::Mutex<Held>,
    /// Another run took the record over: nothing more is sent.
    lost: AtomicBool,
    /// A write failed: the record is left to resume.
    failed: AtomicBool,
    /// The items (phase, index) whose marks were written: after a failure, only their
    /// outcomes are recorded.
    sent: Mutex<HashSet<(usize, usize)>>,
    /// A batch job's: once cancelled, nothing more is sent.
    job: Option<JobRun>,
}

/// The state this run holds the record in, and the states a change whose answer was lost
/// may have set.
struct Held {
    state: State,
    unsure: Vec<State>,
}

impl Writer {
    /// Holds the record at `key`, which run `owner` holds as `state`, renewing its lease.
    pub(crate) fn start(
        store: Arc<dyn IdempotencyStore>,
        key: String,
        owner: u64,
        state: State,
        lease: Duration,
        job: Option<JobRun>,
    ) -> Self {
        let shared = Arc::new(Shared {
            store,
            key,
            owner,
            pending: Mutex::default(),
            held: tokio::sync::Mutex::new(Held {
                state,
                unsure: Vec::new(),
            }),
            lost: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            sent: Mutex::default(),
            job,
        });
        tokio::spawn(renew(Arc::downgrade(&shared), lease));
        Self { shared }
    }

    /// Writes `entries` now (a batch job's request, before its run starts).
    pub(crate) async fn record(&self, entries: &[(String, Bytes)]) -> Result<(), BoxError> {
        self.shared.append(entries).await
    }

    /// Phase `phase` of the run holds `items` items: recorded with the next write, so
    /// that a batch job's status monitor can tell how far it has gone.
    pub(crate) fn phase_size(&self, phase: usize, items: usize) {
        let entry = (format!("{phase}.n"), Bytes::from(items.to_string()));
        lock(&self.shared.pending).push(entry);
        if let Some(job) = &self.shared.job {
            job.progress.phase(phase, items);
        }
    }

    /// The run has ended: what is pending is written and the record finished (see
    /// `Shared::finish`).
    pub(crate) async fn finish(&self) {
        self.shared.finish().await
    }

    /// The run ended without finishing (its lookup led to a refusal), and wrote nothing
    /// but reads: its lease is given up, so that a retry runs it again at once.
    pub(crate) async fn give_up(&self) {
        let State::Running { owner, .. } = self.shared.held.lock().await.state else {
            return;
        };
        let expired = State::Running {
            owner,
            lease_until: 0,
        };
        let _ = self.shared.change(expired).await;
    }
}

/// Renews the lease a third of the way through, while the run lives and holds it.
async fn renew(shared: Weak<Shared>, lease: Duration) {
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.lost.load(Ordering::Acquire) {
            return;
        }
        let owner = shared.owner;
        let lease_until = super::now_ms().saturating_add(lease.as_millis() as u64);
        match shared.change(State::Running { owner, lease_until }).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::warn!(error = %e, "could not renew a keyed batch's lease"),
        }
        if let Some(job) = shared.job.as_ref().filter(|j| !j.cancel.is_cancelled()) {
            if let Ok(Some(_)) = within(shared.store.get(&job.flag)).await {
                job.cancel.cancel();
            }
        }
    }
}

const TAKEN_OVER: &str = "another run of this batch took its record over";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Moves the record to `new` from the state this run holds it in, or from one a change
    /// whose answer was lost may have set: `false` when another run holds it now.
    async fn change(&self, new: State) -> Result<bool, BoxError> {
        let mut held = self.held.lock().await;
        let store = &self.store;
        let mut from = vec![held.state];
        from.extend(held.unsure.iter().rev());
        for expected in from {
            match within(store.replace(&self.key, expected, new)).await {
                Ok(true) => {
                    *held = Held {
                        state: new,
                        unsure: Vec::new(),
                    };
                    if let Some(alias) = self.job.as_ref().and_then(|j| j.alias.as_deref()) {
                        // In step with the job's record; a failure leaves it to its lease.
                        let _ = within(store.replace(alias, expected, new)).await;
                    }
                    return Ok(true);
                }
                Ok(false) => continue,
                Err(e) => {
                    // It may have landed: the next change tries from there too.
                    held.unsure.push(new);
                    return Err(e);
                }
            }
        }
        self.lost.store(true, Ordering::Release);
        Ok(false)
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

    /// `entries` did not go: they go with the next write, before what came since.
    fn put_back(&self, mut entries: Vec<(String, Bytes)>) {
        let mut pending = lock(&self.pending);
        entries.append(&mut pending);
        *pending = entries;
    }

    /// The run has ended: what is pending is written, then the record is finished, unless
    /// a write failed: then it is left running, and once its lease has passed a retry
    /// resumes it.
    async fn finish(&self) {
        let entries = std::mem::take(&mut *lock(&self.pending));
        if !entries.is_empty() {
            if let Err(e) = self.append(&entries).await {
                return tracing::error!(error = %e, "could not record a keyed batch's last items");
            }
        }
        if self.failed.load(Ordering::Acquire) {
            return tracing::warn!("a keyed batch is left to resume: some of it was not recorded");
        }
        match self.change(State::Finished).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("a keyed batch's record was taken over before it finished"),
            Err(e) => tracing::error!(error = %e, "could not mark a keyed batch finished"),
        }
    }
}

/// What one sending call took from the pending outcomes, until the store has them: if
/// the call is dropped first (the batch's deadline), they go with the next write.
struct Sending {
    shared: Arc<Shared>,
    entries: Option<Vec<(String, Bytes)>>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        if let Some(mut entries) = self.entries.take() {
            // Its mark, last, goes: the item was not sent.
            entries.pop();
            self.shared.put_back(entries);
        }
    }
}

/// One phase of a keyed run, as the engine records it.
pub(super) struct StoreJournal {
    shared: Arc<Shared>,
    phase: usize,
    /// The run's last phase: once it ends, the batch is finished.
    last: bool,
}

impl StoreJournal {
    pub(super) fn new(writer: &Writer, phase: usize, last: bool) -> Self {
        Self {
            shared: writer.shared.clone(),
            phase,
            last,
        }
    }
}

impl Journal for StoreJournal {
    fn sending(&self, index: usize) -> BoxFuture<'static, Result<(), Outcome>> {
        let job = self.shared.job.as_ref();
        if job.is_some_and(|j| j.cancel.is_cancelled()) {
            return Box::pin(std::future::ready(Err(failures::job_cancelled())));
        }
        let mut entries = std::mem::take(&mut *lock(&self.shared.pending));
        let phase = self.phase;
        entries.push((name(phase, 's', index), Bytes::new()));
        let mut sending = Sending {
            shared: self.shared.clone(),
            entries: Some(entries),
        };
        Box::pin(async move {
            let shared = sending.shared.clone();
            let entries = sending.entries.as_deref().unwrap_or_default();
            let written = shared.append(entries).await;
            match &written {
                Ok(()) => {
                    sending.entries.take();
                    lock(&shared.sent).insert((phase, index));
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not record a keyed batch's item");
                    // Dropped: the outcomes it took go back, and the mark is withdrawn
                    // (it may have landed, though the item is not sent).
                    drop(sending);
                    let withdrawn = (name(phase, 'u', index), Bytes::new());
                    lock(&shared.pending).push(withdrawn);
                }
            }
            written.map_err(|e| failures::not_recorded(&e))
        })
    }

    fn finished(&self, index: usize, outcome: &Outcome) {
        let shared = &self.shared;
        let was_sent = || lock(&shared.sent).contains(&(self.phase, index));
        if shared.failed.load(Ordering::Acquire) && !was_sent() {
            return;
        }
        let entry = (name(self.phase, 'o', index), record::encode(outcome));
        lock(&shared.pending).push(entry);
        if let Some(job) = &shared.job {
            job.progress.finished(self.phase, outcome.status);
        }
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
