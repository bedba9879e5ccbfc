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
    /// When the wait in progress began.
    since: Option<Instant>,
}

impl Pace {
    /// `None`: no bound.
    pub(crate) fn new(rate: Option<MinRate>) -> Self {
        Self {
            rate,
            ..Self::default()
        }
    }

    /// The reply waits on its reader (a wait begins, or goes on): when the reader would
    /// prove too slow, unless it takes more first; `None` without a bound.
    pub(crate) fn waiting(&mut self) -> Option<Instant> {
        let rate = self.rate?;
        let since = *self.since.get_or_insert_with(Instant::now);
        let left = rate.grace.saturating_sub(self.owed);
        Some(since.checked_add(left).unwrap_or_else(far_future))
    }

    /// The reader made room, having taken `took` bytes: the wait in progress ends.
    pub(crate) fn resumed(&mut self, took: usize) {
        if let (Some(rate), Some(since)) = (self.rate, self.since.take()) {
            let owed = self.owed.saturating_add(since.elapsed());
            self.owed = owed.saturating_sub(pays(&rate, took));
        }
    }
}

/// What taking `bytes` pays back at `rate`.
fn pays(rate: &MinRate, bytes: usize) -> Duration {
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

    /// Whether the reader is too slow now, in a wait.
    fn too_slow(pace: &mut Pace) -> bool {
        pace.waiting().is_some_and(|due| due <= Instant::now())
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
        for _ in 0..2 {
            assert!(!too_slow(&mut pace));
            pace.resumed(1_000_000);
        }
        assert!(!too_slow(&mut pace));
        tokio::time::advance(secs(4)).await;
        assert!(!too_slow(&mut pace));
        // 2,000 bytes pay 2 s of the 4 waited: 2 s owed.
        pace.resumed(2_000);
        // Time without a wait is free.
        tokio::time::advance(secs(60)).await;
        assert!(!too_slow(&mut pace));
        tokio::time::advance(secs(2)).await;
        assert!(!too_slow(&mut pace));
        tokio::time::advance(secs(1)).await;
        // 2 + 3 = 5 s owed: the reader is too slow.
        assert!(too_slow(&mut pace));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_rate_a_reader_may_take_its_time() {
        let mut pace = Pace::new(None);
        assert_eq!(pace.waiting(), None);
        tokio::time::advance(secs(86_400)).await;
        assert_eq!(pace.waiting(), None);
    }
}
