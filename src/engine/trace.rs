//! One sub-request's span: opened when the schedule starts the item (or, for an item that
//! never started, when its outcome is written), entered while its call runs, and closed
//! with its status and latency when its outcome is handed to the reply. Field names follow
//! OpenTelemetry's HTTP conventions where one fits.
//!
//! With no subscriber interested, a span is disabled at the cost of one callsite check, and
//! no clock is read.

use crate::batch::outcome::Outcome;
use crate::batch::plan::PlanItem;
use tokio::time::Instant;
use tracing::{field::Empty, Span};

/// The span of one item, and when its call started and ended.
#[derive(Debug, Default)]
pub(super) struct ItemTrace {
    span: Option<Span>,
    started: Option<Instant>,
    latency_ms: Option<f64>,
}

impl ItemTrace {
    /// The item starts (it may yet turn out not to be sent): its span opens, a child of the
    /// span current when the engine runs (the batch's).
    pub(super) fn start(&mut self, index: usize, id: &str, item: &PlanItem) {
        let span = open(index, id, item);
        if !span.is_disabled() {
            self.started = Some(Instant::now());
        }
        self.span = Some(span);
    }

    /// The span to enter while the item's call runs.
    pub(super) fn span(&self) -> Span {
        self.span.clone().unwrap_or_else(Span::none)
    }

    /// The item's call returned.
    pub(super) fn finished(&mut self) {
        if let Some(started) = self.started.take() {
            self.latency_ms = Some(started.elapsed().as_secs_f64() * 1e3);
        }
    }

    /// The item's outcome is written: its span records it and closes. `item` is there when
    /// the item never started (its span opens now).
    pub(super) fn close(&mut self, index: usize, item: Option<&PlanItem>, outcome: &Outcome) {
        let span = match (self.span.take(), item) {
            (Some(span), _) => span,
            (None, Some(item)) => open(index, &outcome.id, item),
            (None, None) => return,
        };
        if span.is_disabled() {
            return;
        }
        span.record("http.response.status_code", outcome.status.as_u16());
        if let Some(ms) = self.latency_ms {
            span.record("latency_ms", ms);
        }
        match &outcome.answered {
            None => tracing::debug!(parent: &span, "sub-request finished"),
            Some(answered) => {
                span.record("error.type", answered.title);
                span.record("batch.item.reason", answered.detail.as_str());
                tracing::debug!(parent: &span, "sub-request answered by the batch layer");
            }
        }
    }
}

fn open(index: usize, id: &str, item: &PlanItem) -> Span {
    tracing::debug_span!(
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
