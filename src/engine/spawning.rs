//! Whether a sub-request runs on a task of its own.
//!
//! With several places, sub-requests start in the batch's own task, polled together in a
//! `FuturesUnordered`, as long as they are cheap to poll: a task costs about 1 µs per
//! sub-request (spawning it, waking the batch from another thread), as much as a small
//! in-memory handler, and a sub-request that waits on I/O overlaps with the others
//! without one. Once the calls polled here take [`HEAVY`] on average, the batch is doing
//! real work on its thread, and the next ones run as tasks, so the runtime's threads share
//! them (BENCHMARKS.md: `cpu_1ms_x100`, `tiny_x100`). A call on a task of its own takes
//! next to nothing to poll here, so the average halves with each that finishes, and a thread preempted once by the system (a
//! loaded server) costs a few tasks, not the rest of the batch. On a single-threaded
//! runtime a task would gain nothing, so none is spawned.

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use std::future::Future;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The average polling time of a call past which the next ones run as tasks.
const HEAVY: Duration = Duration::from_micros(5);

/// What polling a batch's calls has shown so far.
pub(super) struct Spawning {
    /// Never spawn: one place, or one thread.
    never: bool,
    /// What polling took, per call finished, on average (each new one counts half).
    average: Duration,
    /// What polling has taken since a call last finished.
    spent: Duration,
}

impl Spawning {
    pub(super) fn new(places: usize) -> Self {
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        let threads = matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread));
        Self {
            never: places == 1 || !threads,
            average: Duration::ZERO,
            spent: Duration::ZERO,
        }
    }

    /// Whether the next sub-request should run on a task of its own.
    pub(super) fn spawns(&self) -> bool {
        self.average >= HEAVY
    }

    /// The next output of `calls`, timed: polls that wait count too (a handler that
    /// computes, then waits on I/O).
    pub(super) fn poll_next<F: Future>(
        &mut self,
        calls: &mut FuturesUnordered<F>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<F::Output>> {
        if self.never {
            return calls.poll_next_unpin(cx);
        }
        let start = Instant::now();
        let next = calls.poll_next_unpin(cx);
        self.spent += start.elapsed();
        if let Poll::Ready(Some(_)) = next {
            self.average = (self.average + std::mem::take(&mut self.spent)) / 2;
        }
        next
    }
}
