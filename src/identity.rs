//! Building a sub-request from the outer request: who it acts as, and which headers it
//! may carry.
//!
//! The rules (DESIGN.md, "Identity and headers"):
//! - a sub-request carries the outer request's extensions (whatever an auth layer outside
//!   put there, axum's `ConnectInfo`, …) except hyper's `OnUpgrade`;
//! - it carries the outer values of the identity headers (`authorization`, `cookie`,
//!   `proxy-authorization` and the configured ones), of the client-address headers
//!   (`forwarded`, `x-forwarded-*`, `x-real-ip`, …) and of `host`;
//! - the same headers written inside a sub-request are dropped, as are hop-by-hop and
//!   framing headers; `content-length` is computed. This happens here, when the request
//!   is built, whatever wire format the sub-request came in;
//! - every other sub-request header passes as given, and configured outer headers are
//!   inherited where the sub-request does not set them.

use crate::batch::plan::PlanItem;
use crate::body::BatchRequestBody;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Version};

/// Identity headers: always the outer request's, never a sub-request's.
const IDENTITY: [HeaderName; 3] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::PROXY_AUTHORIZATION,
];

/// Client-address headers: always the outer request's, never a sub-request's.
const CLIENT_ADDRESS: [&str; 5] = [
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "client-ip",
];

/// Hop-by-hop headers: they describe one connection, not a message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Standard names compare as one integer; the two others by their bytes.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

fn is_client_address(name: &HeaderName) -> bool {
    let s = name.as_str();
    s.starts_with("x-forwarded-") || CLIENT_ADDRESS.contains(&s)
}

/// Which headers sub-requests take from the outer request, and which they may set
/// themselves: the part of the layer's configuration this module reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderPolicy {
    /// Identity headers besides the built-in ones (`BatchLayer::identity_header`).
    pub(crate) identity: Vec<HeaderName>,
    /// Outer headers copied into sub-requests that do not set them
    /// (`BatchLayer::inherit_header`).
    pub(crate) inherit: Vec<HeaderName>,
}

impl HeaderPolicy {
    /// The headers whose outer values every sub-request carries.
    fn is_outer_only(&self, name: &HeaderName) -> bool {
        IDENTITY.contains(name) || is_client_address(name) || self.identity.contains(name)
    }

    /// Whether a header written inside a sub-request is kept. Dropped headers are ignored
    /// silently, as seed 001 says of authentication headers. Besides identity,
    /// client-address and hop-by-hop headers, a sub-request never sets its own framing
    /// (`content-length` is computed), `host`, `expect` or `proxy-authenticate`.
    pub(crate) fn keeps(&self, name: &HeaderName) -> bool {
        !(self.is_outer_only(name)
            || is_hop_by_hop(name)
            || matches!(
                *name,
                header::CONTENT_LENGTH | header::HOST | header::EXPECT | header::PROXY_AUTHENTICATE
            ))
    }

    /// Drops the headers a sub-request may not set.
    fn filter(&self, headers: &mut HeaderMap) {
        // Look first: almost every sub-request sets none of them.
        if headers.keys().all(|name| self.keeps(name)) {
            return;
        }
        let dropped: Vec<HeaderName> = headers
            .keys()
            .filter(|name| !self.keeps(name))
            .cloned()
            .collect();
        for name in dropped {
            tracing::debug!(header = %name, "dropped a header written inside a sub-request");
            headers.remove(&name);
        }
    }
}

/// Adds a header to a sub-request. The item holds at most `max_item_headers` values and the
/// outer map already held the others, so there is room; were there none, a header would be
/// missing (never an identity gained) rather than the layer panicking.
fn add(headers: &mut HeaderMap, name: &HeaderName, value: HeaderValue) {
    if headers.try_append(name.clone(), value).is_err() {
        tracing::warn!(header = %name, "a sub-request has too many headers to add one");
    }
}

/// Removes the headers of a sub-response that describe its framing on a connection
/// (`content-length` and the hop-by-hop ones): inside a batch reply they would be false.
pub(crate) fn strip_response_framing(headers: &mut HeaderMap) {
    // Look once; remove only what is there (most responses have only `content-length`).
    let mut length = false;
    let mut hop = false;
    for name in headers.keys() {
        length |= name == header::CONTENT_LENGTH;
        hop |= is_hop_by_hop(name);
    }
    if length {
        headers.remove(header::CONTENT_LENGTH);
    }
    if hop {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

/// The outer request, as every sub-request of one batch takes from it.
pub(crate) struct Outer<'a> {
    /// The outer request without its body; its extensions are what sub-requests inherit.
    parts: http::request::Parts,
    /// Identity, client-address and `host` values of the outer request: override.
    outer: HeaderMap,
    /// Configured inherited headers: only where the sub-request has none of its own.
    inherited: HeaderMap,
    policy: &'a HeaderPolicy,
}

impl<'a> Outer<'a> {
    /// Takes what sub-requests inherit out of the outer request's parts.
    pub(crate) fn new(mut parts: http::request::Parts, policy: &'a HeaderPolicy) -> Self {
        // The outer connection's upgrade belongs to the outer request alone.
        parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        let mut outer = HeaderMap::new();
        let mut inherited = HeaderMap::new();
        for (name, value) in parts.headers.iter() {
            if policy.is_outer_only(name) || name == header::HOST {
                outer.append(name.clone(), value.clone());
            } else if policy.inherit.contains(name) {
                inherited.append(name.clone(), value.clone());
            }
        }
        Self {
            parts,
            outer,
            inherited,
            policy,
        }
    }

    /// The outer request's parts: what codecs decode with, and a transaction hook's
    /// `begin` is given.
    pub(crate) fn parts(&self) -> &http::request::Parts {
        &self.parts
    }

    /// The request the wrapped service receives for one sub-request.
    #[inline]
    pub(crate) fn sub_request<B>(&self, item: PlanItem) -> Request<BatchRequestBody<B>> {
        let PlanItem {
            method,
            uri,
            mut headers,
            body,
            ..
        } = item;
        self.policy.filter(&mut headers);
        for name in self.inherited.keys() {
            if !headers.contains_key(name) {
                for v in self.inherited.get_all(name) {
                    add(&mut headers, name, v.clone());
                }
            }
        }
        for (name, value) in self.outer.iter() {
            add(&mut headers, name, value.clone());
        }
        if !body.is_empty() || matches!(method, Method::POST | Method::PUT | Method::PATCH) {
            add(
                &mut headers,
                &header::CONTENT_LENGTH,
                HeaderValue::from(body.len()),
            );
        }
        let mut req = Request::new(BatchRequestBody::buffered(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        // Sub-requests are HTTP/1.1 whatever carried the batch: their host is in `host`.
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = headers;
        *req.extensions_mut() = self.parts.extensions.clone();
        req
    }
}
