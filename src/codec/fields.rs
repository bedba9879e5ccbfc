//! Reading the fields of JSON batch formats: the envelope, the list of sub-requests, one
//! item, a method, a string; every failure as a message that names what was expected.

use super::object::ObjectError;
pub(crate) use crate::batch::outcome::decode_base64;
use crate::batch::plan::parse_method;
use crate::batch::strict::NEEDS_ESCAPE;
use crate::error::FieldError;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Parses the outer body's envelope; a body that is not JSON, or not of the envelope's
/// shape, is one problem at field `body`.
pub(crate) fn parse_envelope<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
) -> Result<T, FieldError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| FieldError::batch("body", format!("is not UTF-8 text: {e}")))?;
    serde_json::from_str(text).map_err(|e| {
        if let Some(field) = repeated_field(&e.to_string()) {
            return FieldError::batch(field, ObjectError::repeated(field));
        }
        let detail = if e.is_data() {
            format!("must be a JSON object with a `requests` array ({e})")
        } else {
            format!("is not valid JSON: {e}")
        };
        FieldError::batch("body", detail)
    })
}

/// The field serde's message says was given twice (`duplicate field `url``), if any.
fn repeated_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("duplicate field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

/// Where an item serde refused is named: at the field given twice, or as the item.
pub(crate) fn item_problem(why: String) -> (String, String) {
    match repeated_field(&why) {
        Some(field) => (field.to_string(), ObjectError::repeated(field)),
        None => ("requests".to_string(), why),
    }
}

/// The `requests` array: present, an array, not empty, and within the limit.
pub(crate) fn request_list(
    requests: Option<&RawValue>,
    max: usize,
) -> Result<Vec<&RawValue>, FieldError> {
    let requests = requests
        .ok_or_else(|| FieldError::batch("requests", "is required: an array of sub-requests"))?;
    let items = serde_json::from_str::<Vec<&RawValue>>(requests.get()).map_err(|_| {
        FieldError::batch(
            "requests",
            format!("must be an array, not {}", type_name(requests)),
        )
    })?;
    if items.is_empty() {
        return Err(FieldError::batch(
            "requests",
            "must hold at least one sub-request",
        ));
    }
    if items.len() > max {
        return Err(FieldError::batch(
            "requests",
            format!("holds {} sub-requests; the limit is {max}", items.len()),
        ));
    }
    Ok(items)
}

/// One item of `requests` as the codec's item struct; the message when it is not one.
pub(crate) fn parse_item<'a, T: serde::Deserialize<'a>>(raw: &'a RawValue) -> Result<T, String> {
    serde_json::from_str(raw.get()).map_err(|e| {
        if raw.get().starts_with('{') {
            e.to_string()
        } else {
            format!("must be an object, not {}", type_name(raw))
        }
    })
}

/// A sub-request's `method`: `GET` when absent.
pub(crate) fn parse_method_field(raw: Option<&RawValue>) -> Result<http::Method, String> {
    match raw {
        None => Ok(http::Method::GET),
        Some(v) => {
            let s = string(v, "a string")?;
            parse_method(&s)
        }
    }
}

/// A JSON string, borrowed from the batch body when it has no escapes.
pub(crate) fn string<'a>(raw: &'a RawValue, what: &str) -> Result<Cow<'a, str>, String> {
    // A string without escapes or controls is its text between the quotes: serde_json
    // read the rest when it took the value, and reading it again costs more than the
    // item's other checks (every id is read here).
    let text = raw.get();
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        if !inner.bytes().any(|b| NEEDS_ESCAPE[usize::from(b)]) {
            return Ok(inner.into());
        }
    }
    match serde_json::from_str::<&'a str>(text) {
        Ok(s) => Ok(s.into()),
        Err(_) => serde_json::from_str::<String>(raw.get())
            .map(Into::into)
            .map_err(|_| match type_name(raw) {
                // Only a lone surrogate escape (`"\ud800"`) gets here: serde_json read
                // every other escape when it took the value.
                "a string" => not_unicode(what),
                other => format!("must be {what}, not {other}"),
            }),
    }
}

/// Why a string with a lone surrogate escape is no text.
fn not_unicode(what: &str) -> String {
    format!("must be {what} of Unicode text, without a lone surrogate escape (`\\ud800`)")
}

/// `true` or `false`; the message names the field's actual type.
pub(crate) fn boolean(raw: &RawValue) -> Result<bool, String> {
    serde_json::from_str::<bool>(raw.get())
        .map_err(|_| format!("must be a boolean, not {}", type_name(raw)))
}

/// A JSON value's type, for messages.
pub(crate) fn type_name(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// A parsed JSON value's type, for messages.
pub(crate) fn value_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Object(_) => "an object",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Null => "null",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Number(_) => "a number",
    }
}

/// A field that should be a string, read in serde's one pass over the batch: the string
/// (borrowed from the body when it has no escapes), or the type of what stood there
/// instead, for the message. A string read as a [`RawValue`] is read twice: once by serde
/// to find its end, once by [`string`] (every item has a URL).
pub(crate) enum Text<'a> {
    Str(Cow<'a, str>),
    /// Not a string: the type that stood there.
    Not(&'static str),
    /// A string serde_json cannot read as text: one with a lone surrogate escape. (No
    /// more is kept: a `Text` stays as small as the string it holds.)
    Unreadable,
}

impl<'a> Text<'a> {
    /// The string, or why it is none: "must be `what`, not an object".
    pub(crate) fn string(self, what: &str) -> Result<Cow<'a, str>, String> {
        match self {
            Text::Str(s) => Ok(s),
            Text::Not(type_name) => Err(format!("must be {what}, not {type_name}")),
            Text::Unreadable => Err(not_unicode(what)),
        }
    }

    /// A raw value read as text: for an item serde refused as a whole because of what
    /// stood where the text should be (a number past `f64`, a lone surrogate escape), so
    /// that the problem is named at its field, as any other wrong value there is.
    pub(crate) fn from_raw(raw: &'a RawValue) -> Self {
        match raw.get().starts_with('"') {
            true => string(raw, "a string").map_or(Text::Unreadable, Text::Str),
            false => Text::Not(type_name(raw)),
        }
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Text<'a> {
    #[inline]
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor(std::marker::PhantomData))
    }
}

struct TextVisitor<'a>(std::marker::PhantomData<Text<'a>>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for TextVisitor<'a> {
    type Value = Text<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'a>, E> {
        Ok(Text::Str(s.into()))
    }
    fn visit_str<E>(self, s: &str) -> Result<Text<'a>, E> {
        Ok(Text::Str(s.to_owned().into()))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Text<'a>, E> {
        Ok(Text::Not("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Text<'a>, E> {
        Ok(Text::Not("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Text<'a>, E> {
        Ok(Text::Not("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Text<'a>, E> {
        Ok(Text::Not("a number"))
    }
    // Unreached where the field is an `Option` (serde_json reads `null` as `None`), which
    // every `Text` field is; here so that a `Text` never refuses a whole item for a null.
    fn visit_unit<E>(self) -> Result<Text<'a>, E> {
        Ok(Text::Not("null"))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Text<'a>, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Text::Not("an array"))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Text<'a>, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Text::Not("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Item<'a> {
        #[serde(borrow)]
        url: Option<Text<'a>>,
    }

    /// The `url` of `item`, as read in one pass.
    fn url(item: &str) -> Option<Result<Cow<'_, str>, String>> {
        let item: Item<'_> = serde_json::from_str(item).expect("valid JSON");
        item.url.map(|t| t.string("a string"))
    }

    #[test]
    fn text_is_a_string_or_the_type_that_stood_there() {
        let Some(Ok(Cow::Borrowed("/a"))) = url(r#"{"url": "/a"}"#) else {
            panic!("a string without escapes is borrowed");
        };
        assert_eq!(url(r#"{"url": "/a\u0062\n"}"#), Some(Ok("/ab\n".into())));
        for (value, type_name) in [
            ("5", "a number"),
            ("-1", "a number"),
            ("1.5e3", "a number"),
            ("true", "a boolean"),
            (r#"[1, {"a": [2]}, "x"]"#, "an array"),
            (r#"{"a": [1], "b": {"c": null}}"#, "an object"),
        ] {
            let item = format!(r#"{{"url": {value}, "after": 1}}"#);
            let expected = format!("must be a string, not {type_name}");
            assert_eq!(url(&item), Some(Err(expected)), "{value}");
        }
        assert_eq!(url(r#"{"url": null}"#), None);
        assert_eq!(url(r#"{"method": "GET"}"#), None);
    }
}
