//! The builders of batch jobs (`Prefer: respond-async`): how many may run at once.

use super::BatchLayer;
use crate::jobs::Jobs;

impl BatchLayer {
    fn jobs_mut(&mut self) -> &mut Jobs {
        let jobs = &mut self.config_mut().jobs;
        jobs.get_or_insert_with(|| {
            Jobs::new(crate::DEFAULT_MAX_JOBS, crate::DEFAULT_MAX_JOBS_PER_CALLER)
        })
    }

    /// The most batch jobs that run at once in one layer (default
    /// [`DEFAULT_MAX_JOBS`](crate::DEFAULT_MAX_JOBS), 16); one more is refused with `503`
    /// and `Retry-After`, and does not run.
    ///
    /// A batch sent with `Prefer: respond-async` (RFC 7240; OData 4.01 §8.2.8.8), in any
    /// format, is a job: it is validated as any batch (a malformed one gets its `400` at
    /// once), then answered `202 Accepted` with `Location: {batch path}/jobs/{id}` (its
    /// status monitor; the id is 128 random bits), `Preference-Applied: respond-async` and
    /// `Retry-After: 1`, and it runs to its end on a task of its own, whether or not its
    /// client stays. With `Prefer: respond-async, wait=N`, a job that finishes within `N`
    /// seconds (at most 60) is answered as the synchronous batch would be.
    ///
    /// Its monitor, for the caller that sent it (its identity headers, or
    /// [`idempotency_scope`](Self::idempotency_scope); anyone else gets `404`):
    ///
    /// - `GET` while it runs: `202`, `Retry-After: 1` and a JSON progress document
    ///   (`state`, `requests`, `responses`, `statusClasses`); with `Accept:
    ///   application/x-ndjson` (JSON batches), the items finished so far, a line each;
    /// - `GET` once it has finished: the batch's reply, exactly as the synchronous batch
    ///   would have had it (status, format, content type, items; NDJSON when the
    ///   monitor's `Accept` asks for it; an OData V2 reply's `202` as `200`);
    /// - `DELETE` while it runs: cancels it (`202` with its progress): nothing new starts,
    ///   items not started report `424` "Job cancelled", an open atomic group rolls back,
    ///   and `GET` then shows what ran. On another instance sharing a Redis store, the
    ///   cancel reaches the run when it next renews its lease (within a third of
    ///   [`idempotency_lease`](Self::idempotency_lease)).
    ///
    /// Jobs live in the [`idempotency`](Self::idempotency) store, for its retention
    /// (then `404`): in memory, SQLite (a job interrupted by a restart is reported as it
    /// ended once its lease has passed: its finished items, `409` "Outcome unknown" for the
    /// one in flight, `503` "Job stopped" for those never sent), or Redis (any instance
    /// answers the monitor). An `Idempotency-Key` on an async batch names its job,
    /// recorded under the key as a keyed batch is: the same key from the same caller gets
    /// the same job (`202`, same `Location`; one whose run stopped is resumed, as a keyed
    /// batch is), another request under it `422`, and so does the same batch without
    /// `respond-async` (`Prefer: wait` is not part of the request). A poll of a job this
    /// layer runs reads the run's own count; one of another instance's job reads its state,
    /// and its whole record at most once a second (NDJSON items so far too); each takes a
    /// place among the batches in flight. Callers are told apart by their scope (see
    /// [`idempotency_scope`](Self::idempotency_scope); without it, by the identity
    /// headers' values, so every anonymous client is one). Jobs are on by default: the
    /// layer answers `{batch path}/jobs/{32 hex digits}` itself. The bounds count the jobs
    /// this layer runs; a job holds no place among
    /// [`max_concurrent_batches`](Self::max_concurrent_batches) once accepted. Without an idempotency store, or with [`no_jobs`](Self::no_jobs),
    /// `respond-async` is ignored and the batch answered when it has run.
    ///
    /// ```
    /// use tower_http_batch::BatchLayer;
    ///
    /// let layer = BatchLayer::new("/batch").max_jobs(4).max_jobs_per_caller(1);
    /// # let _ = layer;
    /// ```
    pub fn max_jobs(mut self, max: usize) -> Self {
        self.jobs_mut().max_running = max;
        self
    }

    /// The most batch jobs one caller (as [`max_jobs`](Self::max_jobs) tells callers
    /// apart) runs at once (default
    /// [`DEFAULT_MAX_JOBS_PER_CALLER`](crate::DEFAULT_MAX_JOBS_PER_CALLER), 4); one more is
    /// refused with `429` and `Retry-After`, and does not run.
    pub fn max_jobs_per_caller(mut self, max: usize) -> Self {
        self.jobs_mut().max_per_caller = max;
        self
    }

    /// Ignores `Prefer: respond-async`: every batch is answered when it has run, and
    /// `{batch path}/jobs/…` passes through. ([`max_jobs`](Self::max_jobs) or
    /// [`max_jobs_per_caller`](Self::max_jobs_per_caller) called after it turn jobs back on.)
    pub fn no_jobs(mut self) -> Self {
        self.config_mut().jobs = None;
        self
    }
}
