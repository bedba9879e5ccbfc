//! What whoever runs the layer sees of a batch: a span per batch with a child per
//! sub-request, under `TraceLayer`'s span when it is outside.
//!
//! The spans are captured by one global subscriber, and the tests take turns: tracing
//! caches, per callsite, whether any subscriber wants it, and thread-local subscribers
//! set and dropped by tests running side by side can leave that cache wrong.

mod common;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use common::Http;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::MutexGuard;
use tower_http::trace::TraceLayer;
use tower_http_batch::BatchLayer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// A span as a test sees it: its name, its parent's index, its fields.
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    parent: Option<usize>,
    fields: BTreeMap<String, String>,
}

/// An event: its message and the index of the span it happened in.
#[derive(Debug, Clone)]
struct Event {
    message: String,
    span: Option<usize>,
}

#[derive(Default)]
struct Captured {
    spans: Vec<Seen>,
    events: Vec<Event>,
    /// Span ids (which the registry reuses) to indices in `spans`.
    index: BTreeMap<u64, usize>,
}

/// Records every span and event; the test reads them after the batch.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Captured>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut c = self.0.lock().unwrap();
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.id().into_u64());
        let parent = parent.and_then(|p| c.index.get(&p).copied());
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let name = attrs.metadata().name().to_string();
        c.spans.push(Seen {
            name,
            parent,
            fields,
        });
        let i = c.spans.len() - 1;
        c.index.insert(id.into_u64(), i);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut c = self.0.lock().unwrap();
        if let Some(&i) = c.index.get(&id.into_u64()) {
            values.record(&mut Fields(&mut c.spans[i].fields));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut c = self.0.lock().unwrap();
        let span = ctx.event_span(event).map(|s| s.id().into_u64());
        let span = span.and_then(|s| c.index.get(&s).copied());
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        c.events.push(Event { message, span });
    }
}

/// The capture, emptied, and the turn of the test that calls it.
async fn capture() -> (Capture, MutexGuard<'static, ()>) {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    let turn = TURN.lock().await;
    let capture = CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::set_global_default(subscriber).unwrap();
        capture
    });
    *capture.0.lock().unwrap() = Captured::default();
    (capture.clone(), turn)
}

/// `/ok/{name}` logs an event and answers; `/missing` is a 404; `/hang` never answers.
fn router() -> Router {
    Router::new()
        .route(
            "/ok/{name}",
            get(|Path(name): Path<String>| async move {
                tracing::info!("handler for {name}");
                name
            }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/hang",
            get(std::future::pending::<&'static str>).post(std::future::pending::<&'static str>),
        )
}

// Paused time: the per-sub-request timeout passes once every task waits.
#[tokio::test(start_paused = true)]
async fn a_batch_span_has_a_child_per_sub_request_under_the_trace_layer() {
    let (capture, _turn) = capture().await;
    let batch_layer = BatchLayer::new("/batch").timeout(Duration::from_secs(1));
    // The batch app as a fallback: `Router::layer` then puts `TraceLayer` outside it.
    let app = Router::new()
        .fallback_service(batch_layer.layer_router(router()))
        .layer(TraceLayer::new_for_http());
    let http = Http::new(common::serve(app).await);
    let batch = json!({"requests": [
        {"id": "a", "url": "/ok/alice"},
        {"id": "b", "url": "/missing"},
        {"id": "c", "url": "/ok/carol", "dependsOn": ["b"]},
        {"id": "d", "method": "POST", "url": "/hang"},
        {"id": "e", "url": "/ok/{{a#/status}}", "dependsOn": ["a"]},
    ]});
    let statuses: Vec<_> = http
        .batch(&batch, &[])
        .await
        .items()
        .iter()
        .map(|i| i["status"].clone())
        .collect();
    assert_eq!(statuses, [200, 404, 424, 504, 200]);

    let c = capture.0.lock().unwrap();
    let named = |name: &'static str| {
        c.spans
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.name == name)
    };
    let (request, _) = named("request").next().expect("TraceLayer's span");
    let batches: Vec<_> = named("batch").collect();
    assert_eq!(batches.len(), 1);
    let (batch_at, batch) = batches[0];
    assert_eq!(
        batch.parent,
        Some(request),
        "under the span current at the call"
    );
    let f = &batch.fields;
    assert_eq!(f["url.path"], "/batch");
    assert_eq!(f["batch.format"], "json");
    assert_eq!(f["batch.size"], "5");
    assert_eq!(f["batch.status_2xx"], "2");
    assert_eq!(f["batch.status_4xx"], "2");
    assert_eq!(f["batch.status_5xx"], "1");
    assert!(f.contains_key("duration_ms"));
    assert!(!f.contains_key("batch.cut_short"));

    let items: Vec<_> = named("subrequest").collect();
    assert_eq!(items.len(), 5, "{items:?}");
    let item = |id: &str| {
        let (at, s) = items
            .iter()
            .find(|(_, s)| s.fields["batch.item.id"] == id)
            .unwrap();
        assert_eq!(s.parent, Some(batch_at), "{id} is a child of the batch");
        (*at, &s.fields)
    };
    let (a_at, a) = item("a");
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["url.path"], "/ok/alice");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(a["batch.item.index"], "0");
    assert!(a.contains_key("latency_ms"));
    assert!(!a.contains_key("error.type"));
    let handler = c.events.iter().find(|e| e.message == "handler for alice");
    assert_eq!(
        handler.unwrap().span,
        Some(a_at),
        "the handler runs in its item's span"
    );
    assert_eq!(item("b").1["http.response.status_code"], "404");
    let (_, not_sent) = item("c");
    assert_eq!(not_sent["http.response.status_code"], "424");
    assert_eq!(not_sent["error.type"], "Failed dependency");
    assert!(
        not_sent["batch.item.reason"].contains("not sent"),
        "{not_sent:?}"
    );
    assert!(!not_sent.contains_key("latency_ms"), "it never ran");
    let (_, timed_out) = item("d");
    assert_eq!(timed_out["http.request.method"], "POST");
    assert_eq!(timed_out["http.response.status_code"], "504");
    assert_eq!(timed_out["error.type"], "Sub-request timed out");
    assert!(timed_out["latency_ms"].parse::<f64>().unwrap() >= 1000.0);
    assert_eq!(item("e").1["url.path"], "/ok/200", "the path as sent");
}

#[tokio::test(start_paused = true)]
async fn the_batch_span_says_what_cut_it_short() {
    let (capture, _turn) = capture().await;
    let layer = BatchLayer::new("/batch").batch_timeout(Duration::from_secs(2));
    let http = Http::new(common::serve(layer.layer_router(router())).await);
    let batch = json!({"requests": [{"url": "/hang"}, {"url": "/ok/late"}]});
    let statuses: Vec<_> = http
        .batch(&batch, &[])
        .await
        .items()
        .iter()
        .map(|i| i["status"].clone())
        .collect();
    assert_eq!(statuses, [504, 424]);
    let c = capture.0.lock().unwrap();
    let batch = c.spans.iter().find(|s| s.name == "batch").unwrap();
    assert_eq!(batch.fields["batch.cut_short"], "batch_timeout");
    let late = c
        .spans
        .iter()
        .find(|s| s.fields.get("url.path").is_some_and(|p| p == "/ok/late"));
    let late = &late.expect("a span for the item that never started").fields;
    assert_eq!(late["http.response.status_code"], "424");
    assert!(late["batch.item.reason"].contains("batch_timeout"));
}

/// A job's run has the batch's span, with its id (`batch.job`), its counts once it ends,
/// and a child per sub-request; its monitor's span names it too.
#[tokio::test]
async fn a_jobs_batch_span_names_the_job() {
    let (capture, _turn) = capture().await;
    let http = Http::new(common::serve(BatchLayer::new("/batch").layer_router(router())).await);
    let batch = json!({"requests": [{"id": "a", "url": "/ok/alice"}]});
    let accepted = http.batch(&batch, &[("prefer", "respond-async")]).await;
    assert_eq!(accepted.status, 202);
    let monitor = accepted.headers["location"].to_str().unwrap().to_owned();
    let id = monitor.rsplit('/').next().unwrap().to_owned();
    common::jobs::finished(&http, &monitor, &[]).await;
    let c = capture.0.lock().unwrap();
    let jobs: Vec<_> = c
        .spans
        .iter()
        .enumerate()
        .filter(|(_, s)| s.name == "batch" && s.fields.get("batch.job") == Some(&id))
        .collect();
    assert!(
        jobs.len() >= 2,
        "the run's span and the monitor's: {jobs:?}"
    );
    let (run_at, run) = jobs[0];
    assert_eq!(run.fields["batch.status_2xx"], "1");
    let item = c
        .spans
        .iter()
        .find(|s| s.name == "subrequest")
        .expect("its item's span");
    assert_eq!(item.parent, Some(run_at));
}
