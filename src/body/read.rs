//! Reading a body whole, within a limit: the outer request's (a batch), and each
//! sub-response's, polled by the engine's hand-written call.

use crate::BoxError;
use bytes::Bytes;
use http_body::Body;
use http_body_util::LengthLimitError;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// It is larger than the limit.
    TooLarge,
    /// The body itself failed.
    Failed(BoxError),
}

/// Reads a body to its end: at most `limit` bytes. A body whose size hint says up front
/// that it is larger is not read at all; one of a single chunk is not copied.
/// (`BodyExt::collect` would allocate a list for every body, even of one chunk: this runs
/// once per sub-request.)
pub(crate) async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut gathered = Gathered::new(&body, limit)?;
    let mut body = std::pin::pin!(body);
    std::future::poll_fn(|cx| gathered.poll_read(body.as_mut(), cx)).await
}

/// A body's data as it is read, within a limit: what [`read_limited`] does, as a step a
/// hand-written future can poll (the engine's call of a sub-request).
#[derive(Debug)]
pub(crate) struct Gathered {
    /// The only chunk so far: kept, not copied.
    first: Option<Bytes>,
    /// The chunks so far, once there are several.
    joined: Option<bytes::BytesMut>,
    /// Bytes the body may still bring.
    left: usize,
}

impl Gathered {
    /// Ready to read `body` within `limit` bytes; `TooLarge` if its size hint already says
    /// it holds more.
    pub(crate) fn new<B: Body>(body: &B, limit: usize) -> Result<Self, ReadError> {
        if body.size_hint().lower() > limit as u64 {
            return Err(ReadError::TooLarge);
        }
        Ok(Self {
            first: None,
            joined: None,
            left: limit,
        })
    }

    /// Polls `body` to its end; its data, whole. A body error that is a
    /// [`LengthLimitError`] (a limit outside the layer) counts as `TooLarge` too.
    pub(crate) fn poll_read<B>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Bytes, ReadError>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        loop {
            let frame = match ready!(body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(Ok(self.take())),
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    let e = e.into();
                    return Poll::Ready(Err(match e.is::<LengthLimitError>() {
                        true => ReadError::TooLarge,
                        false => ReadError::Failed(e),
                    }));
                }
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let Some(left) = self.left.checked_sub(data.len()) else {
                return Poll::Ready(Err(ReadError::TooLarge));
            };
            self.left = left;
            self.push(data);
        }
    }

    fn push(&mut self, data: Bytes) {
        match (&mut self.joined, self.first.take()) {
            (Some(buf), _) => buf.extend_from_slice(&data),
            (None, Some(prev)) => {
                let mut buf = bytes::BytesMut::with_capacity(prev.len() + data.len());
                buf.extend_from_slice(&prev);
                buf.extend_from_slice(&data);
                self.joined = Some(buf);
            }
            (None, None) => self.first = Some(data),
        }
    }

    fn take(&mut self) -> Bytes {
        match self.joined.take() {
            Some(buf) => buf.freeze(),
            None => self.first.take().unwrap_or_default(),
        }
    }
}
