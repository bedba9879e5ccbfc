//! The items of a resource bulk request, one by one: each becomes a sub-request, or is
//! refused (reported in `failed` in best-effort mode; refusing the whole request when
//! atomic).

use super::super::fields::{type_name, value_type};
use super::super::object::{raw_members, Members, ObjectError};
use super::super::{DecodeContext, Decoded, NO_HOOK};
use super::reply::{Entry, ResourceReply};
use super::{Op, Resource};
use crate::batch::id::index_id;
use crate::batch::plan::{Group, Plan, PlanItem};
use crate::batch::url::{encode_component, parse_url};
use crate::error::{FieldError, Problem};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Uri};
use serde_json::value::{to_raw_value, RawValue};
use serde_json::Value;

/// `{"key": value, …}` from members, each written as it came.
fn object_body(members: &Members<'_>) -> Bytes {
    let mut body = Vec::with_capacity(
        2 + members
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum::<usize>(),
    );
    body.push(b'{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        // A key is text: serde_json writes it as a JSON string, escaped as needed.
        body.extend_from_slice(&serde_json::to_vec(key.as_ref()).unwrap_or_default());
        body.push(b':');
        body.extend_from_slice(value.get().as_bytes());
    }
    body.push(b'}');
    Bytes::from(body)
}

/// An item as the reply shows it (`null` when `None`).
pub(super) type Shown = Option<Box<RawValue>>;

/// Builds the plan and the reply's entries, item by item.
pub(super) struct Builder<'a> {
    op: Op,
    atomic: bool,
    resource: &'a Resource,
    cx: &'a DecodeContext<'a>,
    entries: Vec<Entry>,
    items: Vec<PlanItem>,
    errors: Vec<FieldError>,
}

impl<'a> Builder<'a> {
    pub(super) fn new(
        op: Op,
        atomic: bool,
        resource: &'a Resource,
        cx: &'a DecodeContext<'a>,
        n: usize,
    ) -> Self {
        Self {
            op,
            atomic,
            resource,
            cx,
            entries: Vec::with_capacity(n),
            items: Vec::with_capacity(n),
            errors: Vec::new(),
        }
    }

    /// The layer refuses item `index`: reported in `failed` (best effort) or refusing the
    /// whole request (atomic).
    pub(super) fn refuse(&mut self, index: usize, field: &str, detail: String, shown: Shown) {
        self.errors
            .push(FieldError::item(index, field, detail.clone()));
        self.entries.push(Entry {
            shown,
            refused: Some(format!("`{field}`: {detail}")),
        });
    }

    fn push(&mut self, index: usize, method: Method, uri: Uri, body: Bytes, shown: Shown) {
        let mut headers = HeaderMap::new();
        if !body.is_empty() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let item = PlanItem::new(index_id(index), method, uri, headers, body);
        self.items.push(item);
        self.entries.push(Entry {
            shown,
            refused: None,
        });
    }

    /// `POST {path}` with the item as its body.
    pub(super) fn create(&mut self, index: usize, raw: &RawValue, outer: &Bytes) {
        let shown = Some(raw.to_owned());
        if !raw.get().starts_with('{') {
            let detail = format!("must be a JSON object, not {}", type_name(raw));
            return self.refuse(index, "item", detail, shown);
        }
        match parse_url(&self.resource.path, self.cx.root_urls()) {
            Ok(uri) => {
                let body = outer.slice_ref(raw.get().as_bytes());
                self.push(index, Method::POST, uri, body, shown)
            }
            Err(e) => self.refuse(index, "item", format!("cannot be sent: the url {e}"), shown),
        }
    }

    /// `PATCH {path}/{id}` with the rest of the item as its body: its other members as
    /// written. An item that gives a key twice is refused: which value was meant, of the
    /// id or of a field, is not the layer's to guess.
    pub(super) fn update(&mut self, index: usize, raw: &RawValue) {
        let field = self.resource.id_field.as_str();
        let mut members = match raw_members(raw) {
            Ok(members) => members,
            Err(ObjectError::Repeated(key)) => {
                return self.refuse(index, &key, ObjectError::repeated(&key), None)
            }
            Err(ObjectError::NotObject(_)) => {
                let detail = format!(
                    "must be a JSON object with {field:?}, not {}",
                    type_name(raw)
                );
                return self.refuse(index, "updates", detail, None);
            }
        };
        let Some(at) = members.iter().position(|(key, _)| key == field) else {
            return self.refuse(index, field, "is required".into(), None);
        };
        let (_, id) = members.remove(at);
        // Valid JSON: serde_json read it as a member.
        let id: Value = serde_json::from_str(id.get()).unwrap_or(Value::Null);
        let shown = to_raw_value(&id).ok();
        match self.item_uri(&id) {
            Ok(uri) => self.push(index, Method::PATCH, uri, object_body(&members), shown),
            Err(e) => self.refuse(index, field, e, shown),
        }
    }

    /// `DELETE {path}/{id}`; `field` names where the id came from (`ids`, `filters`).
    pub(super) fn delete(&mut self, index: usize, id: Value, field: &str) {
        let shown = to_raw_value(&id).ok();
        match self.item_uri(&id) {
            Ok(uri) => self.push(index, Method::DELETE, uri, Bytes::new(), shown),
            Err(e) => self.refuse(index, field, e, shown),
        }
    }

    /// `{path}/{id}`, the id escaped as one path segment.
    fn item_uri(&self, id: &Value) -> Result<Uri, String> {
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
        let uri = parse_url(&url, self.cx.root_urls())
            .map_err(|e| format!("makes the url {url:?}, which {e}"))?;
        // Checked on the final path: the id is one segment, and nothing moved it.
        if uri.path() != url {
            return Err(format!(
                "{id} is not one path segment: {url:?} resolves to {:?}",
                uri.path()
            ));
        }
        Ok(uri)
    }

    /// The plan (one atomic group, or chunks) and its reply; or, when atomic, the refusal
    /// of the whole request if any item was refused.
    pub(super) fn finish(self) -> Result<Decoded, Problem> {
        // One item is atomic on its own; more need the transaction hook. Said beside any
        // refused item, so that one answer names every problem.
        let mut errors = self.errors;
        if self.atomic && !self.cx.limits.atomic && self.entries.len() > 1 {
            errors.insert(0, FieldError::batch("atomic", NO_HOOK));
        }
        if self.atomic && !errors.is_empty() {
            return Err(Problem::invalid(errors));
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
        let reply = ResourceReply::new(self.op, self.atomic, self.entries);
        Ok(Decoded::Run(plan, Box::new(reply)))
    }
}
