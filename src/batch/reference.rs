//! Result references: `{{id#/json/pointer}}` in a sub-request's URL, header values and
//! JSON body strings, and OData's `$id` URL prefix, resolved from earlier results.
//!
//! Validation parses every template and checks that each id it names is in the item's
//! `dependsOn`; at run time, once those items have finished, the pointer (RFC 6901) reads
//! the earlier result seen as `{"status", "headers", "body"}`. Nothing is ever evaluated:
//! a value is only copied, escaped for where it lands:
//! - in a URL path, percent-encoded as one segment (`/`, `?`, `#`, `%`, spaces, non-ASCII);
//!   in the query, percent-encoded as a query value; the resolved URL is checked again
//!   like any other (no scheme, no host, no nested batch);
//! - in a header value, as text (it must be a valid header value);
//! - in a JSON body string: a string that is exactly one reference takes the referenced
//!   value with its JSON type; otherwise the value's text is spliced into the string.

use super::results::{Reference, Views};
use super::url::{encode_component, is_dot_segment, parse_url, BatchPaths, UrlContext};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use serde_json::Value;

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Ref(Reference),
}

/// A string with references in it.
#[derive(Debug, Clone)]
pub(crate) struct Template(Vec<Piece>);

impl Template {
    /// Parses `s`; `None` when it holds no reference.
    pub(crate) fn parse(s: &str) -> Result<Option<Self>, String> {
        if !s.contains("{{") {
            return Ok(None);
        }
        let mut pieces = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("has `{{{{` without a closing `}}}}` in {s:?}"))?;
            let inner = &after[..close];
            let (id, pointer) = inner.split_once('#').ok_or_else(|| {
                format!("reference {{{{{inner}}}}} needs the form {{{{id#/json/pointer}}}}")
            })?;
            if id.is_empty() {
                return Err(format!("reference {{{{{inner}}}}} names no request id"));
            }
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return Err(format!(
                    "reference {{{{{inner}}}}}: a JSON pointer is empty or starts with `/`"
                ));
            }
            pieces.push(Piece::Ref(Reference {
                id: id.to_string(),
                pointer: pointer.to_string(),
            }));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Some(Self(pieces)))
    }

    /// A template of plain text.
    pub(crate) fn literal(s: &str) -> Self {
        Self(vec![Piece::Text(s.to_string())])
    }

    /// Puts `prefix` before the template.
    pub(crate) fn prepend(&mut self, prefix: &str) {
        self.0.insert(0, Piece::Text(prefix.to_string()));
    }

    /// The references, for checking their ids.
    pub(crate) fn references(&self) -> impl Iterator<Item = &Reference> {
        self.0.iter().filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
    }

    /// The string with every reference replaced by `placeholder`, for validating the rest.
    pub(crate) fn with_placeholder(&self, placeholder: &str) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Ref(_) => placeholder,
            })
            .collect()
    }

    /// Resolves the template into text, escaping each value with `escape`.
    fn render(
        &self,
        views: &mut Views<'_>,
        escape: impl Fn(&str) -> String,
    ) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Ref(r) => out.push_str(&escape(&views.text(r)?)),
            }
        }
        Ok(out)
    }
}

impl Template {
    /// Resolves a URL template. One escaping serves a path segment and a query value
    /// alike: all but unreserved characters, so a value stays within its segment. A value
    /// that makes a path segment `.` or `..` is refused: that would move the request
    /// elsewhere, and a dot segment cannot be carried in a path as data.
    fn render_url(&self, views: &mut Views<'_>) -> Result<String, String> {
        let mut out = String::new();
        // Where the current path segment starts, and whether a value is in it.
        let (mut segment, mut from_value, mut in_query) = (0, false, false);
        let dot = |seg: &str| {
            format!("references make the path segment {seg:?}, a dot segment: a value in a path cannot be `.` or `..`")
        };
        for piece in &self.0 {
            let text = match piece {
                Piece::Ref(r) => {
                    out.push_str(&encode_component(&views.text(r)?));
                    from_value |= !in_query;
                    continue;
                }
                Piece::Text(text) => text,
            };
            for part in text.split_inclusive(['/', '?']) {
                out.push_str(part);
                let ends = part.ends_with(['/', '?']);
                if in_query || !ends {
                    continue;
                }
                let seg = &out[segment..out.len() - 1];
                if from_value && is_dot_segment(seg) {
                    return Err(dot(seg));
                }
                (segment, from_value, in_query) = (out.len(), false, part.ends_with('?'));
            }
        }
        if from_value && !in_query && is_dot_segment(&out[segment..]) {
            return Err(dot(&out[segment..]));
        }
        Ok(out)
    }
}

/// A sub-request's URL when it holds references or a `$id` prefix.
#[derive(Debug, Clone)]
pub(crate) struct UrlTemplate {
    /// `$id` prefix: the request whose `location` the URL starts with.
    pub(crate) location_of: Option<String>,
    /// The rest of the URL (after the `$id` prefix), as a template.
    pub(crate) rest: Template,
    /// The service root the resolved URL is taken under, when the endpoint has one.
    pub(crate) root: Option<Box<str>>,
}

/// The references of one sub-request, resolved just before it is sent.
#[derive(Debug, Default)]
pub(crate) struct Refs {
    pub(crate) url: Option<UrlTemplate>,
    pub(crate) headers: Vec<(HeaderName, Template)>,
    /// The JSON body, when one of its strings holds a reference.
    pub(crate) body: Option<Value>,
}

impl Refs {
    pub(crate) fn is_empty(&self) -> bool {
        self.url.is_none() && self.headers.is_empty() && self.body.is_none()
    }
}

/// The ids the references in a JSON body's strings name.
pub(crate) fn body_ids(body: &Value) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    walk_strings(body, &mut |s| {
        if let Some(t) = Template::parse(s)? {
            ids.extend(t.references().map(|r| r.id.clone()));
        }
        Ok(())
    })?;
    Ok(ids)
}

fn walk_strings(v: &Value, f: &mut impl FnMut(&str) -> Result<(), String>) -> Result<(), String> {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().try_for_each(|v| walk_strings(v, f)),
        Value::Object(o) => o.values().try_for_each(|v| walk_strings(v, f)),
        _ => Ok(()),
    }
}

/// Resolves a URL template into the URI to send, checked like any sub-request URL.
fn resolve_url(t: &UrlTemplate, views: &mut Views<'_>, ctx: UrlContext<'_>) -> Result<Uri, String> {
    let mut url = String::new();
    if let Some(r) = &t.location_of {
        let reference = Reference {
            id: r.clone(),
            pointer: "/headers/location".into(),
        };
        let location = views.text(&reference).map_err(|_| {
            format!(
                "${r} needs a `location` header in the result of request {r:?}, and it has none"
            )
        })?;
        // Keep the path and query of an absolute location: a batch never leaves this service.
        let path = match location.parse::<Uri>() {
            Ok(uri) if uri.scheme().is_some() => uri
                .path_and_query()
                .map_or("/".to_string(), |pq| pq.to_string()),
            _ => location,
        };
        url.push_str(&path);
    }
    url.push_str(&t.rest.render_url(views)?);
    parse_url(&url, ctx).map_err(|e| format!("the url resolved to {url:?}, which {e}"))
}

/// Resolves a header template into a header value.
fn resolve_header(t: &Template, views: &mut Views<'_>) -> Result<HeaderValue, String> {
    let text = t.render(views, str::to_string)?;
    HeaderValue::try_from(text)
        .map_err(|_| "a reference produced an invalid header value".to_string())
}

/// Resolves every reference in the strings of a JSON body.
fn resolve_body(body: &mut Value, views: &mut Views<'_>) -> Result<(), String> {
    match body {
        Value::String(s) => {
            if let Some(t) = Template::parse(s)? {
                if let [Piece::Ref(r)] = t.0.as_slice() {
                    *body = views.value(r)?;
                } else {
                    *s = t.render(views, str::to_string)?;
                }
            }
            Ok(())
        }
        Value::Array(a) => a.iter_mut().try_for_each(|v| resolve_body(v, views)),
        Value::Object(o) => o.values_mut().try_for_each(|v| resolve_body(v, views)),
        _ => Ok(()),
    }
}

/// The parts of a sub-request that references can change.
pub(crate) struct Resolvable<'a> {
    pub(crate) uri: &'a mut Uri,
    pub(crate) headers: &'a mut HeaderMap,
    pub(crate) body: &'a mut Bytes,
}

impl Refs {
    /// Resolves every reference from the results of the item's dependencies: its URL
    /// (checked again like any sub-request URL), header values and body take their final
    /// form. The reason, when a reference finds nothing or resolves to something invalid.
    pub(crate) fn resolve(
        self,
        views: &mut Views<'_>,
        batch_paths: &BatchPaths,
        into: Resolvable<'_>,
    ) -> Result<(), String> {
        if let Some(url) = &self.url {
            let ctx = UrlContext {
                root: url.root.as_deref(),
                ..UrlContext::paths(batch_paths, "/")
            };
            *into.uri = resolve_url(url, views, ctx)?;
        }
        for (name, t) in &self.headers {
            let value = resolve_header(t, views)?;
            into.headers
                .try_append(name.clone(), value)
                .map_err(|_| "the sub-request has too many headers".to_string())?;
        }
        if let Some(mut body) = self.body {
            resolve_body(&mut body, views)?;
            *into.body = serde_json::to_vec(&body).map_err(|e| e.to_string())?.into();
        }
        Ok(())
    }
}
