//! Batch jobs: a batch sent with `Prefer: respond-async` (RFC 7240; OData 4.01 §8.2.8.8)
//! is validated as any other, answered `202 Accepted` with the `Location` of its status
//! monitor, and run to its end on a task of its own, whether or not its client stays.
//!
//! A job is a keyed batch whose key the layer picks: its run is recorded in the
//! idempotency store as it goes (see [`crate::idempotency`]), beside the request it was
//! sent with, so that its monitor on any instance sharing the store can tell how far it
//! has gone and, once it has finished, replay its reply as the synchronous batch would
//! have had it. This module holds what is the jobs' own: their ids and where the store
//! keeps them, the bounds on jobs running, and the handles of the jobs this instance runs.

pub(crate) mod progress;
mod recent;
pub(crate) mod stored;

use crate::error::Problem;
use crate::idempotency::{digest, hex, reused_problem};
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use recent::Recent;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Default for [`BatchLayer::max_jobs`](crate::BatchLayer::max_jobs): 16 jobs running at
/// once in one layer.
pub const DEFAULT_MAX_JOBS: usize = 16;
/// Default for [`BatchLayer::max_jobs_per_caller`](crate::BatchLayer::max_jobs_per_caller):
/// 4 jobs running at once for one caller.
pub const DEFAULT_MAX_JOBS_PER_CALLER: usize = 4;

/// What follows a batch path in its jobs' monitor paths.
const MONITOR: &str = "/jobs/";

/// A job id: 32 lowercase hex digits (128 bits).
const ID_LEN: usize = 32;

/// The layer's settings for jobs, and the jobs this instance runs.
#[derive(Clone, Debug)]
pub(crate) struct Jobs {
    pub(crate) max_running: usize,
    pub(crate) max_per_caller: usize,
    running: Arc<Mutex<Running>>,
    /// The progress of jobs other instances run, as read a moment ago.
    progress_read: Arc<Mutex<Recent<progress::Progress>>>,
    /// The items so far of jobs (`None`: its format has none), as read a moment ago.
    lines_read: Arc<Mutex<Recent<Option<Lines>>>>,
}

/// A running job's items so far, as its monitor gives them: content type and body.
pub(crate) type Lines = (http::HeaderValue, Bytes);

/// The jobs running here.
#[derive(Debug, Default)]
struct Running {
    /// By the store key of their record.
    jobs: HashMap<String, Arc<LocalJob>>,
    /// How many each caller (by its scope's digest) runs.
    by_caller: HashMap<[u8; 32], usize>,
}

/// A job this instance runs.
#[derive(Debug, Default)]
pub(crate) struct LocalJob {
    /// The fingerprint of its request: the same key with another is `422`.
    fingerprint: Bytes,
    /// Cancelled by `DELETE` on its monitor.
    pub(crate) cancel: CancellationToken,
    /// Cancelled once its run has ended and its record says so.
    pub(crate) done: CancellationToken,
    /// Its progress, as its run counts it.
    pub(crate) tally: Arc<progress::Tally>,
}

/// A job's place among those running: its handle is let go, and its caller's count
/// lowered, when it is dropped (the run has ended).
#[derive(Debug)]
pub(crate) struct Slot {
    running: Arc<Mutex<Running>>,
    key: String,
    caller: [u8; 32],
    pub(crate) job: Arc<LocalJob>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = lock(&self.running);
        running.jobs.remove(&self.key);
        if let Some(count) = running.by_caller.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                running.by_caller.remove(&self.caller);
            }
        }
        drop(running);
        self.job.done.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a job is: its id (in its monitor's path) and its record's key in the store.
#[derive(Clone, Debug)]
pub(crate) struct JobKey {
    pub(crate) id: String,
    pub(crate) store_key: String,
    /// The batch endpoint's path.
    path: String,
}

impl JobKey {
    /// Job `id` of the caller `scope`, sent to the batch endpoint at `path`: another
    /// caller's request for the same id finds another key, where nothing is.
    pub(crate) fn new(path: &str, scope: &[u8], id: &str) -> Self {
        let key = digest(&[
            b"tower-http-batch job 1",
            path.as_bytes(),
            scope,
            id.as_bytes(),
        ]);
        let store_key = format!("tower-http-batch:job:{}", hex(&key));
        Self {
            id: id.to_owned(),
            store_key,
            path: path.to_owned(),
        }
    }

    /// The path of the batch endpoint the job was sent to.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The flag another instance creates to cancel the run `owner` of the job: a run's
    /// own, so that a flag left behind cancels no later run of the same job.
    pub(crate) fn cancel_flag(&self, owner: u64) -> String {
        format!("{}:cancel:{owner:x}", self.store_key)
    }

    /// A new job's id: 128 random bits.
    pub(crate) fn new_id() -> String {
        crate::batch::id::random_hex()
    }
}

impl Jobs {
    pub(crate) fn new(max_running: usize, max_per_caller: usize) -> Self {
        Self {
            max_running,
            max_per_caller,
            running: Arc::default(),
            progress_read: Arc::default(),
            lines_read: Arc::default(),
        }
    }

    /// The progress of the job at `key` that another instance runs, read a moment ago.
    pub(crate) fn seen(&self, key: &JobKey) -> Option<progress::Progress> {
        lock(&self.progress_read).get(&key.store_key)
    }

    /// Keeps `progress`, just read, of the job at `key` that another instance runs.
    pub(crate) fn saw(&self, key: &JobKey, progress: &progress::Progress) {
        lock(&self.progress_read).put(&key.store_key, progress.clone(), 0);
    }

    /// The items so far of the job at `key`, read a moment ago.
    pub(crate) fn seen_lines(&self, key: &JobKey) -> Option<Option<Lines>> {
        lock(&self.lines_read).get(&key.store_key)
    }

    /// Keeps `lines`, just read and written, of the job at `key` (while they fit).
    pub(crate) fn saw_lines(&self, key: &JobKey, lines: &Option<Lines>) {
        let size = lines.as_ref().map_or(0, |l| l.1.len());
        lock(&self.lines_read).put(&key.store_key, lines.clone(), size);
    }

    /// The same settings, with no job running: a layer's services count their own.
    pub(crate) fn fresh(&self) -> Self {
        Self::new(self.max_running, self.max_per_caller)
    }

    /// Whether one more job of `scope` may run now: else `503` (jobs in all) or `429`
    /// (this caller's), with `Retry-After`. (Checked again when it is admitted.)
    pub(crate) fn has_room(&self, scope: &[u8]) -> Result<(), Problem> {
        let caller = digest(&[scope]);
        let running = lock(&self.running);
        self.room_in(&running, &caller)
    }

    fn room_in(&self, running: &Running, caller: &[u8; 32]) -> Result<(), Problem> {
        if running.jobs.len() >= self.max_running {
            let (status, max) = (StatusCode::SERVICE_UNAVAILABLE, self.max_running);
            return Err(too_many(status, "in all", max));
        }
        let mine = running.by_caller.get(caller).copied().unwrap_or(0);
        if mine >= self.max_per_caller {
            let (status, max) = (StatusCode::TOO_MANY_REQUESTS, self.max_per_caller);
            return Err(too_many(status, "for one caller", max));
        }
        Ok(())
    }

    /// A place for the job at `key`, sent by `scope` with a request whose fingerprint is
    /// `fingerprint` (`None` when this instance runs it already; `422` when it runs
    /// another request under the same key): else `503` (jobs in all) or `429` (this
    /// caller's), with `Retry-After`.
    pub(crate) fn admit(
        &self,
        key: &JobKey,
        scope: &[u8],
        fingerprint: &Bytes,
    ) -> Result<Option<Slot>, Problem> {
        let caller = digest(&[scope]);
        let mut running = lock(&self.running);
        if let Some(job) = running.jobs.get(&key.store_key) {
            return match job.fingerprint == *fingerprint {
                true => Ok(None),
                false => Err(reused_problem()),
            };
        }
        self.room_in(&running, &caller)?;
        let job = Arc::new(LocalJob {
            fingerprint: fingerprint.clone(),
            ..LocalJob::default()
        });
        running.jobs.insert(key.store_key.clone(), job.clone());
        *running.by_caller.entry(caller).or_default() += 1;
        Ok(Some(Slot {
            running: self.running.clone(),
            key: key.store_key.clone(),
            caller,
            job,
        }))
    }

    /// The job at `key`, if this instance runs it.
    pub(crate) fn local(&self, key: &JobKey) -> Option<Arc<LocalJob>> {
        lock(&self.running).jobs.get(&key.store_key).cloned()
    }
}

/// The id in `path` when it is the monitor of a job of the batch endpoint at `endpoint`
/// (`{endpoint}/jobs/{id}`): a cheap test, since every request that passes through takes it.
#[inline]
pub(crate) fn monitor_id<'a>(endpoint: &str, path: &'a str) -> Option<&'a str> {
    let id = path.strip_prefix(endpoint)?.strip_prefix(MONITOR)?;
    let is_id = id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    is_id.then_some(id)
}

/// The path of job `id`'s monitor, for the batch endpoint at `endpoint`.
pub(crate) fn monitor_path(endpoint: &str, id: &str) -> String {
    format!("{endpoint}{MONITOR}{id}")
}

fn too_many(status: StatusCode, whose: &str, max: usize) -> Problem {
    let why = format!("{max} batch jobs are running {whose}, the most this server runs at once; send it again once one has finished");
    Problem::new(
        status,
        "urn:tower-http-batch:too-many-jobs",
        "Too many batch jobs",
        why,
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
}

/// `404`: no job here (never one, another caller's, or past the retention).
pub(crate) fn not_found() -> Problem {
    let why = "no batch job of yours has this id: it never existed, it is another caller's, or its results were kept for the store's retention and have gone";
    Problem::new(
        StatusCode::NOT_FOUND,
        "urn:tower-http-batch:job-not-found",
        "No such batch job",
        why,
    )
}

/// `409`: `DELETE` on a job that is no longer running.
pub(crate) fn not_running(state: progress::JobState) -> Problem {
    let how = match state {
        progress::JobState::Failed => "stopped (the server running it stopped)",
        _ => "finished",
    };
    let why = format!(
        "the batch job has {how}: there is nothing left to cancel; GET its monitor for its results"
    );
    Problem::new(
        StatusCode::CONFLICT,
        "urn:tower-http-batch:job-not-running",
        "Batch job not running",
        why,
    )
}

/// `405`: a monitor takes `GET` and `DELETE`.
pub(crate) fn method_not_allowed() -> Problem {
    let why = "a batch job's status monitor takes GET (its progress, then its results) and DELETE (cancel it)";
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "urn:tower-http-batch:method-not-allowed",
        "Method not allowed",
        why,
    )
    .with_header(header::ALLOW, HeaderValue::from_static("GET, DELETE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_monitor_path_is_its_endpoint_jobs_and_an_id_of_32_hex_digits() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(monitor_id("/batch", &monitor_path("/batch", id)), Some(id));
        assert_eq!(monitor_id("/batch", "/batch/jobs/0123"), None);
        assert_eq!(
            monitor_id("/batch", &format!("/batch/jobs/{}", id.to_uppercase())),
            None
        );
        assert_eq!(monitor_id("/batch", &format!("/batchjobs/{id}")), None);
        assert_eq!(monitor_id("/batch", &format!("/batch/jobs/{id}/x")), None);
        assert_eq!(
            monitor_id("/$batch", &format!("/$batch/jobs/{id}")),
            Some(id)
        );
    }

    #[test]
    fn another_caller_or_endpoint_finds_another_record() {
        let a = JobKey::new("/batch", b"alice", "x");
        assert_ne!(a.store_key, JobKey::new("/batch", b"bob", "x").store_key);
        assert_ne!(a.store_key, JobKey::new("/other", b"alice", "x").store_key);
        assert!(monitor_id("/b", &monitor_path("/b", &JobKey::new_id())).is_some());
    }

    #[test]
    fn jobs_are_bounded_in_all_and_per_caller_and_a_slot_gives_its_place_back() {
        let jobs = Jobs::new(3, 2);
        let key = |i: u8| JobKey::new("/b", b"", &i.to_string());
        let f = Bytes::from_static(b"f");
        let status = |e: Problem| e.into_response::<http_body_util::Empty<Bytes>>().status();
        let a1 = jobs.admit(&key(1), b"alice", &f).unwrap().unwrap();
        let again = jobs.admit(&key(1), b"alice", &f).unwrap();
        assert!(again.is_none(), "runs here already");
        let other = jobs.admit(&key(1), b"alice", &Bytes::new()).unwrap_err();
        assert_eq!(status(other), StatusCode::UNPROCESSABLE_ENTITY);
        let _a2 = jobs.admit(&key(2), b"alice", &f).unwrap();
        let e = jobs.admit(&key(3), b"alice", &f).unwrap_err();
        assert_eq!(status(e), StatusCode::TOO_MANY_REQUESTS);
        let _b1 = jobs.admit(&key(4), b"bob", &f).unwrap();
        let e = jobs.admit(&key(5), b"carol", &f).unwrap_err();
        assert_eq!(status(e), StatusCode::SERVICE_UNAVAILABLE);
        assert!(jobs.local(&key(1)).is_some());
        let done = a1.job.done.clone();
        drop(a1);
        assert!(done.is_cancelled());
        assert!(jobs.local(&key(1)).is_none());
        jobs.admit(&key(6), b"alice", &f).unwrap();
    }
}
