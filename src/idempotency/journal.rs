//! A keyed batch's record as its run writes it, and what a retry reads back from it.
//!
//! One task per run ([`Writer`]) appends entries in the order the run gives them, several
//! at a time when they come together (one store round trip for the items a run sends at
//! once), renews the run's lease while it runs, and marks the record finished once the
//! run has ended and everything before is written. Entries are named `{phase}.s.{index}`
//! (the item is about to be sent: written before it is) and `{phase}.o.{index}` (its
//! final outcome); phase 0 is the batch's run, or its lookup when it has one (resource
//! bulk deletes by filter), whose outcomes decide the plan that follows.

use super::record;
use crate::batch::outcome::Outcome;
use crate::batch::plan::Plan;
use crate::engine::{Journal, Keyed, Prior};
use crate::store::{IdempotencyStore, State};
use crate::BoxError;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What a run asks its writer.
enum Write {
    /// Record that an item is about to be sent, and say when that is done.
    Sending(String, oneshot::Sender<Result<(), String>>),
    /// Record an item's final outcome.
    Outcome(String, Bytes),
    /// The run has ended: once what came before is written, the record is finished.
    Finish,
}

/// The task that writes one run's record.
pub(crate) struct Writer {
    tx: mpsc::UnboundedSender<Write>,
}

impl Writer {
    /// Starts writing the record at `key`, which run `owner` holds as `state`.
    pub(crate) fn start(
        store: Arc<dyn IdempotencyStore>,
        key: String,
        owner: u64,
        state: State,
        lease: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write(store, key, owner, state, lease, rx));
        Self { tx }
    }
}

/// The writer's loop. It ends when the record is finished, or when the run is gone
/// without finishing (the record stays running until its lease runs out).
async fn write(
    store: Arc<dyn IdempotencyStore>,
    key: String,
    owner: u64,
    mut state: State,
    lease: Duration,
    mut rx: mpsc::UnboundedReceiver<Write>,
) {
    let mut renew = tokio::time::interval(lease / 3);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renew.tick().await;
    // Set once another run has taken the record over: nothing more is sent.
    let mut lost = false;
    loop {
        let first = tokio::select! {
            write = rx.recv() => match write {
                Some(write) => write,
                None => return,
            },
            _ = renew.tick() => {
                let new = State::Running { owner, lease_until: super::now_ms() + lease.as_millis() as u64 };
                match store.replace(&key, state, new).await {
                    Ok(true) => state = new,
                    Ok(false) => lost = true,
                    Err(e) => tracing::warn!(error = %e, "could not renew a keyed batch's lease"),
                }
                continue;
            }
        };
        let mut writes = vec![first];
        while let Ok(more) = rx.try_recv() {
            writes.push(more);
        }
        let mut entries = Vec::with_capacity(writes.len());
        let mut acks = Vec::new();
        let mut finish = false;
        for write in writes {
            match write {
                Write::Sending(name, ack) => {
                    entries.push((name, Bytes::new()));
                    acks.push(ack);
                }
                Write::Outcome(name, outcome) => entries.push((name, outcome)),
                Write::Finish => finish = true,
            }
        }
        let result = match lost {
            true => Err(TAKEN_OVER.to_owned()),
            false => match store.append(&key, owner, &entries).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(TAKEN_OVER.to_owned()),
                Err(e) => Err(e.to_string()),
            },
        };
        lost |= result.as_ref().is_err_and(|e| e == TAKEN_OVER);
        if let Err(e) = &result {
            tracing::error!(error = %e, "could not record a keyed batch's items");
        }
        for ack in acks {
            let _ = ack.send(result.clone());
        }
        if finish && result.is_ok() {
            if let Err(e) = store.replace(&key, state, State::Finished).await {
                tracing::error!(error = %e, "could not mark a keyed batch finished");
            }
            return;
        }
    }
}

const TAKEN_OVER: &str = "another run of this batch took its record over";

/// One phase of a keyed run, as the engine records it.
struct StoreJournal {
    tx: mpsc::UnboundedSender<Write>,
    phase: usize,
    /// The run's last phase: once it ends, the batch is finished.
    last: bool,
}

impl Journal for StoreJournal {
    fn sending(&self, index: usize) -> BoxFuture<'static, Result<(), BoxError>> {
        let (ack, done) = oneshot::channel();
        let sent = self
            .tx
            .send(Write::Sending(name(self.phase, 's', index), ack));
        Box::pin(async move {
            sent.map_err(|_| "the idempotency store's writer has stopped")?;
            match done.await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err("the idempotency store's writer has stopped".into()),
            }
        })
    }

    fn finished(&self, index: usize, outcome: &Outcome) {
        let name = name(self.phase, 'o', index);
        let _ = self.tx.send(Write::Outcome(name, record::encode(outcome)));
    }

    fn ended(&self) {
        if self.last {
            let _ = self.tx.send(Write::Finish);
        }
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
) -> Keyed {
    let mut outcomes = HashMap::new();
    let mut sent = std::collections::HashSet::new();
    let prefix = format!("{phase}.");
    for (name, value) in entries {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let (kind, index) = rest.split_at(rest.len().min(2));
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        match kind {
            "o." => drop(outcomes.insert(index, value.clone())),
            "s." => drop(sent.insert(index)),
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
                tx: w.tx.clone(),
                phase,
                last,
            };
            Arc::new(journal) as Arc<dyn Journal>
        }),
    }
}
