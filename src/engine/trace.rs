//! One sub-request's span: opened when the schedule starts the item (or, for an item that
//! never started, when its outcome is written), entered while its call runs, and closed
//! with its status and latency when its outcome is handed to the reply. Field names follow
//! OpenTelemetry's HTTP conventions where one fits.
//!
//! Items have spans only when their batch has one (a subscriber wants `tower_http_batch`
//! spans at `DEBUG`): otherwise nothing here runs, not even a disabled span's bookkeeping,
//! which with tracing's `log` feature costs more than the rest of a sub-request's.

use crate::batch::outcome::Outcome;
use crate::batch::plan::PlanItem;
use crate::trace::millis;
use tokio::time::Instant;
use tracing::{field::Empty, Span};

/// The span of one item, and when its call started and ended.
#[derive(Debug)]
pub(super) struct ItemTrace {
    span: Span,
    started: Instant,
    latency_ms: Option<f64>,
}

impl ItemTrace {
    /// The item starts (it may yet turn out not to be sent): its span opens, a child of the
    /// span current when the engine runs (the batch's).
    pub(super) fn start(index: usize, id: &str, item: &PlanItem) -> Box<Self> {
        Box::new(Self {
            span: open(index, id, item),
            started: Instant::now(),
            latency_ms: None,
        })
    }

    /// The span to enter while the item's call runs.
    pub(super) fn span(&self) -> Span {
        self.span.clone()
    }

    /// The item's call returned.
    pub(super) fn finished(&mut self) {
        self.latency_ms = Some(millis(self.started));
    }

    /// The item's outcome is written: its span records it and closes. Without `trace`,
    /// the item never started: its span opens now, from `item`.
    pub(super) fn close(
        trace: Option<Box<Self>>,
        index: usize,
        item: Option<&PlanItem>,
        outcome: &Outcome,
    ) {
        let (span, latency_ms) = match (trace, item) {
            (Some(trace), _) => (trace.span, trace.latency_ms),
            (None, Some(item)) => (open(index, &outcome.id, item), None),
            (None, None) => return,
        };
        span.record("http.response.status_code", outcome.status.as_u16());
        if let Some(ms) = latency_ms {
            span.record("latency_ms", ms);
        }
        match &outcome.answered {
            None => {
                tracing::debug!(target: "tower_http_batch", parent: &span, "sub-request finished")
            }
            Some(answered) => {
                span.record("error.type", answered.title);
                span.record("batch.item.reason", answered.detail.as_str());
                tracing::debug!(target: "tower_http_batch", parent: &span, "sub-request answered by the batch layer");
            }
        }
    }
}

fn open(index: usize, id: &str, item: &PlanItem) -> Span {
    tracing::debug_span!(
        target: "tower_http_batch",
        "subrequest",
        batch.item.index = index,
        batch.item.id = id,
        http.request.method = item.method.as_str(),
        url.path = item.uri.path(),
        http.response.status_code = Empty,
        latency_ms = Empty,
        error.type = Empty,
        batch.item.reason = Empty,
    )
}
