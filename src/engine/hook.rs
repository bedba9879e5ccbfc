//! The calls of the transaction hook a run makes: `begin`, and `end` (a commit or a
//! rollback), each within the per-sub-request timeout.

use super::group::TxError;
use super::{Done, Hold, RunOptions};
use crate::transaction::OpenTx;
use crate::BoxError;
use http::request::Parts;
use std::future::Future;
use std::time::Duration;
use tracing::Instrument as _;

/// A group's transaction begins, or cannot. A group of one request (`single`) needs no
/// transaction hook: one request is atomic on its own.
pub(super) async fn begin(g: usize, single: bool, outer: &Parts, opts: &RunOptions) -> Done {
    let began = match (&opts.transactions, single) {
        (Some(hook), _) => bounded(opts.timeout, hook.begin(outer)).await,
        (None, true) => Ok(Box::new(Alone) as Box<dyn OpenTx>),
        (None, false) => Err(TxError::Failed(
            "this server has no transaction hook".into(),
        )),
    };
    Done::Begun(g, began)
}

/// The "transaction" of a group of one request on a server without a hook: nothing to
/// hand the request, nothing to commit or roll back.
struct Alone;

impl OpenTx for Alone {
    fn insert_into(&self, _: &mut http::Extensions) {}

    fn finish(
        self: Box<Self>,
        _: bool,
    ) -> futures_util::future::BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A group's commit or rollback, on a task of its own: it finishes even when the batch is
/// dropped (its client went away), since one cut off half-way leaves data that no reply
/// describes. It holds `hold` (the batch's place) until it returns, so that commits left
/// to finish count against the bound on batches in flight. It is bounded by the
/// per-sub-request timeout, or without one by three times `batch_timeout` from its start
/// (later than the batch deadline's own bound, one more `batch_timeout` past the deadline,
/// so that bound reports first); with neither, by the hook.
pub(super) fn end(
    g: usize,
    tx: Box<dyn OpenTx>,
    commit: bool,
    opts: &RunOptions,
    hold: Hold,
) -> impl Future<Output = (usize, Result<(), TxError>)> + use<> {
    let call = bounded(opts.timeout, tx.finish(commit));
    let limit = opts.batch_timeout.filter(|_| opts.timeout.is_none());
    let limit = limit.map(|t| t.saturating_mul(3));
    let task = async move {
        // The batch's place stays taken until this returns.
        let _hold = hold;
        match limit {
            Some(limit) => tokio::time::timeout(limit, call)
                .await
                .unwrap_or(Err(TxError::TimedOut(limit))),
            None => call.await,
        }
    };
    // Spawned when first polled, not when made: the run yields between the last member
    // and this (see `run`), so a client that left before it is seen, and the handle is
    // dropped (rolled back) instead.
    async move {
        let task = tokio::spawn(task.in_current_span());
        let result = task.await.unwrap_or_else(|e| {
            let why = format!("the transaction hook's call ended without an answer: {e}");
            Err(TxError::Failed(why.into()))
        });
        (g, result)
    }
}

/// A call of the transaction hook, within the per-sub-request timeout.
async fn bounded<T>(
    timeout: Option<Duration>,
    call: impl Future<Output = Result<T, BoxError>>,
) -> Result<T, TxError> {
    match timeout {
        Some(t) => match tokio::time::timeout(t, call).await {
            Ok(result) => result.map_err(TxError::Failed),
            Err(_) => Err(TxError::TimedOut(t)),
        },
        None => call.await.map_err(TxError::Failed),
    }
}
