//! [`ReplyWriter`]: a reply being written. The framing goes into one buffer; a large body
//! that goes in as it is (JSON) is referenced, not copied, so the result is a list of
//! chunks, which leave as they are written ([`ReplyWriter::take`]) or all at the end.

use super::header_case::write_name;
use crate::batch::outcome::{encode_base64, reply_limit_reached, BodyView, Outcome};
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};

/// Bodies at least this long go into a reply by reference, not copied.
const REFERENCE_AT: usize = 2048;

/// A reply being written.
#[derive(Debug)]
pub(crate) struct ReplyWriter {
    buf: BytesMut,
    chunks: std::collections::VecDeque<Bytes>,
    /// Bytes ever put in `chunks`.
    sent: usize,
    /// Bytes taken away ([`ReplyWriter::take_up_to`]).
    taken: usize,
    /// One line per entry (NDJSON): line breaks in JSON bodies become spaces.
    one_line: bool,
    /// `max_response_bytes`: what bodies and headers may take of the reply, counted as
    /// written (escapes and base64 included).
    limit: usize,
}

/// Whether an item's body goes into the reply.
pub(crate) enum Fit<'a> {
    /// It fits (an empty body always does).
    Fits(BodyView<'a>),
    /// It would pass the reply's limit, or was not read whole: why.
    Omitted(std::borrow::Cow<'a, str>),
}

impl ReplyWriter {
    /// A writer whose bodies and headers may take `limit` bytes of the reply.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            chunks: std::collections::VecDeque::new(),
            sent: 0,
            taken: 0,
            one_line: false,
            limit,
        }
    }

    /// A writer whose entries are each one line (NDJSON): a JSON body with line breaks
    /// (whitespace between tokens, since valid JSON has none inside strings) has them
    /// replaced by spaces.
    pub(crate) fn set_one_line(&mut self) {
        self.one_line = true;
    }

    /// The bytes written and not yet taken.
    pub(crate) fn pending(&self) -> usize {
        self.len() - self.taken
    }

    /// The first of what was written and not yet taken, at most `max` bytes of it
    /// (`max` > 0). A body written by reference is split, not copied.
    pub(crate) fn take_up_to(&mut self, max: usize) -> Option<Bytes> {
        let framing = self.buf.split().freeze();
        self.sent += framing.len();
        if !framing.is_empty() {
            self.chunks.push_back(framing);
        }
        let mut chunk = self.chunks.pop_front()?;
        if chunk.len() > max {
            self.chunks.push_front(chunk.split_off(max));
        }
        self.taken += chunk.len();
        Some(chunk)
    }

    /// Makes room for `additional` more bytes of framing.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.buf.reserve(additional);
    }

    /// The bytes written so far.
    fn len(&self) -> usize {
        self.sent + self.buf.len()
    }

    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        self.buf.put_slice(bytes);
    }

    /// Where a serializer writes.
    pub(crate) fn writer(&mut self) -> impl std::io::Write + '_ {
        (&mut self.buf).writer()
    }

    /// `s` as a JSON string, escaped as serde_json escapes.
    pub(crate) fn str(&mut self, s: &str) {
        // Writing a string into memory cannot fail.
        let _ = serde_json::to_writer((&mut self.buf).writer(), s);
    }

    /// Header names (spelled as servers write them: `Content-Type`) to values; a header with several values (`set-cookie`) gets an array.
    /// A value that is not UTF-8 is written lossily. When they would pass the reply's
    /// limit, `{}` is written instead, and the reason returned.
    pub(crate) fn headers(&mut self, headers: &HeaderMap) -> Option<String> {
        let mark = self.buf.len();
        self.write_headers(headers);
        if self.len() <= self.limit {
            return None;
        }
        self.buf.truncate(mark);
        self.put(b"{}");
        Some(self.over_limit())
    }

    fn write_headers(&mut self, headers: &HeaderMap) {
        let value = |w: &mut Self, v: &HeaderValue| match std::str::from_utf8(v.as_bytes()) {
            Ok(text) => w.str(text),
            Err(_) => w.str(&String::from_utf8_lossy(v.as_bytes())),
        };
        self.buf.put_u8(b'{');
        // `HeaderMap::iter` yields the values of one name one after another.
        let mut iter = headers.iter().peekable();
        let mut first = true;
        while let Some((name, v)) = iter.next() {
            if !first {
                self.buf.put_u8(b',');
            }
            first = false;
            // A header name is a token: it needs no escape.
            self.buf.put_u8(b'"');
            self.header_name(name);
            self.buf.put_slice(b"\":");
            if iter.peek().is_some_and(|(next, _)| *next == name) {
                self.buf.put_u8(b'[');
                value(self, v);
                while let Some((_, v)) = iter.next_if(|(next, _)| *next == name) {
                    self.buf.put_u8(b',');
                    value(self, v);
                }
                self.buf.put_u8(b']');
            } else {
                value(self, v);
            }
        }
        self.buf.put_u8(b'}');
    }

    /// A header name, spelled as servers write it (`Content-Type`).
    pub(crate) fn header_name(&mut self, name: &http::HeaderName) {
        write_name(name.as_str(), &mut self.buf);
    }

    /// What is left of the reply's limit.
    pub(crate) fn room(&self) -> usize {
        self.limit.saturating_sub(self.len())
    }

    /// Why something was left out of the reply.
    pub(crate) fn over_limit(&self) -> String {
        reply_limit_reached(self.limit)
    }

    /// Whether `outcome`'s body goes into the reply: not when it was not read whole, nor
    /// when it would pass the reply's limit.
    pub(crate) fn fit<'a>(&self, outcome: &'a Outcome) -> Fit<'a> {
        if let Some(why) = &outcome.body_omitted {
            return Fit::Omitted(why.as_str().into());
        }
        let view = outcome.body_view();
        if self.len() + view.encoded_len() > self.limit {
            return Fit::Omitted(self.over_limit().into());
        }
        Fit::Fits(view)
    }

    /// `json`, valid JSON, as it is: a large one by reference.
    pub(crate) fn raw(&mut self, json: &Bytes) {
        if self.one_line && memchr::memchr2(b'\n', b'\r', json).is_some() {
            let line = json.iter().map(|&b| match b {
                b'\n' | b'\r' => b' ',
                b => b,
            });
            self.buf.extend(line);
            return;
        }
        if json.len() < REFERENCE_AT {
            return self.put(json);
        }
        let framing = self.buf.split().freeze();
        self.sent += framing.len() + json.len();
        // A body referenced right after another has no framing between.
        if !framing.is_empty() {
            self.chunks.push_back(framing);
        }
        self.chunks.push_back(json.clone());
    }

    /// A body as its [`BodyView`]: JSON as it is, text as a string, bytes in base64url;
    /// `empty` when there is none. For JSON a strict parser would refuse, the reason.
    pub(crate) fn body<'a>(&mut self, view: BodyView<'a>, empty: &[u8]) -> Option<String> {
        match view {
            BodyView::Empty => self.put(empty),
            BodyView::Json(json) => self.raw(json),
            BodyView::Text(text) => self.str(text),
            BodyView::Binary(bytes) => self.str(&encode_base64(bytes)),
            BodyView::NotStrictJson(bytes, why) => {
                match std::str::from_utf8(bytes) {
                    Ok(text) => self.str(text),
                    Err(_) => self.str(&encode_base64(bytes)),
                }
                return Some(format!("the body is not carried as JSON: {why}"));
            }
        }
        None
    }

    /// `,"key":"value"` when there is a value.
    pub(crate) fn field(&mut self, key: &[u8], value: Option<&str>) {
        if let Some(value) = value {
            self.put(b",\"");
            self.put(key);
            self.put(b"\":");
            self.str(value);
        }
    }

    /// The reply, in chunks (a job's items so far, the fuzz targets and tests read replies
    /// whole).
    pub(crate) fn finish(mut self) -> Vec<Bytes> {
        let rest = self.buf.freeze();
        if !rest.is_empty() {
            self.chunks.push_back(rest);
        }
        self.chunks.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_with_several_values_become_arrays() {
        let mut headers = HeaderMap::new();
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.insert("x-one", HeaderValue::from_static("q\"uote"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.append("x-bytes", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let mut w = ReplyWriter::new(usize::MAX);
        assert_eq!(w.headers(&headers), None);
        let v: serde_json::Value = serde_json::from_slice(&w.finish().concat()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Set-Cookie": ["a=1", "b=2"], "X-One": "q\"uote", "X-Bytes": "caf\u{fffd}"})
        );
    }

    #[test]
    fn large_json_is_referenced_not_copied() {
        let big = Bytes::from(format!("[{}1]", "1,".repeat(REFERENCE_AT)));
        let mut w = ReplyWriter::new(usize::MAX);
        w.put(b"{\"a\":");
        w.raw(&big);
        w.put(b"}");
        let chunks = w.finish();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), big.as_ptr());
        assert!(serde_json::from_slice::<serde_json::Value>(&chunks.concat()).is_ok());
    }
}
