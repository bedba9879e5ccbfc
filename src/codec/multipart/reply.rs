//! The multipart reply: `multipart/mixed`, one `application/http` part per response in
//! request order, a changeset's responses in a nested `multipart/mixed`, each part's
//! `Content-ID` echoed. Written as the outcomes arrive; bodies go in as they are.
//!
//! The boundaries are random (128 bits each): a sub-response cannot hold the delimiter of
//! the reply it is in, since nobody knows it before the reply is written.

use super::super::{Reply, ReplyWriter};
use crate::batch::outcome::Outcome;
use crate::batch::summary::Summary;
use http::{HeaderValue, StatusCode};
use std::hash::BuildHasher;
use std::ops::Range;

/// A reply being written.
pub(super) struct MultipartReply {
    boundary: String,
    /// The nested boundary of the changesets.
    changeset: String,
    /// Each item's `Content-ID`, to echo.
    content_ids: Vec<Option<String>>,
    /// The changesets' members, in order.
    changesets: Vec<Range<usize>>,
    /// How many changesets end before the item being written.
    passed: usize,
}

/// 32 hex digits no client can guess: SipHash under the process's random keys.
fn random_hex() -> String {
    let state = std::collections::hash_map::RandomState::new();
    let (a, b) = (state.hash_one(1u8), state.hash_one(2u8));
    format!("{a:016x}{b:016x}")
}

impl MultipartReply {
    pub(super) fn new(content_ids: Vec<Option<String>>, changesets: Vec<Range<usize>>) -> Self {
        Self {
            boundary: format!("batchresponse_{}", random_hex()),
            changeset: format!("changesetresponse_{}", random_hex()),
            content_ids,
            changesets,
            passed: 0,
        }
    }

    /// The changeset item `index` is in. Items arrive in order, so each changeset is
    /// passed once.
    fn changeset_of(&mut self, index: usize) -> Option<Range<usize>> {
        while self
            .changesets
            .get(self.passed)
            .is_some_and(|c| c.end <= index)
        {
            self.passed += 1;
        }
        let current = self.changesets.get(self.passed);
        current.filter(|c| c.contains(&index)).cloned()
    }
}

impl Reply for MultipartReply {
    fn content_type(&self) -> HeaderValue {
        // Unquoted and with `boundary` in lower case: the OData JavaScript parsers read
        // nothing else. The boundary is a token, so this is valid.
        HeaderValue::try_from(format!("multipart/mixed; boundary={}", self.boundary))
            .unwrap_or(HeaderValue::from_static("multipart/mixed"))
    }

    fn begin(&mut self, w: &mut ReplyWriter) {
        w.reserve((self.content_ids.len() * 160).min(64 << 10));
    }

    fn item(&mut self, index: usize, _id: &str, outcome: &Outcome, w: &mut ReplyWriter) {
        let changeset = self.changeset_of(index);
        let delimiter = match &changeset {
            Some(c) if c.start == index => {
                line(w, &["--", &self.boundary]);
                line(
                    w,
                    &["Content-Type: multipart/mixed; boundary=", &self.changeset],
                );
                w.put(b"\r\n");
                &self.changeset
            }
            Some(_) => &self.changeset,
            None => &self.boundary,
        };
        line(w, &["--", delimiter]);
        w.put(b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
        if let Some(Some(id)) = self.content_ids.get(index) {
            line(w, &["Content-ID: ", id]);
        }
        w.put(b"\r\n");
        response(outcome, w);
        w.put(b"\r\n");
        if changeset.is_some_and(|c| c.end == index + 1) {
            line(w, &["--", &self.changeset, "--"]);
        }
    }

    fn finish(self: Box<Self>, w: &mut ReplyWriter, _end: &Summary) -> StatusCode {
        line(w, &["--", &self.boundary, "--"]);
        StatusCode::OK
    }
}

/// `pieces` and a line end.
fn line(w: &mut ReplyWriter, pieces: &[&str]) {
    for p in pieces {
        w.put(p.as_bytes());
    }
    w.put(b"\r\n");
}

/// One response as HTTP/1.1 writes it: status line, headers (names spelled as servers
/// write them), `Content-Length`, an empty line, the body. A body the reply has no room
/// for is left out, and `X-Batch-Body-Omitted` says why; headers likewise.
fn response(o: &Outcome, w: &mut ReplyWriter) {
    let reason = o.status.canonical_reason().unwrap_or("Unknown");
    line(w, &["HTTP/1.1 ", o.status.as_str(), " ", reason]);
    let header_bytes: usize = o
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let mut omitted = Vec::new();
    if w.room() >= header_bytes {
        for (name, value) in &o.headers {
            w.header_name(name);
            w.put(b": ");
            w.put(value.as_bytes());
            w.put(b"\r\n");
        }
    } else {
        omitted.push(("X-Batch-Headers-Omitted", w.over_limit()));
    }
    let body = match &o.body_omitted {
        Some(why) => {
            omitted.push(("X-Batch-Body-Omitted", why.clone()));
            None
        }
        None if w.room() < o.body.len() => {
            omitted.push(("X-Batch-Body-Omitted", w.over_limit()));
            None
        }
        None => Some(&o.body),
    };
    for (name, why) in &omitted {
        // A reason is text the layer wrote: one line.
        line(w, &[name, ": ", &why.replace(['\r', '\n'], " ")]);
    }
    let length = body.map_or(0, |b| b.len()).to_string();
    line(w, &["Content-Length: ", &length]);
    w.put(b"\r\n");
    if let Some(body) = body {
        w.raw(body);
    }
}
