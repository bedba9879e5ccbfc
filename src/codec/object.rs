//! A JSON object's members, each key at most once. serde_json (like most parsers) reads a
//! key given twice as its last value, silently: `{"ids": [1], "ids": [2]}` would delete
//! only `2`, and a sender who meant both would never know. Every object whose keys the
//! layer reads itself (a request's fields, filters, headers, an update's fields) is read
//! here, and a repeated key is the sender's error, named.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The members of a JSON object, in the order written, their values unread.
pub(crate) type Members<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// Why a text is not an object of unique keys.
#[derive(Debug)]
pub(crate) enum ObjectError {
    /// Not a JSON object (`is_data`), or not JSON.
    NotObject(serde_json::Error),
    /// A key given twice: the key.
    Repeated(String),
}

impl ObjectError {
    /// The message for a repeated key, named at `field`.
    pub(crate) fn repeated(key: &str) -> String {
        format!("is given twice: {key:?} (a JSON object holds each key once)")
    }
}

/// The members of the object `text`, or why it is none. Work is `O(n log n)` in its
/// members, whatever the keys.
pub(crate) fn members(text: &str) -> Result<Members<'_>, ObjectError> {
    let Object(members) = serde_json::from_str(text).map_err(ObjectError::NotObject)?;
    match repeated(members.iter().map(|(k, _)| k.as_ref()).collect()) {
        Some(key) => Err(ObjectError::Repeated(key.to_string())),
        None => Ok(members),
    }
}

/// A key that `keys` holds twice, found by sorting them: `O(n log n)`, whatever the keys.
fn repeated(mut keys: Vec<&str>) -> Option<&str> {
    keys.sort_unstable();
    keys.windows(2)
        .find(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
}

/// The members of `raw` when it is an object of unique keys.
pub(crate) fn raw_members(raw: &RawValue) -> Result<Members<'_>, ObjectError> {
    members(raw.get())
}

/// A key that some object in the JSON text `text`, at any depth, holds twice; `None` when
/// every object holds each key once (or the text is not JSON: that is for its reader to
/// say). For a value the layer rebuilds (a body with references), where a repeated key
/// would otherwise collapse to its last value.
pub(crate) fn repeated_anywhere(text: &str) -> Option<String> {
    match serde_json::from_str::<Unique>(text) {
        Err(e) if e.is_data() => {
            let message = e.to_string();
            let key = message.strip_prefix(REPEATED)?.split_once('`')?.0;
            Some(key.to_string())
        }
        _ => None,
    }
}

/// How [`Unique`] says which key was given twice.
const REPEATED: &str = "repeated key `";

/// Any JSON value whose objects hold each key once, at any depth.
struct Unique;

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut keys: Vec<Key<'de>> = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            map.next_value::<Unique>()?;
            keys.push(key);
        }
        match repeated(keys.iter().map(|k| k.0.as_ref()).collect()) {
            Some(key) => Err(de::Error::custom(format!("{REPEATED}{key}`"))),
            None => Ok(Unique),
        }
    }
}

struct Object<'a>(Members<'a>);

impl<'de> serde::Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(Key(key)) = map.next_key()? {
            let value: &'de RawValue = map.next_value()?;
            members.push((key, value));
        }
        Ok(Object(members))
    }
}

/// A key, borrowed from the text when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Result<Vec<String>, ObjectError> {
        members(text).map(|m| m.into_iter().map(|(k, _)| k.into_owned()).collect())
    }

    #[test]
    fn members_keep_their_order_and_raw_values() {
        let m = members(r#"{"b": [1, 2], "a": {"x": 1}, "c\u0041": "v"}"#).unwrap();
        assert_eq!(m[0].0, "b");
        assert_eq!(m[0].1.get(), "[1, 2]");
        assert_eq!(m[1].1.get(), r#"{"x": 1}"#);
        assert_eq!(m[2].0, "cA");
        assert!(matches!(m[0].0, Cow::Borrowed(_)));
    }

    #[test]
    fn a_repeated_key_is_named_however_it_is_spelled() {
        let repeated = |text| match keys(text) {
            Err(ObjectError::Repeated(key)) => key,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(repeated(r#"{"ids": [1], "x": 0, "ids": [2]}"#), "ids");
        // An escape spells the same key.
        assert_eq!(repeated(r#"{"ids": 1, "\u0069ds": 2}"#), "ids");
        // Keys differing in case are two keys.
        assert_eq!(keys(r#"{"a": 1, "A": 2}"#).unwrap(), ["a", "A"]);
        assert_eq!(keys("{}").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_key_repeated_at_any_depth_is_found() {
        assert_eq!(
            repeated_anywhere(r#"{"a": [1, {"b": 1, "b": 2}]}"#).as_deref(),
            Some("b")
        );
        assert_eq!(
            repeated_anywhere(r#"[{"x": {"y": 1}}, {"x": 2, "x": 3}]"#).as_deref(),
            Some("x")
        );
        assert_eq!(repeated_anywhere(r#"{"a": {"b": 1}, "b": {"a": 2}}"#), None);
        assert_eq!(repeated_anywhere(r#""a""#), None);
        assert_eq!(
            repeated_anywhere("{"),
            None,
            "not JSON: for its reader to say"
        );
    }

    #[test]
    fn anything_but_an_object_is_not_one() {
        for text in ["[]", "1", "\"a\"", "null", "{", "{\"a\"}", "{1: 2}"] {
            assert!(
                matches!(members(text), Err(ObjectError::NotObject(_))),
                "{text}"
            );
        }
    }
}
