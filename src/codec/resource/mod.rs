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
//!   filters (only those declared with [`Resource::filters`]) become the query of one
//!   `GET /users?…` whose reply lists the items, then one `DELETE /users/{id}` each. Reply: `deleted_count`, `not_found_count` (`404` and
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

mod items;
mod lookup;
mod reply;

use super::fields::{boolean, parse_envelope, type_name};
use super::object::{self, ObjectError};
use super::{describe, Codec, DecodeContext, DecodeLimits, Decoded, NO_HOOK};
use crate::error::{FieldError, Problem};
use bytes::Bytes;
use http::request::Parts;
use http::Method;
use items::Builder;
use serde_json::value::RawValue;

/// Default for [`Resource::max_items`]: 1000 items.
pub const DEFAULT_MAX_ITEMS: usize = 1000;
/// Default for [`Resource::chunk_size`]: 100 items.
pub const DEFAULT_CHUNK_SIZE: usize = 100;

/// A collection that gets bulk endpoints at `{path}/batch`; see
/// [`BatchLayer::resource`](crate::BatchLayer::resource).
///
/// ```
/// use tower_http_batch::{BatchLayer, Resource};
///
/// let layer = BatchLayer::new("/batch")
///     .resource("/users")
///     .resource(Resource::new("/orders").max_items(200).list_key("data"));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct Resource {
    pub(crate) path: String,
    name: String,
    id_field: String,
    list_key: Option<String>,
    max_items: usize,
    chunk_size: usize,
    /// The query parameters its listing supports: what a delete by filters may send.
    filters: Vec<String>,
}

impl Resource {
    /// The collection at `path` (`"/users"`): items are created with `POST {path}` and
    /// updated and deleted at `{path}/{id}`. Its name, the key of the array in a bulk
    /// create (`{"users": [...]}`), is the last segment of `path`.
    ///
    /// # Panics
    ///
    /// When `path` does not start with `/`, ends with `/`, holds a query or is not a
    /// valid URI path.
    pub fn new(path: impl Into<String>) -> Self {
        let path = path.into();
        assert!(
            path.len() > 1
                && path.starts_with('/')
                && !path.ends_with('/')
                && !path.contains('?')
                && path.parse::<http::uri::PathAndQuery>().is_ok(),
            "tower-http-batch: a resource path names a collection, like \"/users\": {path:?}"
        );
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        Self {
            path,
            name,
            id_field: "id".into(),
            list_key: None,
            max_items: DEFAULT_MAX_ITEMS,
            chunk_size: DEFAULT_CHUNK_SIZE,
            filters: Vec::new(),
        }
    }

    /// The key of the array in a bulk create (default: the last segment of the path).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The field that holds an item's id: in bulk updates, and in the listing a delete by
    /// filters reads (default `"id"`).
    pub fn id_field(mut self, field: impl Into<String>) -> Self {
        self.id_field = field.into();
        self
    }

    /// Where the listing `GET {path}?filters` keeps its array when it is an object
    /// (`{"data": [...]}`). By default the listing is the array itself, or the array
    /// under the collection's name.
    pub fn list_key(mut self, key: impl Into<String>) -> Self {
        self.list_key = Some(key.into());
        self
    }

    /// The most items one bulk request may hold, or a delete by filters may match
    /// (default [`DEFAULT_MAX_ITEMS`], 1000). More is refused whole with `400`, and
    /// nothing runs.
    pub fn max_items(mut self, max: usize) -> Self {
        self.max_items = max;
        self
    }

    /// The filters its listing supports: the query parameters of `GET {path}?…` that a
    /// delete by filters may send (`DELETE {path}/batch` with `{"filters": {...}}`).
    /// Calling it again adds more.
    ///
    /// A delete by filters lists the matching items, then deletes every one listed. A
    /// listing that ignored a parameter it does not know would list every item, and a
    /// misspelled filter (`"stauts"`) would delete the whole collection. So only declared
    /// filters are sent: any other is refused with `400` naming it, before anything runs,
    /// and a resource that declares none refuses delete by filters (lists of ids still
    /// work). The listing should itself refuse query parameters it does not know, as the
    /// demo's does: the declaration guards the layer's side only.
    ///
    /// ```
    /// use tower_http_batch::Resource;
    ///
    /// let users = Resource::new("/users").filters(["status", "last_login_before"]);
    /// # let _ = users;
    /// ```
    pub fn filters<I>(mut self, names: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.filters.extend(names.into_iter().map(Into::into));
        self
    }

    /// Items run in chunks of this many (default [`DEFAULT_CHUNK_SIZE`], 100): a chunk
    /// starts when the one before has finished, and runs with the layer's
    /// [`concurrency`](crate::BatchLayer::concurrency). `0` is taken as 1.
    pub fn chunk_size(mut self, size: usize) -> Self {
        self.chunk_size = size.max(1);
        self
    }
}

impl From<&str> for Resource {
    fn from(path: &str) -> Self {
        Self::new(path)
    }
}

impl From<String> for Resource {
    fn from(path: String) -> Self {
        Self::new(path)
    }
}

/// The three operations, by the outer method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Delete,
}

/// The fields of a resource bulk request, unread.
#[derive(Default)]
struct Fields<'a> {
    list: Option<&'a RawValue>,
    filters: Option<&'a RawValue>,
    atomic: Option<bool>,
}

impl Codec for Resource {
    fn name(&self) -> &'static str {
        "resource"
    }

    fn media_types(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn methods(&self) -> &'static [Method] {
        &[Method::POST, Method::PATCH, Method::DELETE]
    }

    fn describe(&self, _limits: &DecodeLimits) -> Vec<describe::Operation> {
        describe::resource(&self.name, &self.id_field, self.max_items)
    }

    fn decode(
        &self,
        outer: &Parts,
        body: &Bytes,
        cx: &DecodeContext<'_>,
    ) -> Result<Decoded, Problem> {
        let op = match outer.method {
            Method::POST => Op::Create,
            Method::PATCH => Op::Update,
            _ => Op::Delete,
        };
        let query_atomic = atomic_query(outer.uri.query()).map_err(invalid)?;
        let fields = self.fields(op, body)?;
        let atomic = match (query_atomic, fields.atomic) {
            (Some(_), Some(_)) => {
                let once = "is given in the body and in the query (?atomic); give it once";
                return Err(invalid(FieldError::batch("atomic", once)));
            }
            (query, body) => query.or(body).unwrap_or(false),
        };
        // How many items a filter matches is known only once listed: without a hook, an
        // atomic delete by filters is refused up front. A list is checked once read (one
        // item is atomic on its own).
        if atomic && !cx.limits.atomic && fields.filters.is_some() {
            return Err(invalid(FieldError::batch("atomic", NO_HOOK)));
        }
        let list_key = self.list_field(op);
        match (fields.list, fields.filters) {
            (Some(_), Some(_)) => Err(invalid(FieldError::batch(
                "filters",
                "give either `ids` or `filters`, not both",
            ))),
            (None, Some(filters)) => lookup::plan(filters, atomic, self, cx),
            (None, None) => Err(invalid(FieldError::batch(
                list_key,
                format!("is required: {}", expected(op, list_key)),
            ))),
            (Some(list), None) => self.items(op, list, atomic, body, cx),
        }
    }
}

impl Resource {
    /// The key of the list of items for `op`.
    fn list_field(&self, op: Op) -> &str {
        match op {
            Op::Create => &self.name,
            Op::Update => "updates",
            Op::Delete => "ids",
        }
    }

    /// A bare array, or an object of known fields, each given once.
    fn fields<'a>(&self, op: Op, bytes: &'a Bytes) -> Result<Fields<'a>, Problem> {
        let list_key = self.list_field(op);
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            let list = parse_envelope::<&RawValue>(bytes).map_err(invalid)?;
            return Ok(Fields {
                list: Some(list),
                ..Fields::default()
            });
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|e| invalid(FieldError::batch("body", format!("is not UTF-8 text: {e}"))))?;
        let members = match object::members(text) {
            Ok(members) => members,
            Err(ObjectError::Repeated(key)) => {
                return Err(invalid(FieldError::batch(
                    key.clone(),
                    ObjectError::repeated(&key),
                )))
            }
            Err(ObjectError::NotObject(e)) if !e.is_data() => {
                let detail = format!("is not valid JSON: {e}");
                return Err(invalid(FieldError::batch("body", detail)));
            }
            Err(ObjectError::NotObject(_)) => {
                let shape = format!(
                    "must be a JSON object with {}, or an array",
                    expected(op, list_key)
                );
                return Err(invalid(FieldError::batch("body", shape)));
            }
        };
        let mut fields = Fields::default();
        for (key, value) in members {
            match key.as_ref() {
                k if k == list_key => fields.list = Some(value),
                "filters" if op == Op::Delete => fields.filters = Some(value),
                "atomic" => {
                    let atomic = boolean(value).map_err(|e| FieldError::batch("atomic", e));
                    fields.atomic = Some(atomic.map_err(invalid)?);
                }
                _ => return Err(invalid(unknown_field(op, list_key, &key))),
            }
        }
        Ok(fields)
    }

    /// The plan for a list of items: one sub-request per item.
    fn items(
        &self,
        op: Op,
        list: &RawValue,
        atomic: bool,
        bytes: &Bytes,
        cx: &DecodeContext<'_>,
    ) -> Result<Decoded, Problem> {
        let list_key = self.list_field(op);
        let items: Vec<&RawValue> = serde_json::from_str(list.get()).map_err(|_| {
            let detail = format!("must be an array, not {}", type_name(list));
            invalid(FieldError::batch(list_key, detail))
        })?;
        self.check_count(items.len(), list_key).map_err(invalid)?;
        let mut b = Builder::new(op, atomic, self, cx, items.len());
        for (index, raw) in items.into_iter().enumerate() {
            match op {
                Op::Create => b.create(index, raw, bytes),
                Op::Update => b.update(index, raw),
                Op::Delete => match serde_json::from_str(raw.get()) {
                    Ok(id) => b.delete(index, id, "ids"),
                    Err(e) => b.refuse(index, "ids", e.to_string(), None),
                },
            }
        }
        b.finish()
    }

    fn check_count(&self, count: usize, field: &str) -> Result<(), FieldError> {
        if count == 0 {
            return Err(FieldError::batch(field, "must hold at least one item"));
        }
        if count > self.max_items {
            return Err(FieldError::batch(
                field,
                format!(
                    "holds {count} items; the limit is {} (max_items)",
                    self.max_items
                ),
            ));
        }
        Ok(())
    }
}

/// A field the request does not have, and those it has.
fn unknown_field(op: Op, list_key: &str, key: &str) -> FieldError {
    let known: &[&str] = match op {
        Op::Delete => &["filters", "atomic"],
        _ => &["atomic"],
    };
    let known: Vec<String> = std::iter::once(list_key)
        .chain(known.iter().copied())
        .map(|k| format!("{k:?}"))
        .collect();
    let detail = format!(
        "is not a field of this request; expected {}",
        known.join(", ")
    );
    FieldError::batch(key, detail)
}

fn invalid(e: FieldError) -> Problem {
    Problem::invalid(vec![e])
}

fn expected(op: Op, list_key: &str) -> String {
    match op {
        Op::Create => format!("the items to create under {list_key:?}"),
        Op::Update => "the changes under \"updates\", each with its id".into(),
        Op::Delete => "the ids to delete under \"ids\", or \"filters\"".into(),
    }
}

/// `?atomic=true`; other query parameters are left alone. Given twice, it is refused, even
/// with one value: `?atomic=true&atomic=false` has no one meaning.
fn atomic_query(query: Option<&str>) -> Result<Option<bool>, FieldError> {
    let Some(query) = query else { return Ok(None) };
    let mut atomic = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        if key != "atomic" {
            continue;
        }
        if atomic.is_some() {
            return Err(FieldError::batch(
                "?atomic",
                "is given twice; give it once (true or false)",
            ));
        }
        atomic = Some(match value {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(FieldError::batch(
                    "?atomic",
                    format!("must be true or false, not {other:?}"),
                ))
            }
        });
    }
    Ok(atomic)
}
