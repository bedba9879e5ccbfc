//! [`Plan`]: the validated form of a batch, the same for every wire format. A codec
//! produces it only when the whole batch has validated; the engine runs it.

use super::id::ItemId;
use super::reference::Refs;
use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use std::ops::Range;

/// A batch that passed validation.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) items: Vec<PlanItem>,
    /// Stop at the first sub-response with status >= 400 (that one included).
    pub(crate) stop_on_error: bool,
    /// Atomic groups: adjacent items that run in order in one transaction.
    pub(crate) groups: Vec<Group>,
    /// Run the items in chunks of this many: a chunk starts when the one before has
    /// finished. `None`: no chunks.
    pub(crate) chunk_size: Option<usize>,
    /// The order in which outcomes are handed to the reply.
    pub(crate) order: Order,
    /// Whether the endpoint lies under the service root (`BatchLayer::service_root`):
    /// each final path is then checked to stay under it, in both readings.
    pub(crate) under_root: bool,
}

/// The order in which the engine hands outcomes on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Order {
    /// Request order: each outcome once it and every one before it are final.
    #[default]
    Request,
    /// Each outcome as soon as it is final (a reply whose entries name their items).
    Completion,
}

impl Plan {
    /// A plan with no groups and no chunks.
    pub(crate) fn new(items: Vec<PlanItem>, stop_on_error: bool) -> Self {
        Self {
            items,
            stop_on_error,
            ..Self::default()
        }
    }
}

/// An atomicity group: items `members` (adjacent, in order) succeed or fail together.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// The group's name, for messages (`atomicityGroup`, or `"atomic"` for a whole batch).
    pub(crate) name: String,
    pub(crate) members: Range<usize>,
}

/// One sub-request, ready to be built into a request for the wrapped service.
#[derive(Debug)]
pub(crate) struct PlanItem {
    pub(crate) id: ItemId,
    pub(crate) method: Method,
    /// Path and query only: never a scheme or an authority.
    pub(crate) uri: Uri,
    /// The sub-request's own headers, as the client wrote them: `identity` drops those a
    /// sub-request may not set when it builds the request.
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// Indices of the earlier items this one waits for (`dependsOn`).
    pub(crate) depends_on: Vec<usize>,
    /// Result references to resolve just before it is sent.
    pub(crate) refs: Option<Box<Refs>>,
}

impl PlanItem {
    /// A sub-request that waits for nothing and refers to nothing.
    pub(crate) fn new(
        id: ItemId,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        Self {
            id,
            method,
            uri,
            headers,
            body,
            depends_on: Vec::new(),
            refs: None,
        }
    }
}

/// The methods a sub-request may use. `CONNECT` and `TRACE` never; nor extension methods.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// Parses a sub-request method. As in OData, the names are case-insensitive.
pub(crate) fn parse_method(s: &str) -> Result<Method, String> {
    METHODS
        .iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(s))
        .cloned()
        .ok_or_else(|| {
            if s.eq_ignore_ascii_case("CONNECT") || s.eq_ignore_ascii_case("TRACE") {
                format!("method {s:?} is not allowed in a batch")
            } else {
                format!("unknown method {s:?}; expected one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods() {
        assert_eq!(parse_method("get").unwrap(), Method::GET);
        assert_eq!(parse_method("PATCH").unwrap(), Method::PATCH);
        assert!(parse_method("CONNECT").is_err());
        assert!(parse_method("trace").is_err());
        assert!(parse_method("FOO").is_err());
        assert!(parse_method("").is_err());
    }
}
