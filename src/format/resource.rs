//! Resource bulk endpoints (seed 000): `POST`, `PATCH` and `DELETE {collection}/batch`.
//!
//! - `POST /users/batch` with `{"users": [...]}`: one `POST /users` per item (the item is
//!   the body). Reply: `success_count`, `error_count`, `created` (the created resources,
//!   in request order) and `failed` (`index`, `status`, `error`, `item`); `201`, or `207`
//!   when any item failed.
//! - `PATCH /users/batch` with `{"updates": [{"id": 42, ...}]}`: one `PATCH /users/42`
//!   per item, with the `id` taken out of the body. Reply: `success_count`,
//!   `error_count`, `succeeded` (the updated resources) and `failed` (`index`, `id`,
//!   `status`, `error`); `200`, or `207`.
//! - `DELETE /users/batch` with `{"ids": [...]}`, or with `{"filters": {...}}`: the
//!   filters become the query of one `GET /users?…` whose reply lists the items, then one
//!   `DELETE /users/{id}` each. Reply: `deleted_count`, `not_found_count` (`404` and
//!   `410`), `error_count`, `deleted` and `not_found` (the ids) and `failed`; `200`, or
//!   `207` when any delete failed.
//!
//! A bare array works in place of the object. `"atomic": true` in the object, or
//! `?atomic=true`, runs every item in one transaction (one atomicity group); otherwise the
//! items run in chunks (best effort). An item the layer refuses (not an object, no `id`)
//! is reported in `failed` with `422` in best-effort mode, and refuses the whole request
//! with `400` in atomic mode. A failed item's `error` is its handler's own message: the
//! JSON `error` (or `error.message`), `message`, `detail` or `title`, else its text, else
//! the reason phrase.

use super::{classify_body, parse_envelope, type_name, write_str, EncodedBody, Limits, NO_HOOK};
use crate::error::{FieldError, Problem};
use crate::execute::Outcome;
use crate::layer::Resource;
use crate::plan::{encode_component, parse_url, Group, Plan, PlanItem};
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;

/// The three operations, by the outer method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Delete,
}

/// A decoded resource bulk request.
pub(crate) enum Decoded {
    /// Run the plan, then encode the outcomes with the reply.
    Run(Plan, Reply),
    /// A delete by filters: run this one `GET` first, and give its outcome to
    /// [`after_lookup`].
    Lookup(Plan, Lookup),
}

/// What a delete by filters remembers while its listing is read.
pub(crate) struct Lookup {
    atomic: bool,
    url: String,
}

/// What encoding needs besides the outcomes.
pub(crate) struct Reply {
    op: Op,
    atomic: bool,
    entries: Vec<Entry>,
}

/// One item of the request, in request order.
struct Entry {
    /// The item as sent (create) or its id (update, delete), as JSON.
    shown: Bytes,
    /// Why the layer refused to send it.
    refused: Option<String>,
}

/// The methods a resource batch endpoint answers.
pub(crate) const METHODS: &str = "POST, PATCH, DELETE";

/// Whether `method` is one of [`METHODS`].
pub(crate) fn allows(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PATCH | Method::DELETE)
}

/// Decodes a resource bulk request: the outer method chooses the operation.
pub(crate) fn decode(
    method: &Method,
    query: Option<&str>,
    bytes: &Bytes,
    limits: &Limits<'_>,
    resource: &Resource,
) -> Result<Decoded, Problem> {
    let op = match *method {
        Method::POST => Op::Create,
        Method::PATCH => Op::Update,
        _ => Op::Delete,
    };
    let invalid = |e: FieldError| Problem::invalid(vec![e]);
    let mut atomic = atomic_query(query).map_err(invalid)?;
    let (list_key, keys): (&str, &[&str]) = match op {
        Op::Create => (&resource.name, &["atomic"]),
        Op::Update => ("updates", &["atomic"]),
        Op::Delete => ("ids", &["filters", "atomic"]),
    };
    let mut list = None;
    let mut filters = None;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        list = Some(parse_envelope::<&RawValue>(bytes).map_err(invalid)?);
    } else {
        let fields: BTreeMap<String, &RawValue> = parse_envelope(bytes).map_err(|e| {
            // Keep what parsing said of bytes that are not JSON; say what shape is wanted.
            if !e.detail.starts_with("must be") {
                return invalid(e);
            }
            invalid(FieldError::batch(
                "body",
                format!(
                    "must be a JSON object with {}, or an array",
                    expected(op, list_key)
                ),
            ))
        })?;
        for (key, value) in fields {
            match key.as_str() {
                k if k == list_key => list = Some(value),
                "filters" if op == Op::Delete => filters = Some(value),
                "atomic" => {
                    atomic |= serde_json::from_str::<bool>(value.get()).map_err(|_| {
                        invalid(FieldError::batch(
                            "atomic",
                            format!("must be a boolean, not {}", type_name(value)),
                        ))
                    })?
                }
                _ => {
                    let known: Vec<String> = std::iter::once(list_key)
                        .chain(keys.iter().copied())
                        .map(|k| format!("{k:?}"))
                        .collect();
                    return Err(invalid(FieldError::batch(
                        key.clone(),
                        format!(
                            "is not a field of this request; expected {}",
                            known.join(", ")
                        ),
                    )));
                }
            }
        }
    }
    if atomic && limits.config.transactions.is_none() {
        return Err(invalid(FieldError::batch("atomic", NO_HOOK)));
    }
    match (list, filters) {
        (Some(_), Some(_)) => Err(invalid(FieldError::batch(
            "filters",
            "give either `ids` or `filters`, not both",
        ))),
        (None, Some(filters)) => lookup(filters, atomic, resource, limits),
        (None, None) => Err(invalid(FieldError::batch(
            list_key,
            format!("is required: {}", expected(op, list_key)),
        ))),
        (Some(list), None) => {
            let items: Vec<&RawValue> = serde_json::from_str(list.get()).map_err(|_| {
                invalid(FieldError::batch(
                    list_key,
                    format!("must be an array, not {}", type_name(list)),
                ))
            })?;
            check_count(items.len(), resource, list_key).map_err(invalid)?;
            let mut b = Builder::new(op, atomic, resource, limits, items.len());
            for (index, raw) in items.into_iter().enumerate() {
                match op {
                    Op::Create => b.create(index, raw, bytes),
                    Op::Update => b.update(index, raw),
                    Op::Delete => match serde_json::from_str::<Value>(raw.get()) {
                        Ok(id) => b.delete(index, id, "ids"),
                        Err(e) => b.refuse(index, "ids", e.to_string(), Bytes::new()),
                    },
                }
            }
            b.finish()
        }
    }
}

fn expected(op: Op, list_key: &str) -> String {
    match op {
        Op::Create => format!("the items to create under {list_key:?}"),
        Op::Update => "the changes under \"updates\", each with its id".into(),
        Op::Delete => "the ids to delete under \"ids\", or \"filters\"".into(),
    }
}

/// `?atomic=true`; other query parameters are left alone.
fn atomic_query(query: Option<&str>) -> Result<bool, FieldError> {
    let Some(query) = query else { return Ok(false) };
    let mut atomic = false;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        if key == "atomic" {
            atomic = match value {
                "true" | "1" => true,
                "false" | "0" => false,
                other => {
                    return Err(FieldError::batch(
                        "?atomic",
                        format!("must be true or false, not {other:?}"),
                    ))
                }
            };
        }
    }
    Ok(atomic)
}

fn check_count(count: usize, resource: &Resource, field: &str) -> Result<(), FieldError> {
    if count == 0 {
        return Err(FieldError::batch(field, "must hold at least one item"));
    }
    if count > resource.max_items {
        return Err(FieldError::batch(
            field,
            format!(
                "holds {count} items; the limit is {} (max_items)",
                resource.max_items
            ),
        ));
    }
    Ok(())
}

/// A delete by filters: the `GET {path}?filters` that lists what to delete.
fn lookup(
    filters: &RawValue,
    atomic: bool,
    resource: &Resource,
    limits: &Limits<'_>,
) -> Result<Decoded, Problem> {
    let invalid = |detail: String| Problem::invalid(vec![FieldError::batch("filters", detail)]);
    let map: serde_json::Map<String, Value> = serde_json::from_str(filters.get())
        .map_err(|_| invalid(format!("must be an object, not {}", type_name(filters))))?;
    if map.is_empty() {
        return Err(invalid(
            "must hold at least one filter (to delete every item, list their ids)".into(),
        ));
    }
    let mut query = String::new();
    for (key, value) in &map {
        let values = match value {
            Value::Array(values) => values.iter().collect(),
            value => vec![value],
        };
        for value in values {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(Problem::invalid(vec![FieldError::batch(
                        format!("filters.{key}"),
                        "must be a string, a number, a boolean, or an array of those",
                    )]))
                }
            };
            query.push(if query.is_empty() { '?' } else { '&' });
            query.push_str(&encode_component(key));
            query.push('=');
            query.push_str(&encode_component(&text));
        }
    }
    let url = format!("{}{query}", resource.path);
    let uri = parse_url(&url, limits.url)
        .map_err(|e| invalid(format!("make the url {url:?}, which {e}")))?;
    let item = PlanItem {
        id: "filters".into(),
        method: Method::GET,
        uri,
        headers: HeaderMap::new(),
        body: Bytes::new(),
        depends_on: Vec::new(),
        refs: None,
    };
    Ok(Decoded::Lookup(
        Plan::new(vec![item], false),
        Lookup { atomic, url },
    ))
}

/// Reads the ids to delete out of the listing's outcome. Nothing is deleted when the
/// listing failed, has no ids, or matches more than `max_items`.
pub(crate) fn after_lookup(
    listing: Option<Outcome>,
    lookup: Lookup,
    resource: &Resource,
    limits: &Limits<'_>,
) -> Result<Decoded, Problem> {
    let Lookup { atomic, url } = lookup;
    let failed = |status: StatusCode, detail: String| {
        Problem::new(
            status,
            "urn:tower-http-batch:filter-query-failed",
            "Filter query failed",
            format!("GET {url} {detail}; nothing was deleted"),
        )
    };
    let Some(listing) = listing else {
        return Err(failed(StatusCode::BAD_GATEWAY, "did not run".into()));
    };
    if !listing.status.is_success() {
        let status = if listing.status.is_client_error() {
            listing.status
        } else {
            StatusCode::BAD_GATEWAY
        };
        return Err(failed(
            status,
            format!(
                "answered {}: {}",
                listing.status.as_u16(),
                message(&listing)
            ),
        ));
    }
    let bad = |detail: String| failed(StatusCode::BAD_GATEWAY, detail);
    let value: Value = serde_json::from_slice(&listing.body)
        .map_err(|e| bad(format!("did not answer JSON ({e})")))?;
    let key = resource.list_key.as_deref().unwrap_or(&resource.name);
    let list = match value {
        Value::Array(list) => list,
        Value::Object(mut object) => match object.remove(key) {
            Some(Value::Array(list)) => list,
            _ => {
                return Err(bad(format!(
                    "answered an object without an array under {key:?} (see Resource::list_key)"
                )))
            }
        },
        _ => return Err(bad("did not answer a JSON array or object".into())),
    };
    if list.len() > resource.max_items {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "urn:tower-http-batch:too-many-items",
            "Too many items",
            format!(
                "the filters match {} items; the limit is {} (max_items); nothing was deleted",
                list.len(),
                resource.max_items
            ),
        ));
    }
    let field = &resource.id_field;
    let mut b = Builder::new(Op::Delete, atomic, resource, limits, list.len());
    for (index, element) in list.into_iter().enumerate() {
        let id = match element {
            Value::Object(mut object) => match object.remove(field.as_str()) {
                Some(id) => id,
                None => {
                    return Err(bad(format!(
                        "listed item {index} without an id field {field:?} (see Resource::id_field)"
                    )))
                }
            },
            id => id,
        };
        b.delete(index, id, "filters");
    }
    b.finish()
}

/// Builds the plan and the reply's entries, item by item.
struct Builder<'a> {
    op: Op,
    atomic: bool,
    resource: &'a Resource,
    limits: &'a Limits<'a>,
    entries: Vec<Entry>,
    items: Vec<PlanItem>,
    errors: Vec<FieldError>,
}

impl<'a> Builder<'a> {
    fn new(op: Op, atomic: bool, resource: &'a Resource, limits: &'a Limits<'a>, n: usize) -> Self {
        Self {
            op,
            atomic,
            resource,
            limits,
            entries: Vec::with_capacity(n),
            items: Vec::with_capacity(n),
            errors: Vec::new(),
        }
    }

    /// The layer refuses item `index`: reported in `failed` (best effort) or refusing the
    /// whole request (atomic).
    fn refuse(&mut self, index: usize, field: &str, detail: String, shown: Bytes) {
        self.errors
            .push(FieldError::item(index, field, detail.clone()));
        self.entries.push(Entry {
            shown,
            refused: Some(format!("`{field}`: {detail}")),
        });
    }

    fn push(&mut self, index: usize, method: Method, uri: http::Uri, body: Bytes, shown: Bytes) {
        let mut headers = HeaderMap::new();
        if !body.is_empty() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        self.items.push(PlanItem {
            id: index.to_string(),
            method,
            uri,
            headers,
            body,
            depends_on: Vec::new(),
            refs: None,
        });
        self.entries.push(Entry {
            shown,
            refused: None,
        });
    }

    fn create(&mut self, index: usize, raw: &RawValue, outer: &Bytes) {
        let shown = outer.slice_ref(raw.get().as_bytes());
        if !raw.get().starts_with('{') {
            let detail = format!("must be a JSON object, not {}", type_name(raw));
            return self.refuse(index, "item", detail, shown);
        }
        match parse_url(&self.resource.path, self.limits.url) {
            Ok(uri) => self.push(index, Method::POST, uri, shown.clone(), shown),
            Err(e) => self.refuse(index, "item", format!("cannot be sent: the url {e}"), shown),
        }
    }

    fn update(&mut self, index: usize, raw: &RawValue) {
        let field = self.resource.id_field.as_str();
        let Ok(mut object) = serde_json::from_str::<serde_json::Map<String, Value>>(raw.get())
        else {
            let detail = format!(
                "must be a JSON object with {field:?}, not {}",
                type_name(raw)
            );
            return self.refuse(index, "updates", detail, Bytes::new());
        };
        let Some(id) = object.remove(field) else {
            return self.refuse(index, field, "is required".into(), Bytes::new());
        };
        let shown = Bytes::from(serde_json::to_vec(&id).unwrap_or_default());
        match self.item_uri(&id) {
            Ok(uri) => {
                let body = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
                self.push(index, Method::PATCH, uri, body, shown);
            }
            Err(e) => self.refuse(index, field, e, shown),
        }
    }

    fn delete(&mut self, index: usize, id: Value, field: &str) {
        let shown = Bytes::from(serde_json::to_vec(&id).unwrap_or_default());
        match self.item_uri(&id) {
            Ok(uri) => self.push(index, Method::DELETE, uri, Bytes::new(), shown),
            Err(e) => self.refuse(index, field, e, shown),
        }
    }

    /// `{path}/{id}`, the id escaped as one path segment.
    fn item_uri(&self, id: &Value) -> Result<http::Uri, String> {
        let segment = match id {
            Value::Number(n) => n.to_string(),
            Value::String(s) if s.is_empty() => return Err("must not be empty".into()),
            Value::String(s) if s == "." || s == ".." => return Err(format!("{s:?} is not an id")),
            Value::String(s) => encode_component(s),
            _ => {
                return Err(format!(
                    "must be a string or a number, not {}",
                    value_type(id)
                ))
            }
        };
        let url = format!("{}/{segment}", self.resource.path);
        parse_url(&url, self.limits.url).map_err(|e| format!("makes the url {url:?}, which {e}"))
    }

    fn finish(self) -> Result<Decoded, Problem> {
        if self.atomic && !self.errors.is_empty() {
            return Err(Problem::invalid(self.errors));
        }
        let mut plan = Plan::new(self.items, false);
        if self.atomic {
            plan.groups.push(Group {
                name: "atomic".into(),
                members: 0..plan.items.len(),
            });
        } else {
            plan.chunk_size = Some(self.resource.chunk_size);
        }
        Ok(Decoded::Run(
            plan,
            Reply {
                op: self.op,
                atomic: self.atomic,
                entries: self.entries,
            },
        ))
    }
}

fn value_type(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "an object",
        Value::Array(_) => "an array",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        _ => "a number",
    }
}

/// A failed item's message: the handler's own words when it wrote any.
pub(crate) fn message(outcome: &Outcome) -> String {
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

/// Writes the reply; its status is `201` (create) or `200` when nothing failed, else `207`.
pub(crate) fn encode(reply: &Reply, outcomes: Vec<Outcome>) -> (StatusCode, Bytes) {
    let mut outcomes = outcomes.into_iter();
    // `created`/`succeeded` or `deleted`; `not_found`; `failed`.
    let mut done = Vec::new();
    let mut not_found = Vec::new();
    let mut failed = BytesMut::new().writer();
    let (mut done_count, mut not_found_count, mut failed_count) = (0usize, 0usize, 0usize);
    for (index, entry) in reply.entries.iter().enumerate() {
        let (status, error) = match &entry.refused {
            Some(why) => (StatusCode::UNPROCESSABLE_ENTITY, why.clone()),
            None => match outcomes.next() {
                Some(o) if o.status.is_success() => {
                    done_count += 1;
                    if reply.op == Op::Delete {
                        push_json(&mut done, &entry.shown);
                    } else {
                        push_resource(&mut done, &o);
                    }
                    continue;
                }
                Some(o)
                    if reply.op == Op::Delete
                        && matches!(o.status, StatusCode::NOT_FOUND | StatusCode::GONE) =>
                {
                    not_found_count += 1;
                    push_json(&mut not_found, &entry.shown);
                    continue;
                }
                Some(o) => (o.status, message(&o)),
                None => (StatusCode::INTERNAL_SERVER_ERROR, "did not run".to_string()),
            },
        };
        if failed_count > 0 {
            failed.get_mut().put_u8(b',');
        }
        failed_count += 1;
        let buf = failed.get_mut();
        buf.put_slice(b"{\"index\":");
        buf.put_slice(index.to_string().as_bytes());
        if reply.op != Op::Create {
            buf.put_slice(b",\"id\":");
            put_json(buf, &entry.shown);
        }
        buf.put_slice(b",\"status\":");
        buf.put_slice(status.as_str().as_bytes());
        buf.put_slice(b",\"error\":");
        write_str(&mut failed, &error);
        if reply.op == Op::Create {
            failed.get_mut().put_slice(b",\"item\":");
            put_json(failed.get_mut(), &entry.shown);
        }
        failed.get_mut().put_u8(b'}');
    }
    let mut out =
        BytesMut::with_capacity(64 + done.len() + not_found.len() + failed.get_ref().len());
    let list = |out: &mut BytesMut, name: &str, items: &[u8]| {
        out.put_slice(format!(",\"{name}\":[").as_bytes());
        out.put_slice(items);
        out.put_u8(b']');
    };
    match reply.op {
        Op::Create | Op::Update => {
            out.put_slice(
                format!("{{\"success_count\":{done_count},\"error_count\":{failed_count}")
                    .as_bytes(),
            );
            let name = if reply.op == Op::Create {
                "created"
            } else {
                "succeeded"
            };
            list(&mut out, name, &done);
        }
        Op::Delete => {
            out.put_slice(
                format!(
                    "{{\"deleted_count\":{done_count},\"not_found_count\":{not_found_count},\"error_count\":{failed_count}"
                )
                .as_bytes(),
            );
            list(&mut out, "deleted", &done);
            list(&mut out, "not_found", &not_found);
        }
    }
    list(&mut out, "failed", failed.get_ref());
    if reply.atomic {
        out.put_slice(b",\"atomic\":true,\"rolled_back\":");
        out.put_slice(if failed_count > 0 { b"true" } else { b"false" });
    }
    out.put_u8(b'}');
    let status = match (failed_count, reply.op) {
        (0, Op::Create) => StatusCode::CREATED,
        (0, _) => StatusCode::OK,
        _ => StatusCode::MULTI_STATUS,
    };
    (status, out.freeze())
}

/// Appends a JSON value (or `null` for none) to a comma-separated list.
fn push_json(list: &mut Vec<u8>, json: &[u8]) {
    if !list.is_empty() {
        list.push(b',');
    }
    list.extend_from_slice(if json.is_empty() { b"null" } else { json });
}

fn put_json(buf: &mut BytesMut, json: &[u8]) {
    buf.put_slice(if json.is_empty() { b"null" } else { json });
}

/// Appends what a successful item answered: its JSON body; else `{"location": …}` when
/// it named one; else `null`.
fn push_resource(list: &mut Vec<u8>, outcome: &Outcome) {
    match classify_body(&outcome.headers, &outcome.body) {
        EncodedBody::Json(json) => push_json(list, json),
        _ => match outcome
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
        {
            Some(location) => {
                let mut w = BytesMut::new().writer();
                w.get_mut().put_slice(b"{\"location\":");
                write_str(&mut w, location);
                w.get_mut().put_u8(b'}');
                push_json(list, &w.into_inner());
            }
            None => push_json(list, b""),
        },
    }
}
