//! The reply of a resource bulk request. Its status depends on every item (`201`/`200`,
//! or `207` when any failed), so it keeps what each outcome says and writes the summary
//! (`success_count`, `created`, `failed`, …) at the end.

use super::super::{Reply, ReplyWriter, APPLICATION_JSON};
use super::Op;
use crate::batch::outcome::{BodyView, Outcome};
use crate::batch::strict::strict_json;
use crate::batch::summary::Summary as RunSummary;
use http::{header, HeaderValue, StatusCode};
use serde::{Serialize, Serializer};
use serde_json::value::{to_raw_value, RawValue};
use serde_json::Value;

/// One item of the request, in request order.
pub(super) struct Entry {
    /// The item as sent (create) or its id (update, delete); `None` is shown as `null`.
    pub(super) shown: Option<Box<RawValue>>,
    /// Why the layer refused to send it.
    pub(super) refused: Option<String>,
}

/// What an item's outcome says.
enum Answer {
    /// Created, updated (the resource) or deleted.
    Done(Json),
    /// A delete found nothing (`404`, `410`).
    NotFound,
    Failed(StatusCode, String),
}

/// Collects the outcomes of a resource bulk request.
pub(super) struct ResourceReply {
    op: Op,
    atomic: bool,
    entries: Vec<Entry>,
    /// For each plan item, its entry: refused entries have no plan item.
    sent: Vec<usize>,
    /// Each entry's answer, once its outcome is in.
    answers: Vec<Option<Answer>>,
    /// Bytes of the resources kept for the reply, within `max_response_bytes`: past it,
    /// a resource is let go as it arrives (`null`), not held until the end.
    kept: usize,
    dropped: bool,
}

/// One item that did not take effect.
#[derive(Serialize)]
struct Failure {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Json>,
    status: u16,
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<Json>,
}

/// A JSON value, parsed once, embedded as it is; `null` when there is none.
struct Json(Option<Box<RawValue>>);

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(raw) => raw.serialize(s),
            None => s.serialize_unit(),
        }
    }
}

impl Json {
    /// What the client sent, to show back in the reply: as it is when strict parsers take
    /// it embedded (see [`strict_json`]), else as a JSON string of its text, so that no item
    /// sent can make the reply unreadable (`1e999`, a lone surrogate, deep nesting). Ids
    /// and resources need no check: they are re-serialized values or strict bodies.
    fn strict(self) -> Json {
        match &self.0 {
            Some(raw) if strict_json(raw.get().as_bytes()).is_err() => {
                Json(to_raw_value(raw.get()).ok())
            }
            _ => self,
        }
    }
}

impl ResourceReply {
    pub(super) fn new(op: Op, atomic: bool, entries: Vec<Entry>) -> Self {
        let sent = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.refused.is_none())
            .map(|(index, _)| index)
            .collect();
        let answers = entries.iter().map(|_| None).collect();
        Self {
            op,
            atomic,
            entries,
            sent,
            answers,
            kept: 0,
            dropped: false,
        }
    }

    fn failure(&self, index: usize, shown: Json, status: StatusCode, error: String) -> Failure {
        let shown = shown.strict();
        let (id, item) = match self.op {
            Op::Create => (None, Some(shown)),
            Op::Update | Op::Delete => (Some(shown), None),
        };
        Failure {
            index,
            id,
            status: status.as_u16(),
            error,
            item,
        }
    }
}

impl Reply for ResourceReply {
    fn content_type(&self) -> HeaderValue {
        APPLICATION_JSON
    }

    /// Its status depends on every outcome.
    fn streams(&self) -> bool {
        false
    }

    fn item(&mut self, index: usize, _id: &str, o: &Outcome, w: &mut ReplyWriter) {
        let Some(&entry) = self.sent.get(index) else {
            return;
        };
        let answer = if o.status.is_success() {
            match self.op {
                // The id, from the entry.
                Op::Delete => Answer::Done(Json(None)),
                Op::Create | Op::Update => {
                    let resource = resource(o);
                    let len = resource.0.as_ref().map_or(0, |raw| raw.get().len());
                    if self.kept + len > w.room() {
                        self.dropped = true;
                        Answer::Done(Json(None))
                    } else {
                        self.kept += len;
                        Answer::Done(resource)
                    }
                }
            }
        } else if self.op == Op::Delete
            && matches!(o.status, StatusCode::NOT_FOUND | StatusCode::GONE)
        {
            Answer::NotFound
        } else {
            Answer::Failed(o.status, message(o))
        };
        self.answers[entry] = Some(answer);
    }

    fn finish(mut self: Box<Self>, w: &mut ReplyWriter, _end: &RunSummary) -> StatusCode {
        let (mut done, mut not_found, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        let entries = std::mem::take(&mut self.entries);
        for (index, entry) in entries.into_iter().enumerate() {
            let shown = Json(entry.shown);
            match (entry.refused, self.answers[index].take()) {
                (Some(why), _) => {
                    failed.push(self.failure(index, shown, StatusCode::UNPROCESSABLE_ENTITY, why))
                }
                // A delete shows the id; a create or update without a body, `null`.
                (None, Some(Answer::Done(Json(None)))) if self.op == Op::Delete => done.push(shown),
                (None, Some(Answer::Done(resource))) => done.push(resource),
                (None, Some(Answer::NotFound)) => not_found.push(shown),
                (None, Some(Answer::Failed(status, error))) => {
                    failed.push(self.failure(index, shown, status, error))
                }
                (None, None) => {
                    let status = StatusCode::INTERNAL_SERVER_ERROR;
                    failed.push(self.failure(index, shown, status, "did not run".into()))
                }
            }
        }
        let status = match (failed.len(), self.op) {
            (0, Op::Create) => StatusCode::CREATED,
            (0, _) => StatusCode::OK,
            _ => StatusCode::MULTI_STATUS,
        };
        // Resources go in while the reply's limit has room; past it, they are `null`.
        let (mut room, mut omitted) = (w.room(), None);
        if self.dropped {
            omitted = Some(format!("{}: resources past it are null", w.over_limit()));
        }
        for resource in &mut done {
            let len = resource.0.as_ref().map_or(0, |raw| raw.get().len());
            if len > room {
                *resource = Json(None);
                omitted = Some(format!("{}: resources past it are null", w.over_limit()));
            } else {
                room -= len;
            }
        }
        let atomic = self.atomic.then_some(Atomic {
            atomic: true,
            rolled_back: !failed.is_empty(),
        });
        // Writing into memory cannot fail.
        let _ = match self.op {
            Op::Create | Op::Update => {
                let created = self.op == Op::Create;
                let summary = Summary {
                    success_count: done.len(),
                    error_count: failed.len(),
                    created: created.then_some(&done[..]),
                    succeeded: (!created).then_some(&done[..]),
                    failed: &failed,
                    omitted,
                    atomic,
                };
                serde_json::to_writer(w.writer(), &summary)
            }
            Op::Delete => {
                let deletions = Deletions {
                    deleted_count: done.len(),
                    not_found_count: not_found.len(),
                    error_count: failed.len(),
                    deleted: &done,
                    not_found: &not_found,
                    failed: &failed,
                    atomic,
                };
                serde_json::to_writer(w.writer(), &deletions)
            }
        };
        status
    }
}

/// The reply of a create or an update.
#[derive(Serialize)]
struct Summary<'a> {
    success_count: usize,
    error_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<&'a [Json]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    succeeded: Option<&'a [Json]>,
    failed: &'a [Failure],
    /// Set when resources were left out (`null`) to keep to `max_response_bytes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    omitted: Option<String>,
    #[serde(flatten)]
    atomic: Option<Atomic>,
}

/// The reply of a delete.
#[derive(Serialize)]
struct Deletions<'a> {
    deleted_count: usize,
    not_found_count: usize,
    error_count: usize,
    deleted: &'a [Json],
    not_found: &'a [Json],
    failed: &'a [Failure],
    #[serde(flatten)]
    atomic: Option<Atomic>,
}

/// What an atomic request adds.
#[derive(Serialize)]
struct Atomic {
    atomic: bool,
    rolled_back: bool,
}

/// What a successful item answered: its JSON body; else `{"location": …}` when it named
/// one; else `null`.
fn resource(outcome: &Outcome) -> Json {
    // Strict JSON only (see `Outcome::body_view`), kept as it is to embed.
    if let BodyView::Json(json) = outcome.body_view() {
        if let Ok(raw) = serde_json::from_slice::<Box<RawValue>>(json) {
            return Json(Some(raw));
        }
    }
    let location = outcome.headers.get(header::LOCATION);
    match location.and_then(|v| v.to_str().ok()) {
        Some(location) => Json(to_raw_value(&serde_json::json!({ "location": location })).ok()),
        None => Json(None),
    }
}

/// A failed item's message: the handler's own words when it wrote any, at most 500
/// characters (a reply holds up to `max_items` of them).
pub(super) fn message(outcome: &Outcome) -> String {
    let message = full_message(outcome);
    match message.char_indices().nth(500) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    }
}

fn full_message(outcome: &Outcome) -> String {
    match serde_json::from_slice::<Value>(&outcome.body) {
        Ok(Value::Object(body)) => {
            for key in ["error", "message", "detail", "title"] {
                match body.get(key) {
                    Some(Value::String(s)) if !s.is_empty() => return s.clone(),
                    Some(Value::Object(inner)) => {
                        if let Some(Value::String(s)) = inner.get("message") {
                            return s.clone();
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Value::String(s)) if !s.is_empty() => return s,
        Ok(_) => {}
        Err(_) => {
            if let Ok(text) = std::str::from_utf8(&outcome.body) {
                let text = text.trim();
                if !text.is_empty() {
                    return text.to_string();
                }
            }
        }
    }
    outcome
        .status
        .canonical_reason()
        .unwrap_or("failed")
        .to_string()
}
