//! What references read: each finished item seen as `{"status", "headers", "body"}`.
//!
//! The view is built lazily and shared by the whole batch. `/status` and `/headers/…` are
//! read from the outcome as it is; a body is parsed only when a pointer goes into it, and
//! at most once per batch. Parsing, and every value a reference copies into a sub-request,
//! are charged to one budget (`max_reference_bytes`): the work references cause grows with
//! the batch, never with the product of its items, and an item that would pass the budget
//! is not sent (`424`).

use super::outcome::{encode_base64, BodyView, Outcome};
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
    /// Each dependency's index in the batch, and its outcome.
    deps: Vec<(usize, &'a Outcome)>,
}

impl<'a> Views<'a> {
    pub(crate) fn new(
        results: &'a mut Results,
        deps: impl Iterator<Item = (usize, &'a Outcome)>,
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
    deps: &[(usize, &'b Outcome)],
    r: &Reference,
) -> Result<Cow<'b, Value>, String> {
    let not_found = || {
        format!(
            "reference {} found nothing in the result of request {:?}",
            r.spelled(),
            r.id
        )
    };
    let &(index, outcome) = deps
        .iter()
        .find(|(_, o)| o.id == r.id)
        .ok_or_else(not_found)?;
    let pointer = r.pointer.as_str();
    let (token, rest) = match pointer.strip_prefix('/') {
        None => {
            // The whole view: checked against what is left before it is copied.
            let body = body(bodies, budget, index, outcome)?;
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
        Some(tail) => tail
            .split_once('/')
            .map_or((tail, ""), |(t, _)| (t, &tail[t.len()..])),
    };
    let found = match token {
        "status" if rest.is_empty() => Some(Cow::Owned(outcome.status.as_u16().into())),
        "headers" => header_view(outcome, rest).map(Cow::Owned),
        "body" => body(bodies, budget, index, outcome)?
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
    outcome: &Outcome,
) -> Result<&'b Value, String> {
    if bodies.len() <= index {
        bodies.resize_with(index + 1, || None);
    }
    let slot = &mut bodies[index];
    if let (None, Some(why)) = (&slot, &outcome.body_omitted) {
        return Err(format!(
            "the body of request {:?} was left out: {why}",
            outcome.id
        ));
    }
    if slot.is_none() {
        let reading = || format!("reading the body of request {:?}", outcome.id);
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
    let Some(name) = pointer.strip_prefix('/') else {
        return headers(o).pointer(pointer).cloned();
    };
    let (name, rest) = name
        .split_once('/')
        .map_or((name, ""), |(n, _)| (n, &name[n.len()..]));
    // Header names hold neither `/` nor `~`, so the pointer's escapes cannot name one; the
    // view's names are lower case.
    if name.contains('~') || name.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let as_json = |v: &HeaderValue| Value::String(String::from_utf8_lossy(v.as_bytes()).into());
    let all = o.headers.get_all(name);
    let count = all.iter().count();
    // `/headers/set-cookie/1` reads the one value it names, not all of them.
    if let (true, Some(n)) = (count > 1, rest.strip_prefix('/')) {
        let (n, more) = n
            .split_once('/')
            .map_or((n, ""), |(i, _)| (i, &n[i.len()..]));
        // RFC 6901 indices: digits, no leading zero.
        if n.is_empty()
            || !n.bytes().all(|b| b.is_ascii_digit())
            || (n.len() > 1 && n.starts_with('0'))
        {
            return None;
        }
        let value = all.iter().nth(n.parse::<usize>().ok()?).map(as_json)?;
        return value.pointer(more).cloned();
    }
    let value = match count {
        0 => return None,
        1 => as_json(all.iter().next()?),
        _ => Value::Array(all.iter().map(as_json).collect()),
    };
    value.pointer(rest).cloned()
}

/// The headers as JSON: a name to its value, or to an array of them when repeated.
fn headers(o: &Outcome) -> Value {
    let mut headers = Map::new();
    for name in o.headers.keys() {
        let mut values: Vec<Value> = o
            .headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let value = match values.len() {
            1 => values.pop().unwrap_or(Value::Null),
            _ => Value::Array(values),
        };
        headers.insert(name.as_str().to_string(), value);
    }
    Value::Object(headers)
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
            id: "a".into(),
            status: StatusCode::OK,
            headers,
            body: bytes::Bytes::new(),
            body_omitted: None,
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
