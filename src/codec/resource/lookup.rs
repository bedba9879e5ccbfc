//! A delete by filters: the filters become the query of one `GET {path}?…`; its reply,
//! handed back through [`Resume`], lists the ids to delete. Nothing is deleted when the
//! listing fails, has no ids, or matches more than `max_items`.

use super::super::fields::type_name;
use super::super::object::{raw_members, ObjectError};
use super::super::{DecodeContext, Decoded, Resume};
use super::items::Builder;
use super::reply::message;
use super::{Op, Resource};
use crate::batch::outcome::Outcome;
use crate::batch::plan::{Plan, PlanItem};
use crate::batch::url::{encode_component, parse_url};
use crate::error::{FieldError, Problem};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// The plan of the listing, and what reads its reply.
pub(super) fn plan(
    filters: &RawValue,
    atomic: bool,
    resource: &Resource,
    cx: &DecodeContext<'_>,
) -> Result<Decoded, Problem> {
    let invalid = |detail: String| Problem::invalid(vec![FieldError::batch("filters", detail)]);
    if resource.filters.is_empty() {
        return Err(invalid(format!(
            "{} declares no filters (Resource::filters), so nothing is deleted by filters; list the ids to delete",
            resource.path
        )));
    }
    let members = match raw_members(filters) {
        Ok(members) => members,
        Err(ObjectError::Repeated(key)) => {
            let field = format!("filters.{key}");
            return Err(Problem::invalid(vec![FieldError::batch(
                field,
                ObjectError::repeated(&key),
            )]));
        }
        Err(ObjectError::NotObject(_)) => {
            return Err(invalid(format!(
                "must be an object, not {}",
                type_name(filters)
            )))
        }
    };
    if members.is_empty() {
        return Err(invalid(
            "must hold at least one filter (to delete every item, list their ids)".into(),
        ));
    }
    let unknown: Vec<FieldError> = members
        .iter()
        .filter(|(key, _)| !resource.filters.iter().any(|f| f == key))
        .map(|(key, _)| FieldError::batch(format!("filters.{key}"), not_declared(resource)))
        .collect();
    if !unknown.is_empty() {
        return Err(Problem::invalid(unknown));
    }
    let mut map = Vec::with_capacity(members.len());
    for (key, raw) in members {
        // Valid JSON: serde_json read it as a member.
        let value: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
        map.push((key, value));
    }
    let url = format!("{}{}", resource.path, query(&map)?);
    let uri = parse_url(&url, cx.root_urls())
        .map_err(|e| invalid(format!("make the url {url:?}, which {e}")))?;
    let item = PlanItem::new(
        "filters".into(),
        Method::GET,
        uri,
        HeaderMap::new(),
        Bytes::new(),
    );
    let then = AfterListing {
        atomic,
        url,
        resource: resource.clone(),
    };
    Ok(Decoded::Lookup(
        Plan::new(vec![item], false),
        Box::new(then),
    ))
}

/// Why a filter is refused: it is not one the resource declared.
fn not_declared(resource: &Resource) -> String {
    let declared: Vec<String> = resource.filters.iter().map(|f| format!("{f:?}")).collect();
    format!(
        "is not a filter of {}; its filters are {} (Resource::filters)",
        resource.path,
        declared.join(", ")
    )
}

/// `?key=value&…`, each percent-encoded; an array is a repeated parameter.
fn query(filters: &[(Cow<'_, str>, Value)]) -> Result<String, Problem> {
    let mut query = String::new();
    for (key, value) in filters {
        let values = match value {
            // An empty list would send no parameter at all: a listing of every item.
            Value::Array(values) if values.is_empty() => {
                return Err(Problem::invalid(vec![FieldError::batch(
                    format!("filters.{key}"),
                    "must hold at least one value (an empty list would match every item)",
                )]))
            }
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
    Ok(query)
}

/// What a delete by filters remembers while its listing is read.
struct AfterListing {
    atomic: bool,
    url: String,
    resource: Resource,
}

impl Resume for AfterListing {
    fn resume(
        self: Box<Self>,
        outcomes: Vec<Outcome>,
        cx: &DecodeContext<'_>,
    ) -> Result<Decoded, Problem> {
        let list = self.listed(outcomes.into_iter().next())?;
        let resource = &self.resource;
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
        let mut b = Builder::new(Op::Delete, self.atomic, resource, cx, list.len());
        for (index, element) in list.into_iter().enumerate() {
            let id = match element {
                Value::Object(mut object) => object.remove(field.as_str()).ok_or_else(|| {
                    self.failed(
                        StatusCode::BAD_GATEWAY,
                        format!("listed item {index} without an id field {field:?} (see Resource::id_field)"),
                    )
                })?,
                id => id,
            };
            b.delete(index, id, "filters");
        }
        b.finish()
    }
}

impl AfterListing {
    /// The listed items: the listing's array, or the array under the collection's name
    /// (or `list_key`) when it answered an object.
    fn listed(&self, listing: Option<Outcome>) -> Result<Vec<Value>, Problem> {
        let Some(listing) = listing else {
            return Err(self.failed(StatusCode::BAD_GATEWAY, "did not run".into()));
        };
        if !listing.status.is_success() {
            let status = if listing.status.is_client_error() {
                listing.status
            } else {
                StatusCode::BAD_GATEWAY
            };
            let detail = format!(
                "answered {}: {}",
                listing.status.as_u16(),
                message(&listing)
            );
            return Err(self.failed(status, detail));
        }
        let bad = |detail: String| self.failed(StatusCode::BAD_GATEWAY, detail);
        let value: Value = serde_json::from_slice(&listing.body)
            .map_err(|e| bad(format!("did not answer JSON ({e})")))?;
        let resource = &self.resource;
        let key = resource.list_key.as_deref().unwrap_or(&resource.name);
        match value {
            Value::Array(list) => Ok(list),
            Value::Object(mut object) => match object.remove(key) {
                Some(Value::Array(list)) => Ok(list),
                _ => Err(bad(format!(
                    "answered an object without an array under {key:?} (see Resource::list_key)"
                ))),
            },
            _ => Err(bad("did not answer a JSON array or object".into())),
        }
    }

    fn failed(&self, status: StatusCode, detail: String) -> Problem {
        Problem::new(
            status,
            "urn:tower-http-batch:filter-query-failed",
            "Filter query failed",
            format!("GET {} {detail}; nothing was deleted", self.url),
        )
    }
}
