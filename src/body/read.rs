//! Reading a body whole, within a limit: the outer request's (a batch), and each
//! sub-response's.

use crate::BoxError;
use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// It is larger than the limit.
    TooLarge,
    /// The body itself failed.
    Failed(BoxError),
}

/// Reads a body to its end: at most `limit` bytes. A body whose size hint says up front
/// that it is larger is not read at all. A body error that is a [`LengthLimitError`] (a
/// limit outside the layer too) counts as `TooLarge`. A body of one chunk (most) is taken
/// as it is, not copied.
pub(crate) async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    let mut body = std::pin::pin!(Limited::new(body, limit));
    // The first chunk as it is; the rest copied after it, once there is more.
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(frame) = body.frame().await {
        // Trailers are not reported.
        let Ok(data) = frame.map_err(failed)?.into_data() else {
            continue;
        };
        if first.is_none() && joined.is_empty() {
            first = Some(data);
            if body.is_end_stream() {
                break;
            }
            continue;
        }
        if let Some(first) = first.take() {
            joined.extend_from_slice(&first);
        }
        joined.extend_from_slice(&data);
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

fn failed(e: BoxError) -> ReadError {
    match e.is::<LengthLimitError>() {
        true => ReadError::TooLarge,
        false => ReadError::Failed(e),
    }
}
