//! What a run keeps of itself when its batch has an idempotency key, and what it resumes
//! from when the same batch is sent again. The engine knows no store: it tells a
//! [`Journal`] that an item is about to be sent (and waits until that is recorded, so
//! that an item is never sent unrecorded) and that an outcome is final; and it takes, per
//! item, what an earlier run left ([`Prior`]).

use super::Emit;
use crate::batch::outcome::Outcome;
use futures_util::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;

/// Where a keyed batch's run records itself.
pub(crate) trait Journal: Send + Sync {
    /// Item `index` is about to be sent: resolves once that is recorded. An error, and
    /// the item is not sent: it reports the outcome the error holds (the store failed,
    /// or the batch job was cancelled).
    fn sending(&self, index: usize) -> BoxFuture<'static, Result<(), Outcome>>;

    /// Item `index`'s outcome is final (in the plan's order, as the reply takes it).
    fn finished(&self, index: usize, outcome: &Outcome);

    /// The run has ended (it was not dropped): every outcome it has is final. The run
    /// returns once this has, so that a retry after the reply finds the record finished.
    fn ended(&self) -> BoxFuture<'static, ()>;
}

/// What an earlier run of the same batch left of an item.
#[derive(Debug)]
pub(crate) enum Prior {
    /// Its final outcome: replayed, not sent again.
    Finished(Outcome),
    /// It was sent and its outcome is unknown, and sending it again is not safe: it
    /// reports that, and is not sent.
    Unknown,
}

/// A keyed batch's run: what it resumes from, and where it records itself.
pub(crate) struct Keyed {
    /// Per item (`None`: it runs as in a first run).
    pub(crate) priors: Vec<Option<Prior>>,
    /// `None` when the batch is replayed: nothing is sent, nothing recorded.
    pub(crate) journal: Option<Arc<dyn Journal>>,
}

/// An [`Emit`] that records each final outcome before handing it on, but those replayed
/// from an earlier run (their record has them).
pub(super) struct Journaled<'j, E> {
    emit: E,
    journal: Option<&'j dyn Journal>,
    replayed: Vec<bool>,
}

impl<'j, E> Journaled<'j, E> {
    pub(super) fn new(
        emit: E,
        journal: Option<&'j dyn Journal>,
        priors: Option<&[Option<Prior>]>,
    ) -> Self {
        let finished = |p: &Option<Prior>| matches!(p, Some(Prior::Finished(_)));
        let replayed = priors.map(|p| p.iter().map(finished).collect());
        Self {
            emit,
            journal,
            replayed: replayed.unwrap_or_default(),
        }
    }
}

impl<E: Emit> Emit for Journaled<'_, E> {
    fn emit(&mut self, index: usize, id: &str, outcome: &Outcome) {
        let replayed = self.replayed.get(index).copied().unwrap_or(false);
        if let Some(journal) = self.journal.filter(|_| !replayed) {
            journal.finished(index, outcome);
        }
        self.emit.emit(index, id, outcome);
    }

    fn has_room(&self) -> bool {
        self.emit.has_room()
    }

    fn room(&mut self) -> impl Future<Output = ()> + Send {
        self.emit.room()
    }

    fn yielding(&mut self) {
        self.emit.yielding();
    }
}
