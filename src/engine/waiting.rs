//! What the run loop waits for: the calls in flight (dropped with a panic caught), commits
//! and rollbacks, the reply's room, the batch's deadline; and what each reports.

use super::group::TxError;
use super::spawning::Spawning;
use crate::batch::outcome::Outcome;
use crate::transaction::OpenTx;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use tokio::time::Sleep;

/// The calls in flight. Dropped (the batch's deadline passed, or the batch was dropped)
/// with a panic caught: a call dropped in flight drops its handler's future, which may
/// panic, and that is the handler's failure, not the batch's.
pub(super) struct InFlight<F>(pub(super) FuturesUnordered<F>);

impl<F> Drop for InFlight<F> {
    fn drop(&mut self) {
        let calls = std::mem::take(&mut self.0);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(calls)));
    }
}

/// What a future in `calls` reports.
pub(super) enum Done {
    /// A sub-request answered (or the layer answered for it).
    Sent(usize, Outcome),
    /// A group's transaction began, or could not.
    Begun(usize, Result<Box<dyn OpenTx>, TxError>),
}

/// What the run loop waits for.
pub(super) enum Event {
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

/// What the run waits for: the calls in flight, commits and rollbacks, the deadline.
pub(super) struct Waiting<'w, F, G> {
    pub(super) calls: &'w mut FuturesUnordered<F>,
    pub(super) spawning: &'w mut Spawning,
    pub(super) endings: &'w mut FuturesUnordered<G>,
    pub(super) deadline: Option<Pin<&'w mut Sleep>>,
}

impl<F, G> Waiting<'_, F, G>
where
    F: Future<Output = Done>,
    G: Future<Output = (usize, Result<(), TxError>)>,
{
    /// The next event, and whether the run waited for it (was pending at least once);
    /// with `room`, the run waits for the reply to take more too (and is not idle while
    /// it waits).
    pub(super) async fn next_event<R: Future<Output = ()>>(
        mut self,
        room: Option<R>,
    ) -> (Event, bool) {
        let mut room = pin!(room);
        let mut waited = false;
        let event = std::future::poll_fn(|cx| {
            let event = self.poll_event(room.as_mut().as_pin_mut(), cx);
            waited |= event.is_pending();
            event
        })
        .await;
        (event, waited)
    }

    /// One look at what the run waits for.
    fn poll_event<R>(&mut self, room: Option<Pin<&mut R>>, cx: &mut Context<'_>) -> Poll<Event>
    where
        R: Future<Output = ()>,
    {
        if let Poll::Ready(Some(done)) = self.spawning.poll_next(self.calls, cx) {
            return Poll::Ready(Event::Done(done));
        }
        if let Poll::Ready(Some((g, result))) = self.endings.poll_next_unpin(cx) {
            return Poll::Ready(Event::Ended(g, result));
        }
        let waits_room = room.is_some();
        if let Some(room) = room {
            if room.poll(cx).is_ready() {
                return Poll::Ready(Event::Room);
            }
        }
        if self.calls.is_empty() && self.endings.is_empty() && !waits_room {
            return Poll::Ready(Event::Idle);
        }
        match self.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Event::Deadline),
            _ => Poll::Pending,
        }
    }
}
