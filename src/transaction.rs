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
/// When the batch is dropped while a transaction is open (the client went away, or the
/// batch's deadline passed), the handle is dropped without either call; make the handle
/// roll back on drop, as `rusqlite::Transaction` and `sqlx::Transaction` do.
///
/// ```
/// use std::sync::Arc;
/// use tokio::sync::Mutex;
/// use tower_http_batch::{BatchLayer, TransactionHook};
///
/// /// A toy store: the handle is a copy of the data that becomes the data on commit.
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
///         Ok(Tx(Arc::new(Mutex::new(self.0.lock().await.clone()))))
///     }
///     async fn commit(&self, tx: Tx) -> Result<(), Self::Error> {
///         *self.0.lock().await = tx.0.lock().await.clone();
///         Ok(())
///     }
///     async fn rollback(&self, _tx: Tx) -> Result<(), Self::Error> {
///         Ok(())
///     }
/// }
///
/// let layer = BatchLayer::new("/batch").transactions(Store::default());
/// # let _ = layer;
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
