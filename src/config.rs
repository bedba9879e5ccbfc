//! What [`BatchLayer`](crate::BatchLayer) builds, split by reader: the decode limits
//! (codecs), the run options (engine), the header policy (identity), and the endpoints:
//! which paths are batch endpoints, and which codecs serve each.

use crate::admission::Admission;
use crate::batch::media::MediaType;
use crate::codec::{Codec, DecodeLimits};
use crate::engine::RunOptions;
use crate::error::Problem;
use crate::idempotency::Idempotency;
use crate::jobs::{self, Jobs};
use crate::subrequest::HeaderPolicy;
use crate::transaction::Hook;
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use std::sync::Arc;
use std::time::Duration;

/// The layer's settings.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) endpoints: Vec<Endpoint>,
    /// Read by the service, before anything else.
    pub(crate) max_body_bytes: usize,
    /// How long the batch body may take to arrive.
    pub(crate) body_timeout: std::time::Duration,
    /// The places of batches in flight, and the wait for one.
    pub(crate) admission: Admission,
    pub(crate) decode: DecodeLimits,
    pub(crate) run: RunOptions,
    /// The slowest a reader may take a reply (`None`: any).
    pub(crate) reply_min_rate: Option<MinRate>,
    pub(crate) headers: Arc<HeaderPolicy>,
    /// Batches sent with an `Idempotency-Key` (`None`: the key is ignored).
    pub(crate) idempotency: Option<Idempotency>,
    /// Batch jobs (`Prefer: respond-async`; `None`, or no idempotency store: the
    /// preference is ignored, and the batch is answered when it has run).
    pub(crate) jobs: Option<Jobs>,
}

/// The slowest a reader may take a reply (`BatchLayer::reply_min_rate`; `reply::pace`
/// keeps the account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MinRate {
    pub(crate) bytes_per_second: u64,
    pub(crate) grace: Duration,
}

/// One batch endpoint: where it is, and the codecs that serve it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    path: String,
    codecs: Vec<Arc<dyn Codec>>,
}

impl Config {
    /// The index of the batch endpoint at the outer request's path, if it is one. Paths
    /// match exactly.
    #[inline]
    pub(crate) fn endpoint(&self, path: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| e.path == path)
    }

    /// The jobs the layer serves, and the store they live in: `None` without either
    /// (`Prefer: respond-async` is then ignored).
    #[inline]
    pub(crate) fn served_jobs(&self) -> Option<(&Jobs, &Idempotency)> {
        Some((self.jobs.as_ref()?, self.idempotency.as_ref()?))
    }

    /// What the layer answers at `path`, in one pass over the endpoints: the index of the
    /// batch endpoint there, with the job id when `path` is one of its jobs' status
    /// monitors (`{endpoint}/jobs/{id}`, when the layer serves jobs); `None` passes through.
    #[inline]
    pub(crate) fn route<'a>(&self, path: &'a str) -> Option<(usize, Option<&'a str>)> {
        let jobs = self.served_jobs().is_some();
        self.endpoints.iter().enumerate().find_map(|(i, e)| {
            if e.path == path {
                return Some((i, None));
            }
            let id = jobs.then(|| jobs::monitor_id(&e.path, path)).flatten()?;
            Some((i, Some(id)))
        })
    }

    /// Serves `path` with `codec` too.
    ///
    /// # Panics
    ///
    /// When `path` is not a path starting with `/` without a query, or when a codec at the
    /// same path already reads one of its media types with one of its methods.
    pub(crate) fn add(&mut self, path: String, codec: Arc<dyn Codec>) {
        assert!(
            path.starts_with('/')
                && path.parse::<http::uri::PathAndQuery>().is_ok()
                && !path.contains('?'),
            "tower-http-batch: a batch path must be a path starting with `/`, without query: {path:?}"
        );
        if let Some(i) = self.endpoint(&path) {
            let endpoint = &mut self.endpoints[i];
            let clash = endpoint.codecs.iter().find(|c| {
                let media = c
                    .media_types()
                    .iter()
                    .any(|m| codec.media_types().contains(m));
                media && c.methods().iter().any(|m| codec.methods().contains(m))
            });
            if let Some(clash) = clash {
                panic!("tower-http-batch: {path:?} is already a batch endpoint for the same media type and method ({clash:?})");
            }
            endpoint.codecs.push(codec);
            return;
        }
        self.decode.batch_paths = self.decode.batch_paths.with(&path);
        self.run.batch_paths = self.decode.batch_paths.clone();
        self.endpoints.push(Endpoint {
            path,
            codecs: vec![codec],
        });
    }

    /// Makes atomic batches possible.
    pub(crate) fn set_transactions(&mut self, hook: Hook) {
        self.decode.atomic = true;
        self.run.transactions = Some(hook);
    }
}

impl Endpoint {
    /// Where it is.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The codecs that serve it, the default first.
    pub(crate) fn codecs(&self) -> &[Arc<dyn Codec>] {
        &self.codecs
    }

    /// Method, media type and declared length, checked before any byte of the body is
    /// read: the codec that reads the body, or the problem with the request.
    pub(crate) fn accept(
        &self,
        parts: &Parts,
        max_body_bytes: usize,
    ) -> Result<&dyn Codec, Problem> {
        let takes_method = |c: &&Arc<dyn Codec>| c.methods().contains(&parts.method);
        if !self.codecs.iter().any(|c| takes_method(&c)) {
            return Err(self.method_not_allowed(parts));
        }
        let codec = match parts.headers.get(header::CONTENT_TYPE) {
            None => self.codecs.iter().find(takes_method),
            Some(ct) => {
                let media = MediaType::parse(ct.as_bytes());
                let reads = |c: &&Arc<dyn Codec>| {
                    media.is_some_and(|m| c.media_types().iter().any(|t| m.is(t)))
                };
                self.codecs.iter().filter(takes_method).find(reads)
            }
        };
        let Some(codec) = codec else {
            return Err(self.unsupported_media_type(parts));
        };
        check_length(parts, max_body_bytes)?;
        Ok(codec.as_ref())
    }

    fn method_not_allowed(&self, parts: &Parts) -> Problem {
        let mut methods: Vec<&str> = Vec::new();
        for m in self.codecs.iter().flat_map(|c| c.methods()) {
            if !methods.contains(&m.as_str()) {
                methods.push(m.as_str());
            }
        }
        let allow = methods.join(", ");
        let problem = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "urn:tower-http-batch:method-not-allowed",
            "Method not allowed",
            format!("this endpoint takes {allow}, not {}", parts.method),
        );
        match HeaderValue::try_from(allow) {
            Ok(allow) => problem.with_header(header::ALLOW, allow),
            Err(_) => problem,
        }
    }

    fn unsupported_media_type(&self, parts: &Parts) -> Problem {
        let mut types: Vec<&str> = Vec::new();
        for t in self.codecs.iter().flat_map(|c| c.media_types()) {
            if !types.contains(t) {
                types.push(t);
            }
        }
        let ct = parts.headers.get(header::CONTENT_TYPE);
        let ct = ct.map_or_else(String::new, |v| {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        });
        let problem = Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "urn:tower-http-batch:unsupported-media-type",
            "Unsupported media type",
            format!("a batch body is {}, not {ct:?}", types.join(" or ")),
        );
        match HeaderValue::try_from(types.join(", ")) {
            Ok(accept) => problem.with_header(header::ACCEPT, accept),
            Err(_) => problem,
        }
    }
}

/// A declared `content-length` over the limit is refused before anything is read.
fn check_length(parts: &Parts, max: usize) -> Result<(), Problem> {
    let Some(len) = parts.headers.get(header::CONTENT_LENGTH) else {
        return Ok(());
    };
    match len.to_str().ok().and_then(|s| s.parse::<u64>().ok()) {
        Some(n) if n > max as u64 => Err(too_large(Some(n), max)),
        Some(_) => Ok(()),
        None => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "urn:tower-http-batch:bad-content-length",
            "Bad content-length",
            "the content-length header is not a number",
        )),
    }
}

/// `413`: the batch body is larger than `max_body_bytes`.
pub(crate) fn too_large(len: Option<u64>, max: usize) -> Problem {
    let detail = match len {
        Some(n) => {
            format!("the batch body is {n} bytes; the limit is {max} bytes (max_body_bytes)")
        }
        None => format!("the batch body is larger than the limit of {max} bytes (max_body_bytes)"),
    };
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "urn:tower-http-batch:body-too-large",
        "Batch body too large",
        detail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::json::JsonCodec;
    use crate::codec::{DecodeContext, Decoded};
    use bytes::Bytes;
    use http::Method;

    /// A second format at the same path, as multipart/mixed will be.
    #[derive(Debug)]
    struct Text;

    impl Codec for Text {
        fn name(&self) -> &'static str {
            "text"
        }
        fn media_types(&self) -> &'static [&'static str] {
            &["text/plain"]
        }
        fn methods(&self) -> &'static [Method] {
            &[Method::POST, Method::PUT]
        }
        fn describe(
            &self,
            _: &crate::codec::DecodeLimits,
        ) -> Vec<crate::codec::describe::Operation> {
            Vec::new()
        }
        fn decode(&self, _: &Parts, _: &Bytes, _: &DecodeContext<'_>) -> Result<Decoded, Problem> {
            Err(Problem::invalid(Vec::new()))
        }
    }

    fn endpoint() -> Endpoint {
        let mut config = crate::BatchLayer::default().config().clone();
        config.add("/batch".into(), Arc::new(JsonCodec));
        config.add("/batch".into(), Arc::new(Text));
        assert_eq!(config.endpoints.len(), 1);
        config.endpoints.remove(0)
    }

    fn parts(method: Method, content_type: Option<&str>) -> Parts {
        let mut req = http::Request::builder().method(method).uri("/batch");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_content_type_chooses_the_codec() {
        let e = endpoint();
        let chosen = |m, ct| e.accept(&parts(m, ct), 100).map(|c| c.media_types()[0]);
        assert_eq!(
            chosen(Method::POST, Some("application/json")).unwrap(),
            "application/json"
        );
        assert_eq!(
            chosen(Method::POST, Some("Text/Plain; charset=utf-8")).unwrap(),
            "text/plain"
        );
        // No content type: the endpoint's first codec that takes the method.
        assert_eq!(chosen(Method::POST, None).unwrap(), "application/json");
        assert_eq!(chosen(Method::PUT, None).unwrap(), "text/plain");
        // PUT is the text codec's alone.
        let p = chosen(Method::PUT, Some("application/json")).unwrap_err();
        assert_eq!(p.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn refusals_name_what_every_codec_takes() {
        let e = endpoint();
        let p = e.accept(&parts(Method::GET, None), 100).unwrap_err();
        assert_eq!(p.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(p.headers[0].1, "POST, PUT");
        let p = e
            .accept(&parts(Method::POST, Some("image/png")), 100)
            .unwrap_err();
        assert_eq!(p.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            p.detail,
            "a batch body is application/json or text/plain, not \"image/png\""
        );
        assert_eq!(p.headers[0].1, "application/json, text/plain");
    }

    #[test]
    #[should_panic(expected = "already a batch endpoint for the same media type")]
    fn two_codecs_for_one_media_type_at_one_path_are_refused() {
        let mut config = crate::BatchLayer::new("/batch").config().clone();
        config.add("/batch".into(), Arc::new(JsonCodec));
    }
}
