//! One `application/http` part: an HTTP/1.1 request (`METHOD url HTTP/1.1`, headers, an
//! empty line, the body), read by `httparse`, into the method, URL, headers and body of a
//! sub-request. The body runs to the part's end, or `Content-Length` bytes of it. Lines
//! may end in LF alone, the request line may leave the version out (`GET /path`), and a
//! part may end after its head with no empty line (`GET /path` and nothing else), as
//! Google's batch clients write them: it is read as HTTP/1.1, with no body.

use super::super::HeaderCaps;
use crate::batch::plan::parse_method;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method};

/// A part's request, its URL still as written.
pub(super) struct InnerRequest<'a> {
    pub(super) method: Method,
    pub(super) url: &'a str,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// Reads the request in `content`, a slice of `outer` (the batch body). Each problem is
/// `(field, detail)`.
pub(super) fn read<'a>(
    content: &'a [u8],
    outer: &Bytes,
    caps: HeaderCaps,
) -> Result<InnerRequest<'a>, (&'static str, String)> {
    // A request line without a version is read with ` HTTP/1.1` added after its target.
    let versioned = with_version(content);
    let as_sent = versioned.as_deref().unwrap_or(content);
    // Read as it is first: a head that ends, as most do, is parsed once and scanned no
    // further. One that does not (batchelor's `GET /path\n`) is all head: read again with
    // the empty line that ends it.
    let (head, added, all_head) = match parse_head(as_sent, content.len(), caps)? {
        Some(head) => (head, as_sent.len() - content.len(), false),
        None if content.is_empty() => return Err(("request", NOT_WHOLE.into())),
        None => {
            let ended = ended(content);
            let ended = with_version(&ended).unwrap_or(ended);
            let head = parse_head(&ended, content.len(), caps)?;
            let head = head.ok_or(("request", NOT_WHOLE.to_string()))?;
            (head, ended.len() - content.len(), true)
        }
    };
    // A write's head must end: lines after it could be its body read as headers.
    if all_head && matches!(head.method, Method::POST | Method::PUT | Method::PATCH) {
        let method = &head.method;
        return Err((
            "request",
            format!("has no empty line after its head: a {method} must end its head with one, then its body"),
        ));
    }
    finish(content, outer, head, added)
}

/// The request of a head read from `content` with `added` bytes added in its request line
/// or past its end.
fn finish<'a>(
    content: &'a [u8],
    outer: &Bytes,
    head: Head,
    added: usize,
) -> Result<InnerRequest<'a>, (&'static str, String)> {
    // The target sits at the same place in `content` (what was added comes after it).
    let url = std::str::from_utf8(&content[head.target]).unwrap_or_default();
    // What was added lies in the request line or past the content's end, so `len -
    // added` is where the body starts (the content's end for a completed head).
    let body = body(&content[head.len - added..], &head.headers)?;
    Ok(InnerRequest {
        method: head.method,
        url,
        headers: head.headers,
        body: outer.slice_ref(body),
    })
}

const NOT_WHOLE: &str = "is not a whole HTTP request: its head (`METHOD url HTTP/1.1`, headers) must end with an empty line";

/// What httparse read of a head.
struct Head {
    /// Its length, the empty line that ends it included.
    len: usize,
    method: Method,
    /// Where its target is.
    target: std::ops::Range<usize>,
    headers: HeaderMap,
}

/// The head of `buf` (a part of `size` bytes, as read); `None` when no empty line ends it.
fn parse_head(
    buf: &[u8],
    size: usize,
    caps: HeaderCaps,
) -> Result<Option<Head>, (&'static str, String)> {
    // Each header line takes at least three bytes (`a:` and a line end): no more room is
    // needed than the part could fill, nor more than one past the cap.
    let room = caps.count.saturating_add(1).min(size / 3 + 1);
    let mut slots = vec![httparse::EMPTY_HEADER; room];
    let mut request = httparse::Request::new(&mut slots);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(("headers", too_many(caps.count)));
        }
        Err(e) => {
            return Err((
                "request",
                format!("is not an HTTP/1.1 request (`METHOD url HTTP/1.1`, headers, an empty line, the body): {e}"),
            ))
        }
    };
    let method = parse_method(request.method.unwrap_or_default()).map_err(|e| ("method", e))?;
    let path = request.path.unwrap_or_default();
    let at = path.as_ptr() as usize - buf.as_ptr() as usize;
    Ok(Some(Head {
        len,
        method,
        target: at..at + path.len(),
        headers: header_map(request.headers, caps)?,
    }))
}

/// `content`, all head, with the empty line that ends it (in its own line ends).
fn ended(content: &[u8]) -> Vec<u8> {
    let ending: &[u8] = match (content.ends_with(b"\r\n"), content.ends_with(b"\n")) {
        (true, _) => b"\r\n",
        (false, true) => b"\n",
        (false, false) => b"\r\n\r\n",
    };
    [content, ending].concat()
}

/// `content` with ` HTTP/1.1` after the target of a request line that has none
/// (`METHOD target`, its line ending as it was); `None` when the line has a version, or
/// is not two words.
fn with_version(content: &[u8]) -> Option<Vec<u8>> {
    let end = memchr::memchr(b'\n', content)?;
    let line = content[..end]
        .strip_suffix(b"\r")
        .unwrap_or(&content[..end]);
    let mut words = line.split(|&b| b == b' ');
    let two = matches!((words.next(), words.next(), words.next()), (Some(m), Some(t), None) if !m.is_empty() && !t.is_empty());
    two.then(|| [line, b" HTTP/1.1", &content[line.len()..]].concat())
}

fn too_many(max: usize) -> String {
    format!("holds more than {max} header values; the limit is {max} (max_item_headers)")
}

/// The headers, within the caps on their number and bytes.
fn header_map(
    read: &[httparse::Header<'_>],
    caps: HeaderCaps,
) -> Result<HeaderMap, (&'static str, String)> {
    if read.len() > caps.count {
        return Err(("headers", too_many(caps.count)));
    }
    let bytes = read.iter().fold(0usize, |n, h| {
        n.saturating_add(h.name.len() + h.value.len())
    });
    if bytes > caps.bytes {
        let max = caps.bytes;
        return Err(("headers", format!("holds more than {max} bytes of header names and values; the limit is {max} (max_item_header_bytes)")));
    }
    let mut map = HeaderMap::with_capacity(read.len());
    for h in read {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
            (
                "headers",
                format!("{:?} is not a valid header name", h.name),
            )
        })?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| {
            (
                "headers",
                format!("{name} is not a valid header value (control characters)"),
            )
        })?;
        map.append(name, value);
    }
    Ok(map)
}

/// The body: what follows the head, or its first `Content-Length` bytes when the rest is
/// only line ends (some clients end a body with one before the delimiter).
fn body<'a>(rest: &'a [u8], headers: &HeaderMap) -> Result<&'a [u8], (&'static str, String)> {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Err((
            "headers",
            "transfer-encoding is not taken inside a batch: the body runs to the part's end".into(),
        ));
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(length) = lengths.next() else {
        return Ok(rest);
    };
    let length = match (
        lengths.next(),
        length.to_str().ok().and_then(|s| s.parse::<u64>().ok()),
    ) {
        (None, Some(n)) => n,
        _ => return Err(("headers", "content-length must be one number".into())),
    };
    let held = rest.len() as u64;
    let fits = length <= held
        && rest[length as usize..]
            .iter()
            .all(|&b| b == b'\r' || b == b'\n');
    if !fits {
        return Err((
            "body",
            format!("content-length says {length} bytes, and the part holds {held}"),
        ));
    }
    Ok(&rest[..length as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: HeaderCaps = HeaderCaps {
        count: 4,
        bytes: 200,
    };

    fn read_str(s: &'static str) -> Result<InnerRequest<'static>, (&'static str, String)> {
        let outer = Bytes::from_static(s.as_bytes());
        read(s.as_bytes(), &outer, CAPS)
    }

    #[test]
    fn requests() {
        let r = read_str("POST users HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"a\":1}")
            .unwrap();
        assert_eq!((r.method, r.url), (Method::POST, "users"));
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(&r.body[..], b"{\"a\":1}");
        let r = read_str("get /x?a=1 HTTP/1.0\n\n").unwrap();
        assert_eq!((r.method, r.url, r.body.len()), (Method::GET, "/x?a=1", 0));
        let r = read_str("PUT /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab\r\n").unwrap();
        assert_eq!(&r.body[..], b"ab");
        // As Google's batch clients write them: no version, LF line ends.
        let r = read_str("GET /x\r\n\r\n").unwrap();
        assert_eq!((r.method, r.url, r.body.len()), (Method::GET, "/x", 0));
        let r = read_str("POST /v1/items?a=1\nContent-Type: text/plain\n\nhello").unwrap();
        assert_eq!((r.method, r.url), (Method::POST, "/v1/items?a=1"));
        assert_eq!(r.headers["content-type"], "text/plain");
        assert_eq!(&r.body[..], b"hello");
        let r = read_str("PUT /x\nContent-Length: 2\n\nab\n").unwrap();
        assert_eq!(&r.body[..], b"ab");
        // All head and no empty line (batchelor's GETs; the line end before the next
        // delimiter is the delimiter's): a request without a body.
        for text in [
            "GET /x\n",
            "GET /x",
            "GET /x HTTP/1.1\r\nA: 1\r\n",
            "DELETE /x\nA: 1",
        ] {
            let r = read_str(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
            assert_eq!((r.url, r.body.len()), ("/x", 0), "{text:?}");
        }
        let r = read_str("GET /x\nAuthorization: Bearer b\n").unwrap();
        assert_eq!(r.headers["authorization"], "Bearer b");
        // A write must end its head: what follows could be its body.
        for text in [
            "POST /x\nContent-Type: text/plain\n",
            "PATCH /x HTTP/1.1\r\nA: b\r\n",
        ] {
            assert_eq!(
                read_str(text).err().map(|e| e.0),
                Some("request"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn refusals_name_their_field() {
        for (text, field) in [
            ("GET /x y\r\n\r\n", "request"),
            ("CONNECT /x HTTP/1.1\r\n\r\n", "method"),
            (
                "GET /x HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n",
                "headers",
            ),
            (
                "GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "headers",
            ),
            ("PUT /x HTTP/1.1\r\nContent-Length: 9\r\n\r\nab", "body"),
            ("PUT /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nab", "body"),
            ("PUT /x HTTP/1.1\r\nContent-Length: -1\r\n\r\nab", "headers"),
        ] {
            let Err((f, _)) = read_str(text) else {
                panic!("{text:?} was read")
            };
            assert_eq!(f, field, "{text:?}");
        }
        let big = format!("GET /x HTTP/1.1\r\nA: {}\r\n\r\n", "v".repeat(300));
        let outer = Bytes::from(big.clone());
        assert_eq!(
            read(big.as_bytes(), &outer, CAPS).err().unwrap().0,
            "headers"
        );
    }
}
