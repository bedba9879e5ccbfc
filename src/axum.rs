//! Serving a batch-wrapped axum [`Router`] with `axum::serve`, in one line.
//!
//! `axum::serve` wants a service whose response body is axum's own `Body`;
//! [`BatchLayer::layer_router`] gives one:
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use tower_http_batch::BatchLayer;
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new().route("/users/{id}", get(|| async { "…" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, BatchLayer::new("/batch").layer_router(app)).await
//! # }
//! ```
//!
//! For `ConnectInfo`, serve
//! `BatchLayer::new("/batch").layer_router(app).into_make_service_with_connect_info::<SocketAddr>()`.

use crate::body::BatchRequestBody;
use crate::future::ResponseFuture;
use crate::{Batch, BatchLayer};
use axum::body::Body;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::routing::future::RouteFuture;
use axum::routing::IntoMakeService;
use axum::Router;
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

impl BatchLayer {
    /// Wraps a whole axum [`Router`] so that `axum::serve` takes it as it is.
    ///
    /// The same as `self.layer(router)`, with the response body turned back into axum's
    /// `Body` (without boxing pass-through responses again).
    pub fn layer_router(&self, router: Router) -> BatchRouter {
        BatchRouter {
            inner: self.layer(AxumRouter(router)),
        }
    }
}

/// An axum [`Router`] with batch endpoints, ready for `axum::serve`; made by
/// [`BatchLayer::layer_router`].
#[derive(Clone, Debug)]
pub struct BatchRouter {
    inner: Batch<AxumRouter>,
}

/// The router as the batch layer calls it: a request that passes through reaches it with
/// its own axum `Body` again, so axum does not box it a second time.
#[derive(Clone, Debug)]
pub(crate) struct AxumRouter(Router);

impl Service<Request<BatchRequestBody<Body>>> for AxumRouter {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request<Body>>::poll_ready(&mut self.0, cx)
    }

    #[inline]
    fn call(&mut self, req: Request<BatchRequestBody<Body>>) -> Self::Future {
        self.0.call(req.map(|body| match body.into_either() {
            Ok(outer) => outer,
            // Most sub-requests have no body: an empty one costs no allocation.
            Err(chunks) if chunks.is_nothing() => Body::empty(),
            Err(chunks) => Body::new(chunks),
        }))
    }
}

impl BatchRouter {
    /// The make-service `axum::serve` takes; the router itself works there too.
    pub fn into_make_service(self) -> IntoMakeService<Self> {
        axum::ServiceExt::<Request<Body>>::into_make_service(self)
    }

    /// A make-service that puts axum's `ConnectInfo<C>` into each request; sub-requests
    /// inherit it.
    pub fn into_make_service_with_connect_info<C>(self) -> IntoMakeServiceWithConnectInfo<Self, C> {
        axum::ServiceExt::<Request<Body>>::into_make_service_with_connect_info(self)
    }
}

impl Service<Request<Body>> for BatchRouter {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BatchRouterFuture;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request<Body>>::poll_ready(&mut self.inner, cx)
    }

    #[inline]
    fn call(&mut self, req: Request<Body>) -> Self::Future {
        BatchRouterFuture {
            inner: self.inner.call(req),
        }
    }
}

impl<L> Service<axum::serve::IncomingStream<'_, L>> for BatchRouter
where
    L: axum::serve::Listener,
{
    type Response = Self;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _stream: axum::serve::IncomingStream<'_, L>) -> Self::Future {
        std::future::ready(Ok(self.clone()))
    }
}

pin_project! {
    /// Response future of [`BatchRouter`].
    pub struct BatchRouterFuture {
        #[pin]
        inner: ResponseFuture<RouteFuture<Infallible>, Body>,
    }
}

impl Future for BatchRouterFuture {
    type Output = Result<Response<Body>, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.project().inner.poll(cx))?;
        Poll::Ready(Ok(response.map(|body| match body.into_either() {
            Ok(body) => body,
            Err(chunks) => Body::new(chunks),
        })))
    }
}

impl std::fmt::Debug for BatchRouterFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchRouterFuture").finish_non_exhaustive()
    }
}

// The router sees `BatchRequestBody<Body>`; make sure that stays a body axum accepts.
const _: fn() = || {
    fn accepts<S: Service<Request<BatchRequestBody<Body>>>>() {}
    accepts::<Router>();
};
