//! The upstream: every request the proxy sends goes to its scheme and authority, from a
//! pool of connections that belongs to the thread sending it.
//!
//! Each worker thread (see `serve.rs`) keeps its own pool, so a sub-request, its connection
//! and the batch waiting for it are all driven by one thread: a connection shared between
//! threads would wake the other thread for every response.

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::cell::OnceCell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_http_batch::BatchRequestBody;

/// The body of every response the proxy gives.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

type Pool = Client<HttpConnector, BatchRequestBody<Incoming>>;

thread_local! {
    /// This thread's connections to the upstream (there is one upstream per process), and
    /// whether they speak HTTP/2.
    static POOL: OnceCell<(bool, Pool)> = const { OnceCell::new() };
}

/// Sends every request to the upstream: same method, path, query, headers and body.
#[derive(Clone)]
pub(crate) struct Upstream {
    authority: Authority,
    /// `authority`, as the `host` header every request carries.
    host: HeaderValue,
    /// How long a request waits for the upstream's response head.
    timeout: Option<Duration>,
    /// The batch layer bounds each sub-request (`--timeout-secs` is not 0).
    layer_bounds: bool,
    /// Speak HTTP/2 without TLS (prior knowledge): sub-requests sent at once share a
    /// connection and its writes.
    http2: bool,
}

impl Upstream {
    /// The upstream at `http://{authority}`.
    pub(crate) fn new(
        authority: Authority,
        timeout: Option<Duration>,
        layer_bounds: bool,
        http2: bool,
    ) -> Self {
        // An authority is always a valid header value.
        let host = HeaderValue::from_str(authority.as_str()).expect("an authority");
        Self {
            authority,
            host,
            timeout,
            layer_bounds,
            http2,
        }
    }

    /// This thread's pool, made on its first request.
    fn pool(&self) -> Pool {
        POOL.with(|pool| {
            let (http2, pool) = pool.get_or_init(|| {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(Duration::from_secs(5)));
                connector.set_nodelay(true);
                let client = Client::builder(TokioExecutor::new())
                    .http2_only(self.http2)
                    .build(connector);
                (self.http2, client)
            });
            debug_assert_eq!(*http2, self.http2, "one upstream per process");
            pool.clone()
        })
    }
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
/// (Names, not strings: a lookup by string parses the name every time.)
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

/// Drops the [`HOP_BY_HOP`] headers. Looks first: sub-requests never carry them (the batch
/// layer drops them), and most responses have none.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

impl tower::Service<Request<BatchRequestBody<Incoming>>> for Upstream {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<BatchRequestBody<Incoming>>) -> Self::Future {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path)
            .build();
        let client = self.pool();
        let authority = self.authority.clone();
        let host = self.host.clone();
        // A sub-request has the layer's timeout (`--timeout-secs`), which also covers its
        // body; without one, it keeps this one.
        let layer_bounds = self.layer_bounds && req.body().is_sub_request();
        let timeout = self.timeout.filter(|_| !layer_bounds);
        Box::pin(async move {
            let Ok(uri) = uri else {
                return Ok(bad_gateway(
                    "the request's path cannot be sent upstream".into(),
                ));
            };
            *req.uri_mut() = uri;
            let headers = req.headers_mut();
            strip_hop_by_hop(headers);
            headers.insert(header::HOST, host);
            let sent = client.request(req);
            let answered = match timeout {
                Some(t) => match tokio::time::timeout(t, sent).await {
                    Ok(answered) => answered,
                    Err(_) => return Ok(upstream_timed_out(&authority, t)),
                },
                None => sent.await,
            };
            match answered {
                Ok(res) => {
                    let (mut parts, body) = res.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    Ok(Response::from_parts(parts, body.boxed_unsync()))
                }
                Err(e) => {
                    let mut why = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        why.push_str(": ");
                        why.push_str(&s.to_string());
                        source = s.source();
                    }
                    tracing::warn!(error = %why, "upstream request failed");
                    Ok(bad_gateway(format!(
                        "the upstream {authority} did not answer: {why}"
                    )))
                }
            }
        })
    }
}

/// `502` with a problem+json body saying why.
fn bad_gateway(detail: String) -> Response<ProxyBody> {
    problem(
        StatusCode::BAD_GATEWAY,
        "urn:tower-http-batch:upstream-unavailable",
        "Upstream unavailable",
        detail,
    )
}

/// `504`: the upstream did not answer in time.
fn upstream_timed_out(authority: &Authority, limit: Duration) -> Response<ProxyBody> {
    problem(
        StatusCode::GATEWAY_TIMEOUT,
        "urn:tower-http-batch:upstream-timeout",
        "Upstream timed out",
        format!(
            "the upstream {authority} did not answer within {limit:?} (--upstream-timeout-secs)"
        ),
    )
}

/// A problem+json response.
fn problem(status: StatusCode, kind: &str, title: &str, detail: String) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "type": kind,
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut res = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}
