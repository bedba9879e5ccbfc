//! The `Prefer` request header (RFC 7240): the preferences a client states, read without
//! allocating. A preference is `token [= value] *( ";" parameter )`; several are separated
//! by commas, in one header or in several. Names ignore letter case; a value may be quoted.

use http::HeaderMap;

/// One stated preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Preference<'a> {
    /// The name as sent (compare ignoring case).
    pub(crate) name: &'a str,
    /// The value, unquoted; `None` when the preference has none.
    pub(crate) value: Option<&'a str>,
}

/// Every preference of every `Prefer` header, in order. Values that are not text are
/// skipped (no preference is read from them).
pub(crate) fn preferences(headers: &HeaderMap) -> impl Iterator<Item = Preference<'_>> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| {
            // Parameters after `;` are not read.
            let head = item.split(';').next().unwrap_or_default();
            let (name, value) = match head.split_once('=') {
                Some((name, value)) => (name, Some(unquote(value.trim()))),
                None => (head, None),
            };
            let name = name.trim();
            (!name.is_empty()).then_some(Preference { name, value })
        })
}

/// The preference named `name` (ignoring case): its first statement, as RFC 7240 §2
/// says (later ones are ignored).
pub(crate) fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<Preference<'a>> {
    preferences(headers).find(|p| p.name.eq_ignore_ascii_case(name))
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("prefer", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn reads_names_values_and_several_headers() {
        let h = headers(&[
            "odata.continue-on-error, wait=10",
            "Respond-Async; x=1, return=\"minimal\"",
        ]);
        let all: Vec<_> = preferences(&h).map(|p| (p.name, p.value)).collect();
        assert_eq!(
            all,
            [
                ("odata.continue-on-error", None),
                ("wait", Some("10")),
                ("Respond-Async", None),
                ("return", Some("minimal")),
            ]
        );
        assert_eq!(find(&h, "respond-async").unwrap().name, "Respond-Async");
        assert_eq!(find(&h, "continue-on-error"), None);
    }

    #[test]
    fn the_first_statement_wins_and_junk_is_skipped() {
        let h = headers(&[
            "continue-on-error=true",
            ",,  ; =x",
            "continue-on-error=false",
        ]);
        assert_eq!(find(&h, "continue-on-error").unwrap().value, Some("true"));
        let mut bytes = HeaderMap::new();
        bytes.insert(
            "prefer",
            HeaderValue::from_bytes(b"\xffcontinue-on-error").unwrap(),
        );
        assert_eq!(preferences(&bytes).count(), 0);
    }
}
