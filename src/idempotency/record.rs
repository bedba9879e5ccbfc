//! An item's outcome as a store keeps it: status, headers, body, and why a body was left
//! out, in a length-prefixed binary form (little-endian). Read back with every length
//! checked: a record a store corrupted reads as nothing, never as a panic.

use crate::batch::outcome::Outcome;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// `outcome`, to store.
pub(crate) fn encode(outcome: &Outcome) -> Bytes {
    // Sized exactly: a store may keep it for a day, with whatever room it was given.
    let headers: usize = outcome
        .headers
        .iter()
        .map(|(n, v)| 8 + n.as_str().len() + v.len())
        .sum();
    let omitted = outcome.body_omitted.as_ref().map_or(0, |why| 4 + why.len());
    let mut out = BytesMut::with_capacity(2 + 4 + headers + 4 + outcome.body.len() + 1 + omitted);
    out.put_u16_le(outcome.status.as_u16());
    out.put_u32_le(outcome.headers.len() as u32);
    for (name, value) in &outcome.headers {
        put(&mut out, name.as_str().as_bytes());
        put(&mut out, value.as_bytes());
    }
    put(&mut out, &outcome.body);
    match &outcome.body_omitted {
        Some(why) => {
            out.put_u8(1);
            put(&mut out, why.as_bytes());
        }
        None => out.put_u8(0),
    }
    out.freeze()
}

fn put(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32_le(bytes.len() as u32);
    out.put_slice(bytes);
}

/// An outcome stored with [`encode`]; `None` when `stored` is not one.
pub(crate) fn decode(mut stored: Bytes) -> Option<Outcome> {
    let status = StatusCode::from_u16(u16_le(&mut stored)?).ok()?;
    let count = u32_le(&mut stored)? as usize;
    // A count is a claim, not an allocation: the map grows as headers really come (and
    // refuses, rather than panics, past what a `HeaderMap` holds).
    let mut headers = HeaderMap::with_capacity(count.min(64));
    for _ in 0..count {
        let name = HeaderName::from_bytes(&take(&mut stored)?).ok()?;
        let value = HeaderValue::from_maybe_shared(take(&mut stored)?).ok()?;
        headers.try_append(name, value).ok()?;
    }
    let body = take(&mut stored)?;
    let body_omitted = match stored.try_get_u8().ok()? {
        0 => None,
        1 => Some(String::from_utf8(take(&mut stored)?.to_vec()).ok()?),
        _ => return None,
    };
    Some(Outcome {
        status,
        headers,
        body,
        body_omitted,
        answered: None,
    })
}

fn u16_le(b: &mut Bytes) -> Option<u16> {
    b.try_get_u16_le().ok()
}

fn u32_le(b: &mut Bytes) -> Option<u32> {
    b.try_get_u32_le().ok()
}

/// The next length-prefixed field.
fn take(b: &mut Bytes) -> Option<Bytes> {
    let len = u32_le(b)? as usize;
    (len <= b.len()).then(|| b.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_reads_back_as_it_was_and_garbage_reads_as_nothing() {
        let mut outcome = Outcome::problem(StatusCode::CREATED, "t", "d".into());
        outcome
            .headers
            .append("set-cookie", HeaderValue::from_static("a=1"));
        outcome
            .headers
            .append("set-cookie", HeaderValue::from_static("b=2"));
        outcome.body_omitted = Some("too large".into());
        let stored = encode(&outcome);
        let read = decode(stored.clone()).expect("reads back");
        assert_eq!(read.status, outcome.status);
        assert_eq!(read.headers, outcome.headers);
        assert_eq!(read.body, outcome.body);
        assert_eq!(read.body_omitted, outcome.body_omitted);
        for cut in 0..stored.len() {
            assert!(decode(stored.slice(..cut)).is_none(), "cut at {cut}");
        }
        let mut lying = BytesMut::from(&stored[..]);
        lying[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(lying.freeze()).is_none());
    }
}
