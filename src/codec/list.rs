//! [`ListReply`]: a reply that is a JSON list, one entry per outcome, written as each
//! outcome arrives. The JSON batch and bulk formats differ only in the list's framing and in
//! how one entry looks.

use super::{Reply, ReplyWriter, APPLICATION_JSON};
use crate::batch::outcome::Outcome;
use crate::batch::summary::Summary;
use http::{HeaderValue, StatusCode};

/// A JSON list of entries.
pub(crate) struct ListReply {
    /// What comes before the first entry (`{"responses":[`) and after the last (`]}`).
    open: &'static [u8],
    close: &'static [u8],
    /// Writes one entry.
    entry: fn(&str, &Outcome, &mut ReplyWriter),
    /// Room to make up front: the entries' framing, small bodies included.
    reserve: usize,
    written: usize,
}

impl ListReply {
    pub(crate) fn new(
        open: &'static [u8],
        close: &'static [u8],
        entry: fn(&str, &Outcome, &mut ReplyWriter),
        reserve: usize,
    ) -> Self {
        Self {
            open,
            close,
            entry,
            reserve,
            written: 0,
        }
    }
}

impl Reply for ListReply {
    fn content_type(&self) -> HeaderValue {
        APPLICATION_JSON
    }

    fn begin(&mut self, w: &mut ReplyWriter) {
        // Not more than a streamed reply holds before it is read.
        w.reserve(self.reserve.min(64 << 10));
        w.put(self.open);
    }

    fn item(&mut self, _index: usize, id: &str, outcome: &Outcome, w: &mut ReplyWriter) {
        if self.written > 0 {
            w.put(b",");
        }
        self.written += 1;
        (self.entry)(id, outcome, w);
    }

    fn finish(self: Box<Self>, w: &mut ReplyWriter, _end: &Summary) -> StatusCode {
        w.put(self.close);
        StatusCode::OK
    }
}
