//! What references read: each finished item seen as `{"status", "headers", "body"}`.
//!
//! The view is built lazily and shared by the whole batch. `/status` and `/headers/…` are
//! read from the outcome as it is; a body is parsed only when a pointer goes into it, and
//! at most once per batch. Parsing, and every value a reference copies into a sub-request,
//! are charged to one budget (`max_reference_bytes`): the work references cause grows with
//! the batch, never with the product of its items, and an item that would pass the budget
//! is not sent (`424`).

use super::id::same_id;
use super::outcome::{encode_base64, BodyView, Outcome};
use http::header::GetAll;
use http::HeaderValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// One reference, `{{id#/pointer}}`: what it points at in the result of request `id`.
#[derive(Debug, Clone)]
pub(crate) struct Reference {
    pub(crate) id: String,
    /// An RFC 6901 pointer into the result: empty, or starting with `/`.
    pub(crate) pointer: String,
}

impl Reference {
    pub(crate) fn spelled(&self) -> String {
        format!("{{{{{}#{}}}}}", self.id, self.pointer)
    }
}

/// The batch's results as references see them.
#[derive(Debug)]
pub(crate) struct Results {
    /// Each item's body as JSON, once a reference has needed it; sized on first use.
    bodies: Vec<Option<Value>>,
    budget: Budget,
}

#[derive(Debug)]
struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    /// Takes `n` bytes, or fails and spends the rest: once a batch has asked for more than
    /// its budget, every later reference fails at once, so that failed attempts cannot be
    /// repeated for free.
    fn charge(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<(), String> {
        if n > self.left {
            return Err(self.refuse(what));
        }
        self.left -= n;
        Ok(())
    }

    /// Spends what is left, and says why `what` cannot have it.
    fn refuse(&mut self, what: impl FnOnce() -> String) -> String {
        self.left = 0;
        format!(
            "{} would pass the limit of {} bytes that references may read and copy in one batch (max_reference_bytes)",
            what(),
            self.limit
        )
    }
}

impl Results {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            bodies: Vec::new(),
            budget: Budget { left: limit, limit },
        }
    }
}

/// What one item's references see: the results of the items it depends on.
pub(crate) struct Views<'a> {
    results: &'a mut Results,
    /// Each dependency's index in the batch, its id, and its outcome.
    deps: Vec<(usize, &'a str, &'a Outcome)>,
}

impl<'a> Views<'a> {
    pub(crate) fn new(
        results: &'a mut Results,
        deps: impl Iterator<Item = (usize, &'a str, &'a Outcome)>,
    ) -> Self {
        Self {
            results,
            deps: deps.collect(),
        }
    }

    /// The value `r` points at, as text: a string as itself, anything else as its JSON.
    pub(crate) fn text(&mut self, r: &Reference) -> Result<String, String> {
        let Results { bodies, budget } = &mut *self.results;
        let value = lookup(bodies, budget, &self.deps, r)?;
        budget.charge(json_size(&value, budget.left), || copying(r))?;
        Ok(match value.as_ref() {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The value `r` points at, with its JSON type.
    pub(crate) fn value(&mut self, r: &Reference) -> Result<Value, String> {
        let Results { bodies, budget } = &mut *self.results;
        let value = lookup(bodies, budget, &self.deps, r)?;
        budget.charge(json_size(&value, budget.left), || copying(r))?;
        Ok(value.into_owned())
    }
}

fn copying(r: &Reference) -> String {
    format!("copying the value of {}", r.spelled())
}

/// Evaluates `r`'s pointer against the view of its dependency; a body is parsed (once) only
/// when the pointer goes into it.
fn lookup<'b>(
    bodies: &'b mut Vec<Option<Value>>,
    budget: &mut Budget,
    deps: &[(usize, &'b str, &'b Outcome)],
    r: &Reference,
) -> Result<Cow<'b, Value>, String> {
    let not_found = || {
        format!(
            "reference {} found nothing in the result of request {:?}",
            r.spelled(),
            r.id
        )
    };
    let &(index, id, outcome) = deps
        .iter()
        .find(|(_, id, _)| same_id(id, &r.id))
        .ok_or_else(not_found)?;
    let pointer = r.pointer.as_str();
    let (token, rest) = match pointer.strip_prefix('/') {
        None => {
            // The whole view: checked against what is left before it is copied.
            let body = body(bodies, budget, index, id, outcome)?;
            if json_size(body, budget.left) > budget.left {
                return Err(budget.refuse(|| copying(r)));
            }
            let body = body.clone();
            let mut view = Map::new();
            view.insert("status".into(), outcome.status.as_u16().into());
            view.insert("headers".into(), headers(outcome));
            view.insert("body".into(), body);
            return Ok(Cow::Owned(Value::Object(view)));
        }
        Some(tail) => split_token(tail),
    };
    let found = match token {
        "status" if rest.is_empty() => Some(Cow::Owned(outcome.status.as_u16().into())),
        "headers" => header_view(outcome, rest).map(Cow::Owned),
        "body" => body(bodies, budget, index, id, outcome)?
            .pointer(rest)
            .map(Cow::Borrowed),
        _ => None,
    };
    found.ok_or_else(not_found)
}

/// Item `index`'s body as JSON (a string for text, base64url for bytes), parsed at most
/// once and charged by its size.
fn body<'b>(
    bodies: &'b mut Vec<Option<Value>>,
    budget: &mut Budget,
    index: usize,
    id: &str,
    outcome: &Outcome,
) -> Result<&'b Value, String> {
    if bodies.len() <= index {
        bodies.resize_with(index + 1, || None);
    }
    let slot = &mut bodies[index];
    if let (None, Some(why)) = (&slot, &outcome.body_omitted) {
        return Err(format!("the body of request {id:?} was left out: {why}"));
    }
    if slot.is_none() {
        let reading = || format!("reading the body of request {id:?}");
        let view = match outcome.body_view() {
            BodyView::Empty => Value::Null,
            BodyView::Json(json) => {
                budget.charge(json.len(), reading)?;
                serde_json::from_slice(json).unwrap_or(Value::Null)
            }
            BodyView::Text(text) => {
                budget.charge(text.len(), reading)?;
                Value::String(text.to_string())
            }
            BodyView::Binary(bytes) => {
                budget.charge(bytes.len() / 3 * 4 + 4, reading)?;
                Value::String(encode_base64(bytes))
            }
            BodyView::NotStrictJson(bytes, _) => {
                budget.charge(bytes.len() / 3 * 4 + 4, reading)?;
                match std::str::from_utf8(bytes) {
                    Ok(text) => Value::String(text.to_string()),
                    Err(_) => Value::String(encode_base64(bytes)),
                }
            }
        };
        *slot = Some(view);
    }
    Ok(slot.get_or_insert(Value::Null))
}

/// What `pointer` finds in the headers' view: one header is read where it is, without
/// building the view of them all, so a reference costs what it reads.
fn header_view(o: &Outcome, pointer: &str) -> Option<Value> {
    let Some(tail) = pointer.strip_prefix('/') else {
        return headers(o).pointer(pointer).cloned();
    };
    let (name, rest) = split_token(tail);
    // Header names hold neither `/` nor `~`, so the pointer's escapes cannot name one; the
    // view's names are lower case.
    if name.contains('~') || name.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let all = o.headers.get_all(name);
    // `/headers/set-cookie/1` reads the one value it names, not all of them.
    if let (Some(tail), true) = (rest.strip_prefix('/'), all.iter().nth(1).is_some()) {
        let (index, more) = split_token(tail);
        let value = all.iter().nth(array_index(index)?).map(value_json)?;
        return value.pointer(more).cloned();
    }
    header_json(all)?.pointer(rest).cloned()
}

/// A pointer's first token and the rest of it: `a/b/c` is `a` and `/b/c`.
fn split_token(tail: &str) -> (&str, &str) {
    tail.split_once('/')
        .map_or((tail, ""), |(token, _)| (token, &tail[token.len()..]))
}

/// A pointer token as an array index (RFC 6901: digits, no leading zero).
fn array_index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    (digits && (token == "0" || !token.starts_with('0')))
        .then(|| token.parse().ok())
        .flatten()
}

/// A header value in the view: its text (invalid UTF-8 replaced).
fn value_json(v: &HeaderValue) -> Value {
    Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// One header in the view: its value, or an array of them when repeated; `None` when
/// absent.
fn header_json(all: GetAll<'_, HeaderValue>) -> Option<Value> {
    let mut values = all.iter();
    let first = values.next()?;
    Some(match values.next() {
        None => value_json(first),
        Some(second) => Value::Array(
            [first, second]
                .into_iter()
                .chain(values)
                .map(value_json)
                .collect(),
        ),
    })
}

/// The headers as JSON: a name to its value, or to an array of them when repeated.
fn headers(o: &Outcome) -> Value {
    let view = o.headers.keys().filter_map(|name| {
        let value = header_json(o.headers.get_all(name))?;
        Some((name.as_str().to_string(), value))
    });
    Value::Object(view.collect())
}

/// `v`'s size as JSON, counting no further than `cap + 1`.
fn json_size(v: &Value, cap: usize) -> usize {
    struct Counter {
        n: usize,
        cap: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.n += bytes.len();
            if self.n > self.cap {
                return Err(std::io::Error::other("over the cap"));
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { n: 0, cap };
    let _ = serde_json::to_writer(&mut counter, v);
    counter.n
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, StatusCode};
    use serde_json::json;

    #[test]
    fn one_header_is_read_where_it_is() {
        let mut headers = HeaderMap::new();
        headers.insert("etag", HeaderValue::from_static("\"v1\""));
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        let o = Outcome {
            status: StatusCode::OK,
            headers,
            body: bytes::Bytes::new(),
            body_omitted: None,
            answered: None,
        };
        assert_eq!(header_view(&o, "/etag"), Some(json!("\"v1\"")));
        assert_eq!(header_view(&o, "/set-cookie"), Some(json!(["a=1", "b=2"])));
        assert_eq!(header_view(&o, "/set-cookie/1"), Some(json!("b=2")));
        assert_eq!(header_view(&o, "/set-cookie/01"), None);
        assert_eq!(header_view(&o, "/set-cookie/+1"), None);
        assert_eq!(header_view(&o, "/set-cookie/2"), None);
        assert_eq!(
            header_view(&o, "/ETag"),
            None,
            "the view's names are lower case"
        );
        assert_eq!(header_view(&o, "/missing"), None);
        assert_eq!(header_view(&o, "/etag/0"), None);
        assert_eq!(header_view(&o, ""), Some(super::headers(&o)));
    }
}
