//! Admission: a place among the batches in flight, taken before a batch's body is read.
//! A batch that finds every place taken waits for one, in arrival order, bounded in count
//! (`max_waiting_batches`) and in time (`admission_timeout`); only past those is it turned
//! away, with `503` and `Retry-After`. A waiting batch costs its connection alone: its body
//! is not read until it has a place.

use crate::error::Problem;
use http::{header, HeaderValue, StatusCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The places, and who may wait for one. The services one `Layer::layer` call makes, and
/// their clones, share one `Admission` (see `BatchLayer`'s `Layer` impl).
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    /// The most batches in flight at once.
    pub(crate) max_batches: usize,
    /// The most batches waiting for a place at once.
    pub(crate) max_waiting: usize,
    /// How long one may wait.
    pub(crate) timeout: Duration,
    places: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

/// A batch's place: held while it runs and until its reply has been taken (see `reply`),
/// and by a commit or rollback that goes on after it (see `engine::Hold`). Free once the
/// last of them lets go.
pub(crate) type Place = Arc<OwnedSemaphorePermit>;

impl Admission {
    pub(crate) fn new(max_batches: usize, max_waiting: usize, timeout: Duration) -> Self {
        Self {
            max_batches,
            max_waiting,
            timeout,
            places: Arc::new(Semaphore::new(0)),
            waiting: Arc::default(),
        }
    }

    /// The same limits with places and a queue of their own.
    pub(crate) fn fresh(&self) -> Self {
        let places = self.max_batches.min(Semaphore::MAX_PERMITS);
        Self {
            places: Arc::new(Semaphore::new(places)),
            waiting: Arc::default(),
            ..self.clone()
        }
    }

    /// A place at once, when one is free.
    #[inline]
    pub(crate) fn try_enter(&self) -> Option<Place> {
        self.places.clone().try_acquire_owned().ok().map(Arc::new)
    }

    /// A place, at once or once one is free, within the bounds; else the `503` to answer.
    pub(crate) async fn enter(&self) -> Result<Place, Problem> {
        if let Some(place) = self.try_enter() {
            return Ok(place);
        }
        let Some(_ticket) = Ticket::take(&self.waiting, self.max_waiting) else {
            return Err(busy(
                self.max_batches,
                "and as many wait as may (max_waiting_batches)",
            ));
        };
        let freed = self.places.clone().acquire_owned();
        match tokio::time::timeout(self.timeout, freed).await {
            Ok(Ok(place)) => Ok(Arc::new(place)),
            // The semaphore is never closed.
            Ok(Err(_)) | Err(_) => Err(busy(
                self.max_batches,
                &format!(
                    "and none was freed within {:?} (admission_timeout)",
                    self.timeout
                ),
            )),
        }
    }
}

/// One of the places in the queue, given back when dropped.
struct Ticket<'a>(&'a AtomicUsize);

impl<'a> Ticket<'a> {
    fn take(waiting: &'a AtomicUsize, max: usize) -> Option<Self> {
        let taken = waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        });
        taken.ok().map(|_| Ticket(waiting))
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `503`: every place is taken, and this batch may not wait (longer) for one. The body is
/// not read, so the connection is closed rather than drained.
fn busy(max: usize, why: &str) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "urn:tower-http-batch:too-many-batches",
        "Too many batches",
        format!("{max} batches are in flight, the most this server takes (max_concurrent_batches), {why}; retry later"),
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    .with_header(header::CONNECTION, HeaderValue::from_static("close"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_its_turn_within_the_bounds() {
        let admission = Admission::new(1, 1, Duration::from_secs(10)).fresh();
        let first = admission.enter().await.unwrap();
        // The second waits; the third finds the queue full.
        let waiting = admission.clone();
        let second = tokio::spawn(async move { waiting.enter().await });
        tokio::task::yield_now().await;
        let third = admission.enter().await.unwrap_err();
        assert!(
            third.detail.contains("max_waiting_batches"),
            "{}",
            third.detail
        );
        drop(first);
        let second = second.await.unwrap().unwrap();
        // No one waits now: one may again, until the timeout.
        let fourth = admission.enter().await.unwrap_err();
        assert!(
            fourth.detail.contains("within 10s (admission_timeout)"),
            "{}",
            fourth.detail
        );
        assert_eq!(fourth.status, StatusCode::SERVICE_UNAVAILABLE);
        drop(second);
        assert!(admission.try_enter().is_some());
        assert_eq!(admission.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn without_a_queue_a_batch_is_turned_away_at_once() {
        let admission = Admission::new(1, 0, Duration::from_secs(10)).fresh();
        let _first = admission.enter().await.unwrap();
        let p = admission.enter().await.unwrap_err();
        assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
