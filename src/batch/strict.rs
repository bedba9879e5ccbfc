//! Whether strict JSON parsers would take a sub-response body that says it is JSON, so
//! that a reply can embed it as it is: UTF-8, nested at most [`MAX_EMBEDDED_DEPTH`] deep,
//! strings without lone surrogate escapes, no key serde_json reserves.
//!
//! serde_json decides ([`strict_json`]), but reading a value through serde's visitors costs
//! about 40 instructions a byte, and every JSON item of a reply is checked. Most bodies are
//! plain: ASCII or UTF-8 text without escapes, short numbers, shallow nesting. A scan that
//! takes only such bodies ([`plainly_json`]) answers for them at a few instructions a byte;
//! anything it does not know, it leaves to serde_json. It never says yes where serde_json
//! would say no (the `strict_json` fuzz target checks it). Measured (issue 26, callgrind,
//! `examples/driver.rs`): without the scan, a batch of 100 GETs answering a 23-byte JSON
//! object costs 610 more instructions per item (3% of the item), and the cost grows with
//! the body (at 40 a byte, some 40,000 for a 1 KB body).

/// How deep a body may nest to be embedded as JSON: the reply nests it three deep
/// (`{"responses":[{"body":…}]}`), and the whole must stay within serde_json's default
/// recursion limit of 128 (Python's `json` stops near 1,000).
pub(crate) const MAX_EMBEDDED_DEPTH: usize = 124;

/// What serde_json says of `body`, read through [`Strict`]: the reference, and the reason
/// when it refuses.
pub(crate) fn serde_strict_json(body: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde::de::DeserializeSeed::deserialize(Strict(MAX_EMBEDDED_DEPTH), &mut de)
        .and_then(|()| de.end())
        .map_err(|e| format!("strict JSON parsers would refuse it ({e})"))
}

/// A JSON value read only to check it, through `deserialize_any`: serde_json then decodes
/// every string (UTF-8, escapes, surrogate pairs), which `IgnoredAny`'s skipping does not.
/// It holds how many more levels of arrays and objects may open.
#[derive(Clone, Copy)]
struct Strict(usize);

impl<'de> serde::de::DeserializeSeed<'de> for Strict {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Strict {
    /// The seed for the values inside an array or object, or the error when none may open.
    fn inner<E: serde::de::Error>(&self) -> Result<Strict, E> {
        match self.0 {
            0 => Err(E::custom(format_args!(
                "nested deeper than {MAX_EMBEDDED_DEPTH}"
            ))),
            n => Ok(Strict(n - 1)),
        }
    }
}

impl<'de> serde::de::Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.inner()?;
        while map.next_key_seed(Key)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// An object key, refused when serde_json reserves it: with its `raw_value` or
/// `arbitrary_precision` features, an object whose key is `$serde_json::private::…`
/// is read as something else, and a client's parser would refuse the whole reply.
struct Key;

impl<'de> serde::de::DeserializeSeed<'de> for Key {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(Key)
    }
}

impl<'de> serde::de::Visitor<'de> for Key {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<(), E> {
        match key.starts_with("$serde_json::private::") {
            true => Err(E::custom("a key serde_json reserves")),
            false => Ok(()),
        }
    }
}

/// Nesting the plain scan follows (a bit of a `u64` per level); deeper bodies go to serde.
const PLAIN_DEPTH: u32 = 63;
const _: () = assert!(PLAIN_DEPTH as usize <= MAX_EMBEDDED_DEPTH);

/// The longest number the plain scan takes: any such number without an exponent is a
/// finite `f64` or an integer serde_json reads.
const PLAIN_NUMBER: usize = 20;

/// Whether strict parsers would take `body` as JSON (see the module's docs); the reason
/// when not.
pub(crate) fn strict_json(body: &[u8]) -> Result<(), String> {
    if plainly_json(body) {
        return Ok(());
    }
    serde_strict_json(body)
}

/// `true` when `body` is, without doubt, JSON that serde_json takes (see
/// [`serde_strict_json`]): UTF-8; strings without backslashes or control characters, keys
/// not starting with `$`; numbers without exponents, of at most [`PLAIN_NUMBER`]
/// characters; at most [`PLAIN_DEPTH`] levels deep. `false` says nothing either way.
pub(crate) fn plainly_json(body: &[u8]) -> bool {
    // Past 0x7f, bytes can only be in strings (elsewhere the scan stops): valid UTF-8 is
    // what serde_json asks of them there.
    if !body.is_ascii() && std::str::from_utf8(body).is_err() {
        return false;
    }
    let mut scan = Scan { body, at: 0 };
    // A bit per open container, the innermost lowest: 1 for an object.
    let (mut objects, mut depth) = (0u64, 0u32);
    'value: loop {
        let plain = match scan.next_token() {
            Some(open @ (b'{' | b'[')) => {
                if depth == PLAIN_DEPTH {
                    return false;
                }
                let object = open == b'{';
                let close = if object { b'}' } else { b']' };
                if scan.peek_token() != Some(close) {
                    depth += 1;
                    objects = objects << 1 | u64::from(object);
                    if object && !scan.member_key() {
                        return false;
                    }
                    continue 'value;
                }
                scan.at += 1;
                true
            }
            Some(b'"') => scan.string(),
            Some(first @ (b'-' | b'0'..=b'9')) => scan.number(first),
            Some(b't') => scan.literal(b"true"),
            Some(b'f') => scan.literal(b"false"),
            Some(b'n') => scan.literal(b"null"),
            _ => false,
        };
        if !plain {
            return false;
        }
        // After a value: the containers it closes, then a comma and the next value.
        loop {
            let Some(next) = scan.next_token() else {
                return depth == 0;
            };
            let object = objects & 1 == 1;
            match next {
                _ if depth == 0 => return false,
                b',' if object => match scan.member_key() {
                    true => continue 'value,
                    false => return false,
                },
                b',' => continue 'value,
                b'}' if object => {}
                b']' if !object => {}
                _ => return false,
            }
            depth -= 1;
            objects >>= 1;
        }
    }
}

/// The bytes a JSON string cannot hold as they are (RFC 8259 §7): controls, `"` and `\`.
/// The plain scan stops at them (a closing quote, or what it leaves to serde), the reply's
/// writer escapes them, and a field is read between its quotes without them. A table:
/// most of a body's bytes are in strings.
pub(crate) static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = needs_escape(b as u8);
        b += 1;
    }
    table
};

/// Whether a JSON string cannot hold byte `b` as it is (see [`NEEDS_ESCAPE`]).
pub(crate) const fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Where the plain scan is in a body.
struct Scan<'a> {
    body: &'a [u8],
    at: usize,
}

impl Scan<'_> {
    /// The next byte that is not JSON whitespace, left where it is.
    #[inline]
    fn peek_token(&mut self) -> Option<u8> {
        while let Some(&b) = self.body.get(self.at) {
            // Every whitespace byte is at most a space: one comparison for most tokens.
            if b > b' ' || !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    /// The next byte that is not JSON whitespace, taken.
    fn next_token(&mut self) -> Option<u8> {
        let b = self.peek_token()?;
        self.at += 1;
        Some(b)
    }

    /// After an opening quote: the rest of a plain string.
    fn string(&mut self) -> bool {
        let rest = self.body.get(self.at..).unwrap_or_default();
        match rest.iter().position(|&b| NEEDS_ESCAPE[usize::from(b)]) {
            Some(n) => {
                self.at += n + 1;
                rest[n] == b'"'
            }
            None => false,
        }
    }

    /// An object's key and its colon.
    fn member_key(&mut self) -> bool {
        self.next_token() == Some(b'"')
            && self.body.get(self.at) != Some(&b'$')
            && self.string()
            && self.next_token() == Some(b':')
    }

    /// After its first byte, `first`: the rest of a number without an exponent,
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, of at most [`PLAIN_NUMBER`] characters.
    fn number(&mut self, first: u8) -> bool {
        let start = self.at - 1;
        let lead = match first {
            b'-' => self.digit(),
            digit => Some(digit),
        };
        match lead {
            None => return false,
            // No digit may follow a leading zero.
            Some(b'0') => {}
            Some(_) => while self.digit().is_some() {},
        }
        if self.body.get(self.at) == Some(&b'.') {
            self.at += 1;
            if self.digit().is_none() {
                return false;
            }
            while self.digit().is_some() {}
        }
        // An exponent, or what cannot follow a number, is left to serde_json.
        let next = self.body.get(self.at);
        !matches!(next, Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
            && self.at - start <= PLAIN_NUMBER
    }

    /// The next byte, taken if it is a digit.
    fn digit(&mut self) -> Option<u8> {
        let d = *self.body.get(self.at).filter(|d| d.is_ascii_digit())?;
        self.at += 1;
        Some(d)
    }

    /// After its first byte: the rest of `word`.
    fn literal(&mut self, word: &[u8]) -> bool {
        let start = self.at - 1;
        let plain = self.body.get(start..start + word.len()) == Some(word);
        self.at = start + word.len();
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_strict_json_is_embedded() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        // As deep as a reply may embed and stay within serde_json's default limit.
        assert!(strict_json(deep(MAX_EMBEDDED_DEPTH).as_bytes()).is_ok());
        let inside = format!(
            r#"{{"responses":[{{"body":{}}}]}}"#,
            deep(MAX_EMBEDDED_DEPTH)
        );
        assert!(serde_json::from_str::<serde_json::Value>(&inside).is_ok());
        let refused = [
            deep(MAX_EMBEDDED_DEPTH + 1).into_bytes(),
            br#"["\ud800"]"#.to_vec(),
            br#"{"\udc00": 1}"#.to_vec(),
            br#"{"$serde_json::private::RawValue": "a"}"#.to_vec(),
            br#"[{"\u0024serde_json::private::Number": "1"}]"#.to_vec(),
            b"[\"\xff\"]".to_vec(),
            b"[1] [2]".to_vec(),
        ];
        for body in refused {
            assert!(
                strict_json(&body).is_err(),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        assert!(strict_json(br#"["\ud83d\ude00", {"a": [1.5e3, -2, null, true]}]"#).is_ok());
    }

    #[test]
    fn the_plain_scan_takes_common_bodies_and_only_what_serde_takes() {
        let plain = [
            r#"{"id": 1, "name": "small"}"#,
            r#"[]"#,
            r#" {} "#,
            r#"{"a": [1, -2, 0.5, -0.25, 12345678901234567890], "b": {"c": null}}"#,
            r#"[true, false, null, "ünï", "", {"": 0}]"#,
            "{\n\t\"a\" : [ ]\r\n}",
            r#""text""#,
            "42",
        ];
        for body in plain {
            assert!(plainly_json(body.as_bytes()), "{body}");
            assert!(serde_strict_json(body.as_bytes()).is_ok(), "{body}");
        }
        // Left to serde: some valid, some not; the scan takes none of them.
        let left = [
            r#"{"a": "\n"}"#,
            r#"[1e3]"#,
            r#"[123456789012345678901]"#,
            r#"{"$ref": 1}"#,
            r#"[01]"#,
            r#"[1.]"#,
            r#"[.5]"#,
            r#"[-]"#,
            r#"[1,]"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":1 "b":2}"#,
            r#"[1 2]"#,
            r#"[1] [2]"#,
            r#"{"a":1]"#,
            r#"[}"#,
            r#"tru"#,
            r#"truex"#,
            r#"[nul]"#,
            r#"{1: 2}"#,
            r#"["a"#,
            r#"[[[["#,
            "",
            "  ",
            "[\"tab\tinside\"]",
            "[1]\u{a0}",
        ];
        for body in left {
            assert!(!plainly_json(body.as_bytes()), "{body}");
        }
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(plainly_json(deep(PLAIN_DEPTH as usize).as_bytes()));
        assert!(!plainly_json(deep(PLAIN_DEPTH as usize + 1).as_bytes()));
        assert!(strict_json(deep(PLAIN_DEPTH as usize + 1).as_bytes()).is_ok());
        assert!(!plainly_json(b"[\"\xff\"]"));
    }
}
