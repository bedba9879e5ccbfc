//! [`BatchLayer`]: the builder of the batch endpoints and their limits.

use crate::admission::Admission;
use crate::codec::DecodeLimits;
use crate::config::{Config, MinRate};
use crate::engine::RunOptions;
use crate::jobs::{Jobs, DEFAULT_MAX_JOBS, DEFAULT_MAX_JOBS_PER_CALLER};
use crate::service::Batch;
use crate::subrequest::HeaderPolicy;
use crate::transaction::{Hook, TransactionHook};
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

mod endpoints;
mod idempotency;
mod jobs;
mod subrequests;

pub use idempotency::DEFAULT_IDEMPOTENCY_RETENTION;

/// Default for [`BatchLayer::max_requests`]: 100 sub-requests.
pub const DEFAULT_MAX_REQUESTS: usize = 100;
/// Default for [`BatchLayer::max_body_bytes`]: 2 MiB, as axum's default body limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Default for [`BatchLayer::max_item_response_bytes`]: 1 MiB.
pub const DEFAULT_MAX_ITEM_RESPONSE_BYTES: usize = 1024 * 1024;
/// Default for [`BatchLayer::max_response_bytes`]: 16 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Default for [`BatchLayer::max_item_headers`]: 100 header values per sub-request, as
/// hyper's default for a request.
pub const DEFAULT_MAX_ITEM_HEADERS: usize = 100;
/// Default for [`BatchLayer::max_item_header_bytes`]: 16 KiB of header names and values per
/// sub-request.
pub const DEFAULT_MAX_ITEM_HEADER_BYTES: usize = 16 * 1024;
/// Default for [`BatchLayer::max_reference_bytes`]: 1 MiB per batch.
pub const DEFAULT_MAX_REFERENCE_BYTES: usize = 1024 * 1024;
/// Default for [`BatchLayer::max_concurrent_batches`]: 64 batches in flight.
pub const DEFAULT_MAX_CONCURRENT_BATCHES: usize = 64;
/// Default for [`BatchLayer::max_waiting_batches`]: 1024 batches waiting for a place.
pub const DEFAULT_MAX_WAITING_BATCHES: usize = 1024;
/// Default for [`BatchLayer::admission_timeout`]: 10 seconds' wait for a place.
pub const DEFAULT_ADMISSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`BatchLayer::reply_min_rate`]'s rate: 128 KiB a second (about 1 Mbit/s).
pub const DEFAULT_REPLY_MIN_RATE: u64 = 128 * 1024;
/// Default for [`BatchLayer::reply_min_rate`]'s grace: 5 seconds.
pub const DEFAULT_REPLY_GRACE: Duration = Duration::from_secs(5);
/// Default for [`BatchLayer::body_timeout`]: 30 seconds to receive a batch body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`BatchLayer::timeout`]: 30 seconds per sub-request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A [`Layer`] that gives the wrapped service batch endpoints.
///
/// `POST` to one of its paths with a JSON batch (the OData 4.01 / Microsoft Graph `$batch`
/// format) calls the wrapped service once per sub-request, with the outer request's
/// identity, and answers with all the results in request order. Every other request passes
/// straight through.
///
/// Wrap the *whole* router: `BatchLayer::new("/batch").layer(router)`. Going through
/// `Router::layer` would run the layer after routing, where `/batch` matches no route.
///
/// ```
/// use std::time::Duration;
/// use tower_http_batch::BatchLayer;
///
/// let layer = BatchLayer::new("/batch")
///     .path("/$batch")
///     .max_requests(50)
///     .timeout(Duration::from_secs(5));
/// # let _ = layer;
/// ```
///
/// [`BatchLayer::default`] has no endpoint yet: add the ones you want with
/// [`path`](Self::path), [`bulk`](Self::bulk) and [`resource`](Self::resource). The
/// builder is cheap to clone: the configuration is shared behind an `Arc`.
#[derive(Clone, Debug)]
pub struct BatchLayer {
    config: Arc<Config>,
}

impl Default for BatchLayer {
    /// No endpoint yet (every request passes through), and the documented defaults for
    /// every limit.
    fn default() -> Self {
        let config = Config {
            endpoints: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            admission: Admission::new(
                DEFAULT_MAX_CONCURRENT_BATCHES,
                DEFAULT_MAX_WAITING_BATCHES,
                DEFAULT_ADMISSION_TIMEOUT,
            ),
            decode: DecodeLimits {
                max_requests: DEFAULT_MAX_REQUESTS,
                max_item_headers: DEFAULT_MAX_ITEM_HEADERS,
                max_item_header_bytes: DEFAULT_MAX_ITEM_HEADER_BYTES,
                ..DecodeLimits::default()
            },
            run: RunOptions {
                concurrency: 1,
                timeout: Some(DEFAULT_TIMEOUT),
                batch_timeout: None,
                max_item_response_bytes: DEFAULT_MAX_ITEM_RESPONSE_BYTES,
                max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
                max_reference_bytes: DEFAULT_MAX_REFERENCE_BYTES,
                transactions: None,
                batch_paths: Default::default(),
                reach: Default::default(),
                service_root: None,
            },
            headers: Arc::default(),
            idempotency: Some(idempotency::default()),
            jobs: Some(Jobs::new(DEFAULT_MAX_JOBS, DEFAULT_MAX_JOBS_PER_CALLER)),
            reply_min_rate: Some(MinRate {
                bytes_per_second: DEFAULT_REPLY_MIN_RATE,
                grace: DEFAULT_REPLY_GRACE,
            }),
        };
        Self {
            config: Arc::new(config),
        }
    }
}

impl BatchLayer {
    /// A layer with one JSON batch endpoint at `path` (e.g. `"/batch"` or `"/$batch"`) and
    /// the documented defaults for every limit.
    ///
    /// # Panics
    ///
    /// When `path` does not start with `/`, holds a query or is not a valid URI path.
    pub fn new(path: impl Into<String>) -> Self {
        Self::default().path(path)
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    fn headers_mut(&mut self) -> &mut HeaderPolicy {
        Arc::make_mut(&mut self.config_mut().headers)
    }

    /// What the builder built.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Makes atomic batches possible: `"atomic": true` and OData's `atomicityGroup` in
    /// JSON batches, and `"atomic": true` in resource bulk requests. Each atomic group runs
    /// its members in order inside one transaction of `hook` (see [`TransactionHook`]):
    /// when one fails, the transaction is rolled back, the failing member keeps its own
    /// status and body, and the others report `424`. Without a hook, a group of two
    /// requests or more (JSON, a multipart changeset, a resource bulk request of two items,
    /// an atomic delete by filters) is refused with `400` before anything runs; a group of
    /// one runs as it is (one request is atomic on its own).
    pub fn transactions<H: TransactionHook>(mut self, hook: H) -> Self {
        self.config_mut().set_transactions(Hook::new(hook));
        self
    }

    /// The most sub-requests one batch may hold (default [`DEFAULT_MAX_REQUESTS`], 100).
    /// A longer batch is rejected whole with `400`, naming the count and the limit.
    pub fn max_requests(mut self, max: usize) -> Self {
        self.config_mut().decode.max_requests = max;
        self
    }

    /// The most batches in flight at once (default [`DEFAULT_MAX_CONCURRENT_BATCHES`], 64),
    /// counted from the moment a batch is admitted, before its body is read, until its run
    /// has ended and at most 64 KiB of its reply wait to be taken (or it was dropped, or cut
    /// for a reader slower than [`reply_min_rate`](Self::reply_min_rate)); requests that
    /// pass through are not counted. What the server still buffers for a client that reads
    /// slowly is its write timeout's to bound (see the README). One more waits for a place
    /// ([`max_waiting_batches`](Self::max_waiting_batches),
    /// [`admission_timeout`](Self::admission_timeout)), without its body being read, and past
    /// those gets `503` with `Retry-After`. With the other limits this
    /// bounds the layer's memory: a batch holds at most its body, the reply and the bodies
    /// waiting for it (`2 × max_response_bytes`), the responses being read (`concurrency ×
    /// max_item_response_bytes`) and what references parse (as trees: see the README);
    /// at the defaults about 40 MiB, 100 MiB with references, 64 × that in all. Batch
    /// jobs, once accepted, are counted apart ([`max_jobs`](Self::max_jobs)). The services
    /// one [`Layer::layer`] call makes share the count (axum and hyper clone them per
    /// connection); another call counts apart.
    pub fn max_concurrent_batches(mut self, max: usize) -> Self {
        self.config_mut().admission.max_batches = max;
        self
    }

    /// The most batches that may wait for a place at once (default
    /// [`DEFAULT_MAX_WAITING_BATCHES`], 1024), in arrival order; one more gets `503` with
    /// `Retry-After` at once. A waiting batch costs its connection alone: its body is not
    /// read until it has a place, so a burst is served as places free instead of turned
    /// away. `0` turns away every batch that finds no place.
    pub fn max_waiting_batches(mut self, max: usize) -> Self {
        self.config_mut().admission.max_waiting = max;
        self
    }

    /// How long a batch may wait for a place (default [`DEFAULT_ADMISSION_TIMEOUT`],
    /// 10 s); then it gets `503` with `Retry-After`. The wait does not count against
    /// [`body_timeout`](Self::body_timeout), which starts once the batch has its place.
    pub fn admission_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().admission.timeout = timeout;
        self
    }

    /// The slowest a client may read a reply (default [`DEFAULT_REPLY_MIN_RATE`], 128 KiB a
    /// second, after a grace of [`DEFAULT_REPLY_GRACE`], 5 s), so that a slow reader holds
    /// its batch's place for a bounded time, whatever it does.
    ///
    /// Only the time a reply waits on its reader counts: while its run is paused because
    /// 64 KiB of reply wait unread, and after the run while more than 64 KiB do. A reader
    /// that keeps up costs nothing, whatever the batch's items take or the reply's size.
    /// Each wait adds its length to what the reader owes, and the bytes it takes pay back
    /// one second per `bytes_per_second`; what is owed never goes below zero (speed is not
    /// banked: buffers take megabytes at once even from a client that reads nothing). Once
    /// it owes `grace`, the reply is cut: a reader that never reads, after `grace` of
    /// waiting; one at half the rate, after about twice that; one at the rate or faster,
    /// never. A cut reply ends short of its end, which clients read as malformed; its run
    /// stops as if the client had left (a commit in flight still finishes), and its place
    /// goes to the next batch. The connection itself is the server's to close: its write
    /// timeout (see the README).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_http_batch::BatchLayer;
    ///
    /// // Readers of at least 64 KiB/s; the first 10 s of waiting are free.
    /// let layer = BatchLayer::new("/batch").reply_min_rate(64 * 1024, Duration::from_secs(10));
    /// # let _ = layer;
    /// ```
    pub fn reply_min_rate(mut self, bytes_per_second: u64, grace: Duration) -> Self {
        self.config_mut().reply_min_rate = Some(MinRate {
            bytes_per_second,
            grace,
        });
        self
    }

    /// No minimum rate for readers: a reply waits for its reader as long as the server's
    /// connection does (see [`reply_min_rate`](Self::reply_min_rate)).
    pub fn no_reply_min_rate(mut self) -> Self {
        self.config_mut().reply_min_rate = None;
        self
    }

    /// How long the whole batch body may take to arrive once the request head has (default
    /// [`DEFAULT_BODY_TIMEOUT`], 30 s). A body that is not complete by then, because the
    /// client stalls or sends less than its `content-length`, gets `408` and nothing runs.
    /// The request head, and idle connections, are the server's to bound: see the README.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().body_timeout = timeout;
        self
    }

    /// The most header values one sub-request may set (default
    /// [`DEFAULT_MAX_ITEM_HEADERS`], 100; a header with several values counts each). More is
    /// refused with `400` naming the item and `headers`, and nothing runs.
    pub fn max_item_headers(mut self, max: usize) -> Self {
        self.config_mut().decode.max_item_headers = max;
        self
    }

    /// The most bytes of header names and values one sub-request may set (default
    /// [`DEFAULT_MAX_ITEM_HEADER_BYTES`], 16 KiB). More is refused with `400` naming the
    /// item and `headers`, and nothing runs.
    pub fn max_item_header_bytes(mut self, max: usize) -> Self {
        self.config_mut().decode.max_item_header_bytes = max;
        self
    }

    /// The most bytes the outer batch body may have (default [`DEFAULT_MAX_BODY_BYTES`],
    /// 2 MiB). A larger body gets `413`: from `content-length` before anything is read, and
    /// while reading when the body has no length.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.config_mut().max_body_bytes = max;
        self
    }

    /// The most bytes of one sub-response body that go into the reply (default
    /// [`DEFAULT_MAX_ITEM_RESPONSE_BYTES`], 1 MiB). A sub-request whose response is larger
    /// still reports its status and headers; its body is left out and the item says why
    /// in `bodyOmitted`.
    pub fn max_item_response_bytes(mut self, max: usize) -> Self {
        self.config_mut().run.max_item_response_bytes = max;
        self
    }

    /// The most bytes sub-response bodies and headers take in one reply, counted as they are
    /// written (escapes and base64 included; default [`DEFAULT_MAX_RESPONSE_BYTES`], 16
    /// MiB). The items are written in request order; once a body would pass the limit it is
    /// left out (`bodyOmitted`), and headers that would pass it too (`{}` and
    /// `headersOmitted`). Every item still runs and reports its id and status, so a reply
    /// can exceed the limit by that framing: a few dozen bytes per item.
    ///
    /// The same limit bounds the bodies a batch holds before they are written (items that
    /// finished ahead of a slower earlier one) or while a reference may still read them: a
    /// body that would take those past it is left out when it arrives, as the reply would
    /// leave it out. A body written and needed by no reference is let go at once.
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.config_mut().run.max_response_bytes = max;
        self
    }

    /// The most bytes references may read and copy in one batch (default
    /// [`DEFAULT_MAX_REFERENCE_BYTES`], 1 MiB). A dependency's body is parsed only when a
    /// reference points into it, at most once per batch, and charged by its size; every
    /// value a reference copies into a sub-request is charged by its size too. An item
    /// whose references would pass the limit is not sent: it reports `424`, naming it, and
    /// the budget is spent, so every later reference of the batch fails too (an attempt
    /// that fails is not free to repeat). Reading `/status` parses nothing, and
    /// `/headers/name` reads that header alone.
    pub fn max_reference_bytes(mut self, max: usize) -> Self {
        self.config_mut().run.max_reference_bytes = max;
        self
    }

    /// How long one sub-request may take, response body included (default
    /// [`DEFAULT_TIMEOUT`], 30 s). One that takes longer is dropped and its item reports
    /// `504`; the others are kept. The same bound applies to each call of the
    /// [`transactions`](Self::transactions) hook.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().run.timeout = Some(timeout);
        self
    }

    /// Lets sub-requests (and transaction hook calls) take as long as they take: no
    /// per-sub-request [`timeout`](Self::timeout).
    pub fn no_timeout(mut self) -> Self {
        self.config_mut().run.timeout = None;
        self
    }

    /// How long a whole batch may take (default: no limit beyond the per-sub-request
    /// [`timeout`](Self::timeout)). When it passes, the sub-requests in flight are dropped
    /// and report `504`, those not started report `424`, and the reply comes back well
    /// formed. A transaction's commit or rollback already in flight is let finish (within
    /// the per-sub-request timeout, or without one within one more `batch_timeout`), so the
    /// reply says what became of the data.
    pub fn batch_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().run.batch_timeout = Some(timeout);
        self
    }

    /// How many sub-requests of one batch may be in flight at once (default 1: one after
    /// another, in request order). Items that `dependsOn` others always wait for them;
    /// results are always in request order; a batch with `stop_on_error` runs one at a
    /// time whatever this says. `0` is taken as 1.
    ///
    /// Above 1, sub-requests start in the batch's own task, polled together, which suits
    /// those that wait on I/O or answer in a few microseconds. Once they take more than a
    /// few microseconds of CPU each, on average, the next ones run as tokio tasks of their
    /// own, so that a multi-threaded runtime spreads CPU-heavy handlers over its threads.
    /// Such tasks are aborted when the batch ends or its response is dropped; like the rest
    /// of a streamed batch, they do not see task-locals set outside.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config_mut().run.concurrency = n.max(1);
        self
    }
}

impl<S> Batch<S> {
    /// A [`BatchLayer`] with one JSON batch endpoint at `path`; the same as
    /// [`BatchLayer::new`].
    pub fn layer(path: impl Into<String>) -> BatchLayer {
        BatchLayer::new(path)
    }
}

impl<S> Layer<S> for BatchLayer {
    type Service = Batch<S>;

    /// The service, with its own places for batches in flight: its clones share them,
    /// and another `layer` call makes other ones.
    fn layer(&self, inner: S) -> Self::Service {
        let mut config = Config::clone(&self.config);
        config.admission = config.admission.fresh();
        config.jobs = config.jobs.as_ref().map(Jobs::fresh);
        Batch::new(inner, Arc::new(config))
    }
}
