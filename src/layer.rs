//! [`BatchLayer`]: the configuration of the batch endpoints, and the builder for it.

use crate::service::Batch;
use crate::transaction::{DynHook, TransactionHook};
use http::HeaderName;
use std::sync::Arc;
use std::time::Duration;
use tower_layer::Layer;

/// Default for [`BatchLayer::max_requests`]: 100 sub-requests.
pub const DEFAULT_MAX_REQUESTS: usize = 100;
/// Default for [`BatchLayer::max_body_bytes`]: 2 MiB, as axum's default body limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Default for [`BatchLayer::max_item_response_bytes`]: 1 MiB.
pub const DEFAULT_MAX_ITEM_RESPONSE_BYTES: usize = 1024 * 1024;
/// Default for [`BatchLayer::max_response_bytes`]: 16 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
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
///     .timeout(Some(Duration::from_secs(5)));
/// # let _ = layer;
/// ```
///
/// The builder is cheap to clone: the configuration is shared behind an `Arc`.
#[derive(Clone, Debug)]
pub struct BatchLayer {
    pub(crate) config: Arc<Config>,
}

/// The layer's settings; see the builder methods of [`BatchLayer`] for each.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) endpoints: Vec<Endpoint>,
    /// `paths` in the form nested-batch checks compare with (see `plan::canonical`).
    pub(crate) canonical_paths: Vec<String>,
    pub(crate) max_requests: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_item_response_bytes: usize,
    pub(crate) max_response_bytes: usize,
    pub(crate) timeout: Option<Duration>,
    pub(crate) concurrency: usize,
    pub(crate) batch_timeout: Option<Duration>,
    pub(crate) identity_headers: Vec<HeaderName>,
    pub(crate) inherit_headers: Vec<HeaderName>,
    pub(crate) transactions: Option<Hook>,
}

/// The application's [`TransactionHook`], type-erased.
#[derive(Clone)]
pub(crate) struct Hook(pub(crate) Arc<dyn DynHook>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransactionHook")
    }
}

/// One batch endpoint: where it is, and which wire format it speaks.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(crate) path: String,
    pub(crate) format: Format,
}

/// The wire formats.
#[derive(Clone, Debug)]
pub(crate) enum Format {
    /// OData 4.01 / Microsoft Graph JSON batch.
    Json,
    /// SugarCRM bulk; sub-URLs resolve under `base`.
    Bulk { base: String },
    /// Resource bulk (`POST`/`PATCH`/`DELETE /users/batch`) for one collection.
    Resource(Arc<Resource>),
}

/// Default for [`Resource::max_items`]: 1000 items.
pub const DEFAULT_MAX_ITEMS: usize = 1000;
/// Default for [`Resource::chunk_size`]: 100 items.
pub const DEFAULT_CHUNK_SIZE: usize = 100;

/// A collection that gets bulk endpoints at `{path}/batch`; see [`BatchLayer::resource`].
///
/// ```
/// use tower_http_batch::{BatchLayer, Resource};
///
/// let layer = BatchLayer::new("/batch")
///     .resource("/users")
///     .resource(Resource::new("/orders").max_items(200).list_key("data"));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct Resource {
    pub(crate) path: String,
    pub(crate) name: String,
    pub(crate) id_field: String,
    pub(crate) list_key: Option<String>,
    pub(crate) max_items: usize,
    pub(crate) chunk_size: usize,
}

impl Resource {
    /// The collection at `path` (`"/users"`): items are created with `POST {path}` and
    /// updated and deleted at `{path}/{id}`. Its name, the key of the array in a bulk
    /// create (`{"users": [...]}`), is the last segment of `path`.
    ///
    /// # Panics
    ///
    /// When `path` does not start with `/`, ends with `/`, holds a query or is not a
    /// valid URI path.
    pub fn new(path: impl Into<String>) -> Self {
        let path = path.into();
        check_path(&path);
        assert!(
            path.len() > 1 && !path.ends_with('/'),
            "tower-http-batch: a resource path names a collection, like \"/users\": {path:?}"
        );
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        Self {
            path,
            name,
            id_field: "id".into(),
            list_key: None,
            max_items: DEFAULT_MAX_ITEMS,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }

    /// The key of the array in a bulk create (default: the last segment of the path).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The field that holds an item's id: in bulk updates, and in the listing a delete by
    /// filters reads (default `"id"`).
    pub fn id_field(mut self, field: impl Into<String>) -> Self {
        self.id_field = field.into();
        self
    }

    /// Where the listing `GET {path}?filters` keeps its array when it is an object
    /// (`{"data": [...]}`). By default the listing is the array itself, or the array
    /// under the collection's name.
    pub fn list_key(mut self, key: impl Into<String>) -> Self {
        self.list_key = Some(key.into());
        self
    }

    /// The most items one bulk request may hold, or a delete by filters may match
    /// (default [`DEFAULT_MAX_ITEMS`], 1000). More is refused whole with `400`, and
    /// nothing runs.
    pub fn max_items(mut self, max: usize) -> Self {
        self.max_items = max;
        self
    }

    /// Items run in chunks of this many (default [`DEFAULT_CHUNK_SIZE`], 100): a chunk
    /// starts when the one before has finished, and runs with the layer's
    /// [`concurrency`](BatchLayer::concurrency). `0` is taken as 1.
    pub fn chunk_size(mut self, size: usize) -> Self {
        self.chunk_size = size.max(1);
        self
    }
}

impl From<&str> for Resource {
    fn from(path: &str) -> Self {
        Self::new(path)
    }
}

impl From<String> for Resource {
    fn from(path: String) -> Self {
        Self::new(path)
    }
}

impl Config {
    /// The index of the batch endpoint at the outer request's path, if it is one.
    #[inline]
    pub(crate) fn endpoint(&self, path: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| e.path == path)
    }

    fn add(&mut self, path: String, format: Format) {
        check_path(&path);
        self.canonical_paths.push(crate::plan::canonical(&path));
        self.endpoints.push(Endpoint { path, format });
    }
}

fn check_path(path: &str) {
    assert!(
        path.starts_with('/')
            && path.parse::<http::uri::PathAndQuery>().is_ok()
            && !path.contains('?'),
        "tower-http-batch: a batch path must be a path starting with `/`, without query: {path:?}"
    );
}

impl BatchLayer {
    /// A layer with one batch endpoint at `path` (e.g. `"/batch"` or `"/$batch"`) and the
    /// documented defaults for every limit.
    ///
    /// # Panics
    ///
    /// When `path` does not start with `/`, holds a query or is not a valid URI path.
    pub fn new(path: impl Into<String>) -> Self {
        Self::with_endpoint(path.into(), Format::Json)
    }

    /// A layer with one SugarCRM-style bulk endpoint at `path` and no JSON batch endpoint;
    /// see [`BatchLayer::bulk`].
    ///
    /// # Panics
    ///
    /// As [`BatchLayer::new`].
    pub fn new_bulk(path: impl Into<String>, base: impl Into<String>) -> Self {
        Self::with_endpoint(path.into(), Format::Bulk { base: base.into() })
    }

    /// The documented defaults, with one endpoint.
    fn with_endpoint(path: String, format: Format) -> Self {
        let mut config = Config {
            canonical_paths: Vec::new(),
            endpoints: Vec::new(),
            max_requests: DEFAULT_MAX_REQUESTS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_item_response_bytes: DEFAULT_MAX_ITEM_RESPONSE_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            timeout: Some(DEFAULT_TIMEOUT),
            concurrency: 1,
            batch_timeout: None,
            identity_headers: Vec::new(),
            inherit_headers: Vec::new(),
            transactions: None,
        };
        config.add(path, format);
        Self {
            config: Arc::new(config),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Adds another path that serves the same batch endpoint. Paths match exactly.
    ///
    /// # Panics
    ///
    /// As [`BatchLayer::new`].
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config_mut().add(path.into(), Format::Json);
        self
    }

    /// Adds a bulk endpoint in SugarCRM's format (`POST /rest/v10/bulk`): `{"requests":
    /// [{"url", "method", "data", "headers"}]}` in, a bare array of `{"contents",
    /// "headers", "status"}` out. Sub-URLs start with the API version (`/v10/Accounts`) and
    /// resolve under `base` (`/rest`). Items run in order; a failure does not stop the rest.
    /// Every limit, validation and identity rule of the layer applies.
    ///
    /// ```
    /// use tower_http_batch::BatchLayer;
    ///
    /// let layer = BatchLayer::new("/batch").bulk("/rest/v10/bulk", "/rest");
    /// # let _ = layer;
    /// ```
    ///
    /// # Panics
    ///
    /// As [`BatchLayer::new`].
    pub fn bulk(mut self, path: impl Into<String>, base: impl Into<String>) -> Self {
        self.config_mut()
            .add(path.into(), Format::Bulk { base: base.into() });
        self
    }

    /// Gives a collection bulk endpoints at `{path}/batch` (seed 000), with no handler to
    /// write: `POST /users/batch` with `{"users": [...]}` creates each item with `POST
    /// /users`; `PATCH /users/batch` with `{"updates": [{"id": 42, ...}]}` sends `PATCH
    /// /users/42` with the rest of each item; `DELETE /users/batch` with `{"ids": [...]}`,
    /// or with `{"filters": {...}}` (read with `GET /users?filters` first), sends `DELETE
    /// /users/{id}` for each. A bare array works in place of the object.
    ///
    /// Replies carry per-item results: `success_count`, `error_count`, `created` or
    /// `succeeded`, `deleted_count`, `not_found_count` and `failed` (each with the
    /// handler's own message). The status is `201` (create) or `200` when every item
    /// succeeded, `207` when any failed. `"atomic": true` (or `?atomic=true`) runs all
    /// items in one transaction of the [`transactions`](Self::transactions) hook. See
    /// the README for every rule.
    ///
    /// # Panics
    ///
    /// As [`Resource::new`].
    pub fn resource(mut self, resource: impl Into<Resource>) -> Self {
        let resource = resource.into();
        let path = format!("{}/batch", resource.path);
        self.config_mut()
            .add(path, Format::Resource(Arc::new(resource)));
        self
    }

    /// Makes atomic batches possible: `"atomic": true` and OData's `atomicityGroup` in
    /// JSON batches, and `"atomic": true` in resource bulk requests. Each atomic group runs
    /// its members in order inside one transaction of `hook` (see [`TransactionHook`]):
    /// when one fails, the transaction is rolled back, the failing member keeps its own
    /// status and body, and the others report `424`. Without a hook, an atomic batch is
    /// refused with `400` before anything runs.
    pub fn transactions<H: TransactionHook>(mut self, hook: H) -> Self {
        self.config_mut().transactions = Some(Hook(crate::transaction::erase(hook)));
        self
    }

    /// The most sub-requests one batch may hold (default [`DEFAULT_MAX_REQUESTS`], 100).
    /// A longer batch is rejected whole with `400`, naming the count and the limit.
    pub fn max_requests(mut self, max: usize) -> Self {
        self.config_mut().max_requests = max;
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
        self.config_mut().max_item_response_bytes = max;
        self
    }

    /// The most bytes of sub-response bodies one reply carries in all (default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`], 16 MiB). Once it is reached the remaining items still
    /// run and report status and headers, with their bodies left out (`bodyOmitted`).
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.config_mut().max_response_bytes = max;
        self
    }

    /// How long one sub-request may take, response body included (default
    /// [`DEFAULT_TIMEOUT`], 30 s; `None` for no limit). One that takes longer is dropped
    /// and its item reports `504`; the others are kept.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config_mut().timeout = timeout;
        self
    }

    /// How long a whole batch may take (default `None`: no limit beyond the
    /// per-sub-request [`timeout`](Self::timeout)). When it passes, the sub-requests in
    /// flight are dropped and report `504`, those not started report `424`, and the reply
    /// comes back well formed.
    pub fn batch_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config_mut().batch_timeout = timeout;
        self
    }

    /// How many sub-requests of one batch may be in flight at once (default 1: one after
    /// another, in request order). Items that `dependsOn` others always wait for them;
    /// results are always in request order; a batch with `stop_on_error` runs one at a
    /// time whatever this says. `0` is taken as 1.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config_mut().concurrency = n.max(1);
        self
    }

    /// Treats one more header as identity, like `authorization` and `cookie`: sub-requests
    /// carry the outer request's values of it, and the same header written inside a
    /// sub-request is dropped. Use it for API-key headers such as `x-api-key`.
    pub fn identity_header(mut self, name: HeaderName) -> Self {
        self.config_mut().identity_headers.push(name);
        self
    }

    /// Copies one more outer header (e.g. `accept-language`, `x-request-id`) into every
    /// sub-request that does not set it itself. Identity and client-address headers are
    /// always inherited and need no call.
    pub fn inherit_header(mut self, name: HeaderName) -> Self {
        self.config_mut().inherit_headers.push(name);
        self
    }
}

impl<S> Layer<S> for BatchLayer {
    type Service = Batch<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Batch::new(inner, self.config.clone())
    }
}
