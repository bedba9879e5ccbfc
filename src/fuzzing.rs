//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not part of the API).
//!
//! Each takes arbitrary bytes, runs one decoder the way the layer runs it, and panics when
//! an invariant breaks: a plan that validated holds only canonical URLs (a path, no `//`
//! start, no `\`, no dot segment, no batch path), and every reply is JSON that strict
//! parsers read. A panic anywhere else is a bug the fuzzer reports.

use crate::batch::origin::Origin;
use crate::batch::outcome::Outcome;
use crate::batch::plan::Plan;
use crate::batch::reference::{Refs, Resolvable, Template, UrlTemplate};
use crate::batch::results::{Results, Views};
use crate::batch::strict::{plainly_json, serde_strict_json};
use crate::batch::summary::Summary;
use crate::batch::url::{is_dot_segment, parse_url, BatchPaths, UrlContext};
use crate::codec::bulk::BulkCodec;
use crate::codec::json::JsonCodec;
use crate::codec::multipart::MultipartCodec;
use crate::codec::resource::Resource;
use crate::codec::{Codec, DecodeContext, DecodeLimits, Decoded, ReplyWriter};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};

fn limits() -> DecodeLimits {
    DecodeLimits {
        max_requests: 100,
        max_item_headers: 100,
        max_item_header_bytes: 16 * 1024,
        atomic: true,
        batch_paths: BatchPaths::default().with("/batch").with("/bulk"),
        service_root: None,
    }
}

/// Decodes `body` with `codec` as a `method` request to `path`; writes the reply of a
/// plan that validated, each item answered with its own request.
fn decode(codec: &dyn Codec, method: Method, path: &str, body: &[u8]) {
    decode_as(codec, method, path, None, body)
}

/// [`decode`] with a `content-type`: a multipart reply is checked as multipart.
fn decode_as(codec: &dyn Codec, method: Method, path: &str, ct: Option<&str>, body: &[u8]) {
    let limits = limits();
    let mut outer = http::Request::builder().method(method).uri(path);
    if let Some(ct) = ct {
        outer = outer.header(header::CONTENT_TYPE, ct);
    }
    let outer = outer
        .body(())
        .map(|r| r.into_parts().0)
        .unwrap_or_else(|_| http::Request::new(()).into_parts().0);
    let keeps = |name: &http::HeaderName| name != header::AUTHORIZATION;
    let cx = DecodeContext {
        limits: &limits,
        base: "/",
        keeps_header: &keeps,
        root: None,
        origin: Some(Origin::new(None, "example.com")),
    };
    let bytes = Bytes::copy_from_slice(body);
    let mut decoded = codec.decode(&outer, &bytes, &cx);
    // A lookup (resource bulk's delete by filters) is answered with the body itself.
    for _ in 0..2 {
        match decoded {
            Ok(Decoded::Lookup(plan, resume)) => {
                check(&plan);
                listing_sends_declared_filters(&plan.items[0].uri);
                let listing = answer("application/json", bytes.clone());
                decoded = resume.resume(vec![listing], &cx);
            }
            Ok(Decoded::Run(plan, mut reply)) => {
                check(&plan);
                let mut w = ReplyWriter::new(1 << 20);
                reply.begin(&mut w);
                for (i, item) in plan.items.iter().enumerate() {
                    let ct = item.headers.get(header::CONTENT_TYPE);
                    let ct = ct.and_then(|v| v.to_str().ok()).unwrap_or("text/plain");
                    let id = item.uri.to_string();
                    let mut answer = answer(ct, item.body.clone());
                    // Some fail, so that failed changesets are written too.
                    if item.body.len() % 3 == 1 {
                        answer.status = StatusCode::CONFLICT;
                    }
                    reply.item(i, &id, &answer, &mut w);
                }
                let content_type = reply.content_type();
                let _status = reply.finish(&mut w, &Summary::new(plan.items.len()));
                let written = w.finish().concat();
                match content_type
                    .to_str()
                    .ok()
                    .and_then(|c| c.strip_prefix("multipart/mixed; boundary="))
                {
                    Some(boundary) => framed(&written, boundary, &plan),
                    None => strict(&written),
                }
                return;
            }
            Err(_) => return,
        }
    }
}

/// An outcome answering `body` with content type `ct`.
fn answer(ct: &str, body: Bytes) -> Outcome {
    let mut headers = HeaderMap::new();
    if let Ok(ct) = HeaderValue::from_str(ct) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    Outcome {
        status: StatusCode::OK,
        headers,
        body,
        body_omitted: None,
        answered: None,
    }
}

/// Every URL of a plan is canonical, and the plan holds no more than `max_requests`.
fn check(plan: &Plan) {
    assert!(
        plan.items.len() <= limits().max_requests,
        "{} items",
        plan.items.len()
    );
    for item in &plan.items {
        canonical(&item.uri);
    }
}

fn canonical(uri: &Uri) {
    let path = uri.path();
    assert!(path.starts_with('/') && !path.starts_with("//"), "{uri}");
    assert!(!path.contains('\\'), "{uri}");
    assert!(!path.split('/').any(is_dot_segment), "{uri}");
    assert!(uri.scheme().is_none() && uri.authority().is_none(), "{uri}");
}

/// `reply` is JSON strict parsers read.
fn strict(reply: &[u8]) {
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(reply) {
        panic!(
            "the reply is not strict JSON ({e}): {}",
            String::from_utf8_lossy(reply)
        );
    }
}

/// A multipart reply has one top-level part per request outside a changeset and one per
/// changeset, and ends with its close delimiter.
fn framed(reply: &[u8], boundary: &str, plan: &Plan) {
    let in_changesets: usize = plan.groups.iter().map(|g| g.members.len()).sum();
    let parts = plan.items.len() - in_changesets + plan.groups.len();
    let open = format!("--{boundary}\r\n");
    let found = reply
        .windows(open.len())
        .filter(|w| *w == open.as_bytes())
        .count();
    assert_eq!(found, parts, "{}", String::from_utf8_lossy(reply));
    assert!(reply.ends_with(format!("\r\n--{boundary}--\r\n").as_bytes()));
}

/// The multipart codec, the boundary `b`.
pub fn multipart(data: &[u8]) {
    let ct = Some("multipart/mixed; boundary=b");
    decode_as(
        &MultipartCodec::ODATA_4,
        Method::POST,
        "/v1.0/$batch",
        ct,
        data,
    );
}

/// The JSON batch codec.
pub fn json_batch(data: &[u8]) {
    decode(&JsonCodec, Method::POST, "/batch", data);
}

/// The SugarCRM bulk codec, with a base.
pub fn bulk(data: &[u8]) {
    decode(&BulkCodec::new("/rest"), Method::POST, "/bulk", data);
}

/// The resource bulk codec: the first byte chooses the method and `?atomic=true`.
pub fn resource(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let method = [Method::POST, Method::PATCH, Method::DELETE][usize::from(first % 3)].clone();
    let path = if first & 4 == 0 {
        "/users/batch"
    } else {
        "/users/batch?atomic=true"
    };
    let users = Resource::new("/users").filters(FILTERS);
    decode(&users, method, path, body);
}

/// The filters the fuzzed resource declares.
const FILTERS: [&str; 3] = ["status", "tag", "last_login_before"];

/// A delete by filters lists with declared filters only, at least one, each named once
/// (an array filter repeats its name, one value at a time).
fn listing_sends_declared_filters(uri: &http::Uri) {
    let query = uri.query().expect("a listing has filters");
    for pair in query.split('&') {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        assert!(FILTERS.contains(&name), "{name:?} in {uri}");
    }
}

/// URL parsing: what is accepted is canonical, and parsing it again changes nothing.
pub fn url(data: &[u8]) {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    let limits = limits();
    let ctx = UrlContext {
        root: Some("/odata"),
        origin: Some(Origin::new(None, "example.com")),
        ..UrlContext::paths(&limits.batch_paths, "/odata/")
    };
    if let Ok(uri) = parse_url(url, ctx) {
        canonical(&uri);
        let again = parse_url(&uri.to_string(), ctx).expect("a canonical URL parses again");
        assert_eq!(again, uri, "{url:?}");
    }
}

/// Reference templates: the text before the first NUL is a URL template, the rest the body
/// of every request it refers to. A URL that resolves is canonical.
pub fn template(data: &[u8]) {
    let (text, body) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(Some(rest)) = Template::parse(text) else {
        return;
    };
    let body = Bytes::copy_from_slice(body);
    let outcomes: Vec<(String, Outcome)> = rest
        .references()
        .map(|r| (r.id.clone(), answer("application/json", body.clone())))
        .collect();
    let refs = Refs {
        url: Some(UrlTemplate {
            location_of: None,
            rest,
            root: None,
        }),
        ..Refs::default()
    };
    let mut results = Results::new(1 << 20);
    let deps = outcomes.iter().enumerate();
    let deps = deps.map(|(i, (id, outcome))| (i, id.as_str(), outcome));
    let mut views = Views::new(&mut results, deps);
    let (mut uri, mut headers, mut body) = (Uri::default(), HeaderMap::new(), Bytes::new());
    let into = Resolvable {
        uri: &mut uri,
        headers: &mut headers,
        body: &mut body,
    };
    if refs
        .resolve(&mut views, &limits().batch_paths, into)
        .is_ok()
    {
        canonical(&uri);
    }
}

/// Replies: a body of any bytes, under any content type (the first line of the data), in
/// both JSON formats, is written as JSON strict parsers read; as NDJSON, as exactly two
/// lines (the item, the closing line), each such JSON.
pub fn reply(data: &[u8]) {
    let (ct, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => ("application/json".to_string(), data),
    };
    let outcome = answer(&ct, Bytes::copy_from_slice(body));
    for codec in [&JsonCodec as &dyn Codec, &BulkCodec::new("")] {
        let limits = limits();
        let keeps = |_: &http::HeaderName| true;
        let cx = DecodeContext {
            limits: &limits,
            base: "/",
            keeps_header: &keeps,
            root: None,
            origin: None,
        };
        let one = Bytes::from_static(br#"{"requests": [{"url": "/x"}]}"#);
        for accept in ["application/json", "application/x-ndjson"] {
            let outer = http::Request::builder().header(header::ACCEPT, accept);
            let outer = outer.body(()).unwrap().into_parts().0;
            if let Ok(Decoded::Run(_, mut reply)) = codec.decode(&outer, &one, &cx) {
                let ndjson = reply.content_type() == "application/x-ndjson";
                let mut w = ReplyWriter::new(1 << 20);
                reply.begin(&mut w);
                reply.item(0, "0", &outcome, &mut w);
                let _status = reply.finish(&mut w, &Summary::new(1));
                let written = w.finish().concat();
                if !ndjson {
                    strict(&written);
                    continue;
                }
                let lines: Vec<&[u8]> = written.split(|&b| b == b'\n').collect();
                assert_eq!(lines.len(), 3, "two lines, each ended by a line break");
                assert!(lines[2].is_empty());
                lines[..2].iter().for_each(|line| strict(line));
            }
        }
    }
}

/// The plain JSON scan in front of serde_json: what it takes as JSON, serde_json (with the
/// reply's depth and key rules) takes too.
pub fn strict_json(data: &[u8]) {
    if plainly_json(data) {
        assert!(
            serde_strict_json(data).is_ok(),
            "the plain scan took what serde_json refuses"
        );
    }
}

/// A stored outcome, read back (a record a store holds, which a shared Redis may hand back
/// altered): no panic, and what reads back encodes to the same bytes.
pub fn stored_outcome(data: &[u8]) {
    if let Some(outcome) = crate::idempotency::record::decode(bytes::Bytes::copy_from_slice(data)) {
        let again = crate::idempotency::record::encode(&outcome);
        let reread = crate::idempotency::record::decode(again.clone()).expect("reads back");
        assert_eq!(crate::idempotency::record::encode(&reread), again);
    }
}

/// A batch job's stored request and its progress, read back (a record a store holds,
/// which a shared Redis may hand back altered): no panic, and a request that reads back
/// encodes to the same head and body.
pub fn stored_job(data: &[u8]) {
    let stored = bytes::Bytes::copy_from_slice(data);
    if let Some((parts, body)) = crate::jobs::stored::decode(stored.clone()) {
        let again = crate::jobs::stored::encode(&parts, &body);
        let (reread, rebody) = crate::jobs::stored::decode(again).expect("reads back");
        assert_eq!(
            (reread.method, reread.uri, rebody),
            (parts.method, parts.uri, body)
        );
    }
    // The same bytes as the entries of a record.
    let whole: &[u8] = &stored;
    let entries: Vec<(String, bytes::Bytes)> = whole
        .split(|b| *b == b'\n')
        .map(|line| {
            let (name, value) = line.split_at(line.len().min(8));
            (
                String::from_utf8_lossy(name).into_owned(),
                stored.slice_ref(value),
            )
        })
        .collect();
    let _ = crate::jobs::progress::Progress::of(
        "fuzz",
        crate::jobs::progress::JobState::Running,
        &entries,
    )
    .to_bytes();
}
