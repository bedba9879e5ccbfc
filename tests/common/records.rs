//! A memory store for tests that watches and breaks: its writes fail while `down` is set
//! (a store's server that goes away mid-batch and comes back), and it counts the reads of
//! whole records.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tower_http_batch::store::{IdempotencyStore, MemoryStore, Record, State};
use tower_http_batch::BoxError;

#[derive(Default)]
pub struct Records {
    inner: MemoryStore,
    /// Writes (`replace`, `append`) fail while set.
    pub down: AtomicBool,
    /// Calls of `entries`.
    pub reads: AtomicUsize,
}

impl Records {
    fn fails(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }
}

impl IdempotencyStore for Records {
    fn create<'a>(
        &'a self,
        key: &'a str,
        record: &'a Record,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Record>, BoxError>> {
        self.inner.create(key, record, ttl)
    }
    fn replace<'a>(
        &'a self,
        key: &'a str,
        expected: State,
        new: State,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        match self.fails() {
            true => Box::pin(async { Err("timed out".into()) }),
            false => self.inner.replace(key, expected, new),
        }
    }
    fn append<'a>(
        &'a self,
        key: &'a str,
        owner: u64,
        entries: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        match self.fails() {
            true => Box::pin(async { Err("timed out".into()) }),
            false => self.inner.append(key, owner, entries),
        }
    }
    fn entries<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Bytes)>, BoxError>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.entries(key)
    }
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Record>, BoxError>> {
        self.inner.get(key)
    }
}
