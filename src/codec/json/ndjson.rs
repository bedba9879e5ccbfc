//! The JSON batch's reply as NDJSON (`Accept: application/x-ndjson`): one line per item, in
//! the order items finish, each the object the JSON reply would hold for it
//! (`{"id","status","headers","body"}`), then a line that closes the batch:
//!
//! ```json
//! {"done":true,"requests":3,"responses":2,"statusClasses":{"1xx":0,"2xx":1,"3xx":0,"4xx":1,"5xx":0},"cutShort":"stop_on_error"}
//! ```
//!
//! `cutShort` is `null`, `"batch_timeout"` (items in flight then report `504`, items not
//! started `424`) or `"stop_on_error"` (items not started are left out: `responses` is
//! less than `requests`).

use super::entry;
use crate::batch::media::accept_weight;
use crate::batch::outcome::Outcome;
use crate::batch::summary::{Summary, CLASSES};
use crate::codec::{Reply, ReplyWriter};
use http::{HeaderValue, StatusCode};

/// `application/x-ndjson`.
pub(super) const NDJSON: &str = "application/x-ndjson";

/// Whether the client asks for NDJSON: `accept` names `application/x-ndjson` with a weight
/// above 0, and not below the one it gives `application/json`.
pub(super) fn wanted(headers: &http::HeaderMap) -> bool {
    let Some(ndjson) = accept_weight(headers, NDJSON).filter(|&q| q > 0) else {
        return false;
    };
    accept_weight(headers, "application/json").is_none_or(|json| ndjson >= json)
}

/// Lines, as items finish.
pub(super) struct NdjsonReply;

impl Reply for NdjsonReply {
    fn content_type(&self) -> HeaderValue {
        HeaderValue::from_static(NDJSON)
    }

    fn reads_in_part(&self) -> bool {
        true
    }

    fn begin(&mut self, w: &mut ReplyWriter) {
        w.set_one_line();
    }

    fn item(&mut self, _index: usize, id: &str, outcome: &Outcome, w: &mut ReplyWriter) {
        entry(id, outcome, w);
        w.put(b"\n");
    }

    fn finish(self: Box<Self>, w: &mut ReplyWriter, end: &Summary) -> StatusCode {
        w.put(b"{\"done\":true,\"requests\":");
        w.put(end.requests.to_string().as_bytes());
        w.put(b",\"responses\":");
        w.put(end.responses().to_string().as_bytes());
        w.put(b",\"statusClasses\":{");
        for (i, (class, count)) in CLASSES.iter().zip(end.by_class).enumerate() {
            if i > 0 {
                w.put(b",");
            }
            w.str(class);
            w.put(b":");
            w.put(count.to_string().as_bytes());
        }
        w.put(b"},\"cutShort\":");
        match end.cut_short {
            Some(cut) => w.str(cut.as_str()),
            None => w.put(b"null"),
        }
        w.put(b"}\n");
        StatusCode::OK
    }
}
