//! A multipart body (RFC 2046 §5.1) cut into its parts, and each part into its header
//! section and content. Pure functions over bytes, linear in them: each delimiter search
//! starts where the last ended.
//!
//! Written here rather than taken from a crate: the multipart crates (multer, and those
//! built on it) are streaming `multipart/form-data` parsers, async, keyed by field name;
//! a batch body is already in memory, its parts are nameless, and a changeset nests one
//! multipart inside another. What a part's header section holds is read by `httparse`.

use memchr::memmem;

/// The most header lines one part's MIME header section may hold. A batch part has two
/// or three (`Content-Type`, `Content-Transfer-Encoding`, `Content-ID`).
pub(super) const MAX_PART_HEADERS: usize = 16;

/// The `boundary` parameter of a `multipart/*` content type, as RFC 2046 allows it: 1 to
/// 70 characters from its set, quoted or not, not ending in a space.
pub(super) fn boundary(content_type: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(content_type).map_err(|_| "is not UTF-8".to_string())?;
    let value = text
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim())
        .ok_or_else(|| "has no boundary parameter (`multipart/mixed; boundary=…`)".to_string())?;
    let value = match value.strip_prefix('"') {
        Some(quoted) => quoted
            .strip_suffix('"')
            .ok_or_else(|| "has a boundary whose quote is not closed".to_string())?,
        None => value,
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
    if value.is_empty() || value.len() > 70 || !value.chars().all(allowed) || value.ends_with(' ') {
        return Err(format!(
            "has an invalid boundary {value:?}: 1 to 70 letters, digits or '()+_,-./:=? (RFC 2046)"
        ));
    }
    Ok(value)
}

/// Why a body is not a multipart body the codec takes.
#[derive(Debug)]
pub(super) enum Broken {
    /// It holds more parts than it may.
    TooMany(usize),
    /// Its framing is wrong: why.
    Malformed(String),
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooMany(max) => write!(f, "holds more than {max} parts"),
            Self::Malformed(why) => f.write_str(why),
        }
    }
}

/// The parts of `body`, each the bytes between two delimiter lines: at most `max` of them.
/// A preamble before the first delimiter and an epilogue
/// after the last are ignored. Lines may end in CRLF or LF.
pub(super) fn parts<'a>(
    body: &'a [u8],
    boundary: &str,
    max: usize,
) -> Result<Vec<&'a [u8]>, Broken> {
    let dash = format!("--{boundary}");
    let bad = |why: String| Broken::Malformed(why);
    let finder = memmem::Finder::new(b"\n--");
    // Every delimiter but a first one at the very start follows a line end.
    let next = |from: usize| -> Option<usize> {
        let mut at = from;
        loop {
            let found = at + finder.find(&body[at..])?;
            if body[found + 1..].starts_with(dash.as_bytes()) {
                return Some(found);
            }
            at = found + 1;
        }
    };
    let mut pos = if body.starts_with(dash.as_bytes()) {
        dash.len()
    } else {
        let at = next(0).ok_or_else(|| bad(format!("holds no delimiter line `{dash}`")))?;
        at + 1 + dash.len()
    };
    let mut found = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            if found.is_empty() {
                return Err(bad("holds no part".into()));
            }
            return Ok(found);
        }
        let padding = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let start = match &rest[padding..] {
            [b'\r', b'\n', ..] => pos + padding + 2,
            [b'\n', ..] => pos + padding + 1,
            _ => {
                return Err(bad(format!(
                    "has a line that starts with `{dash}` and is not a delimiter: the boundary must not occur in a part"
                )))
            }
        };
        // Search from the line end just read, so an empty part is found too.
        let end =
            next(start - 1).ok_or_else(|| bad(format!("is not closed: no `{dash}--` line")))?;
        let content_end = if end > start && body[end - 1] == b'\r' {
            end - 1
        } else {
            end.max(start)
        };
        if found.len() == max {
            return Err(Broken::TooMany(max));
        }
        found.push(&body[start.min(content_end)..content_end]);
        pos = end + 1 + dash.len();
    }
}

/// A part's MIME header section and its content.
pub(super) struct Part<'a> {
    pub(super) headers: Vec<(&'a str, &'a [u8])>,
    pub(super) content: &'a [u8],
}

/// Reads a part's header section (it may be empty) up to the empty line that ends it.
pub(super) fn part(bytes: &[u8]) -> Result<Part<'_>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_PART_HEADERS];
    match httparse::parse_headers(bytes, &mut headers) {
        Ok(httparse::Status::Complete((len, read))) => Ok(Part {
            headers: read.iter().map(|h| (h.name, h.value)).collect(),
            content: &bytes[len..],
        }),
        Ok(httparse::Status::Partial) => Err("has a header section that no empty line ends".into()),
        Err(httparse::Error::TooManyHeaders) => Err(format!(
            "has more than {MAX_PART_HEADERS} header lines in its MIME header section"
        )),
        Err(e) => Err(format!("has an invalid MIME header section: {e}")),
    }
}

impl<'a> Part<'a> {
    /// The value of header `name`, when the part has it once.
    pub(super) fn header(&self, name: &str) -> Result<Option<&'a [u8]>, String> {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = values.next().map(|(_, v)| *v);
        if values.next().is_some() {
            return Err(format!("has {name} twice"));
        }
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        assert_eq!(
            boundary(b"multipart/mixed; boundary=batch_1").unwrap(),
            "batch_1"
        );
        assert_eq!(
            boundary(b"multipart/mixed;Boundary=\"a b\"").unwrap(),
            "a b"
        );
        for bad in [
            &b"multipart/mixed"[..],
            b"multipart/mixed; boundary=",
            b"multipart/mixed; boundary=\"x",
            b"multipart/mixed; boundary=a\\b",
            b"multipart/mixed; boundary=\"a \"",
        ] {
            assert!(boundary(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(
            boundary(format!("multipart/mixed; boundary={}", "x".repeat(71)).as_bytes()).is_err()
        );
    }

    #[test]
    fn parts_between_delimiters() {
        let body = b"preamble\r\n--b\r\nA\r\n--b \r\n\r\n--b\nC\n--b--\r\nepilogue";
        assert_eq!(parts(body, "b", 10).unwrap(), [&b"A"[..], b"", b"C"]);
        assert_eq!(parts(b"--b\r\n--b--", "b", 10).unwrap(), [&b""[..]]);
        // A delimiter inside a line is content.
        assert_eq!(
            parts(b"--b\r\nx--b\r\n--b--", "b", 10).unwrap(),
            [&b"x--b"[..]]
        );
        for (body, says) in [
            (&b"no delimiter"[..], "no delimiter"),
            (b"--b--", "no part"),
            (b"--b\r\nA", "not closed"),
            (b"--b\r\nA\r\n--bc\r\n--b--", "not a delimiter"),
            (b"--b\r\n1\r\n--b\r\n2\r\n--b\r\n3\r\n--b--", "more than 2"),
        ] {
            let e = parts(body, "b", 2).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn part_header_sections() {
        let p = part(b"Content-Type: application/http\r\nContent-ID: 1\r\n\r\nGET / HTTP/1.1\r\n")
            .unwrap();
        assert_eq!(p.header("content-id").unwrap(), Some(&b"1"[..]));
        assert_eq!(p.content, b"GET / HTTP/1.1\r\n");
        assert_eq!(part(b"\r\nbody").unwrap().content, b"body");
        assert!(part(b"Content-Type: x").is_err());
        assert!(part(b"A: 1\r\nA: 2\r\n\r\n").unwrap().header("a").is_err());
        let flood = "X: 1\r\n".repeat(MAX_PART_HEADERS + 1) + "\r\n";
        assert!(part(flood.as_bytes()).is_err());
    }
}
