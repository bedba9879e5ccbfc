//! The builders of what sub-requests may reach and carry: the service root they are taken
//! under, the paths they may not reach, and the outer headers they inherit or may not set.

use super::BatchLayer;
use crate::batch::readings::is_plain;
use http::{HeaderName, Method};
use std::sync::Arc;

impl BatchLayer {
    /// Graph's service root: with `service_root("/v1.0")`, the batch endpoints under
    /// `/v1.0` (such as `/v1.0/$batch`) take every sub-request path as relative to it, as
    /// Microsoft Graph does: `/users/1` is sent as `/v1.0/users/1`, and a path already
    /// under the root (`/v1.0/users/1`) is kept. Every sub-request of those endpoints stays
    /// under the root (`/../admin` is `/v1.0/admin`). Endpoints elsewhere (`/batch`) keep
    /// OData's rule: paths as they are. Without a root, every endpoint keeps it.
    ///
    /// ```
    /// use tower_http_batch::BatchLayer;
    ///
    /// // What a Graph SDK pointed at this server with version `v1.0` expects.
    /// let layer = BatchLayer::new("/v1.0/$batch").service_root("/v1.0");
    /// # let _ = layer;
    /// ```
    ///
    /// # Panics
    ///
    /// When `root` does not start with `/`, or is not a plain path: one every server reads
    /// as itself (no query, dot segments, `//`, `%`, `\\`, `;` or `:`, no segment that ends
    /// in a dot). Paths under the root are checked in both readings against it, and a root
    /// a server could read otherwise would refuse them all. A trailing `/` is dropped.
    pub fn service_root(mut self, root: &str) -> Self {
        let root = root.trim_end_matches('/');
        assert!(
            root.starts_with('/')
                && root.parse::<http::uri::PathAndQuery>().is_ok()
                && !root.contains(['?', '#'])
                && is_plain(root),
            "tower-http-batch: a service root is a plain path starting with `/`: {root:?}"
        );
        let config = self.config_mut();
        config.decode.service_root = Some(root.to_string());
        config.run.service_root = Some(root.to_string());
        self
    }

    /// Treats one more header as identity, like `authorization` and `cookie`: sub-requests
    /// carry the outer request's values of it, and the same header written inside a
    /// sub-request is dropped. Use it for API-key headers such as `x-api-key`. Names
    /// compare with `_` as `-`, as CGI, WSGI and PHP read them.
    ///
    /// Built in: `authorization`, `cookie`, `proxy-authorization`, `x-remote-user`,
    /// `x-authenticated-user`, `remote-user`; what authenticating proxies set
    /// (`x-amzn-oidc-*`, `x-goog-authenticated-user-*`, `x-goog-iap-jwt-assertion`,
    /// `x-ms-client-principal*`, `cf-access-*`, `x-auth-request-*`, `x-webauth-*`,
    /// `ssl-client-*`, `x-ssl-client-*`, `x-client-cert`); and the client-address headers `forwarded`,
    /// `x-forwarded`, `x-forwarded-*`, `x-real-ip`, `x-client-ip`, `true-client-ip`, `client-ip`,
    /// `cf-connecting-ip`, `x-cluster-client-ip`, `fastly-client-ip`,
    /// `x-original-forwarded-for`.
    pub fn identity_header(mut self, name: HeaderName) -> Self {
        self.headers_mut().add_identity(&name);
        self
    }

    /// One more header that sub-requests may never set, and never inherit. Names compare
    /// with `_` as `-`.
    ///
    /// Built in: the hop-by-hop and framing headers (`connection`, `keep-alive`,
    /// `proxy-connection`, `te`, `trailer`, `transfer-encoding`, `upgrade`,
    /// `content-length`, `host`, `expect`, `proxy-authenticate`), any header a
    /// sub-request's `connection:` names, and the routing overrides
    /// `x-http-method-override`, `x-method-override`, `x-http-method`, `x-original-url`,
    /// `x-original-uri`, `x-original-method`, `x-envoy-original-path`, `x-rewrite-url`,
    /// `x-original-host`, `x-host`, and `x-middleware-subrequest`.
    pub fn drop_header(mut self, name: HeaderName) -> Self {
        self.headers_mut().add_dropped(&name);
        self
    }

    /// Copies one more outer header (e.g. `accept-language`, `x-request-id`) into every
    /// sub-request that does not set it itself. Identity and client-address headers are
    /// always inherited and need no call; a header sub-requests may never set is never
    /// inherited either.
    pub fn inherit_header(mut self, name: HeaderName) -> Self {
        self.headers_mut().inherit.push(name);
        self
    }

    /// The header that carries request ids (default `x-request-id`, as tower-http's
    /// `SetRequestIdLayer::x_request_id` and `PropagateRequestIdLayer::x_request_id`).
    ///
    /// When the outer request carries one, each sub-request gets its own, derived from it:
    /// `<outer id>.<item id>` (`<outer id>.#<index>` when the item's id is not made of
    /// `A-Z a-z 0-9 . _ ~ -` or is longer than 64 bytes: the `#` keeps it apart from an id
    /// that is a number), in place of any value the sub-request or an inherited header gave.
    /// The wrapped service sees it, and it comes back in the item's headers unless the
    /// service set the header itself. Items that were never sent (a `424`) have none.
    /// Without an outer id, a sub-request's own header passes as given.
    ///
    /// Put `SetRequestIdLayer` (and `PropagateRequestIdLayer`) *outside* the batch layer,
    /// so the batch has an id to derive from; a `PropagateRequestIdLayer` inside also sees
    /// each sub-request's.
    pub fn request_id_header(mut self, name: HeaderName) -> Self {
        self.headers_mut().request_id = Some(name);
        self
    }

    /// Keeps batches away from `prefix` and everything under it (`/admin` refuses
    /// `/admin` and `/admin/users`, not `/administrator`). A sub-request that would reach
    /// it is not sent and reports `403`; the rest of the batch runs. Repeatable.
    ///
    /// The check runs last, on the path as it would be sent (after dot segments, `$id` and
    /// references), in the two ways a server behind may read it; a path is refused when
    /// either reading is under `prefix`:
    ///
    /// - as a router that splits on `/` before decoding (axum, Express): each segment
    ///   decoded once (`/admin/users/..%2f..%2fx` is under `/admin`);
    /// - as a server that decodes, then normalises: percent-encoding decoded up to four
    ///   times, cut at a decoded `?`, `#` or NUL, `\` as `/`, trailing dots and spaces and
    ///   `::$DATA` dropped, dot and empty segments resolved (`/x/..%2fadmin` is `/admin`).
    ///
    /// Both fold ASCII letter case and path parameters (`/admin;x`). With any such rule,
    /// a path no reading is certain of (`%u0061`, overlong UTF-8 such as `%c0%ae`) is
    /// refused too. Not folded: suffixes a framework strips (`/admin.json`) and non-ASCII
    /// lookalikes (`adm%C4%B1n`); for those, allow rather than refuse, with
    /// [`reachable`](Self::reachable).
    ///
    /// # Panics
    ///
    /// When `prefix` does not start with `/`.
    pub fn refuse_path(mut self, prefix: &str) -> Self {
        assert!(
            prefix.starts_with('/'),
            "tower-http-batch: a refused path starts with `/`: {prefix:?}"
        );
        self.config_mut().run.reach.refuse(prefix);
        self
    }

    /// Lets sub-requests reach only what `predicate` accepts. One refused is not sent and
    /// reports `403`; the rest of the batch runs. Like [`refuse_path`](Self::refuse_path),
    /// it runs last, on the path as it would be sent.
    ///
    /// The predicate is called with the method and each of the two readings of the path
    /// that [`refuse_path`](Self::refuse_path) describes, in lower case, without path
    /// parameters, trailing slash or query (the root is the empty string); both must be
    /// accepted. In the strict reading an encoded `/` stays `%2f`; in the loose one it is
    /// a separator. An allow list then fails closed: `/users/..%2fadmin` is `/admin` to a
    /// decoding server, and `/orgs/..%2fusers%2f1` is under `/orgs` to a router; neither
    /// passes a rule that allows `/users/…`.
    ///
    /// ```
    /// use http::Method;
    /// use tower_http_batch::BatchLayer;
    ///
    /// // Batches may read anything, and write only users.
    /// let layer = BatchLayer::new("/batch")
    ///     .reachable(|method: &Method, path: &str| method == Method::GET || path.starts_with("/users/"));
    /// ```
    pub fn reachable<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&Method, &str) -> bool + Send + Sync + 'static,
    {
        self.config_mut().run.reach.only(Arc::new(predicate));
        self
    }
}
