//! How long a reply may wait on its reader: [`MinRate`]. A reply waits on its reader when
//! [`HIGH_WATER`](super::channel::HIGH_WATER) bytes wait unread and it has more to send:
//! its run has paused, or is over. A reader that keeps up causes no wait at all; one
//! slower than the rate falls behind, and its reply is cut, which frees the batch's place
//! (see `BatchLayer::reply_min_rate`).
//!
//! The account is a leaky bucket of time: each wait adds its length to what the reply is
//! owed, and the bytes that end it pay back one second per `bytes_per_second`; what is
//! owed never goes below zero (a reader cannot bank speed: the kernel's and the
//! connection's buffers take megabytes at once from a client that reads nothing), and past
//! `grace` the reader is too slow. Only waits count, so neither a batch whose items are
//! slow nor a large reply makes a fast reader late.

use crate::config::MinRate;
use std::time::Duration;
use tokio::time::Instant;

/// One reply's account with its reader.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    rate: Option<MinRate>,
    /// What the waits that have ended left owed.
    owed: Duration,
    /// When the wait in progress began, and what the reader had taken then.
    wait: Option<(Instant, u64)>,
}

impl Pace {
    /// `None`: no bound.
    pub(crate) fn new(rate: Option<MinRate>) -> Self {
        Self {
            rate,
            ..Self::default()
        }
    }

    /// The reply waits on its reader, which has taken `taken` bytes in all (a wait
    /// begins, or goes on): when the reader would prove too slow, unless it takes more
    /// first; `None` without a bound.
    pub(crate) fn waiting(&mut self, taken: u64) -> Option<Instant> {
        let rate = self.rate?;
        let now = Instant::now();
        let (since, from) = *self.wait.get_or_insert((now, taken));
        let owed = self.owed_after(rate, since, now, taken - from);
        let left = rate.grace.saturating_sub(owed);
        Some(now.checked_add(left).unwrap_or_else(far_future))
    }

    /// The reader made room, having taken `taken` bytes in all: the wait in progress, if
    /// any, ends.
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

/// What taking `bytes` pays back at `rate`.
fn pays(rate: &MinRate, bytes: u64) -> Duration {
    let secs = bytes as f64 / rate.bytes_per_second.max(1) as f64;
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// Far enough not to matter: a grace too long to add to the clock never ends.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Whether the reader, having taken `taken` bytes, is too slow now, in a wait.
    fn too_slow(pace: &mut Pace, taken: u64) -> bool {
        pace.waiting(taken).is_some_and(|due| due <= Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn only_waits_count_and_speed_is_not_banked() {
        let rate = MinRate {
            bytes_per_second: 1000,
            grace: secs(5),
        };
        let mut pace = Pace::new(Some(rate));
        // Buffers filling: short waits, each ended by a large take, owe nothing and bank
        // nothing.
        for taken in [1_000_000, 2_000_000] {
            assert!(!too_slow(&mut pace, taken - 1_000_000));
            pace.resumed(taken);
        }
        assert!(!too_slow(&mut pace, 2_000_000));
        tokio::time::advance(secs(4)).await;
        assert!(!too_slow(&mut pace, 2_000_000));
        // 2,000 bytes pay 2 s of the 4 waited: 2 s owed.
        pace.resumed(2_002_000);
        // Time without a wait is free.
        tokio::time::advance(secs(60)).await;
        assert!(!too_slow(&mut pace, 2_002_000));
        tokio::time::advance(secs(2)).await;
        assert!(!too_slow(&mut pace, 2_002_000));
        tokio::time::advance(secs(1)).await;
        // 2 + 3 = 5 s owed: the reader is too slow.
        assert!(too_slow(&mut pace, 2_002_000));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_taken_during_a_wait_pay_for_it() {
        let rate = MinRate {
            bytes_per_second: 1000,
            grace: secs(5),
        };
        let mut pace = Pace::new(Some(rate));
        // One long wait, the reader taking 1,000 bytes a second: never late.
        for second in 0..60 {
            assert!(!too_slow(&mut pace, second * 1000), "{second}");
            tokio::time::advance(secs(1)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_rate_a_reader_may_take_its_time() {
        let mut pace = Pace::new(None);
        assert_eq!(pace.waiting(0), None);
        tokio::time::advance(secs(86_400)).await;
        assert_eq!(pace.waiting(0), None);
    }
}
