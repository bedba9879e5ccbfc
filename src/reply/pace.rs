//! How long a reply may wait on its reader: [`MinRate`]. A reply waits on its reader when
//! its run has paused because [`HIGH_WATER`](super::stream::HIGH_WATER) bytes wait unread,
//! and after the run while bytes still wait. A reader that keeps up causes no wait at all;
//! one slower than the rate falls behind, and its reply is cut, which frees the batch's
//! place (see `BatchLayer::reply_min_rate`).
//!
//! The account is a leaky bucket of time: each wait adds its length to what the reply is
//! owed, and the bytes that end it pay back one second per `bytes_per_second`; what is
//! owed never goes below zero (a reader cannot bank speed: the kernel's and the
//! connection's buffers take megabytes at once from a client that reads nothing), and past
//! `grace` the reader is too slow. Only waits count, so neither a batch whose items are
//! slow nor a large reply makes a fast reader late.

use crate::config::MinRate;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// What taking `bytes` pays back at `rate`.
fn pays(rate: &MinRate, bytes: u64) -> Duration {
    let secs = bytes as f64 / rate.bytes_per_second.max(1) as f64;
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// One reply's account with its reader.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    rate: Option<MinRate>,
    /// Whether the reply's head has left: before that there is no reader to wait on.
    reading: bool,
    /// What the waits that have ended left owed.
    owed: Duration,
    /// When the wait in progress began, and what the reader had taken then.
    wait: Option<(Instant, u64)>,
    /// Armed for the moment the wait in progress would owe `grace`.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Pace {
    /// `None`: no bound.
    pub(crate) fn new(rate: Option<MinRate>) -> Self {
        Self {
            rate,
            ..Self::default()
        }
    }

    /// The reply waits on its reader, which has taken `taken` bytes in all: `Ready` once
    /// it owes more than `grace` (the reader is too slow); `Pending` with `cx` to be woken
    /// when it would, unless the reader takes more first (which wakes the waiter anyway).
    pub(crate) fn poll_waiting(&mut self, taken: u64, cx: &mut Context<'_>) -> Poll<()> {
        let Some(rate) = self.rate.filter(|_| self.reading) else {
            return Poll::Pending;
        };
        let now = Instant::now();
        let (since, from) = *self.wait.get_or_insert((now, taken));
        let owed = self.owed_after(rate, since, now, taken - from);
        let Some(left) = rate.grace.checked_sub(owed).filter(|l| !l.is_zero()) else {
            return Poll::Ready(());
        };
        let due = now
            .checked_add(left)
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        timer.as_mut().poll(cx)
    }

    /// The reply's head leaves: from now on its waits count. (Whoever waits should poll
    /// again, to arm the timer.)
    pub(crate) fn start(&mut self) {
        self.reading = true;
    }

    /// The reader made room, having taken `taken` bytes in all: the wait in progress ends.
    pub(crate) fn resumed(&mut self, taken: u64) {
        if let (Some(rate), Some((since, from))) = (self.rate, self.wait.take()) {
            self.owed = self.owed_after(rate, since, Instant::now(), taken - from);
        }
    }

    /// What is owed once the wait that began at `since` has lasted until `now`, with
    /// `took` bytes taken during it.
    fn owed_after(&self, rate: MinRate, since: Instant, now: Instant, took: u64) -> Duration {
        let owed = self.owed.saturating_add(now - since);
        owed.saturating_sub(pays(&rate, took))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;

    fn poll(pace: &mut Pace, taken: u64) -> Poll<()> {
        pace.poll_waiting(taken, &mut Context::from_waker(noop_waker_ref()))
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[tokio::test(start_paused = true)]
    async fn only_waits_count_and_speed_is_not_banked() {
        let rate = MinRate {
            bytes_per_second: 1000,
            grace: secs(5),
        };
        let mut pace = Pace::new(Some(rate));
        assert!(poll(&mut pace, 0).is_pending());
        tokio::time::advance(secs(60)).await;
        assert!(
            poll(&mut pace, 0).is_pending(),
            "no reader yet: no wait counts"
        );
        pace.start();
        // Buffers filling: short waits, each ended by a large take, owe nothing and bank
        // nothing.
        for taken in [1_000_000, 2_000_000] {
            assert!(poll(&mut pace, taken - 1_000_000).is_pending());
            pace.resumed(taken);
        }
        assert!(poll(&mut pace, 2_000_000).is_pending());
        tokio::time::advance(secs(4)).await;
        assert!(poll(&mut pace, 2_000_000).is_pending());
        // 2,000 bytes pay 2 s of the 4 waited: 2 s owed.
        pace.resumed(2_002_000);
        // Time without a wait is free.
        tokio::time::advance(secs(60)).await;
        assert!(poll(&mut pace, 2_002_000).is_pending());
        tokio::time::advance(secs(2)).await;
        assert!(poll(&mut pace, 2_002_000).is_pending());
        tokio::time::advance(secs(1)).await;
        // 2 + 3 = 5 s owed: the reader is too slow.
        assert!(poll(&mut pace, 2_002_000).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_rate_a_reader_may_take_its_time() {
        let mut pace = Pace::new(None);
        pace.start();
        assert!(poll(&mut pace, 0).is_pending());
        tokio::time::advance(secs(86_400)).await;
        assert!(poll(&mut pace, 0).is_pending());
    }
}
