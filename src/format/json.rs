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
//! Reply, in request order: `{"responses": [{"id", "status", "headers", "body"}]}`.

use super::{
    decode_base64, decode_headers, media_kind, parse_envelope, parse_item, parse_method_field,
    request_list, type_name, Limits, MediaKind, ReplyWriter, NO_HOOK,
};
use crate::error::FieldError;
use crate::execute::Outcome;
use crate::plan::{parse_url, parse_url_in, Group, Plan, PlanItem, UrlContext};
use crate::reference::{self, Refs, Template, UrlTemplate};
use bytes::Bytes;
use http::header;
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;

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

#[derive(Deserialize)]
struct RawItem<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a RawValue>,
    #[serde(borrow)]
    url: Option<&'a RawValue>,
    #[serde(borrow)]
    headers: Option<&'a RawValue>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
    #[serde(borrow, rename = "dependsOn")]
    depends_on: Option<&'a RawValue>,
    #[serde(borrow, rename = "atomicityGroup")]
    atomicity_group: Option<&'a RawValue>,
}

/// A JSON string, borrowed from the batch body when it has no escapes.
fn string<'a>(raw: &'a RawValue, what: &str) -> Result<std::borrow::Cow<'a, str>, String> {
    match serde_json::from_str::<&'a str>(raw.get()) {
        Ok(s) => Ok(s.into()),
        Err(_) => serde_json::from_str::<String>(raw.get())
            .map(Into::into)
            .map_err(|_| format!("must be {what}, not {}", type_name(raw))),
    }
}

/// Decodes a JSON batch. Every item is checked and every problem collected; the batch is
/// a plan only when there is none.
pub(crate) fn decode(bytes: &Bytes, limits: &Limits<'_>) -> Result<Plan, Vec<FieldError>> {
    let max = limits.config.max_requests;
    let well_formed = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| serde_json::from_str::<WellFormed<'_>>(text).ok())
        .filter(|b| !b.requests.is_empty() && b.requests.len() <= max);
    let (raw, items): (RawBatch<'_>, Vec<Result<RawItem<'_>, String>>) = match well_formed {
        Some(b) => (
            RawBatch {
                requests: None,
                stop_on_error: b.stop_on_error,
                atomic: b.atomic,
            },
            b.requests.into_iter().map(Ok).collect(),
        ),
        None => {
            let raw: RawBatch<'_> = parse_envelope(bytes).map_err(|e| vec![e])?;
            match request_list(raw.requests, max) {
                Ok(items) => (raw, items.into_iter().map(parse_item).collect()),
                Err(e) => {
                    // Report the list's problem along with the batch-level fields' own.
                    let mut errors = batch_fields(&raw, limits).err().unwrap_or_default();
                    errors.push(e);
                    return Err(errors);
                }
            }
        }
    };
    let (stop_on_error, atomic, mut errors) = match batch_fields(&raw, limits) {
        Ok((stop_on_error, atomic)) => (stop_on_error, atomic, Vec::new()),
        Err(errors) => (false, false, errors),
    };

    let mut plan = Vec::with_capacity(items.len());
    let mut names = Vec::with_capacity(items.len());
    let mut group_names: Vec<Option<String>> = Vec::new();
    for (index, raw) in items.into_iter().enumerate() {
        if let Some((item, depends_on, group)) = decode_item(index, raw, bytes, limits, &mut errors)
        {
            if let Some(group) = group {
                if atomic {
                    errors.push(FieldError::item(
                        index,
                        "atomicityGroup",
                        "must be left out when the whole batch is `atomic`",
                    ));
                } else if limits.config.transactions.is_none() {
                    errors.push(FieldError::item(index, "atomicityGroup", NO_HOOK));
                }
                group_names.resize(index + 1, None);
                group_names[index] = Some(group);
            }
            names.push((index, depends_on));
            plan.push(item);
        }
    }
    // The ids, borrowed from the plan: a map of them is needed only while validating.
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(plan.len());
    for (index, item) in plan.iter().enumerate() {
        if let Some(first) = ids.insert(&item.id, index) {
            ids.insert(&plan[first].id, first);
            errors.push(FieldError::item(
                index,
                "id",
                format!("{:?} is already the id of request {first}", item.id),
            ));
        }
    }
    let mut groups = Vec::new();
    if errors.is_empty() {
        if atomic {
            groups.push(Group {
                name: "atomic".into(),
                members: 0..plan.len(),
            });
        } else {
            group_names.resize(plan.len(), None);
            groups = atomicity_groups(&group_names, &ids, &mut errors);
        }
    }
    let resolved = if errors.is_empty() {
        resolve_dependencies(names, &ids, &groups, &mut errors)
    } else {
        Vec::new()
    };
    drop(ids);
    for (index, depends_on) in resolved {
        plan[index].depends_on = depends_on;
    }
    if errors.is_empty() {
        let mut plan = Plan::new(plan, stop_on_error);
        plan.groups = groups;
        Ok(plan)
    } else {
        Err(errors)
    }
}

/// The batch-level options: `stop_on_error` and `atomic`.
fn batch_fields(raw: &RawBatch<'_>, limits: &Limits<'_>) -> Result<(bool, bool), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut flag = |name: &str, value: Option<&RawValue>| match value {
        None => false,
        Some(v) => serde_json::from_str::<bool>(v.get()).unwrap_or_else(|_| {
            errors.push(FieldError::batch(
                name,
                format!("must be a boolean, not {}", type_name(v)),
            ));
            false
        }),
    };
    let stop_on_error = flag("stop_on_error", raw.stop_on_error);
    let atomic = flag("atomic", raw.atomic);
    if atomic && limits.config.transactions.is_none() {
        errors.push(FieldError::batch("atomic", NO_HOOK));
    }
    if errors.is_empty() {
        Ok((stop_on_error, atomic))
    } else {
        Err(errors)
    }
}

/// OData's atomicity groups: the members of each are adjacent, and its name is no
/// request's id.
fn atomicity_groups(
    names: &[Option<String>],
    ids: &HashMap<&str, usize>,
    errors: &mut Vec<FieldError>,
) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let Some(name) = name else { continue };
        if let Some(last) = groups.last_mut() {
            if last.name == *name && last.members.end == index {
                last.members.end = index + 1;
                continue;
            }
        }
        if let Some(earlier) = groups.iter().find(|g| g.name == *name) {
            errors.push(FieldError::item(
                index,
                "atomicityGroup",
                format!(
                    "{name:?} is split: its requests must be adjacent, and request {} ends it",
                    earlier.members.end - 1
                ),
            ));
            continue;
        }
        if let Some(&i) = ids.get(name.as_str()) {
            errors.push(FieldError::item(
                index,
                "atomicityGroup",
                format!("{name:?} is already the id of request {i}: groups and requests share one namespace"),
            ));
            continue;
        }
        groups.push(Group {
            name: name.clone(),
            members: index..index + 1,
        });
    }
    groups
}

fn decode_item(
    index: usize,
    item: Result<RawItem<'_>, String>,
    outer: &Bytes,
    limits: &Limits<'_>,
    errors: &mut Vec<FieldError>,
) -> Option<(PlanItem, Vec<String>, Option<String>)> {
    let before = errors.len();
    let mut err = |field: &str, detail: String| errors.push(FieldError::item(index, field, detail));
    let item = match item {
        Ok(item) => item,
        Err(e) => {
            err("requests", e);
            return None;
        }
    };

    let id = match item.id {
        None => index.to_string(),
        Some(v) => match serde_json::from_str::<serde_json::Value>(v.get()) {
            Ok(serde_json::Value::String(s)) if !s.is_empty() => s,
            Ok(serde_json::Value::Number(n)) => n.to_string(),
            Ok(serde_json::Value::String(_)) => {
                err("id", "must not be empty".into());
                String::new()
            }
            _ => {
                err("id", format!("must be a string, not {}", type_name(v)));
                String::new()
            }
        },
    };
    let method = parse_method_field(item.method)
        .map_err(|e| err("method", e))
        .ok();

    let mut refs = Refs::default();
    let uri = match item.url {
        None => {
            err("url", "is required".into());
            None
        }
        Some(v) => match string(v, "a string").and_then(|u| decode_url(&u, limits.url, outer)) {
            Ok((u, template)) => {
                refs.url = template;
                Some(u)
            }
            Err(e) => {
                err("url", e);
                None
            }
        },
    };
    let mut headers = HeaderMap::new();
    if let Some(v) = item.headers {
        decode_headers(
            v,
            false,
            limits.config,
            &mut headers,
            Some(&mut refs.headers),
            &mut err,
        );
    }
    let depends_on = match item.depends_on {
        None => Vec::new(),
        Some(v) => serde_json::from_str::<Vec<String>>(v.get()).unwrap_or_else(|_| {
            err(
                "dependsOn",
                format!("must be an array of request ids, not {}", type_name(v)),
            );
            Vec::new()
        }),
    };
    let group = match item.atomicity_group {
        None => None,
        Some(v) => match serde_json::from_str::<String>(v.get()) {
            Ok(g) if !g.is_empty() => Some(g),
            Ok(_) => {
                err("atomicityGroup", "must not be empty".into());
                None
            }
            Err(_) => {
                err(
                    "atomicityGroup",
                    format!("must be a string, not {}", type_name(v)),
                );
                None
            }
        },
    };
    let body = match item.body {
        Some(v) if v.get() != "null" => decode_body(v, outer, &mut headers).unwrap_or_else(|e| {
            err("body", e);
            Bytes::new()
        }),
        _ => Bytes::new(),
    };
    if let Some(v) = item.body {
        if v.get().contains("{{") && media_kind(&headers) == Some(MediaKind::Json) {
            match body_template(v) {
                Ok(template) => refs.body = template,
                Err(e) => err("body", e),
            }
        }
    }
    check_reference_ids(&refs, &depends_on, &mut err);
    if errors.len() > before {
        return None;
    }
    Some((
        PlanItem {
            id,
            method: method?,
            uri: uri?,
            headers,
            body,
            depends_on: Vec::new(),
            refs: (!refs.is_empty()).then(|| Box::new(refs)),
        },
        depends_on,
        group,
    ))
}

/// A URL, and its template when it holds references (`{{id#/pointer}}`) or starts with an
/// OData `$id` prefix. The URL around the references is checked now, with a placeholder
/// for each; the resolved URL is checked again when the item runs.
fn decode_url(
    url: &str,
    ctx: UrlContext<'_>,
    outer: &Bytes,
) -> Result<(http::Uri, Option<UrlTemplate>), String> {
    let (location_of, rest) = match url.strip_prefix('$') {
        Some(tail) => {
            let end = tail.find(['/', '?']).unwrap_or(tail.len());
            if end == 0 {
                return Err(
                    "`$` must be followed by the id of an earlier request (`$id/path`)".into(),
                );
            }
            (Some(tail[..end].to_string()), &tail[end..])
        }
        None => (None, url),
    };
    let template = Template::parse(rest)?;
    if location_of.is_none() && template.is_none() {
        return Ok((parse_url_in(url, ctx, Some(outer))?, None));
    }
    let mut template = template.unwrap_or_else(|| Template::literal(rest));
    let mut probe = String::from(if location_of.is_some() { "/x" } else { "" });
    probe.push_str(&template.with_placeholder("x"));
    let uri = parse_url(&probe, ctx)?;
    if location_of.is_none() && !rest.starts_with('/') {
        template.prepend(ctx.base);
    }
    Ok((
        uri,
        Some(UrlTemplate {
            location_of,
            rest: template,
        }),
    ))
}

/// The JSON body as a tree, when one of its strings holds a reference.
fn body_template(raw: &RawValue) -> Result<Option<serde_json::Value>, String> {
    let value: serde_json::Value = serde_json::from_str(raw.get())
        .map_err(|e| format!("cannot be read for its references: {e}"))?;
    Ok((!reference::body_ids(&value)?.is_empty()).then_some(value))
}

/// Every id a reference names must be in the item's `dependsOn`.
fn check_reference_ids(refs: &Refs, depends_on: &[String], err: &mut impl FnMut(&str, String)) {
    let mut check = |field: &str, id: &str| {
        if !depends_on.iter().any(|d| d == id) {
            err(
                field,
                format!("refers to request {id:?}, which is not in this request's dependsOn"),
            );
        }
    };
    if let Some(url) = &refs.url {
        url.location_of.iter().for_each(|id| check("url", id));
        url.rest.references().for_each(|r| check("url", &r.id));
    }
    for (name, t) in &refs.headers {
        t.references()
            .for_each(|r| check(&format!("headers.{name}"), &r.id));
    }
    if let Some(body) = &refs.body {
        for id in reference::body_ids(body).unwrap_or_default() {
            check("body", &id);
        }
    }
}

/// Turns each item's `dependsOn` ids into indices: each must be the id of an earlier
/// request (so the graph has no cycle by construction), or the name of an atomicity group
/// that ends before it (all its members).
fn resolve_dependencies(
    names: Vec<(usize, Vec<String>)>,
    ids: &HashMap<&str, usize>,
    groups: &[Group],
    errors: &mut Vec<FieldError>,
) -> Vec<(usize, Vec<usize>)> {
    let mut resolved = Vec::new();
    for (index, names) in names {
        if names.is_empty() {
            continue;
        }
        let mut depends_on: Vec<usize> = Vec::with_capacity(names.len());
        for name in names {
            if let Some(group) = groups.iter().find(|g| g.name == name) {
                if group.members.end <= index {
                    for d in group.members.clone() {
                        if !depends_on.contains(&d) {
                            depends_on.push(d);
                        }
                    }
                } else {
                    errors.push(FieldError::item(
                        index,
                        "dependsOn",
                        format!(
                            "{name:?} is an atomicity group that does not end before this request"
                        ),
                    ));
                }
                continue;
            }
            match ids.get(name.as_str()) {
                Some(&d) if d < index => {
                    if !depends_on.contains(&d) {
                        depends_on.push(d);
                    }
                }
                Some(&d) if d == index => {
                    errors.push(FieldError::item(index, "dependsOn", format!("{name:?} is this request itself")))
                }
                Some(&d) => errors.push(FieldError::item(
                    index,
                    "dependsOn",
                    format!("{name:?} is request {d}, which comes later: a request may only depend on earlier ones"),
                )),
                None => errors.push(FieldError::item(index, "dependsOn", format!("{name:?} is the id of no request in this batch"))),
            }
        }
        resolved.push((index, depends_on));
    }
    resolved
}

/// The bytes of a sub-request body, with `content-type` set when the body is JSON and the
/// sub-request named none.
fn decode_body(raw: &RawValue, outer: &Bytes, headers: &mut HeaderMap) -> Result<Bytes, String> {
    let is_string = raw.get().starts_with('"');
    match media_kind(headers) {
        None => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(outer.slice_ref(raw.get().as_bytes()))
        }
        Some(MediaKind::Json) => Ok(outer.slice_ref(raw.get().as_bytes())),
        Some(MediaKind::Text) if is_string => Ok(Bytes::from(
            serde_json::from_str::<String>(raw.get()).map_err(|e| e.to_string())?,
        )),
        Some(MediaKind::Binary) if is_string => {
            let s = serde_json::from_str::<std::borrow::Cow<'_, str>>(raw.get())
                .map_err(|e| e.to_string())?;
            decode_base64(&s)
                .map(Bytes::from)
                .ok_or_else(|| "must be base64 for a binary content-type".to_string())
        }
        Some(_) => Err(format!(
            "must be a string for content-type {:?}, not {}",
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            type_name(raw)
        )),
    }
}

/// Writes the reply: `{"responses": [...]}` in request order, in chunks (large JSON
/// bodies are referenced, not copied).
pub(crate) fn encode(outcomes: &[Outcome]) -> Vec<Bytes> {
    let mut w = ReplyWriter::new(outcomes.iter().map(|o| &o.body), 128);
    w.put(b"{\"responses\":[");
    for (i, o) in outcomes.iter().enumerate() {
        if i > 0 {
            w.put(b",");
        }
        w.put(b"{\"id\":");
        w.str(&o.id);
        w.put(b",\"status\":");
        w.put(o.status.as_str().as_bytes());
        w.put(b",\"headers\":");
        w.headers(&o.headers);
        if !o.body.is_empty() {
            w.put(b",\"body\":");
            w.body(&o.headers, &o.body, b"");
        }
        if let Some(reason) = &o.body_omitted {
            w.put(b",\"bodyOmitted\":");
            w.str(reason);
        }
        w.put(b"}");
    }
    w.put(b"]}");
    w.finish()
}
