//! The builders of keyed batches: where they are recorded, for how long, and whose keys
//! are whose.

use super::BatchLayer;
use crate::idempotency::Idempotency;
use crate::store::{IdempotencyStore, MemoryStore};
use http::request::Parts;
use std::sync::Arc;
use std::time::Duration;

/// How long a keyed batch's record is kept, by default: a day, as Stripe keeps keys.
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a run's hold on its record lasts without renewal (it renews a third of the
/// way): past it, a retry takes over a run whose process stopped.
const LEASE: Duration = Duration::from_secs(10);

/// Keyed batches recorded in memory, kept for a day: the default.
pub(super) fn default() -> Idempotency {
    Idempotency {
        store: Arc::new(MemoryStore::default()),
        retention: DEFAULT_IDEMPOTENCY_RETENTION,
        lease: LEASE,
        required: false,
        scope: None,
    }
}

impl BatchLayer {
    fn idempotency_mut(&mut self) -> &mut Idempotency {
        self.config_mut().idempotency.get_or_insert_with(default)
    }

    /// Where batches sent with an `Idempotency-Key` header are recorded ([`MemoryStore`]
    /// by default).
    ///
    /// A batch with a key (any format: JSON, NDJSON, multipart, bulk, resource bulk) runs
    /// to its end even when its client leaves, and its record is written as each item
    /// finishes. Sent again with the same key:
    ///
    /// - the same request, finished: its reply is replayed (the same status, items and
    ///   bodies, in the format the retry asks for), with `Idempotent-Replayed: true`, and
    ///   nothing runs;
    /// - the same request, still running (here or on another instance sharing the
    ///   store): `409 Conflict` with `Retry-After: 1`;
    /// - another request (method, URL, content type or body): `422`, nothing runs;
    /// - the same request, whose run stopped part-way (its process ended): items that
    ///   finished are replayed, items never sent run, and an item that was sent without a
    ///   recorded outcome runs again only when its method is idempotent (`GET`, `HEAD`,
    ///   `OPTIONS`, `PUT`, `DELETE`); else it reports `409` "Outcome unknown". A run holds
    ///   its record with a 10-second lease it renews, so this happens at most 10 seconds
    ///   after the process ended.
    ///
    /// What is recorded: each item, before it is sent, in the store call that sends it on
    /// its way (one round trip per item for SQLite and Redis; none for memory); final
    /// outcomes with the next such call, and when the run ends (the reply is sent once
    /// they are written). A store that fails mid-batch: the items it cannot record are not
    /// sent (`503` "Not recorded"), and the record is left to resume rather than
    /// finished, so the retry runs them.
    ///
    /// A key belongs to its caller: the batch path and the values of the identity
    /// headers (`authorization`, `cookie`, … and [`identity_header`](Self::identity_header)s;
    /// see [`idempotency_scope`](Self::idempotency_scope)). A key is 1 to 255 printable
    /// ASCII characters, quoted (`"…"`, as the IETF draft writes it) or not (as Stripe's
    /// clients send it). A store that fails answers `503`, and the batch does not run.
    ///
    /// ```
    /// use tower_http_batch::{store::MemoryStore, BatchLayer};
    ///
    /// let layer = BatchLayer::new("/batch").idempotency(MemoryStore::new(1_000, 16 << 20));
    /// # let _ = layer;
    /// ```
    pub fn idempotency(mut self, store: impl IdempotencyStore) -> Self {
        self.idempotency_mut().store = Arc::new(store);
        self
    }

    /// How long a keyed batch's record is kept, from when it was first sent
    /// ([`DEFAULT_IDEMPOTENCY_RETENTION`]: 24 hours; at least a minute). A key sent again
    /// later runs again. A record a run still holds is kept until it ends.
    pub fn idempotency_retention(mut self, retention: Duration) -> Self {
        self.idempotency_mut().retention = retention.max(Duration::from_secs(60));
        self
    }

    /// How long a run's hold on its record lasts unless renewed (10 seconds; it renews a
    /// third of the way): a retry of a batch whose process stopped mid-run takes it over
    /// once this has passed. Instances sharing a store compare it with their clocks.
    pub fn idempotency_lease(mut self, lease: Duration) -> Self {
        self.idempotency_mut().lease =
            lease.clamp(Duration::from_millis(3), Duration::from_secs(3600));
        self
    }

    /// Refuses batches without an `Idempotency-Key` (`400`), so that no client can send
    /// writes it could not safely retry.
    pub fn require_idempotency_key(mut self) -> Self {
        self.idempotency_mut().required = true;
        self
    }

    /// Whose a key is, when the identity headers do not say it well: a client whose
    /// retry carries a refreshed token, or a session cookie beside others that change,
    /// would otherwise find its first batch under another identity, and run it again.
    /// `scope` reads the outer request (its extensions hold what an authentication
    /// layer outside this one put there) and returns the caller's stable id; `None`
    /// falls back to the identity headers.
    ///
    /// ```
    /// use tower_http_batch::BatchLayer;
    ///
    /// #[derive(Clone)]
    /// struct UserId(u64);
    ///
    /// let layer = BatchLayer::new("/batch")
    ///     .idempotency_scope(|parts| parts.extensions.get::<UserId>().map(|u| u.0.to_string()));
    /// # let _ = layer;
    /// ```
    pub fn idempotency_scope<F>(mut self, scope: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.idempotency_mut().scope = Some(Arc::new(scope));
        self
    }

    /// Ignores `Idempotency-Key` headers: keyed batches run as any other.
    pub fn no_idempotency(mut self) -> Self {
        self.config_mut().idempotency = None;
        self
    }
}
