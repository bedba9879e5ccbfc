//! The sub-requests (and transaction begins) of a run in flight, and the tasks that run
//! sub-requests when several may be in flight at once.
//!
//! With several places, sub-requests start in the batch's own task, polled together, as
//! long as they are cheap to poll: a task costs about 1 µs per sub-request (spawning it,
//! waking the batch from another thread), as much as a small in-memory handler, and a
//! sub-request that waits on I/O overlaps with the others without one. Once polling has
//! taken [`HEAVY`] per sub-request started, on average, the batch is doing real work on
//! its thread, and the rest run as tasks, so the runtime's threads share them
//! (BENCHMARKS.md: `cpu_1ms_x100`, `tiny_x100`). On a single-threaded runtime a task would
//! gain nothing, so none is spawned.

use super::{one, Done};
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The polling time per finished call past which sub-requests run as tasks.
const HEAVY: Duration = Duration::from_micros(5);

/// The futures in flight: one reusable slot when only one may be (no allocation per
/// sub-request), else a `FuturesUnordered`, with what polling it has cost.
pub(super) enum InFlight<F> {
    One(Pin<Box<Option<F>>>),
    Many(FuturesUnordered<F>, Cost),
}

/// The time spent polling the calls in the batch's task, until they prove heavy.
#[derive(Default)]
pub(super) struct Cost {
    spent: Duration,
    started: u32,
    heavy: bool,
    /// The runtime has one thread: never spawn.
    single: bool,
}

impl<F: Future> InFlight<F> {
    pub(super) fn new(places: usize) -> Self {
        if places == 1 {
            Self::One(Box::pin(None))
        } else {
            let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
            let single = !matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread));
            let cost = Cost {
                single,
                ..Cost::default()
            };
            Self::Many(FuturesUnordered::new(), cost)
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            Self::One(slot) => slot.is_none(),
            Self::Many(futures, _) => futures.is_empty(),
        }
    }

    /// Adds a future; the schedule keeps to the number of places.
    #[inline(always)]
    pub(super) fn push(&mut self, future: F) {
        match self {
            Self::One(slot) => {
                debug_assert!(slot.is_none(), "one future at a time");
                slot.set(Some(future));
            }
            Self::Many(futures, cost) => {
                cost.started = cost.started.saturating_add(1);
                futures.push(future)
            }
        }
    }

    /// The output of the next future to finish; `Ready(None)` when there is none.
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        match self {
            Self::One(slot) => {
                let Some(future) = slot.as_mut().as_pin_mut() else {
                    return Poll::Ready(None);
                };
                let output = ready!(future.poll(cx));
                slot.set(None);
                Poll::Ready(Some(output))
            }
            Self::Many(futures, cost) if cost.heavy || cost.single => futures.poll_next_unpin(cx),
            Self::Many(futures, cost) => {
                let start = Instant::now();
                let next = futures.poll_next_unpin(cx);
                cost.spent += start.elapsed();
                cost.heavy = cost.spent >= HEAVY.saturating_mul(cost.started.max(1));
                next
            }
        }
    }

    /// Whether the next sub-request should run on a task of its own: several may be in
    /// flight, on several threads, and those so far were heavy to poll.
    pub(super) fn spawns(&self) -> bool {
        matches!(self, Self::Many(_, Cost { heavy: true, .. }))
    }
}

/// A sub-request running on a task of its own, so that the runtime's threads share a
/// batch's sub-requests: aborted when dropped (the batch's deadline passed, or the batch
/// was dropped), and item `index` answered `500` if its task panicked.
pub(super) struct Spawned {
    index: usize,
    task: JoinHandle<Done>,
}

impl Spawned {
    /// Runs `call`, the sub-request of item `index`, on a new task.
    pub(super) fn new<F>(index: usize, call: F) -> Self
    where
        F: Future<Output = Done> + Send + 'static,
    {
        Self {
            index,
            task: tokio::spawn(call),
        }
    }
}

impl Future for Spawned {
    type Output = Done;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Done> {
        // The call catches its handler's panics: a task fails only if the layer's own code
        // around it panicked (or the runtime is shutting down).
        let done = match ready!(Pin::new(&mut self.task).poll(cx)) {
            Ok(done) => done,
            Err(e) if e.is_panic() => Done::Sent(self.index, one::panicked()),
            Err(_) => Done::Sent(self.index, one::cancelled()),
        };
        Poll::Ready(done)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_answers_500_and_one_cancelled_503() {
        let Done::Sent(3, outcome) = Spawned::new(3, async { panic!("a layer bug") }).await else {
            panic!("not item 3");
        };
        assert_eq!(outcome.status, 500);
        let cancelled = Spawned::new(4, std::future::pending());
        cancelled.task.abort();
        let Done::Sent(4, outcome) = cancelled.await else {
            panic!("not item 4");
        };
        assert_eq!(outcome.status, 503);
    }
}
