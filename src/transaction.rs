//! [`TransactionHook`]: how an application's storage takes part in atomic batches.

use crate::BoxError;
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use http::request::Parts;
use http::Extensions;
use std::future::Future;
use std::sync::Arc;

/// The application's side of atomic batches: begin a transaction, then commit or roll it
/// back.
///
/// The layer cannot make HTTP calls atomic by itself: the handlers' storage has to take
/// part. An application that offers atomic batches implements [`TransactionHook`] and
/// hands it to [`BatchLayer::transactions`](crate::BatchLayer::transactions). For each
/// atomic group the layer then
///
/// 1. calls [`begin`](TransactionHook::begin) with the outer request's parts (its headers
///    and the extensions an auth layer put there), which returns a *handle*;
/// 2. puts a clone of the handle into the extensions of every sub-request of the group, and
///    runs them one after another. Handlers that find a handle use it (with axum:
///    `Option<Extension<Handle>>`) instead of their usual connection;
/// 3. calls [`commit`](TransactionHook::commit) when every member succeeded (status below
///    400), or [`rollback`](TransactionHook::rollback) as soon as one failed.
///
/// Each call is bounded by the layer's per-sub-request
/// [`timeout`](crate::BatchLayer::timeout). A commit that does not return in time leaves
/// its members reporting `504`: whether it took effect is unknown. When the batch's
/// deadline passes while a commit or rollback is in flight, the layer waits for it (within
/// that bound, or without one within one more `batch_timeout`) and reports what it
/// returned. When the batch is dropped while a transaction
/// is open (the client went away, or the deadline passed between members), the handle is
/// dropped without either call: make the handle roll back on drop, as
/// `rusqlite::Transaction` and `sqlx::Transaction` do. A `commit` or `rollback` already
/// called runs on a task of its own and is let finish, client or not (within `timeout`,
/// or without one three times `batch_timeout`).
///
/// ```
/// use axum::{http::StatusCode, routing::{get, post}, Extension, Json, Router};
/// use serde_json::{json, Value};
/// use std::sync::{Arc, Mutex};
/// use tower_http_batch::{BatchLayer, TransactionHook};
/// # use tower::ServiceExt;
/// # async fn send(app: tower_http_batch::BatchRouter, body: Value) -> Value {
/// #     let req = http::Request::post("/batch").header("content-type", "application/json")
/// #         .body(axum::body::Body::from(body.to_string())).unwrap();
/// #     let res = app.oneshot(req).await.unwrap();
/// #     let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
/// #     serde_json::from_slice(&bytes).unwrap()
/// # }
///
/// /// A toy store: a transaction is a copy of the data that becomes the data on commit.
/// #[derive(Clone, Default)]
/// struct Store(Arc<Mutex<Vec<String>>>);
///
/// #[derive(Clone)]
/// struct Tx(Arc<Mutex<Vec<String>>>);
///
/// impl TransactionHook for Store {
///     type Handle = Tx;
///     type Error = std::convert::Infallible;
///
///     async fn begin(&self, _outer: &http::request::Parts) -> Result<Tx, Self::Error> {
///         Ok(Tx(Arc::new(Mutex::new(self.0.lock().unwrap().clone()))))
///     }
///     async fn commit(&self, tx: Tx) -> Result<(), Self::Error> {
///         *self.0.lock().unwrap() = tx.0.lock().unwrap().clone();
///         Ok(())
///     }
///     async fn rollback(&self, _tx: Tx) -> Result<(), Self::Error> {
///         Ok(()) // the copy is dropped
///     }
/// }
///
/// /// A handler that writes inside the batch's transaction when there is one.
/// async fn add(store: Extension<Store>, tx: Option<Extension<Tx>>, Json(name): Json<String>) -> StatusCode {
///     if name.is_empty() {
///         return StatusCode::UNPROCESSABLE_ENTITY;
///     }
///     let names = match &tx {
///         Some(Extension(tx)) => &tx.0,
///         None => &store.0 .0,
///     };
///     names.lock().unwrap().push(name);
///     StatusCode::CREATED
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = Store::default();
/// let router = Router::new().route("/names", post(add)).layer(Extension(store.clone()));
/// let app = BatchLayer::new("/batch").transactions(store.clone()).layer_router(router);
///
/// let reply = send(app, json!({"atomic": true, "requests": [
///     {"method": "POST", "url": "/names", "body": "ada"},
///     {"method": "POST", "url": "/names", "body": ""},
/// ]})).await;
/// // The second failed: the first was rolled back, and the store is as it was.
/// assert_eq!(reply["responses"][0]["status"], 424);
/// assert_eq!(reply["responses"][1]["status"], 422);
/// assert!(store.0.lock().unwrap().is_empty());
/// # }
/// ```
pub trait TransactionHook: Send + Sync + 'static {
    /// What handlers use to reach the transaction; a clone goes into the extensions of
    /// every sub-request of the atomic group.
    type Handle: Clone + Send + Sync + 'static;
    /// Why a transaction could not begin, commit or roll back.
    type Error: Into<Box<dyn std::error::Error + Send + Sync>>;

    /// Begins a transaction for one atomic group. `outer` is the batch request (its
    /// method, URI, headers and extensions; the body has been read).
    ///
    /// When it fails, no member of the group is sent; each reports `503`.
    fn begin(
        &self,
        outer: &Parts,
    ) -> impl Future<Output = Result<Self::Handle, Self::Error>> + Send;

    /// Makes the group's work permanent; called once every member has succeeded. When it
    /// fails, every member reports `500`: none of their effects can be relied on.
    fn commit(&self, handle: Self::Handle) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Undoes the group's work; called as soon as a member has failed.
    fn rollback(
        &self,
        handle: Self::Handle,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The application's [`TransactionHook`] with its types erased, as the layer's
/// configuration holds it.
#[derive(Clone)]
pub(crate) struct Hook(Arc<dyn DynHook>);

impl Hook {
    pub(crate) fn new<H: TransactionHook>(hook: H) -> Self {
        Self(Arc::new(Erased(Arc::new(hook))))
    }

    /// Begins a transaction for one atomic group.
    pub(crate) fn begin<'a>(
        &'a self,
        outer: &'a Parts,
    ) -> BoxFuture<'a, Result<Box<dyn OpenTx>, BoxError>> {
        self.0.begin(outer)
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransactionHook")
    }
}

trait DynHook: Send + Sync {
    fn begin<'a>(&'a self, outer: &'a Parts) -> BoxFuture<'a, Result<Box<dyn OpenTx>, BoxError>>;
}

/// One open transaction.
pub(crate) trait OpenTx: Send {
    /// Puts a clone of the handle into a sub-request's extensions.
    fn insert_into(&self, extensions: &mut Extensions);
    /// Commits (`true`) or rolls back (`false`).
    fn finish(self: Box<Self>, commit: bool) -> BoxFuture<'static, Result<(), BoxError>>;
}

struct Erased<H>(Arc<H>);

struct Open<H: TransactionHook> {
    hook: Arc<H>,
    handle: H::Handle,
}

impl<H: TransactionHook> DynHook for Erased<H> {
    fn begin<'a>(&'a self, outer: &'a Parts) -> BoxFuture<'a, Result<Box<dyn OpenTx>, BoxError>> {
        let hook = self.0.clone();
        async move {
            let handle = self.0.begin(outer).await.map_err(Into::into)?;
            Ok(Box::new(Open { hook, handle }) as Box<dyn OpenTx>)
        }
        .boxed()
    }
}

impl<H: TransactionHook> OpenTx for Open<H> {
    fn insert_into(&self, extensions: &mut Extensions) {
        extensions.insert(self.handle.clone());
    }

    fn finish(self: Box<Self>, commit: bool) -> BoxFuture<'static, Result<(), BoxError>> {
        let Open { hook, handle } = *self;
        async move {
            if commit {
                hook.commit(handle).await.map_err(Into::into)
            } else {
                hook.rollback(handle).await.map_err(Into::into)
            }
        }
        .boxed()
    }
}
