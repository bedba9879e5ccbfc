//! The batch's span: opened when a request reaches a batch endpoint, as a child of the span
//! current then (a `TraceLayer` outside shows the tree), and given the format, the item
//! count and, when the run ends, the counts per status class and the duration. Each
//! sub-request's span is its child (`engine/trace.rs`).

use crate::batch::summary::Summary;
use tokio::time::Instant;
use tracing::{field::Empty, Span};

/// The span of one batch, and when it started (`None` when no subscriber wants the span).
#[derive(Debug, Clone)]
pub(crate) struct BatchTrace {
    span: Span,
    started: Option<Instant>,
}

/// The count fields, by status class.
const COUNTS: [&str; 5] = [
    "batch.status_1xx",
    "batch.status_2xx",
    "batch.status_3xx",
    "batch.status_4xx",
    "batch.status_5xx",
];

impl BatchTrace {
    /// Opens the span of a batch sent to `path`.
    pub(crate) fn open(path: &str) -> Self {
        let span = tracing::debug_span!(
            target: "tower_http_batch",
            "batch",
            url.path = path,
            batch.format = Empty,
            batch.size = Empty,
            batch.status_1xx = Empty,
            batch.status_2xx = Empty,
            batch.status_3xx = Empty,
            batch.status_4xx = Empty,
            batch.status_5xx = Empty,
            batch.cut_short = Empty,
            duration_ms = Empty,
        );
        let started = (!span.is_disabled()).then(Instant::now);
        Self { span, started }
    }

    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Whether a subscriber wants the span: its sub-requests then have spans too.
    pub(crate) fn is_enabled(&self) -> bool {
        self.started.is_some()
    }

    /// The codec that reads it is chosen.
    pub(crate) fn format(&self, name: &'static str) {
        self.span.record("batch.format", name);
    }

    /// It decoded into `items` sub-requests.
    pub(crate) fn size(&self, items: usize) {
        self.span.record("batch.size", items);
    }

    /// Its run ended.
    pub(crate) fn finished(&self, summary: &Summary) {
        let Some(started) = self.started else {
            return;
        };
        for (field, &count) in COUNTS.iter().zip(&summary.by_class) {
            if count > 0 {
                self.span.record(*field, count);
            }
        }
        if let Some(cut) = summary.cut_short {
            self.span.record("batch.cut_short", cut.as_str());
        }
        self.span.record("duration_ms", millis(started));
        tracing::debug!(target: "tower_http_batch", parent: &self.span, "batch finished");
    }
}

/// Milliseconds since `started`, to the microsecond (spans print them as they are).
pub(crate) fn millis(started: Instant) -> f64 {
    (started.elapsed().as_micros() as f64) / 1e3
}
