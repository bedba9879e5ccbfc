//! What a job's monitor read from the store a moment ago (its progress, its items so far),
//! kept for a second: a read takes the job's whole record, so polls that come faster than
//! `Retry-After` asks share the last one. Bounded in entries and in bytes: past either,
//! what is older than a second goes, and what still does not fit is not kept.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a read stands for the record (`Retry-After` asks clients to poll once a
/// second).
const RECENT: Duration = Duration::from_secs(1);

/// The most reads kept.
const MAX_ENTRIES: usize = 4096;

/// The most bytes of reads kept.
const MAX_BYTES: usize = 16 << 20;

/// Reads by a job's store key, with the bytes they hold.
#[derive(Debug)]
pub(crate) struct Recent<T> {
    reads: HashMap<String, (Instant, T, usize)>,
    bytes: usize,
}

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Self {
            reads: HashMap::new(),
            bytes: 0,
        }
    }
}

impl<T: Clone> Recent<T> {
    /// What was read at `key` within the last second.
    pub(crate) fn get(&self, key: &str) -> Option<T> {
        let (at, value, _) = self.reads.get(key)?;
        (at.elapsed() < RECENT).then(|| value.clone())
    }

    /// `value`, of `size` bytes, just read at `key` (unless it does not fit).
    pub(crate) fn put(&mut self, key: &str, value: T, size: usize) {
        let fits = |r: &Self| r.reads.len() < MAX_ENTRIES && r.bytes + size <= MAX_BYTES;
        if !fits(self) {
            self.reads.retain(|_, (at, _, _)| at.elapsed() < RECENT);
            self.bytes = self.reads.values().map(|(_, _, size)| size).sum();
        }
        if fits(self) {
            let old = self
                .reads
                .insert(key.to_owned(), (Instant::now(), value, size));
            self.bytes = self.bytes + size - old.map_or(0, |(_, _, size)| size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_kept_while_it_fits_and_replaced_by_the_next() {
        let mut recent = Recent::default();
        recent.put("a", 1, 10);
        recent.put("a", 2, 20);
        assert_eq!((recent.get("a"), recent.bytes), (Some(2), 20));
        recent.put("big", 3, MAX_BYTES);
        assert_eq!(recent.get("big"), None, "past the bytes kept");
        assert_eq!(recent.get("b"), None);
    }
}
