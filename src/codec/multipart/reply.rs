//! The multipart reply: `multipart/mixed`, one `application/http` part per response in
//! request order, a changeset's responses in a nested `multipart/mixed`, each part's
//! `Content-ID` echoed. Written as the outcomes arrive; bodies go in as they are.
//!
//! A changeset that failed is answered with one response, its failure, in place of the
//! nested part (OData 4.0 Part 1 §11.7.4; V2 clients such as pyodata read nothing else): the
//! first member the service itself failed, not one the layer answered for (rolled back,
//! `424`, a failed rollback).
//! So a changeset's responses are held until its last one arrives, or until the next item
//! or the end shows that the rest were left out.
//!
//! The boundaries are random (128 bits each): a sub-response cannot hold the delimiter of
//! the reply it is in, since nobody knows it before the reply is written.

use super::super::{Reply, ReplyWriter};
use super::dialect::Dialect;
use crate::batch::id::random_hex;
use crate::batch::outcome::Outcome;
use crate::batch::summary::Summary;
use http::{HeaderMap, HeaderValue, StatusCode};
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
    /// The responses of the changeset being answered, held until it is complete.
    held: Vec<(usize, Outcome)>,
    /// What the outer request asked for (V2's status, `Preference-Applied`).
    dialect: Dialect,
}

impl MultipartReply {
    pub(super) fn new(
        content_ids: Vec<Option<String>>,
        changesets: Vec<Range<usize>>,
        dialect: Dialect,
    ) -> Self {
        Self {
            boundary: format!("batchresponse_{}", random_hex()),
            changeset: format!("changesetresponse_{}", random_hex()),
            content_ids,
            changesets,
            passed: 0,
            held: Vec::new(),
            dialect,
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

    /// One response in its own part, delimited by `delimiter`.
    fn part(&self, delimiter: &str, index: usize, outcome: &Outcome, w: &mut ReplyWriter) {
        line(w, &["--", delimiter]);
        w.put(b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
        if let Some(Some(id)) = self.content_ids.get(index) {
            line(w, &["Content-ID: ", id]);
        }
        w.put(b"\r\n");
        response(outcome, w);
        w.put(b"\r\n");
    }

    /// Writes the changeset held: its failure alone when it failed, else its responses in
    /// a nested `multipart/mixed`.
    fn release(&mut self, w: &mut ReplyWriter) {
        let held = std::mem::take(&mut self.held);
        if held.is_empty() {
            return;
        }
        // The service's own answer first (the layer writes the rolled-back members'),
        // then any but a `424` (a replay keeps no mark of who wrote what), then any.
        let failed = |o: &Outcome| o.failed();
        let by_service = held.iter().find(|(_, o)| failed(o) && o.answered.is_none());
        let own = || {
            held.iter()
                .find(|(_, o)| failed(o) && o.status != StatusCode::FAILED_DEPENDENCY)
        };
        let failure = by_service
            .or_else(own)
            .or_else(|| held.iter().find(|(_, o)| failed(o)));
        if let Some((index, outcome)) = failure {
            return self.part(&self.boundary, *index, outcome, w);
        }
        line(w, &["--", &self.boundary]);
        line(
            w,
            &["Content-Type: multipart/mixed; boundary=", &self.changeset],
        );
        w.put(b"\r\n");
        for (index, outcome) in &held {
            self.part(&self.changeset, *index, outcome, w);
        }
        line(w, &["--", &self.changeset, "--"]);
    }
}

impl Reply for MultipartReply {
    fn content_type(&self) -> HeaderValue {
        // Unquoted and with `boundary` in lower case: the OData JavaScript parsers read
        // nothing else. The boundary is a token, so this is valid.
        HeaderValue::try_from(format!("multipart/mixed; boundary={}", self.boundary))
            .unwrap_or(HeaderValue::from_static("multipart/mixed"))
    }

    fn status(&self) -> StatusCode {
        match self.dialect.v2 {
            Some(_) => StatusCode::ACCEPTED,
            None => StatusCode::OK,
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(version) = &self.dialect.v2 {
            headers.insert("dataserviceversion", version.clone());
        }
        if let Some(applied) = &self.dialect.applied {
            headers.insert("preference-applied", applied.clone());
        }
        headers
    }

    fn begin(&mut self, w: &mut ReplyWriter) {
        w.reserve((self.content_ids.len() * 160).min(64 << 10));
    }

    fn item(&mut self, index: usize, _id: &str, outcome: &Outcome, w: &mut ReplyWriter) {
        let changeset = self.changeset_of(index);
        // An item past the changeset held: the rest of it was left out.
        if self
            .held
            .first()
            .is_some_and(|(first, _)| changeset.as_ref().is_none_or(|c| !c.contains(first)))
        {
            self.release(w);
        }
        let Some(changeset) = changeset else {
            return self.part(&self.boundary, index, outcome, w);
        };
        self.held.push((index, outcome.clone()));
        if changeset.end == index + 1 {
            self.release(w);
        }
    }

    fn finish(mut self: Box<Self>, w: &mut ReplyWriter, _end: &Summary) -> StatusCode {
        self.release(w);
        line(w, &["--", &self.boundary, "--"]);
        self.status()
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
