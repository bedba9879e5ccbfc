//! [`MemoryStore`]: records in this process, bounded in number and bytes.

use super::{held_by, leased, IdempotencyStore, Record, State};
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
/// default). When a new one would pass either, the oldest finished records go first
/// (whose retries then run again); one still running is never dropped, so when only
/// those are left the new batch is refused (`503`) rather than left unrecorded.
#[derive(Debug)]
pub struct MemoryStore {
    kept: Mutex<Kept>,
    max_records: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Kept {
    records: HashMap<String, Entry>,
    /// Keys in the order created (with when each expires): the oldest go first.
    order: VecDeque<(Instant, String)>,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    record: Record,
    entries: Vec<(String, Bytes)>,
    expires: Instant,
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
        let mut held = Vec::new();
        while self
            .order
            .front()
            .is_some_and(|(expires, _)| *expires <= now)
        {
            if let Some((_, key)) = self.order.pop_front() {
                if let Some(until) = self.remove_if_expired(&key, now) {
                    held.push((until, key));
                }
            }
        }
        // Records a run still holds come round again when their lease ends.
        self.order.extend(held);
        let full = |k: &Kept| k.records.len() + records > max.0 || k.bytes + bytes > max.1;
        let mut i = 0;
        while full(self) && i < self.order.len() {
            let finished = match self.records.get(&self.order[i].1) {
                Some(e) => e.record.state == State::Finished,
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

    /// Drops `key` if it has expired, unless a run holds it (its lease not passed): then
    /// returns when the lease ends.
    fn remove_if_expired(&mut self, key: &str, now: Instant) -> Option<Instant> {
        let entry = self.records.get(key)?;
        if entry.expires > now {
            return None;
        }
        if let (true, State::Running { lease_until, .. }) =
            (leased(&entry.record.state), entry.record.state)
        {
            let left = lease_until.saturating_sub(super::now_ms());
            return Some(now + Duration::from_millis(left.min(3_600_000)));
        }
        self.remove(key);
        None
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.records.remove(key) {
            self.bytes -= entry.bytes;
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
        if let Some(existing) = kept.records.get(key) {
            return Box::pin(ready(Ok(Some(existing.record.clone()))));
        }
        let bytes = key.len() + record.fingerprint.len() + 128;
        if !kept.make_room(1, bytes, (self.max_records, self.max_bytes)) {
            return Box::pin(ready(Err(FULL.into())));
        }
        let expires = now
            .checked_add(ttl)
            .unwrap_or(now + Duration::from_secs(1 << 32));
        kept.bytes += bytes;
        let entry = Entry {
            record: record.clone(),
            entries: Vec::new(),
            expires,
            bytes,
        };
        kept.records.insert(key.to_owned(), entry);
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
        let replaced = match kept.records.get_mut(key) {
            Some(entry) if entry.record.state == expected => {
                entry.record.state = new;
                // A run that outlived the retention: its reply is kept a minute more.
                let grace = Instant::now() + Duration::from_secs(60);
                if new == State::Finished && entry.expires < grace {
                    entry.expires = grace;
                    kept.order.push_back((grace, key.to_owned()));
                }
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
            .is_some_and(|e| held_by(&e.record.state, owner));
        if !held {
            return Box::pin(ready(Ok(false)));
        }
        let added = entries_size(entries);
        if !kept.make_room(0, added, (self.max_records, self.max_bytes)) {
            return Box::pin(ready(Err(FULL.into())));
        }
        // Still there: a running record is never dropped to make room.
        if let Some(entry) = kept.records.get_mut(key) {
            entry.entries.extend_from_slice(entries);
            entry.bytes += added;
            kept.bytes += added;
        }
        Box::pin(ready(Ok(true)))
    }

    fn entries<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Bytes)>, BoxError>> {
        let kept = self.kept();
        let entries = kept.records.get(key).map(|e| e.entries.clone());
        Box::pin(ready(Ok(entries.unwrap_or_default())))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Record>, BoxError>> {
        let mut kept = self.kept();
        kept.remove_if_expired(key, Instant::now());
        let record = kept.records.get(key).map(|e| e.record.clone());
        Box::pin(ready(Ok(record)))
    }
}
