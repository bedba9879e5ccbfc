//! The request and response body types the layer puts around the wrapped service's bodies;
//! [`read`] reads bodies whole, within a limit.

mod read;

pub(crate) use read::{read_limited, ReadError};

use bytes::Bytes;
use futures_util::stream::{Stream, StreamExt as _};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// Bytes the layer holds or is writing: one chunk (a sub-request's body, a reply sent
/// whole), or the frames of a reply written while its batch runs.
#[derive(Debug)]
pub(crate) struct Chunks {
    data: Data,
}

enum Data {
    /// One chunk; `None` once taken.
    One(Option<Bytes>),
    /// Written while the batch runs; `None` once it has ended. (`Sync`, as `One` is: both
    /// body types stay `Sync` when the wrapped body is.)
    Streamed(Option<Streamed>),
}

/// A reply written while its batch runs.
pub(crate) type Streamed = Pin<Box<dyn Stream<Item = Bytes> + Send + Sync>>;

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::One(chunk) => write!(f, "One({:?} bytes)", chunk.as_ref().map(Bytes::len)),
            Self::Streamed(_) => f.write_str("Streamed"),
        }
    }
}

impl Chunks {
    pub(crate) fn one(chunk: Bytes) -> Self {
        Self {
            data: Data::One(Some(chunk).filter(|c| !c.is_empty())),
        }
    }

    /// Whether it holds nothing at all (a sub-request without a body).
    #[cfg(feature = "axum")]
    pub(crate) fn is_nothing(&self) -> bool {
        matches!(self.data, Data::One(None))
    }

    pub(crate) fn streamed(stream: Streamed) -> Self {
        Self {
            data: Data::Streamed(Some(stream)),
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match &mut self.data {
            Data::One(chunk) => Poll::Ready(chunk.take()),
            Data::Streamed(stream) => {
                let Some(s) = stream else {
                    return Poll::Ready(None);
                };
                let next = ready!(s.poll_next_unpin(cx));
                if next.is_none() {
                    // Let go of what the run held (the service's clone, the plan) at once.
                    *stream = None;
                }
                Poll::Ready(next)
            }
        }
    }

    /// Bytes left, when known.
    fn remaining(&self) -> Option<u64> {
        match &self.data {
            Data::One(chunk) => Some(chunk.as_ref().map_or(0, |c| c.len() as u64)),
            Data::Streamed(stream) => stream.is_none().then_some(0),
        }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let next = ready!(self.get_mut().poll_next(cx));
        Poll::Ready(next.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining()
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

pin_project! {
    /// Either a body of the wrapped world, untouched, or bytes the layer holds. Both public
    /// body types are this; only their docs and constructors differ.
    #[project = ContentProj]
    enum Content<B> {
        Wrapped { #[pin] body: B },
        Layer { chunks: Chunks },
    }
}

impl<B> Content<B> {
    fn bytes(data: Bytes) -> Self {
        Content::Layer {
            chunks: Chunks::one(data),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Content<B> {
    type Data = Bytes;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project() {
            ContentProj::Wrapped { body } => body.poll_frame(cx),
            ContentProj::Layer { chunks } => {
                let next = ready!(chunks.poll_next(cx));
                Poll::Ready(next.map(|d| Ok(Frame::data(d))))
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            Content::Wrapped { body } => body.is_end_stream(),
            Content::Layer { chunks } => chunks.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            Content::Wrapped { body } => body.size_hint(),
            Content::Layer { chunks } => chunks.size_hint(),
        }
    }
}

impl<B> std::fmt::Debug for Content<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Wrapped { .. } => f.write_str("Wrapped"),
            Content::Layer { chunks } => write!(f, "Layer({:?})", chunks.data),
        }
    }
}

pin_project! {
    /// The request body the wrapped service receives.
    ///
    /// It is either the outer request's own body (for every request that is not a batch,
    /// passed through untouched and unboxed) or the bytes of one sub-request. So the
    /// wrapped service sees one body type for both, and any outer body type works:
    /// hyper's `Incoming`, axum's `Body`, `Full<Bytes>`, …
    ///
    /// It keeps the outer body's error type; a sub-request's body never fails.
    #[derive(Debug)]
    pub struct BatchRequestBody<B> {
        #[pin]
        inner: Content<B>,
    }
}

impl<B> BatchRequestBody<B> {
    /// The body of a request that passes through: the outer body itself.
    #[inline]
    pub(crate) fn outer(body: B) -> Self {
        Self {
            inner: Content::Wrapped { body },
        }
    }

    /// The body of one sub-request.
    pub(crate) fn buffered(data: Bytes) -> Self {
        Self {
            inner: Content::bytes(data),
        }
    }

    /// Whether this is a sub-request's body, written by the layer (else a request that
    /// passes through). A layer with a per-sub-request timeout (the default) already
    /// bounds each sub-request, so a service can skip its own, as `batch-proxy` does:
    ///
    /// ```
    /// use tower_http_batch::BatchRequestBody;
    /// # fn handle(req: http::Request<BatchRequestBody<String>>) {
    /// let bounded_by_the_layer = req.body().is_sub_request();
    /// # }
    /// ```
    #[inline]
    pub fn is_sub_request(&self) -> bool {
        matches!(self.inner, Content::Layer { .. })
    }

    /// The outer body, or a sub-request's bytes.
    #[cfg(feature = "axum")]
    pub(crate) fn into_either(self) -> Result<B, Chunks> {
        match self.inner {
            Content::Wrapped { body } => Ok(body),
            Content::Layer { chunks } => Err(chunks),
        }
    }
}

pin_project! {
    /// The response body of [`Batch`](crate::Batch).
    ///
    /// Either the wrapped service's own body (for every request that is not a batch: not
    /// boxed, same error type) or the bytes the layer wrote: a batch reply or an error.
    #[derive(Debug)]
    pub struct BatchResponseBody<B> {
        #[pin]
        inner: Content<B>,
    }
}

impl<B> BatchResponseBody<B> {
    #[inline]
    pub(crate) fn inner(body: B) -> Self {
        Self {
            inner: Content::Wrapped { body },
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            inner: Content::bytes(data),
        }
    }

    /// A reply the layer writes while its batch runs.
    pub(crate) fn streamed(stream: Streamed) -> Self {
        Self {
            inner: Content::Layer {
                chunks: Chunks::streamed(stream),
            },
        }
    }

    /// The wrapped service's body, or the bytes the layer wrote.
    #[cfg(feature = "axum")]
    pub(crate) fn into_either(self) -> Result<B, Chunks> {
        match self.inner {
            Content::Wrapped { body } => Ok(body),
            Content::Layer { chunks } => Err(chunks),
        }
    }
}

/// Both public bodies are `Body` exactly when the wrapped body is.
macro_rules! delegate_body {
    ($name:ident) => {
        impl<B: Body<Data = Bytes>> Body for $name<B> {
            type Data = Bytes;
            type Error = B::Error;

            #[inline]
            fn poll_frame(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
                self.project().inner.poll_frame(cx)
            }

            #[inline]
            fn is_end_stream(&self) -> bool {
                self.inner.is_end_stream()
            }

            #[inline]
            fn size_hint(&self) -> SizeHint {
                self.inner.size_hint()
            }
        }
    };
}
delegate_body!(BatchRequestBody);
delegate_body!(BatchResponseBody);
