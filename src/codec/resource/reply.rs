//! The reply of a resource bulk request. Its status depends on every item (`201`/`200`,
//! or `207` when any failed), so it keeps what each outcome says and writes the summary
//! (`success_count`, `created`, `failed`, …) at the end.

use super::super::{Reply, ReplyWriter, APPLICATION_JSON};
use super::Op;
use crate::batch::outcome::{BodyView, Outcome};
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// One item of the request, in request order.
pub(super) struct Entry {
    /// The item as sent (create) or its id (update, delete), as JSON.
    pub(super) shown: Bytes,
    /// Why the layer refused to send it.
    pub(super) refused: Option<String>,
}

/// Collects the outcomes of a resource bulk request.
pub(super) struct ResourceReply {
    op: Op,
    atomic: bool,
    entries: std::vec::IntoIter<Entry>,
    /// The index of the next entry.
    index: usize,
    /// `created`/`succeeded` (the resources), or `deleted` (the ids).
    done: Vec<Json>,
    not_found: Vec<Json>,
    failed: Vec<Failure>,
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

/// A JSON text known to be valid, embedded as it is; `null` when empty.
struct Json(Bytes);

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(&self.0).unwrap_or("");
        match serde_json::from_str::<&RawValue>(text) {
            Ok(raw) => raw.serialize(s),
            Err(_) => s.serialize_unit(),
        }
    }
}

impl ResourceReply {
    pub(super) fn new(op: Op, atomic: bool, entries: Vec<Entry>) -> Self {
        Self {
            op,
            atomic,
            entries: entries.into_iter(),
            index: 0,
            done: Vec::new(),
            not_found: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// The next entry that was sent; the refused ones before it go into `failed`.
    fn next_sent(&mut self) -> Option<(usize, Entry)> {
        loop {
            let mut entry = self.entries.next()?;
            let index = self.index;
            self.index += 1;
            match entry.refused.take() {
                Some(why) => self.fail(index, entry, StatusCode::UNPROCESSABLE_ENTITY, why),
                None => return Some((index, entry)),
            }
        }
    }

    fn fail(&mut self, index: usize, entry: Entry, status: StatusCode, error: String) {
        let shown = Json(entry.shown);
        let (id, item) = match self.op {
            Op::Create => (None, Some(shown)),
            Op::Update | Op::Delete => (Some(shown), None),
        };
        self.failed.push(Failure {
            index,
            id,
            status: status.as_u16(),
            error,
            item,
        });
    }
}

impl Reply for ResourceReply {
    fn content_type(&self) -> HeaderValue {
        APPLICATION_JSON
    }

    fn item(&mut self, o: &Outcome, _w: &mut ReplyWriter) {
        let Some((index, entry)) = self.next_sent() else {
            return;
        };
        if o.status.is_success() {
            let done = match self.op {
                Op::Delete => Json(entry.shown),
                Op::Create | Op::Update => resource(o),
            };
            self.done.push(done);
        } else if self.op == Op::Delete
            && matches!(o.status, StatusCode::NOT_FOUND | StatusCode::GONE)
        {
            self.not_found.push(Json(entry.shown));
        } else {
            self.fail(index, entry, o.status, message(o));
        }
    }

    fn finish(mut self: Box<Self>, w: &mut ReplyWriter) -> StatusCode {
        // Entries left: refused ones, and any that did not run.
        while let Some((index, entry)) = self.next_sent() {
            let status = StatusCode::INTERNAL_SERVER_ERROR;
            self.fail(index, entry, status, "did not run".into());
        }
        let status = match (self.failed.len(), self.op) {
            (0, Op::Create) => StatusCode::CREATED,
            (0, _) => StatusCode::OK,
            _ => StatusCode::MULTI_STATUS,
        };
        // Writing into memory cannot fail.
        let _ = match self.op {
            Op::Create | Op::Update => serde_json::to_writer(w.writer(), &self.summary()),
            Op::Delete => serde_json::to_writer(w.writer(), &self.deletions()),
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

impl ResourceReply {
    fn atomic(&self) -> Option<Atomic> {
        self.atomic.then_some(Atomic {
            atomic: true,
            rolled_back: !self.failed.is_empty(),
        })
    }

    fn summary(&self) -> Summary<'_> {
        let created = self.op == Op::Create;
        Summary {
            success_count: self.done.len(),
            error_count: self.failed.len(),
            created: created.then_some(&self.done[..]),
            succeeded: (!created).then_some(&self.done[..]),
            failed: &self.failed,
            atomic: self.atomic(),
        }
    }

    fn deletions(&self) -> Deletions<'_> {
        Deletions {
            deleted_count: self.done.len(),
            not_found_count: self.not_found.len(),
            error_count: self.failed.len(),
            deleted: &self.done,
            not_found: &self.not_found,
            failed: &self.failed,
            atomic: self.atomic(),
        }
    }
}

/// What a successful item answered: its JSON body; else `{"location": …}` when it named
/// one; else `null`.
fn resource(outcome: &Outcome) -> Json {
    if let BodyView::Json(json) = outcome.body_view() {
        return Json(json.clone());
    }
    let location = outcome.headers.get(header::LOCATION);
    match location.and_then(|v| v.to_str().ok()) {
        Some(location) => {
            let object = serde_json::json!({ "location": location });
            Json(Bytes::from(object.to_string()))
        }
        None => Json(Bytes::new()),
    }
}

/// A failed item's message: the handler's own words when it wrote any.
pub(super) fn message(outcome: &Outcome) -> String {
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
                    return match text.char_indices().nth(500) {
                        Some((cut, _)) => format!("{}…", &text[..cut]),
                        None => text.to_string(),
                    };
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
