//! A job's request as its record keeps it, so that its status monitor can decode it again
//! and replay its reply: method, path and query, the headers that shape how it is decoded
//! and answered, and the body, in a length-prefixed binary form (little-endian). Identity
//! headers are not kept: the store holds no credential, and a replay sends nothing.
//! Read back with every length checked: a record a store corrupted reads as nothing.
//! And the problem a job's lookup led to, which is then its reply.

use crate::body::BatchResponseBody;
use crate::error::Problem;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};

/// The headers kept: what chooses the codec and the reply's format, the outer origin
/// (absolute sub-request URLs are read against it), and what shapes a run.
const KEPT: [&str; 8] = [
    "content-type",
    "accept",
    "host",
    "prefer",
    "odata-version",
    "odata-maxversion",
    "dataserviceversion",
    "maxdataserviceversion",
];

/// The entry name of a job's request in its record.
pub(crate) const ENTRY: &str = "job.request";

/// The entry name of the problem a job's lookup led to: its status, then its document.
const PROBLEM: &str = "job.problem";

/// `problem`, as a job's record keeps it.
pub(crate) fn problem_entry(problem: &Problem) -> (String, Bytes) {
    let mut value = problem.status().as_u16().to_le_bytes().to_vec();
    value.extend_from_slice(&problem.to_bytes());
    (PROBLEM.to_owned(), Bytes::from(value))
}

/// The reply of a job whose lookup led to a problem, if its record keeps one.
pub(crate) fn problem<B>(entries: &[(String, Bytes)]) -> Option<Response<BatchResponseBody<B>>> {
    let value = &entries.iter().find(|(name, _)| name == PROBLEM)?.1;
    let status = value
        .get(..2)
        .and_then(|s| StatusCode::from_u16(u16::from_le_bytes([s[0], s[1]])).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(BatchResponseBody::full(value.slice(2.min(value.len())..)));
    *response.status_mut() = status;
    let json = HeaderValue::from_static("application/problem+json");
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, json);
    Some(response)
}

/// The outer request's head and `body`, to store.
pub(crate) fn encode(parts: &Parts, body: &[u8]) -> Bytes {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = BytesMut::with_capacity(64 + target.len() + body.len());
    put(&mut out, parts.method.as_str().as_bytes());
    put(&mut out, target.as_bytes());
    let mut kept: Vec<(&str, &[u8])> = KEPT
        .iter()
        .flat_map(|name| {
            parts
                .headers
                .get_all(*name)
                .iter()
                .map(move |v| (*name, v.as_bytes()))
        })
        .collect();
    // HTTP/2 names the origin in the URI, often with no `host` header: kept as one, so
    // that absolute sub-request URLs read against it again.
    if let (None, Some(authority)) = (parts.headers.get(http::header::HOST), parts.uri.authority())
    {
        kept.push(("host", authority.as_str().as_bytes()));
    }
    out.put_u32_le(kept.len() as u32);
    for (name, value) in kept {
        put(&mut out, name.as_bytes());
        put(&mut out, value);
    }
    put(&mut out, body);
    out.freeze()
}

fn put(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32_le(bytes.len() as u32);
    out.put_slice(bytes);
}

/// A request stored with [`encode`]: its head and body; `None` when `stored` is not one.
pub(crate) fn decode(mut stored: Bytes) -> Option<(Parts, Bytes)> {
    let method = Method::from_bytes(&take(&mut stored)?).ok()?;
    let uri = Uri::from_maybe_shared(take(&mut stored)?).ok()?;
    // What `encode` wrote: a path, with its query.
    if uri.scheme().is_some() || !uri.path().starts_with('/') {
        return None;
    }
    let (mut parts, ()) = Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .ok()?
        .into_parts();
    let count = stored.try_get_u32_le().ok()?;
    for _ in 0..count {
        let name = HeaderName::from_bytes(&take(&mut stored)?).ok()?;
        let value = HeaderValue::from_maybe_shared(take(&mut stored)?).ok()?;
        parts.headers.try_append(name, value).ok()?;
    }
    let body = take(&mut stored)?;
    stored.is_empty().then_some((parts, body))
}

/// The next length-prefixed field.
fn take(b: &mut Bytes) -> Option<Bytes> {
    let len = b.try_get_u32_le().ok()? as usize;
    (len <= b.len()).then(|| b.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_without_its_identity_and_garbage_reads_as_nothing() {
        let (parts, ()) = Request::post("/batch?x=1")
            .header("content-type", "application/json")
            .header("authorization", "Bearer secret")
            .header("prefer", "respond-async")
            .header("prefer", "wait=5")
            .body(())
            .unwrap()
            .into_parts();
        let stored = encode(&parts, b"{\"requests\":[]}");
        let (read, body) = decode(stored.clone()).expect("reads back");
        assert_eq!(read.method, Method::POST);
        assert_eq!(read.uri, "/batch?x=1");
        assert_eq!(read.headers["content-type"], "application/json");
        assert_eq!(read.headers.get_all("prefer").iter().count(), 2);
        assert!(read.headers.get("authorization").is_none());
        assert_eq!(body, "{\"requests\":[]}");
        let (h2, ()) = Request::post("http://api.example:8080/batch")
            .body(())
            .unwrap()
            .into_parts();
        let (read, _) = decode(encode(&h2, b"")).unwrap();
        assert_eq!(
            read.headers["host"], "api.example:8080",
            "the authority of an HTTP/2 request"
        );
        for cut in 0..stored.len() {
            assert!(decode(stored.slice(..cut)).is_none(), "cut at {cut}");
        }
        let mut lying = BytesMut::from(&stored[..]);
        lying[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(lying.freeze()).is_none());
    }
}
