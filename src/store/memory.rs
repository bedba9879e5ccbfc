//! [`MemoryStore`]: records in this process, bounded in number and bytes.

use super::{held_by, IdempotencyStore, Record, State};
use crate::BoxError;
use bytes::Bytes;
use futures_util::future::{ready, BoxFuture};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keyed batches in this process's memory: the default store. Records are lost when the
/// process ends, and a retry that reaches another instance does not find them (use
/// `SqliteStore` or `RedisStore` for those).
///
/// At most `max_records` records holding `max_bytes` in all (10,000 and 64 MiB by
/// default). When a new one would pass either, the oldest finished records go first;
/// one still running is never dropped, so when only those are left the new batch is
/// refused (`503`) rather than left unrecorded.
#[derive(Debug)]
pub struct MemoryStore {
    kept: Mutex<Kept>,
    max_records: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Kept {
    records: HashMap<String, (Record, Instant)>,
    /// Keys in the order created (with when each expires): the oldest go first.
    order: VecDeque<(Instant, String)>,
    bytes: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(10_000, 64 * 1024 * 1024)
    }
}

impl MemoryStore {
    /// A store of at most `max_records` records holding at most `max_bytes`.
    pub fn new(max_records: usize, max_bytes: usize) -> Self {
        Self {
            kept: Mutex::default(),
            max_records,
            max_bytes,
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while the lock was held cannot leave a record half-written here.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const FULL: &str = "the in-memory idempotency store is full of running batches";

/// What an entry takes besides its name and value (the `String` and `Bytes` that hold
/// them, and their allocations): so that the bound is about the heap the records hold.
const ENTRY_OVERHEAD: usize = 64;

/// The bytes a record takes, counted against the bound.
fn size(key: &str, record: &Record) -> usize {
    key.len() + record.fingerprint.len() + entries_size(&record.entries) + 128
}

fn entries_size(entries: &[(String, Bytes)]) -> usize {
    entries
        .iter()
        .map(|(n, v)| n.len() + v.len() + ENTRY_OVERHEAD)
        .sum()
}

impl Kept {
    /// Drops what has expired, then the oldest finished records while `records` more
    /// records and `bytes` more would pass the bounds: whether there is room then.
    fn make_room(&mut self, records: usize, bytes: usize, max: (usize, usize)) -> bool {
        let now = Instant::now();
        while self
            .order
            .front()
            .is_some_and(|(expires, _)| *expires <= now)
        {
            if let Some((_, key)) = self.order.pop_front() {
                self.remove_if_expired(&key, now);
            }
        }
        let full = |k: &Kept| k.records.len() + records > max.0 || k.bytes + bytes > max.1;
        let mut i = 0;
        while full(self) && i < self.order.len() {
            let finished = match self.records.get(&self.order[i].1) {
                Some((r, _)) => r.state == State::Finished,
                None => true,
            };
            if !finished {
                i += 1;
            } else if let Some((_, key)) = self.order.remove(i) {
                self.remove(&key);
            }
        }
        !full(self)
    }

    fn remove_if_expired(&mut self, key: &str, now: Instant) {
        if self.records.get(key).is_some_and(|(_, e)| *e <= now) {
            self.remove(key);
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some((record, _)) = self.records.remove(key) {
            self.bytes -= size(key, &record);
        }
    }
}

impl IdempotencyStore for MemoryStore {
    fn create<'a>(
        &'a self,
        key: &'a str,
        record: &'a Record,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Record>, BoxError>> {
        let mut kept = self.kept();
        let now = Instant::now();
        kept.remove_if_expired(key, now);
        if let Some((existing, _)) = kept.records.get(key) {
            return Box::pin(ready(Ok(Some(existing.clone()))));
        }
        let bytes = size(key, record);
        if !kept.make_room(1, bytes, (self.max_records, self.max_bytes)) {
            return Box::pin(ready(Err(FULL.into())));
        }
        let expires = now
            .checked_add(ttl)
            .unwrap_or(now + Duration::from_secs(1 << 32));
        kept.bytes += bytes;
        kept.records
            .insert(key.to_owned(), (record.clone(), expires));
        kept.order.push_back((expires, key.to_owned()));
        Box::pin(ready(Ok(None)))
    }

    fn replace<'a>(
        &'a self,
        key: &'a str,
        expected: State,
        new: State,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        let mut kept = self.kept();
        let record = kept.records.get_mut(key).map(|(r, _)| r);
        let replaced = match record {
            Some(record) if record.state == expected => {
                record.state = new;
                true
            }
            _ => false,
        };
        Box::pin(ready(Ok(replaced)))
    }

    fn append<'a>(
        &'a self,
        key: &'a str,
        owner: u64,
        entries: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        let mut kept = self.kept();
        let held = kept
            .records
            .get(key)
            .is_some_and(|(r, _)| held_by(&r.state, owner));
        if !held {
            return Box::pin(ready(Ok(false)));
        }
        let added = entries_size(entries);
        if !kept.make_room(0, added, (self.max_records, self.max_bytes)) {
            return Box::pin(ready(Err(FULL.into())));
        }
        // Still there: a running record is never dropped to make room.
        if let Some((record, _)) = kept.records.get_mut(key) {
            record.entries.extend_from_slice(entries);
            kept.bytes += added;
        }
        Box::pin(ready(Ok(true)))
    }
}
