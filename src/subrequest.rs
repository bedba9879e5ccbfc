//! Building a sub-request from the outer request: who it acts as, and which headers it
//! may carry.
//!
//! The rules (DESIGN.md, "Identity and headers"):
//! - a sub-request carries the outer request's extensions (whatever an auth layer outside
//!   put there, axum's `ConnectInfo`, …) except hyper's `OnUpgrade`;
//! - it carries the outer values of the identity headers (`authorization`, `cookie`,
//!   `proxy-authorization`, the user headers front proxies set, and the configured ones),
//!   of the client-address headers (`forwarded`, `x-forwarded`, `x-forwarded-*`, `x-real-ip`, …) and of
//!   `host`;
//! - the same headers written inside a sub-request are dropped, as are hop-by-hop and
//!   framing headers, the routing overrides some frameworks obey (`x-http-method-override`,
//!   `x-original-url`, …), the configured ones, and any header a sub-request's own
//!   `connection:` names; `content-length` is computed. Names compare as CGI, WSGI and PHP
//!   see them, with `_` as `-`. This happens here, when the request is built, whatever
//!   wire format the sub-request came in;
//! - every other sub-request header passes as given, and configured outer headers are
//!   inherited where the sub-request does not set them.

use crate::batch::id::index_id;
use crate::batch::plan::PlanItem;
use crate::body::BatchRequestBody;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Version};
use std::borrow::Cow;
use std::sync::Arc;

/// Headers whose outer values every sub-request carries, and that no sub-request sets
/// (with [`CLIENT_ADDRESS`]): identity, who the request acts as, with the names
/// authenticating proxies use. Compared with `_` as `-`.
const IDENTITY: [&str; 8] = [
    "authorization",
    "x-goog-iap-jwt-assertion",
    "x-client-cert",
    "cookie",
    "proxy-authorization",
    "x-remote-user",
    "x-authenticated-user",
    "remote-user",
];

/// Name prefixes of [`IDENTITY`] headers: the user and certificate headers that
/// authenticating proxies set (AWS ALB, Google IAP, Azure App Service, Cloudflare Access,
/// oauth2-proxy, Grafana's auth proxy, TLS terminators).
const IDENTITY_PREFIXES: [&str; 8] = [
    "x-amzn-oidc-",
    "x-goog-authenticated-user-",
    "x-ms-client-principal",
    "cf-access-",
    "x-auth-request-",
    "x-webauth-",
    "ssl-client-",
    "x-ssl-client-",
];

/// Whether a header name says who a request acts as, by the layer's built-in list (its
/// configured `identity_header`s aside): the client's `Coalesce` groups by these.
pub(crate) fn is_builtin_identity(name: &str) -> bool {
    is_builtin_identity_folded(&folded(name))
}

/// [`is_builtin_identity`] of a name already folded.
fn is_builtin_identity_folded(name: &str) -> bool {
    IDENTITY.contains(&name) || IDENTITY_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The other headers sub-requests take from the outer request alone: where it comes from,
/// with the names front proxies and CDNs use; and [`CLIENT_ADDRESS_PREFIX`]`*`.
const CLIENT_ADDRESS: [&str; 9] = [
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
];

/// `x-forwarded-*`, and `x-forwarded` alone: some servers read it as `forwarded`'s
/// lookalike.
const CLIENT_ADDRESS_PREFIX: &str = "x-forwarded";

/// Headers no sub-request sets, and that are not inherited either, besides the
/// [`HOP_BY_HOP`] ones: framing (RFC 9110 §7.6.1; `content-length` is computed), and the
/// routing overrides that frameworks obey in place of the method, path or host.
const NEVER: [&str; 15] = [
    "content-length",
    "host",
    "expect",
    "proxy-authenticate",
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
    "x-original-uri",
    "x-original-method",
    "x-envoy-original-path",
    // Next.js skips its middleware (often the auth check) for requests carrying it.
    "x-middleware-subrequest",
];

/// Hop-by-hop headers (RFC 9110 §7.6.1, and `keep-alive` and `proxy-connection`).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is one of [`HOP_BY_HOP`]: compared as strings, most of which differ in
/// length (every sub-response's names are looked at).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// A header name as the rules compare it: lower case (as `HeaderName` is), `_` as `-`.
fn folded(name: &str) -> Cow<'_, str> {
    match name.contains('_') {
        true => name.replace('_', "-").into(),
        false => name.into(),
    }
}

/// Which headers sub-requests take from the outer request, and which they may set
/// themselves: the part of the layer's configuration this module reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderPolicy {
    /// Identity headers besides the built-in ones (`BatchLayer::identity_header`),
    /// folded once, when configured.
    identity: Vec<String>,
    /// Headers never forwarded besides the built-in ones (`BatchLayer::drop_header`),
    /// folded likewise.
    dropped: Vec<String>,
    /// Outer headers copied into sub-requests that do not set them
    /// (`BatchLayer::inherit_header`).
    pub(crate) inherit: Vec<HeaderName>,
    /// The request-id header (`BatchLayer::request_id_header`); `None`: `x-request-id`.
    pub(crate) request_id: Option<HeaderName>,
}

/// The request-id header unless configured otherwise: tower-http's request-id layers use it.
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl HeaderPolicy {
    /// One more identity header.
    pub(crate) fn add_identity(&mut self, name: &HeaderName) {
        self.identity.push(folded(name.as_str()).into_owned());
    }

    /// One more header sub-requests may never set.
    pub(crate) fn add_dropped(&mut self, name: &HeaderName) {
        self.dropped.push(folded(name.as_str()).into_owned());
    }

    /// The header that carries request ids.
    pub(crate) fn request_id(&self) -> &HeaderName {
        self.request_id.as_ref().unwrap_or(&X_REQUEST_ID)
    }

    /// The headers whose outer values every sub-request carries.
    fn is_outer_only(&self, name: &HeaderName) -> bool {
        self.is_outer_only_folded(&folded(name.as_str()))
    }

    fn is_outer_only_folded(&self, name: &str) -> bool {
        self.is_identity_folded(name)
            || CLIENT_ADDRESS.contains(&name)
            || name.starts_with(CLIENT_ADDRESS_PREFIX)
    }

    /// Whether a header (folded) says who the request acts as.
    fn is_identity_folded(&self, name: &str) -> bool {
        is_builtin_identity_folded(name) || self.identity.iter().any(|h| h == name)
    }

    /// Who the outer request acts as, from the values of its identity headers (not those
    /// of client addresses, which a retry may see change): each `name: value` on a line,
    /// in the order the request has them.
    pub(crate) fn identity_of(&self, headers: &HeaderMap) -> Vec<u8> {
        let mut identity = Vec::new();
        for (name, value) in headers {
            let folded = folded(name.as_str());
            if self.is_identity_folded(&folded) {
                // Names and values hold no line feed: one header per line is unambiguous.
                identity.extend_from_slice(folded.as_bytes());
                identity.extend_from_slice(b": ");
                identity.extend_from_slice(value.as_bytes());
                identity.push(b'\n');
            }
        }
        identity
    }

    /// Whether a header written inside a sub-request is kept. Dropped headers are ignored
    /// silently, as seed 001 says of authentication headers.
    pub(crate) fn keeps(&self, name: &HeaderName) -> bool {
        let name = folded(name.as_str());
        !(self.is_outer_only_folded(&name)
            || HOP_BY_HOP.contains(&&*name)
            || NEVER.contains(&&*name)
            || self.dropped.iter().any(|h| *h == *name))
    }

    /// Drops the headers a sub-request may not set, and those its `connection:` names.
    fn filter(&self, headers: &mut HeaderMap) {
        // Look first: almost every sub-request sets none of them.
        if headers.keys().all(|name| self.keeps(name)) {
            return;
        }
        let named: Vec<String> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|token| folded(&token.trim().to_ascii_lowercase()).into_owned())
            .collect();
        let dropped: Vec<HeaderName> = headers
            .keys()
            .filter(|name| !self.keeps(name) || named.iter().any(|n| **n == *folded(name.as_str())))
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

/// The outer request's id, which sub-requests' ids are derived from: only when the header
/// is one sub-requests may carry (not an identity, framing or dropped header: deriving
/// would rewrite it), and the id is visible ASCII of at most 128 bytes.
fn outer_request_id(parts: &http::request::Parts, policy: &HeaderPolicy) -> Option<HeaderValue> {
    let name = policy.request_id();
    let value = parts.headers.get(name)?;
    let bytes = value.as_bytes();
    let visible = bytes.iter().all(|b| (0x21..0x7f).contains(b));
    let usable = policy.keeps(name) && visible && !bytes.is_empty() && bytes.len() <= 128;
    usable.then(|| value.clone())
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
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

/// The outer request, as every sub-request of one batch takes from it.
pub(crate) struct Outer {
    /// The outer request without its body; its extensions are what sub-requests inherit.
    parts: http::request::Parts,
    /// Identity, client-address and `host` values of the outer request: override.
    outer: HeaderMap,
    /// Configured inherited headers: only where the sub-request has none of its own.
    inherited: HeaderMap,
    /// The outer request's id: each sub-request's is derived from it.
    request_id: Option<HeaderValue>,
    policy: Arc<HeaderPolicy>,
}

impl Outer {
    /// Takes what sub-requests inherit out of the outer request's parts.
    pub(crate) fn new(mut parts: http::request::Parts, policy: Arc<HeaderPolicy>) -> Self {
        // The outer connection's upgrade belongs to the outer request alone.
        parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        let mut outer = HeaderMap::new();
        let mut inherited = HeaderMap::new();
        for (name, value) in parts.headers.iter() {
            if policy.is_outer_only(name) || name == header::HOST {
                outer.append(name.clone(), value.clone());
            } else if policy.inherit.contains(name) && policy.keeps(name) {
                inherited.append(name.clone(), value.clone());
            }
        }
        let request_id = outer_request_id(&parts, &policy);
        Self {
            parts,
            outer,
            inherited,
            request_id,
            policy,
        }
    }

    /// The outer request's parts: what codecs decode with, and a transaction hook's
    /// `begin` is given.
    pub(crate) fn parts(&self) -> &http::request::Parts {
        &self.parts
    }

    /// The header that carries request ids, when the outer request has one: each
    /// sub-request then carries its own.
    pub(crate) fn request_id_header(&self) -> Option<&HeaderName> {
        self.request_id.as_ref().map(|_| self.policy.request_id())
    }

    /// The request id of sub-request `index` (`id` in the batch): `<outer id>.<id>`, or
    /// `<outer id>.#<index>` when the id is not made of `A-Z a-z 0-9 . _ ~ -` or is longer
    /// than 64 bytes. `None` when the outer request has no id (see [`outer_request_id`]).
    pub(crate) fn request_id_of(&self, index: usize, id: &str) -> Option<HeaderValue> {
        let outer = self.request_id.as_ref()?.as_bytes();
        let plain = |b: u8| b.is_ascii_alphanumeric() || b"._~-".contains(&b);
        let mut derived = Vec::with_capacity(outer.len() + 2 + id.len().min(64));
        derived.extend_from_slice(outer);
        derived.push(b'.');
        if !id.is_empty() && id.len() <= 64 && id.bytes().all(plain) {
            derived.extend_from_slice(id.as_bytes());
        } else {
            derived.push(b'#');
            derived.extend_from_slice(index_id(index).as_bytes());
        }
        // Visible ASCII throughout: always a header value; its bytes are not copied.
        HeaderValue::from_maybe_shared(bytes::Bytes::from(derived)).ok()
    }

    /// The request the wrapped service receives for a sub-request, with `request_id` (its
    /// [`Outer::request_id_of`]) when it has one.
    pub(crate) fn sub_request<B>(
        &self,
        item: PlanItem,
        request_id: Option<HeaderValue>,
    ) -> Request<BatchRequestBody<B>> {
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
        if let Some(derived) = request_id {
            // Its own id, whatever the sub-request or the inherited headers said.
            headers.remove(self.policy.request_id());
            add(&mut headers, self.policy.request_id(), derived);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hop_by_hop_check_and_list_agree() {
        assert!(HOP_BY_HOP
            .iter()
            .all(|name| is_hop_by_hop(&HeaderName::from_static(name))));
        for name in [
            "content-type",
            "content-length",
            "host",
            "x-connection",
            "tee",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }
}
