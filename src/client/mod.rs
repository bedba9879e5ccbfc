//! The client side (feature `client`): [`BatchClient`], a `tower::Service` that sends
//! [`Batch`]es of `http::Request`s as JSON batches (OData 4.01 / Microsoft Graph, what this
//! crate's layer speaks) through any HTTP client service, and hands back one response per
//! request, in order.
//!
//! - **Splitting**: at most [`max_requests`](BatchClient::max_requests) per batch request
//!   (Graph's 20 by default), every `dependsOn` chain in one, as few batch requests as
//!   first-fit packing makes; a server that answers `400`/`413` naming a smaller limit is
//!   heard, and the batch split again (nothing ran). A chain longer than the limit is
//!   [`ClientError::ChainTooLong`], before anything is sent.
//! - **Throttled items only**: items answered `429` or `503` (and `504` for methods that
//!   may be repeated) are sent again, in a new batch request, after the longest
//!   `Retry-After` among them, up to [`item_retries`](BatchClient::item_retries) times
//!   and within the [`deadline`](BatchClient::deadline); items that were not sent (`424`)
//!   because they wait for one go with it. Nothing else is sent twice.
//! - **Whole batch requests**: a busy server (`429`, `503`: nothing ran) is asked again;
//!   a reset connection, a cut body, a gateway's `502`/`504` or a `409` while the same
//!   batch runs are retried with the same `Idempotency-Key`, so a server that honours
//!   keys (this crate's layer does) runs it once (see
//!   [`no_idempotency_keys`](BatchClient::no_idempotency_keys) for one that does not). A
//!   batch request that still fails gives each of its items a response saying so, marked
//!   [`NotAnswered`] (never resent), so the caller learns what ran; when no batch request
//!   was answered at all, the call is an `Err`.
//! - Spans: `batch_client` per batch, `batch_request` per batch request (with its key and
//!   attempts), `batch_item` per item, from its batch request to its answer (id, status).
//!
//! It is a `Service<Batch>`: timeouts, rate limits and tracing layers compose around it.
//! The inner service is cloned for every batch request (and driven to readiness by
//! `oneshot`), so this one is always ready: hyper-util's legacy `Client` and tower-http
//! stacks over it are cheap to clone.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::ServiceExt;
//! use tower_http_batch::client::{Batch, BatchClient, Item};
//!
//! let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let client = BatchClient::new(http, "http://127.0.0.1:3000/batch".parse()?).max_requests(100);
//! let read = |id: u32| http::Request::get(format!("/users/{id}")).body(Bytes::new()).unwrap();
//! let batch = (1..=250).fold(Batch::new(), |b, id| b.push(read(id)));
//! let responses = client.oneshot(batch).await?;
//! assert_eq!(responses.len(), 250);
//! for (index, failed) in responses.failed() {
//!     println!("request {index}: {}", failed.status());
//! }
//! # Ok(())
//! # }
//! ```

mod coalesce;
mod item;
mod responses;
mod run;
mod send;
mod split;
mod wire;

pub use coalesce::{Coalesce, CoalesceFuture, SharedError};
pub use item::{Batch, Item};
pub use responses::{ClientError, NotAnswered, Report, Responses};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response, Uri};
use http_body::Body;
use http_body_util::Full;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::retry::budget::{Budget, TpsBudget};
use tower::Service;
use tracing::Instrument;

/// Microsoft Graph's limit, the smallest in common use: the default split.
pub const DEFAULT_CLIENT_MAX_REQUESTS: usize = 20;

/// Sends [`Batch`]es as JSON batches through `S` (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct BatchClient<S> {
    inner: S,
    settings: Arc<Settings>,
    /// The server's limit, as configured or learned: shared by the clones, so one
    /// refusal teaches them all.
    limit: Arc<AtomicUsize>,
}

/// What a client is configured with.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) endpoint: Uri,
    pub(crate) item_retries: u32,
    pub(crate) batch_attempts: u32,
    pub(crate) default_wait: Duration,
    pub(crate) max_wait: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) keys: bool,
    pub(crate) max_reply_bytes: usize,
    /// Retries across calls: each call deposits, each retry withdraws.
    pub(crate) budget: RetryBudget,
}

/// A [`Budget`] shared by the clones of a client (and by any client given it).
#[derive(Clone)]
pub(crate) struct RetryBudget(pub(crate) Arc<dyn Budget + Send + Sync>);

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryBudget")
    }
}

impl<S> BatchClient<S> {
    /// A client sending batches to `endpoint` (an absolute URL, as the inner client
    /// needs) through `inner`.
    pub fn new(inner: S, endpoint: Uri) -> Self {
        let settings = Settings {
            endpoint,
            item_retries: 3,
            batch_attempts: 4,
            default_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(60),
            deadline: None,
            keys: true,
            max_reply_bytes: 64 << 20,
            budget: RetryBudget(Arc::new(TpsBudget::default())),
        };
        Self {
            inner,
            settings: Arc::new(settings),
            limit: Arc::new(AtomicUsize::new(DEFAULT_CLIENT_MAX_REQUESTS)),
        }
    }

    /// The inner HTTP client service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner HTTP client service, to change.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner HTTP client service, taken back.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn settings_mut(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }

    /// The most requests one batch request holds (default
    /// [`DEFAULT_CLIENT_MAX_REQUESTS`], 20; this crate's layer takes 100 by default).
    pub fn max_requests(mut self, max: usize) -> Self {
        self.limit = Arc::new(AtomicUsize::new(max.max(1)));
        self
    }

    /// The most bytes of one batch reply it reads (default 64 MiB); a longer reply is an
    /// error for its items (they ran: it is not sent again).
    pub fn max_reply_bytes(mut self, max: usize) -> Self {
        self.settings_mut().max_reply_bytes = max;
        self
    }

    /// How many times throttled items are sent again (default 3; 0: never).
    pub fn item_retries(mut self, retries: u32) -> Self {
        self.settings_mut().item_retries = retries;
        self
    }

    /// How many times one batch request is sent in all, retries with the same key
    /// included (default 4).
    pub fn batch_attempts(mut self, attempts: u32) -> Self {
        self.settings_mut().batch_attempts = attempts.max(1);
        self
    }

    /// The wait before resending throttled items that named no `Retry-After` (default
    /// 1 s), and the longest the client waits (default 60 s): a `Retry-After` asking
    /// for more ends the retries (the items keep the server's answer).
    pub fn waits(mut self, default: Duration, max: Duration) -> Self {
        let settings = self.settings_mut();
        settings.default_wait = default;
        settings.max_wait = max.max(default);
        self
    }

    /// The budget every retry draws on, across calls (tower's [`Budget`]): each call
    /// deposits, each retry (a round of throttled items, a batch request sent again)
    /// withdraws, and none starts when it is spent, so that a server in trouble sees
    /// retries stay a fraction of the traffic instead of multiplying it. Default: a
    /// [`TpsBudget`] of its own, shared by the client's clones (10 s window, 10 retries a
    /// second, plus 20% of calls); give one `Arc` to several clients to share it.
    pub fn retry_budget(mut self, budget: Arc<dyn Budget + Send + Sync>) -> Self {
        self.settings_mut().budget = RetryBudget(budget);
        self
    }

    /// No retry starts past this time after the batch was given (default: none; a
    /// `tower::timeout` layer around the client bounds the whole call).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.settings_mut().deadline = Some(deadline);
        self
    }

    /// Sends no `Idempotency-Key`: for servers that refuse one, or ignore it (Microsoft
    /// Graph). A batch request whose answer was lost (a reset, `502`, `504`) is then sent
    /// again only when every item in it may be repeated (`GET`, `HEAD`, `PUT`, `DELETE`,
    /// `OPTIONS`); busy answers (`429`, `503`: nothing ran) are still retried.
    pub fn no_idempotency_keys(mut self) -> Self {
        self.settings_mut().keys = false;
        self
    }
}

impl<S, B> Service<Batch> for BatchClient<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<crate::BoxError> + Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<crate::BoxError> + Send,
{
    type Response = Responses;
    type Error = ClientError;
    type Future = BoxFuture<'static, Result<Responses, ClientError>>;

    /// Always ready: each batch request drives a clone of the inner service to readiness.
    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        let (inner, settings, limit) = (
            self.inner.clone(),
            self.settings.clone(),
            self.limit.clone(),
        );
        let span =
            tracing::info_span!("batch_client", items = batch.len(), endpoint = %settings.endpoint);
        Box::pin(async move { run::run(inner, &settings, &limit, batch).await }.instrument(span))
    }
}

/// A [`tower::Layer`] that makes a [`BatchClient`] of an HTTP client service, for
/// `ServiceBuilder` stacks: `ServiceBuilder::new().layer(BatchClientLayer::new(endpoint))
/// .service(http)`. Configure it as the client (`max_requests`, …) through
/// [`BatchClientLayer::configure`].
#[derive(Clone)]
pub struct BatchClientLayer {
    endpoint: Uri,
    configure: Arc<dyn Fn(BatchClient<()>) -> BatchClient<()> + Send + Sync>,
}

impl std::fmt::Debug for BatchClientLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchClientLayer")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl BatchClientLayer {
    /// Clients sending batches to `endpoint`, with the defaults.
    pub fn new(endpoint: Uri) -> Self {
        Self {
            endpoint,
            configure: Arc::new(|client| client),
        }
    }

    /// Clients configured by `configure` (`|c| c.max_requests(100).item_retries(5)`).
    pub fn configure<F>(mut self, configure: F) -> Self
    where
        F: Fn(BatchClient<()>) -> BatchClient<()> + Send + Sync + 'static,
    {
        self.configure = Arc::new(configure);
        self
    }
}

impl<S> tower::Layer<S> for BatchClientLayer {
    type Service = BatchClient<S>;

    fn layer(&self, inner: S) -> BatchClient<S> {
        let configured = (self.configure)(BatchClient::new((), self.endpoint.clone()));
        BatchClient {
            inner,
            settings: configured.settings,
            limit: configured.limit,
        }
    }
}

/// A fresh `Idempotency-Key`: 32 hex digits no other client picks.
pub(crate) fn new_key() -> String {
    crate::batch::id::random_hex()
}
