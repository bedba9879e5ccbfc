//! Reading a body whole, within a limit: the outer request's (a batch), and each
//! sub-response's.

use crate::BoxError;
use bytes::Bytes;
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
/// as it is: `collect` would make a list for it (measured: 300 instructions per item).
pub(crate) async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    let mut body = std::pin::pin!(Limited::new(body, limit));
    let first = loop {
        match body.frame().await.transpose().map_err(failed)? {
            None => return Ok(Bytes::new()),
            Some(frame) => match frame.into_data() {
                Ok(data) => break data,
                // Trailers are not reported.
                Err(_) => continue,
            },
        }
    };
    if body.is_end_stream() {
        return Ok(first);
    }
    let rest = body.collect().await.map_err(failed)?;
    let mut whole = bytes::BytesMut::from(first);
    whole.extend_from_slice(&rest.to_bytes());
    Ok(whole.freeze())
}

fn failed(e: BoxError) -> ReadError {
    match e.is::<LengthLimitError>() {
        true => ReadError::TooLarge,
        false => ReadError::Failed(e),
    }
}
