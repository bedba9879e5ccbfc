//! Spans. The batch's ([`BatchTrace`]): opened when a request reaches a batch endpoint, as
//! a child of the span current then (a `TraceLayer` outside shows the tree), and given the
//! format, the item count and, when the run ends, the counts per status class and the
//! duration. Each sub-request's ([`ItemTrace`]) is its child: opened when the schedule
//! starts the item (or, for an item that never started, when its outcome is written),
//! entered while its call runs, and closed with its status and latency when its outcome
//! is handed to the reply. Field names follow OpenTelemetry's HTTP conventions where one
//! fits.
//!
//! Items have spans only when their batch has one (a subscriber wants `tower_http_batch`
//! spans at `DEBUG`): otherwise nothing here runs, not even a disabled span's bookkeeping,
//! which with tracing's `log` feature costs more than the rest of a sub-request's.

use crate::batch::outcome::Outcome;
use crate::batch::plan::PlanItem;
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
            batch.job = Empty,
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

    /// It runs, or is read, as the batch job `id`.
    pub(crate) fn job(&self, id: &str) {
        self.span.record("batch.job", id);
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

/// The span of one item, and when its call started and ended.
#[derive(Debug)]
pub(crate) struct ItemTrace {
    span: Span,
    started: Instant,
    latency_ms: Option<f64>,
}

impl ItemTrace {
    /// The item starts (it may yet turn out not to be sent): its span opens, a child of the
    /// span current when the engine runs (the batch's).
    pub(crate) fn start(index: usize, id: &str, item: &PlanItem) -> Box<Self> {
        Box::new(Self {
            span: open(index, id, item),
            started: Instant::now(),
            latency_ms: None,
        })
    }

    /// The span to enter while the item's call runs.
    pub(crate) fn span(&self) -> Span {
        self.span.clone()
    }

    /// The item's call returned.
    pub(crate) fn finished(&mut self) {
        self.latency_ms = Some(millis(self.started));
    }

    /// The item's outcome is written: its span records it and closes. Without `trace`,
    /// the item never started: its span opens now, from `item`.
    pub(crate) fn close(
        trace: Option<Box<Self>>,
        index: usize,
        id: &str,
        item: Option<&PlanItem>,
        outcome: &Outcome,
    ) {
        let (span, latency_ms) = match (trace, item) {
            (Some(trace), _) => (trace.span, trace.latency_ms),
            (None, Some(item)) => (open(index, id, item), None),
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
