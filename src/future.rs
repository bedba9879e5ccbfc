//! [`ResponseFuture`], the future of [`Batch`](crate::Batch).

use crate::body::BatchResponseBody;
use futures_util::future::BoxFuture;
use http::Response;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pin_project! {
    /// Response future of [`Batch`](crate::Batch).
    ///
    /// For a request that passes through it is the wrapped service's own future, not boxed;
    /// for a batch it is the batch's work, which always ends in a response (never in the
    /// wrapped service's error).
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: Inner<F, B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<F, B> {
        PassThrough { #[pin] future: F },
        Batch { future: BoxFuture<'static, Response<BatchResponseBody<B>>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    #[inline]
    pub(crate) fn pass_through(future: F) -> Self {
        Self {
            inner: Inner::PassThrough { future },
        }
    }

    pub(crate) fn batch(future: BoxFuture<'static, Response<BatchResponseBody<B>>>) -> Self {
        Self {
            inner: Inner::Batch { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<BatchResponseBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.project() {
            InnerProj::PassThrough { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(BatchResponseBody::inner)))
            }
            InnerProj::Batch { future } => future.as_mut().poll(cx).map(Ok),
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::PassThrough { .. } => f.write_str("ResponseFuture::PassThrough"),
            Inner::Batch { .. } => f.write_str("ResponseFuture::Batch"),
        }
    }
}
