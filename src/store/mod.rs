//! Where batches sent with an `Idempotency-Key` are kept, so that a retry replays them
//! (see [`BatchLayer::idempotency`](crate::BatchLayer::idempotency)).
//!
//! A store keeps bytes and states by key and knows nothing of batches: a [`Record`] is a
//! fingerprint and a [`State`], with a list of named entries beside it. Three come with the crate, each
//! run against the same tests:
//!
//! - [`MemoryStore`] (the default): in this process, bounded in records and bytes;
//! - `SqliteStore` (feature `sqlite`): a file, so that records survive a restart;
//! - `RedisStore` (feature `redis`): shared by every instance behind a load balancer.
//!
//! Any other store implements [`IdempotencyStore`]: four atomic operations, and a read
//! (`get`) that batch jobs need. A record must
//! not expire while a run holds it: keep the retention far above a batch's longest run.

mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use crate::BoxError;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use std::time::Duration;

/// A batch as a store keeps it, besides its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What identifies the request the key was first sent with.
    pub fingerprint: Bytes,
    /// Whether it is running, and who runs it.
    pub state: State,
}

/// Whether a batch is running or finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Run `owner` holds it until `lease_until` (milliseconds since the Unix epoch), and
    /// renews the lease while it runs: a record whose lease has passed was left by a run
    /// that stopped (its process crashed), and another run may take it over.
    Running {
        /// Who runs it (a random number per run).
        owner: u64,
        /// Until when, in milliseconds since the Unix epoch.
        lease_until: u64,
    },
    /// Its run ended: its entries are final.
    Finished,
}

/// A store of batches sent with an `Idempotency-Key`. Each operation is atomic.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Creates `key` holding `record` and no entries, to expire `ttl` from now, unless it
    /// exists: then returns what it holds (and creates nothing).
    fn create<'a>(
        &'a self,
        key: &'a str,
        record: &'a Record,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Record>, BoxError>>;

    /// Sets `key`'s state to `new` if it is `expected` now: whether it was. (A run renews
    /// its lease, takes over a run whose lease has passed, or finishes, with this.)
    fn replace<'a>(
        &'a self,
        key: &'a str,
        expected: State,
        new: State,
    ) -> BoxFuture<'a, Result<bool, BoxError>>;

    /// Appends `entries` to `key` if run `owner` holds it now: whether it does.
    fn append<'a>(
        &'a self,
        key: &'a str,
        owner: u64,
        entries: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<bool, BoxError>>;

    /// `key`'s entries, in the order they were appended (none when it does not exist).
    fn entries<'a>(&'a self, key: &'a str)
        -> BoxFuture<'a, Result<Vec<(String, Bytes)>, BoxError>>;

    /// The record at `key`, without claiming it (`None` when it does not exist or has
    /// expired). A batch job's status monitor reads its job with this; a store that does
    /// not have it (the default, for stores written before it came) answers with an
    /// error, and the monitor with `503`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Record>, BoxError>> {
        let _ = key;
        Box::pin(std::future::ready(Err(
            "this store does not implement IdempotencyStore::get, which batch jobs need".into(),
        )))
    }
}

impl<T: IdempotencyStore + ?Sized> IdempotencyStore for std::sync::Arc<T> {
    fn create<'a>(
        &'a self,
        key: &'a str,
        record: &'a Record,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Record>, BoxError>> {
        (**self).create(key, record, ttl)
    }

    fn replace<'a>(
        &'a self,
        key: &'a str,
        expected: State,
        new: State,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        (**self).replace(key, expected, new)
    }

    fn append<'a>(
        &'a self,
        key: &'a str,
        owner: u64,
        entries: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        (**self).append(key, owner, entries)
    }

    fn entries<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Bytes)>, BoxError>> {
        (**self).entries(key)
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Record>, BoxError>> {
        (**self).get(key)
    }
}

/// The store `spec` names, as the demo's and `batch-proxy`'s `--store` flag takes it:
/// `memory` ([`MemoryStore::default`]), `sqlite:FILE` (feature `sqlite`), or a Redis URL,
/// `redis://HOST:PORT` (feature `redis`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = tower_http_batch::store::open("memory").await.unwrap();
/// let layer = tower_http_batch::BatchLayer::new("/batch").idempotency(store);
/// # let _ = layer;
/// # }
/// ```
pub async fn open(spec: &str) -> Result<std::sync::Arc<dyn IdempotencyStore>, BoxError> {
    if spec == "memory" {
        return Ok(std::sync::Arc::new(MemoryStore::default()));
    }
    if let Some(path) = spec.strip_prefix("sqlite:") {
        #[cfg(feature = "sqlite")]
        return Ok(std::sync::Arc::new(SqliteStore::open(path)?));
        #[cfg(not(feature = "sqlite"))]
        return Err(format!("a SQLite store ({path}) needs the `sqlite` feature").into());
    }
    if spec.starts_with("redis://") || spec.starts_with("rediss://") {
        #[cfg(feature = "redis")]
        return Ok(std::sync::Arc::new(RedisStore::open(spec).await?));
        #[cfg(not(feature = "redis"))]
        return Err("a Redis store needs the `redis` feature".into());
    }
    Err(format!("unknown store {spec:?}: use memory, sqlite:FILE or redis://HOST:PORT").into())
}

/// Milliseconds since the Unix epoch (leases are compared across instances, by their
/// clocks: keep them in step).
pub(crate) fn now_ms() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Whether a run holds `state` now (its lease has not passed): such a record never expires.
fn leased(state: &State) -> bool {
    matches!(state, State::Running { lease_until, .. } if *lease_until > now_ms())
}

/// Whether `state` is held by `owner`.
fn held_by(state: &State, owner: u64) -> bool {
    matches!(state, State::Running { owner: o, .. } if *o == owner)
}
