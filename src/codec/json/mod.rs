//! The JSON batch format: OData 4.01 JSON batch, which is also Microsoft Graph's `$batch`.
//!
//! Request:
//!
//! ```json
//! {"requests": [
//!   {"id": "a", "method": "POST", "url": "/users", "headers": {"content-type": "application/json"}, "body": {"name": "Alice"}},
//!   {"id": "b", "url": "/users/7"}
//! ], "stop_on_error": false}
//! ```
//!
//! Reply, in request order: `{"responses": [{"id", "status", "headers", "body"}]}`, each
//! entry written as soon as it and every one before it are final; or, for a client that
//! accepts `application/x-ndjson`, one line per entry as each is final ([`ndjson`]).

mod graph;
mod item;
mod ndjson;

use super::fields::{boolean, parse_envelope, request_list};
use super::list::ListReply;
use super::writer::Fit;
use super::{describe, Codec, DecodeContext, DecodeLimits, Decoded, ReplyWriter, NO_HOOK};
use crate::batch::outcome::BodyView;
use crate::batch::outcome::Outcome;
use crate::batch::plan::{Order, Plan};
use crate::error::{FieldError, Problem};
use bytes::Bytes;
use http::request::Parts;
use http::Method;
use item::{Meta, RawItem};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The JSON batch codec.
#[derive(Debug)]
pub(crate) struct JsonCodec;

impl Codec for JsonCodec {
    fn name(&self) -> &'static str {
        "json"
    }

    fn media_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn methods(&self) -> &'static [Method] {
        &[Method::POST]
    }

    fn describe(&self, limits: &DecodeLimits) -> Vec<describe::Operation> {
        describe::json_batch(limits)
    }

    fn decode(
        &self,
        outer: &Parts,
        body: &Bytes,
        cx: &DecodeContext<'_>,
    ) -> Result<Decoded, Problem> {
        let mut plan = decode(body, cx).map_err(Problem::invalid)?;
        if ndjson::wanted(&outer.headers) {
            plan.order = Order::Completion;
            return Ok(Decoded::Run(plan, Box::new(ndjson::NdjsonReply)));
        }
        let reserve = plan.items.len() * 128;
        let reply = ListReply::new(b"{\"responses\":[", b"]}", entry, reserve);
        Ok(Decoded::Run(plan, Box::new(reply)))
    }
}

#[derive(Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    requests: Option<&'a RawValue>,
    #[serde(borrow)]
    stop_on_error: Option<&'a RawValue>,
    #[serde(borrow)]
    atomic: Option<&'a RawValue>,
}

/// A well-formed batch, read in one pass; anything else is read field by field, to say
/// precisely what is wrong.
#[derive(Deserialize)]
struct WellFormed<'a> {
    #[serde(borrow)]
    requests: Vec<RawItem<'a>>,
    #[serde(borrow)]
    stop_on_error: Option<&'a RawValue>,
    #[serde(borrow)]
    atomic: Option<&'a RawValue>,
}

/// The batch-level options.
#[derive(Default)]
struct Options {
    stop_on_error: bool,
    atomic: bool,
}

/// Decodes a JSON batch. Every item is checked and every problem collected; the batch is
/// a plan only when there is none.
fn decode(bytes: &Bytes, cx: &DecodeContext<'_>) -> Result<Plan, Vec<FieldError>> {
    let (raw, items) = envelope(bytes, cx)?;
    let (options, mut errors) = options(&raw);
    let mut plan = Vec::with_capacity(items.len());
    let metas: Vec<Meta> = items
        .into_iter()
        .enumerate()
        .map(|(index, raw)| item::decode(index, raw, bytes, cx, &mut plan, &mut errors))
        .collect();
    let checked = graph::check(&metas, options.atomic, &mut errors);
    if !cx.limits.atomic {
        match options.atomic {
            // The whole batch one group: of one request, it needs no hook.
            true if metas.len() > 1 => errors.push(FieldError::batch("atomic", NO_HOOK)),
            true => {}
            false => graph::need_hook(&checked.groups, &mut errors),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Without errors, every item is in the plan, in order, and every id is valid.
    let checks = metas.into_iter().zip(checked.depends_on);
    for (item, (meta, depends_on)) in plan.iter_mut().zip(checks) {
        item.id = meta.id.unwrap_or_default();
        item.depends_on = depends_on;
    }
    let mut plan = Plan::new(plan, options.stop_on_error);
    plan.groups = checked.groups;
    Ok(plan)
}

type Items<'a> = Vec<Result<RawItem<'a>, String>>;

/// The batch's fields and its items, unread: in one pass when it is well formed.
fn envelope<'a>(
    bytes: &'a Bytes,
    cx: &DecodeContext<'_>,
) -> Result<(RawBatch<'a>, Items<'a>), Vec<FieldError>> {
    let max = cx.limits.max_requests;
    let well_formed = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| serde_json::from_str::<WellFormed<'_>>(text).ok())
        .filter(|b| !b.requests.is_empty() && b.requests.len() <= max);
    if let Some(b) = well_formed {
        let raw = RawBatch {
            requests: None,
            stop_on_error: b.stop_on_error,
            atomic: b.atomic,
        };
        return Ok((raw, b.requests.into_iter().map(Ok).collect()));
    }
    let raw: RawBatch<'_> = parse_envelope(bytes).map_err(|e| vec![e])?;
    match request_list(raw.requests, max) {
        Ok(items) => Ok((raw, items.into_iter().map(item::parse).collect())),
        Err(e) => {
            // Report the list's problem along with the batch-level fields' own.
            let mut errors = options(&raw).1;
            errors.push(e);
            Err(errors)
        }
    }
}

/// `stop_on_error` and `atomic`, and their problems.
fn options(raw: &RawBatch<'_>) -> (Options, Vec<FieldError>) {
    let mut errors = Vec::new();
    let mut flag = |name: &str, value: Option<&RawValue>| {
        value.is_some_and(|v| {
            boolean(v).unwrap_or_else(|e| {
                errors.push(FieldError::batch(name, e));
                false
            })
        })
    };
    let options = Options {
        stop_on_error: flag("stop_on_error", raw.stop_on_error),
        atomic: flag("atomic", raw.atomic),
    };
    (options, errors)
}

/// One entry of `{"responses": [...]}`: `{"id", "status", "headers", "body"}`, and
/// `bodyOmitted`, `bodyNote` or `headersOmitted` when they apply.
pub(super) fn entry(id: &str, o: &Outcome, w: &mut ReplyWriter) {
    w.put(b"{\"id\":");
    w.str(id);
    w.put(b",\"status\":");
    w.put(o.status.as_str().as_bytes());
    w.put(b",\"headers\":");
    let headers_omitted = w.headers(&o.headers);
    let (mut omitted, mut note) = (None, None);
    match w.fit(o) {
        Fit::Fits(BodyView::Empty) => {}
        Fit::Fits(view) => {
            w.put(b",\"body\":");
            note = w.body(view, b"");
        }
        Fit::Omitted(why) => omitted = Some(why),
    }
    w.field(b"bodyOmitted", omitted.as_deref());
    w.field(b"bodyNote", note.as_deref());
    w.field(b"headersOmitted", headers_omitted.as_deref());
    w.put(b"}");
}
