//! Wire formats. Each is one [`Codec`]: it says which media types and methods it takes,
//! turns the outer request's bytes into a [`Plan`] (a pure function: no runtime, no
//! service), and gives a [`Reply`] that writes the outcomes, handed to it one by one in
//! request order, into the response body. Codecs know nothing of execution; the engine
//! and the service know no codec.

pub(crate) mod bulk;
pub(crate) mod describe;
mod fields;
mod header_case;
mod headers;
pub(crate) mod json;
mod list;
pub(crate) mod multipart;
mod object;
pub(crate) mod resource;
mod url_refs;
mod writer;

pub(crate) use headers::HeaderCaps;
pub(crate) use writer::ReplyWriter;

use crate::batch::origin::Origin;
use crate::batch::outcome::Outcome;
use crate::batch::plan::Plan;
use crate::batch::summary::Summary;
use crate::batch::url::{BatchPaths, UrlContext};
use crate::error::Problem;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

/// A wire format.
pub(crate) trait Codec: Send + Sync + std::fmt::Debug + 'static {
    /// Its name, for spans and logs (`json`, `bulk`, `resource`, `multipart`).
    fn name(&self) -> &'static str;

    /// The media types (essences, like `application/json`) of the bodies it reads. When an
    /// endpoint serves several codecs, the outer `content-type` chooses; a request without
    /// one goes to the endpoint's first codec.
    fn media_types(&self) -> &'static [&'static str];

    /// The methods its endpoint takes.
    fn methods(&self) -> &'static [Method];

    /// Its requests and replies in an OpenAPI document, with `limits` (see [`describe`]).
    fn describe(&self, limits: &DecodeLimits) -> Vec<describe::Operation>;

    /// Decodes and validates the outer request; nothing runs unless it returns a plan.
    fn decode(
        &self,
        outer: &Parts,
        body: &Bytes,
        cx: &DecodeContext<'_>,
    ) -> Result<Decoded, Problem>;
}

/// What a codec asks the service to do next.
pub(crate) enum Decoded {
    /// Run the plan; the reply writes its outcomes.
    Run(Plan, Box<dyn Reply>),
    /// Run this plan first (resource bulk: list the items that match the filters), then
    /// hand its outcomes to the [`Resume`], which decides what follows.
    Lookup(Plan, Box<dyn Resume>),
}

/// The rest of a decode that needed a lookup first.
pub(crate) trait Resume: Send {
    fn resume(
        self: Box<Self>,
        outcomes: Vec<Outcome>,
        cx: &DecodeContext<'_>,
    ) -> Result<Decoded, Problem>;
}

/// Writes one reply: the engine's outcomes arrive one by one, in the plan's order, as soon
/// as they are final; what the reply writes goes out while the batch runs. A format whose
/// status depends on every outcome (resource bulk) keeps what it needs, writes it in
/// `finish`, and is sent whole.
pub(crate) trait Reply: Send {
    /// The reply's `content-type`.
    fn content_type(&self) -> HeaderValue;

    /// Whether it goes out while the batch runs, with the status [`status`](Self::status)
    /// gives; otherwise it is sent whole, with the status `finish` gives.
    fn streams(&self) -> bool {
        true
    }

    /// The status of a reply that streams, sent before any outcome: `200 OK` unless the
    /// format's clients expect another (OData V2's `202 Accepted`).
    fn status(&self) -> StatusCode {
        StatusCode::OK
    }

    /// Headers the reply carries besides its content type (OData V2's
    /// `DataServiceVersion`, a `Preference-Applied`).
    fn headers(&self) -> HeaderMap {
        HeaderMap::new()
    }

    /// Whether the items finished so far, written without the rest or the end, read as a
    /// reply of their own (NDJSON: a line each): a batch job's status monitor then gives
    /// them while the job runs.
    fn reads_in_part(&self) -> bool {
        false
    }

    /// Writes what comes before the first outcome.
    fn begin(&mut self, _w: &mut ReplyWriter) {}

    /// Writes (or keeps) the outcome of plan item `index`, whose id is `id`.
    fn item(&mut self, index: usize, id: &str, outcome: &Outcome, w: &mut ReplyWriter);

    /// Writes what follows the last outcome, knowing how the run ended; the reply's
    /// status.
    fn finish(self: Box<Self>, w: &mut ReplyWriter, end: &Summary) -> StatusCode;
}

/// What decoding reads of the layer's configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct DecodeLimits {
    /// The most sub-requests in one batch (`BatchLayer::max_requests`).
    pub(crate) max_requests: usize,
    /// The most header values one sub-request may set, and their bytes (names and values).
    pub(crate) max_item_headers: usize,
    pub(crate) max_item_header_bytes: usize,
    /// Whether the layer has a transaction hook: without one, atomic batches are refused.
    pub(crate) atomic: bool,
    /// No sub-request may reach one of these.
    pub(crate) batch_paths: BatchPaths,
    /// `BatchLayer::service_root`: canonical, without a trailing slash.
    pub(crate) service_root: Option<String>,
}

impl DecodeLimits {
    /// The service root for the endpoint at `path`: only endpoints under it have one.
    pub(crate) fn root_for(&self, path: &str) -> Option<&str> {
        let root = self.service_root.as_deref()?;
        let rest = path.strip_prefix(root)?;
        rest.starts_with('/').then_some(root)
    }
}

/// What a codec is given besides the bytes.
pub(crate) struct DecodeContext<'a> {
    pub(crate) limits: &'a DecodeLimits,
    /// The directory of the endpoint that received the batch (`/` for `/batch`, `/odata/`
    /// for `/odata/$batch`): relative sub-request URLs resolve against it.
    pub(crate) base: &'a str,
    /// Whether a header a sub-request sets is kept. The others (identity, framing) are
    /// dropped when the request is built; a codec reads no reference in them, so they can
    /// neither refuse a batch nor hold an item back.
    pub(crate) keeps_header: &'a (dyn Fn(&HeaderName) -> bool + Sync),
    /// The service root (`BatchLayer::service_root`), when the endpoint lies under it.
    pub(crate) root: Option<&'a str>,
    /// The outer request's origin: absolute URLs naming it are taken as paths.
    pub(crate) origin: Option<Origin<'a>>,
}

impl<'a> DecodeContext<'a> {
    /// The caps on one sub-request's headers.
    pub(crate) fn header_caps(&self) -> HeaderCaps {
        HeaderCaps {
            count: self.limits.max_item_headers,
            bytes: self.limits.max_item_header_bytes,
        }
    }

    /// The URL rules of the batch formats (JSON, multipart): relative to the endpoint's
    /// directory, under the service root, and absolute URLs of the outer request's origin.
    pub(crate) fn urls(&self) -> UrlContext<'a> {
        UrlContext {
            root: self.root,
            origin: self.origin,
            ..UrlContext::paths(&self.limits.batch_paths, self.base)
        }
    }

    /// The URL rules for sub-requests whose URLs are always absolute paths.
    pub(crate) fn root_urls(&self) -> UrlContext<'a> {
        UrlContext::paths(&self.limits.batch_paths, "/")
    }
}

/// Why an atomic batch is refused when the layer has no transaction hook.
pub(crate) const NO_HOOK: &str =
    "atomic batches need a transaction hook, and this server has none (BatchLayer::transactions)";

/// `application/json`, the reply type of every JSON format.
pub(crate) const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
