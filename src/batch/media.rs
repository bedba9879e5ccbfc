//! Media types (`content-type` values): the one parser the crate uses, both to choose the
//! codec of an outer request and to decide how a body is carried inside a JSON document.

use http::{header, HeaderMap};

/// The essence of a media type, `type/subtype`, as sent (letter case kept); parameters are
/// not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MediaType<'a> {
    /// What comes before the first `;`, trimmed.
    essence: &'a str,
}

impl<'a> MediaType<'a> {
    /// Parses a header value; `None` when it is not UTF-8.
    pub(crate) fn parse(value: &'a [u8]) -> Option<Self> {
        let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
        let essence = std::str::from_utf8(value[..end].trim_ascii()).ok()?;
        // Past the `;`, only the UTF-8 check the old header text passed: parameters are
        // not read, but a value that is not text is no media type.
        std::str::from_utf8(&value[end..]).ok()?;
        Some(Self { essence })
    }

    /// Whether the essence is `essence` (`"application/json"`), ignoring letter case.
    pub(crate) fn is(&self, essence: &str) -> bool {
        self.essence.eq_ignore_ascii_case(essence)
    }

    /// The type and subtype; without a `/`, the whole essence is the type.
    fn parts(&self) -> (&'a str, &'a str) {
        self.essence.split_once('/').unwrap_or((self.essence, ""))
    }

    /// How a body of this type is carried inside a JSON document.
    pub(crate) fn kind(&self) -> MediaKind {
        let (top, sub) = self.parts();
        let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        // On bytes: a suffix of a UTF-8 string need not start on a character boundary.
        let ends = |s: &str, suffix: &str| {
            s.len() >= suffix.len()
                && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
        };
        const TEXT_APPLICATIONS: [&str; 5] = [
            "xml",
            "javascript",
            "ecmascript",
            "x-www-form-urlencoded",
            "graphql",
        ];
        let text_application =
            is(top, "application") && TEXT_APPLICATIONS.iter().any(|t| is(sub, t));
        if is(top, "application") && is(sub, "json") || ends(sub, "+json") {
            MediaKind::Json
        } else if is(top, "text") || ends(sub, "+xml") || text_application {
            MediaKind::Text
        } else {
            MediaKind::Binary
        }
    }
}

/// How a body is carried inside a JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaKind {
    /// `application/json` and `application/*+json`: embedded as a JSON value.
    Json,
    /// Text (`text/*`, XML, form data, JavaScript): embedded as a JSON string.
    Text,
    /// Anything else: a base64url string.
    Binary,
}

/// The weight (`q`, in thousandths) the `accept` headers give `essence`
/// (`"application/x-ndjson"`) by name: `None` when they do not name it. Wildcards (`*/*`)
/// do not count: a reply in another shape than the usual one is given only to a client
/// that asks for it by name. A range whose weight does not parse is left out.
pub(crate) fn accept_weight(headers: &HeaderMap, essence: &str) -> Option<u16> {
    let values = headers.get_all(header::ACCEPT).into_iter();
    let ranges = values.flat_map(|v| v.as_bytes().split(|&b| b == b','));
    let weights = ranges.filter_map(|range| {
        let mut params = range.split(|&b| b == b';');
        let media = MediaType::parse(params.next().unwrap_or_default())?;
        let q = params.find_map(|p| weight(p.trim_ascii()));
        // A weight that does not parse leaves the range out.
        media.is(essence).then_some(q.unwrap_or(Some(1000)))?
    });
    weights.max()
}

/// `q=0.5` as `Some(Some(500))`; `Some(None)` for a weight that does not parse; `None` for
/// any other parameter.
fn weight(param: &[u8]) -> Option<Option<u16>> {
    let value = param
        .strip_prefix(b"q=")
        .or_else(|| param.strip_prefix(b"Q="))?;
    Some(parse_weight(value))
}

/// `0`, `0.5`, `1.000`: RFC 9110's `qvalue`, in thousandths.
fn parse_weight(value: &[u8]) -> Option<u16> {
    let (int, frac) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &[][..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = frac.iter().chain(b"000").take(3);
    let frac = thousandths.fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    match int {
        b"0" => Some(frac),
        b"1" if frac == 0 => Some(1000),
        _ => None,
    }
}

/// The kind of the body described by `headers`' `content-type`; `None` without one (or
/// with one that is not UTF-8).
pub(crate) fn media_kind(headers: &HeaderMap) -> Option<MediaKind> {
    // Every JSON item of a reply asks: a short map (most responses have a few headers) is
    // searched faster than its hash is computed.
    let ct = match headers.len() <= 8 {
        true => {
            headers
                .iter()
                .find(|(name, _)| *name == header::CONTENT_TYPE)?
                .1
        }
        false => headers.get(header::CONTENT_TYPE)?,
    };
    let ct = ct.as_bytes();
    // The common case, spelled as frameworks write it: no parsing.
    if ct == b"application/json" {
        return Some(MediaKind::Json);
    }
    MediaType::parse(ct).map(|m| m.kind())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn kind(ct: &str) -> Option<MediaKind> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        media_kind(&headers)
    }

    #[test]
    fn accept_weighs_a_type_named() {
        let weight = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.append(header::ACCEPT, http::HeaderValue::from_static(v));
            accept_weight(&h, "application/x-ndjson")
        };
        assert_eq!(weight("application/x-ndjson"), Some(1000));
        assert_eq!(
            weight("application/json, Application/X-NDJSON;q=0.5"),
            Some(500)
        );
        assert_eq!(weight("application/x-ndjson; q=1"), Some(1000));
        assert_eq!(weight("application/x-ndjson;q=0"), Some(0));
        assert_eq!(weight("application/x-ndjson ; Q=0.000"), Some(0));
        assert_eq!(
            weight("application/x-ndjson;q=0.25, application/x-ndjson;q=0.7"),
            Some(700)
        );
        assert_eq!(weight("application/x-ndjson;q=2"), None, "unreadable");
        assert_eq!(weight("application/x-ndjson;q=0.1234"), None);
        assert_eq!(weight("application/x-ndjson;q=.5"), None);
        assert_eq!(weight("application/x-ndjson;q= 0"), None);
        let two = "application/x-ndjson;q=x, application/x-ndjson;q=0.3";
        assert_eq!(weight(two), Some(300));
        assert_eq!(weight("*/*"), None);
        assert_eq!(weight("application/json"), None);
        assert_eq!(weight("application/x-ndjson-seq"), None);
    }

    #[test]
    fn media_kinds() {
        assert_eq!(media_kind(&HeaderMap::new()), None);
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
            "application/vnd.api+JSON",
        ] {
            assert_eq!(kind(ct), Some(MediaKind::Json), "{ct}");
        }
        for ct in [
            "text/plain",
            "TEXT/html; charset=utf-8",
            "image/svg+xml",
            "application/xml",
            "application/x-www-form-urlencoded",
            "application/GraphQL",
        ] {
            assert_eq!(kind(ct), Some(MediaKind::Text), "{ct}");
        }
        for ct in [
            "application/octet-stream",
            "image/png",
            "json",
            "application/jsonx",
        ] {
            assert_eq!(kind(ct), Some(MediaKind::Binary), "{ct}");
        }
        // Bytes beyond ASCII, where a suffix would cut a character: no panic.
        let mut headers = HeaderMap::new();
        let odd = HeaderValue::from_bytes("a/xx\u{e9}json".as_bytes()).unwrap();
        headers.insert(header::CONTENT_TYPE, odd);
        assert_eq!(media_kind(&headers), Some(MediaKind::Binary));
    }

    #[test]
    fn the_content_type_is_found_among_few_headers_or_many() {
        for n in [0, 1, 7, 8, 20] {
            let mut headers = HeaderMap::new();
            for i in 0..n {
                let name = http::HeaderName::try_from(format!("x-h{i}")).unwrap();
                headers.append(name, HeaderValue::from_static("text/plain"));
            }
            assert_eq!(media_kind(&headers), None, "{n} others");
            headers.append(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            // A second value is not the type: the first is, as `HeaderMap::get` says.
            headers.append(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            assert_eq!(media_kind(&headers), Some(MediaKind::Json), "{n} others");
        }
    }

    #[test]
    fn essences() {
        let json = |s: &str| {
            MediaType::parse(s.as_bytes())
                .unwrap()
                .is("application/json")
        };
        assert!(json("application/json"));
        assert!(json(" Application/JSON ; charset=utf-8"));
        assert!(!json("application/jsonx"));
        assert!(!json("application /json"));
        assert!(!json("text/plain"));
        assert!(MediaType::parse(b"caf\xe9").is_none());
    }
}
