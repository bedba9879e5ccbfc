//! What an item reports when the layer answers in its service's place: each failure's
//! status, title (a fixed text: what kind of failure) and detail (why, for this item, with
//! the setting that decided it). One place for every such text, so that they read alike
//! and the engine states only when each applies.

use super::outcome::Outcome;
use http::StatusCode;
use std::fmt::Display;
use std::time::Duration;

/// The sub-request had no complete response within the per-sub-request timeout.
pub(crate) fn timed_out(limit: Duration) -> Outcome {
    let why =
        format!("no complete response within {limit:?} (the layer's per-sub-request timeout)");
    Outcome::problem(StatusCode::GATEWAY_TIMEOUT, "Sub-request timed out", why)
}

/// The wrapped service returned an error.
pub(crate) fn service_failed(e: &dyn Display) -> Outcome {
    Outcome::problem(
        StatusCode::BAD_GATEWAY,
        "Service error",
        format!("the service failed: {e}"),
    )
}

/// The response's body failed while it was read.
pub(crate) fn body_failed(status: StatusCode, e: &dyn Display) -> Outcome {
    let status = status.as_u16();
    let why = format!("the response (status {status}) failed while its body was read: {e}");
    Outcome::problem(StatusCode::BAD_GATEWAY, "Response body error", why)
}

/// Why a response's body is left out: it is larger than the per-item limit.
pub(crate) fn body_too_large(limit: usize) -> String {
    format!("the response body is larger than the per-item limit of {limit} bytes (max_item_response_bytes)")
}

/// The handler panicked.
pub(crate) fn panicked() -> Outcome {
    let why = "the handler panicked while answering this sub-request".into();
    Outcome::problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Sub-request panicked",
        why,
    )
}

/// The sub-request's task was cancelled by the runtime (it is shutting down).
pub(crate) fn cancelled() -> Outcome {
    let why = "the server cancelled this sub-request (it is shutting down)".into();
    Outcome::problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sub-request cancelled",
        why,
    )
}

/// The item was not sent: the store of keyed batches could not record that it would be.
pub(crate) fn not_recorded(e: &dyn Display) -> Outcome {
    let why = format!("not sent: the idempotency store could not record it: {e}");
    Outcome::problem(StatusCode::SERVICE_UNAVAILABLE, "Not recorded", why)
}

/// The item's batch job was cancelled (`DELETE` on its status monitor) before it started.
pub(crate) fn job_cancelled() -> Outcome {
    let why = "not sent: the batch job was cancelled (DELETE on its status monitor) before this item started".to_string();
    Outcome::problem(StatusCode::FAILED_DEPENDENCY, "Job cancelled", why)
}

/// The item's batch job stopped (the process running it ended) before the item was sent.
pub(crate) fn job_stopped() -> Outcome {
    let why = "not sent: the batch job stopped (the server running it stopped) before this item started; send it again".to_string();
    Outcome::problem(StatusCode::SERVICE_UNAVAILABLE, "Job stopped", why)
}

/// An earlier run of this keyed batch sent the item and did not record its outcome, and
/// sending it again is not safe (its method is not idempotent): whether it took effect
/// is unknown.
pub(crate) fn outcome_unknown() -> Outcome {
    let why = "not sent again: an earlier run of this batch (same Idempotency-Key) sent it and did not record its outcome, so whether it took effect is unknown; check the resource before sending it again under a new key".to_string();
    Outcome::problem(StatusCode::CONFLICT, "Outcome unknown", why)
}

/// The item was not sent, because `why` (a reference that found nothing, …).
pub(crate) fn not_sent(why: String) -> Outcome {
    Outcome::problem(StatusCode::FAILED_DEPENDENCY, "Failed dependency", why)
}

/// The item was not sent: dependency `d`, whose id is `id`, failed (with `dep`) or never
/// ran (`None`).
pub(crate) fn failed_dependency(d: usize, id: &str, dep: Option<&Outcome>) -> Outcome {
    not_sent(match dep {
        Some(o) if o.status == StatusCode::FAILED_DEPENDENCY => format!(
            "not sent: request {id:?} (index {d}), which it depends on, did not take effect (it was not sent, or was rolled back)"
        ),
        Some(o) => format!(
            "not sent: request {id:?} (index {d}), which it depends on, failed with status {}",
            o.status.as_u16()
        ),
        None => format!("not sent: request at index {d}, which it depends on, did not run"),
    })
}

/// What the item would reach is not reachable from a batch, because `why`.
pub(crate) fn unreachable(why: String) -> Outcome {
    Outcome::problem(StatusCode::FORBIDDEN, "Not reachable from a batch", why)
}

/// The item was in flight when the batch's deadline passed.
pub(crate) fn batch_timed_out(limit: Duration) -> Outcome {
    let why = format!("did not finish within the batch's deadline of {limit:?} (batch_timeout)");
    Outcome::problem(StatusCode::GATEWAY_TIMEOUT, "Batch timed out", why)
}

/// The batch's deadline passed before the item could start.
pub(crate) fn not_started(limit: Duration) -> Outcome {
    let why = format!(
        "not sent: the batch's deadline of {limit:?} (batch_timeout) passed before it could start"
    );
    Outcome::problem(StatusCode::FAILED_DEPENDENCY, "Not sent", why)
}

/// A member of an atomic group that finished, whose open transaction the batch's
/// deadline dropped.
pub(crate) fn group_timed_out(limit: Duration) -> Outcome {
    let why = format!("rolled back: its atomic group did not finish within the batch's deadline of {limit:?} (batch_timeout)");
    Outcome::problem(StatusCode::GATEWAY_TIMEOUT, "Batch timed out", why)
}

/// The transaction of atomic group `group` could not begin (none of it was sent).
pub(crate) fn not_begun(group: &str, e: &dyn Display) -> Outcome {
    let why = format!("not sent: the transaction for atomic group {group:?} could not begin: {e}");
    Outcome::problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "Transaction not started",
        why,
    )
}

/// The commit of atomic group `group` failed.
pub(crate) fn commit_failed(group: &str, e: &dyn Display) -> Outcome {
    let why = format!("the transaction of atomic group {group:?} could not be committed: {e}");
    Outcome::problem(StatusCode::INTERNAL_SERVER_ERROR, "Transaction failed", why)
}

/// The commit of atomic group `group` did not finish within `limit`: whether it took
/// effect is unknown.
pub(crate) fn commit_timed_out(group: &str, limit: Duration) -> Outcome {
    let why = format!("the commit of atomic group {group:?} did not finish within {limit:?} (the layer's per-sub-request timeout): whether it took effect is unknown");
    Outcome::problem(
        StatusCode::GATEWAY_TIMEOUT,
        "Transaction outcome unknown",
        why,
    )
}

/// A member of a group rolled back because of `culprit`: it ran `before` the culprit, or
/// was never sent; `rollback_error` when the rollback itself failed.
pub(crate) fn rolled_back(
    culprit: &str,
    rollback_error: Option<&dyn Display>,
    before: bool,
) -> Outcome {
    match rollback_error {
        Some(e) => Outcome::problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Rollback failed",
            format!("{culprit}, and the transaction could not be rolled back: {e}"),
        ),
        None if before => Outcome::problem(
            StatusCode::FAILED_DEPENDENCY,
            "Rolled back",
            format!("rolled back: {culprit}"),
        ),
        None => Outcome::problem(
            StatusCode::FAILED_DEPENDENCY,
            "Not sent",
            format!("not sent: {culprit}, and the group was rolled back"),
        ),
    }
}
