//! [`Batch`]: the service that answers batch requests and passes every other one through.

use crate::body::{collect_limited, BatchRequestBody, BatchResponseBody, Collected};
use crate::error::Problem;
use crate::execute;
use crate::format::{bulk, json, resource, Limits};
use crate::future::ResponseFuture;
use crate::identity::Template;
use crate::layer::{BatchLayer, Config, Format, Resource};
use crate::BoxError;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// A service that gives `S` batch endpoints; made by [`BatchLayer`].
///
/// Requests to a batch path are answered by the layer, which calls `S` once per
/// sub-request. Every other request goes to `S` unchanged: its body wrapped (not boxed) in
/// [`BatchRequestBody`], its response body in [`BatchResponseBody`].
///
/// # Readiness
///
/// `poll_ready` is the wrapped service's. A batch gives back the readiness it was granted
/// at once (by swapping in a fresh clone, as axum's `from_fn` does) and makes each
/// sub-request's clone ready with `oneshot` before calling it. So nothing is called
/// unready, and no reservation is held while the batch body uploads or across
/// sub-requests: a `ConcurrencyLimit(1)` inside the layer does not deadlock. `S` must be
/// `Clone`; wrap a service that is not in `tower::buffer::Buffer`.
#[derive(Clone, Debug)]
pub struct Batch<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Batch<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// A [`BatchLayer`] with one batch endpoint at `path`; the same as
    /// [`BatchLayer::new`].
    pub fn layer(path: impl Into<String>) -> BatchLayer {
        BatchLayer::new(path)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for Batch<S>
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<BatchResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(endpoint) = self.config.endpoint(req.uri().path()) else {
            return ResponseFuture::pass_through(self.inner.call(req.map(BatchRequestBody::outer)));
        };
        // Give back the readiness granted for this call: the batch makes each
        // sub-request's clone ready itself.
        let svc = self.inner.clone();
        drop(std::mem::replace(&mut self.inner, svc.clone()));
        ResponseFuture::batch(Box::pin(handle(svc, self.config.clone(), endpoint, req)))
    }
}

/// One batch, as a straight line: check the outer request, read, decode, run, encode.
async fn handle<S, B, ResBody>(
    svc: S,
    config: Arc<Config>,
    endpoint: usize,
    req: Request<B>,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    if let Some(problem) = check_outer(&parts, &config, &config.endpoints[endpoint].format) {
        return problem.into_response();
    }
    let bytes = match collect_limited(body, config.max_body_bytes).await {
        Ok(Collected::Complete(bytes)) => bytes,
        Ok(Collected::TooLarge) => return too_large(None, config.max_body_bytes).into_response(),
        Err(e) => {
            let e: BoxError = e.into();
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "urn:tower-http-batch:unreadable-body",
                "Unreadable batch body",
                format!("the batch body could not be read: {e}"),
            )
            .into_response();
        }
    };
    // `call` found it; the configuration does not change.
    let endpoint = &config.endpoints[endpoint];
    if let Format::Resource(resource) = &endpoint.format {
        return resource_bulk(svc, &config, resource, parts, &bytes).await;
    }
    let path = parts.uri.path();
    let limits = Limits::new(&config, &path[..path.rfind('/').map_or(0, |i| i + 1)]);
    let decoded = match &endpoint.format {
        Format::Bulk { base } => bulk::decode(&bytes, &limits, base),
        _ => json::decode(&bytes, &limits),
    };
    let plan = match decoded {
        Ok(plan) => plan,
        Err(errors) => return Problem::invalid(errors).into_response(),
    };
    tracing::debug!(items = plan.items.len(), "running a batch");
    let template = Template::new(parts, &config);
    let outcomes = execute::run(svc, &template, plan, &config).await;
    let reply = match &endpoint.format {
        Format::Bulk { .. } => bulk::encode(&outcomes),
        _ => json::encode(&outcomes),
    };
    let mut response = json_response(StatusCode::OK, Bytes::new());
    *response.body_mut() = BatchResponseBody::chunks(reply);
    response
}

/// A resource bulk request: decode, (for a delete by filters: list, then decode the
/// listing), run, encode.
async fn resource_bulk<S, B, ResBody>(
    svc: S,
    config: &Config,
    resource: &Resource,
    parts: http::request::Parts,
    bytes: &Bytes,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    let limits = Limits::new(config, "/");
    let decoded = resource::decode(&parts.method, parts.uri.query(), bytes, &limits, resource);
    let template = Template::new(parts, config);
    let decoded = match decoded {
        Ok(resource::Decoded::Lookup(plan, lookup)) => {
            let listing = execute::run(svc.clone(), &template, plan, config).await;
            resource::after_lookup(listing.into_iter().next(), lookup, resource, &limits)
        }
        other => other,
    };
    let (plan, reply) = match decoded {
        Ok(resource::Decoded::Run(plan, reply)) => (plan, reply),
        Ok(resource::Decoded::Lookup(..)) => {
            return Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "urn:tower-http-batch:internal",
                "Internal error",
                "a listing was asked for twice",
            )
            .into_response()
        }
        Err(problem) => return problem.into_response(),
    };
    tracing::debug!(items = plan.items.len(), collection = %resource.path, "running a resource bulk request");
    let outcomes = execute::run(svc, &template, plan, config).await;
    let (status, body) = resource::encode(&reply, outcomes);
    json_response(status, body)
}

fn json_response<ResBody>(status: StatusCode, body: Bytes) -> Response<BatchResponseBody<ResBody>> {
    let mut response = Response::new(BatchResponseBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Method, media type and declared length, before any byte of the body is read: the
/// problem with the outer request, if any.
fn check_outer(parts: &http::request::Parts, config: &Config, format: &Format) -> Option<Problem> {
    let (allowed, allow) = match format {
        Format::Resource(_) => (resource::allows(&parts.method), resource::METHODS),
        _ => (parts.method == Method::POST, "POST"),
    };
    if !allowed {
        return Some(
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "urn:tower-http-batch:method-not-allowed",
                "Method not allowed",
                format!("this endpoint takes {allow}, not {}", parts.method),
            )
            .with_header(header::ALLOW, HeaderValue::from_static(allow)),
        );
    }
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        let essence = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Some(
                Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "urn:tower-http-batch:unsupported-media-type",
                    "Unsupported media type",
                    format!(
                        "a batch body is application/json, not {:?}",
                        String::from_utf8_lossy(ct.as_bytes())
                    ),
                )
                .with_header(header::ACCEPT, HeaderValue::from_static("application/json")),
            );
        }
    }
    if let Some(len) = parts.headers.get(header::CONTENT_LENGTH) {
        match len.to_str().ok().and_then(|s| s.parse::<u64>().ok()) {
            Some(n) if n > config.max_body_bytes as u64 => {
                return Some(too_large(Some(n), config.max_body_bytes))
            }
            Some(_) => {}
            None => {
                return Some(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "urn:tower-http-batch:bad-content-length",
                    "Bad content-length",
                    "the content-length header is not a number",
                ))
            }
        }
    }
    None
}

fn too_large(len: Option<u64>, max: usize) -> Problem {
    let detail = match len {
        Some(n) => {
            format!("the batch body is {n} bytes; the limit is {max} bytes (max_body_bytes)")
        }
        None => format!("the batch body is larger than the limit of {max} bytes (max_body_bytes)"),
    };
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "urn:tower-http-batch:body-too-large",
        "Batch body too large",
        detail,
    )
}
