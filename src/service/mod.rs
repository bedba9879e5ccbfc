//! [`Batch`]: the service that answers batch requests and passes every other one through.
//!
//! A batch is a straight line: the endpoint's checks (method, media type, length) choose
//! a codec; the body is read within its limit; the codec decodes it into a plan; the
//! engine runs it while the codec's reply writes the outcomes (`reply`). Nothing here
//! knows a format. A batch sent with `Prefer: respond-async` runs as a job instead
//! ([`jobs`]), and its status monitor answers from the store ([`monitor`]).

use crate::batch::origin::Origin;
use crate::batch::outcome::Outcome;
use crate::batch::plan::Plan;
use crate::body::{read_limited, BatchRequestBody, BatchResponseBody, ReadError};
use crate::codec::{DecodeContext, Decoded, Reply};
use crate::config::{too_large, Config};
use crate::engine::{self, Hold, PerRun, Wrapped, WrappedBody};
use crate::error::Problem;
use crate::future::ResponseFuture;
use crate::idempotency::{self, Claim, Idempotency, Keyed, Writer, IDEMPOTENT_REPLAYED};
use crate::reply::{self, Setting};
use crate::subrequest::Outer;
use crate::trace::BatchTrace;
use crate::BoxError;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;
use tracing::Instrument as _;

mod admit;
mod jobs;
mod monitor;

/// A service that gives `S` batch endpoints; made by [`BatchLayer`](crate::BatchLayer).
///
/// Requests to a batch path are answered by the layer, which calls `S` once per
/// sub-request. Every other request goes to `S` unchanged: its body wrapped (not boxed) in
/// [`BatchRequestBody`], its response body in [`BatchResponseBody`].
///
/// # Readiness
///
/// `poll_ready` is the wrapped service's. A batch gives back the readiness it was granted
/// at once (by swapping in a fresh clone, as axum's `from_fn` does) and makes each
/// sub-request's clone ready with `oneshot` before calling it. So nothing is called
/// unready, and no reservation is held while the batch body uploads or across
/// sub-requests: a `ConcurrencyLimit(1)` inside the layer does not deadlock. `S` must be
/// `Clone`; wrap a service that is not in `tower::buffer::Buffer`.
///
/// # Replies
///
/// The response future resolves once the batch has validated (or run to the end, for a
/// reply whose status depends on every item, or that finished before it first waited);
/// the rest of the batch then runs on a tokio task, writing into the response body, which
/// cancels the task when it is dropped. While 64 KiB of reply wait unread, the task
/// starts no new sub-request.
#[derive(Clone, Debug)]
pub struct Batch<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Batch<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for Batch<S>
where
    S: Service<Request<BatchRequestBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<BatchResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some((endpoint, job)) = self.config.route(req.uri().path()) else {
            return ResponseFuture::pass_through(self.inner.call(req.map(BatchRequestBody::outer)));
        };
        let job = job.map(str::to_owned);
        // Give back the readiness granted for this call (also when the batch is turned
        // away): the batch makes each sub-request's clone ready itself.
        let svc = self.inner.clone();
        drop(std::mem::replace(&mut self.inner, svc.clone()));
        let trace = BatchTrace::open(req.uri().path());
        let span = trace.span().clone();
        let config = self.config.clone();
        let Some(id) = job else {
            let batch = handle(svc, config, endpoint, req, trace);
            return ResponseFuture::batch(Box::pin(batch.instrument(span)));
        };
        let monitor = monitor::answer(svc, config, endpoint, id, req, trace);
        ResponseFuture::batch(Box::pin(monitor.instrument(span)))
    }
}

/// One batch: check the outer request, take a place, read, decode, run, encode.
async fn handle<S, B, ResBody>(
    svc: S,
    config: Arc<Config>,
    endpoint: usize,
    req: Request<B>,
    trace: BatchTrace,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Wrapped<B, ResBody>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: WrappedBody,
{
    let (parts, body) = req.into_parts();
    let job = jobs::asked(&config, &parts);
    // `call` found it; the configuration does not change.
    let codec = match config.endpoints[endpoint].accept(&parts, config.max_body_bytes) {
        Ok(codec) => codec,
        Err(problem) => return problem.into_response(),
    };
    trace.format(codec.name());
    // A place among the batches in flight, before the body is read: at once, or after a
    // bounded wait (see `admission`). It goes with the reply (see `reply`).
    let place = match config.admission.enter().await {
        Ok(place) => place,
        Err(busy) => return busy.into_response(),
    };
    let read = tokio::time::timeout(
        config.body_timeout,
        read_limited(body, config.max_body_bytes),
    );
    let bytes = match read.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(ReadError::TooLarge)) => {
            return too_large(None, config.max_body_bytes).into_response()
        }
        Ok(Err(ReadError::Failed(e))) => return unreadable(e).into_response(),
        Err(_) => return body_timed_out(config.body_timeout).into_response(),
    };
    let outer = Outer::new(parts, config.headers.clone());
    let keyed = match &config.idempotency {
        Some(idempotency) => idempotency.keyed(outer.parts(), &bytes, &config.headers),
        None => Ok(None),
    };
    let keeps_header = |name: &HeaderName| config.headers.keeps(name);
    let decoded = codec.decode(
        outer.parts(),
        &bytes,
        &context(&outer, &config, &keeps_header),
    );
    // A job keeps its request, for its monitor to decode again.
    let request = job.map(|_| bytes.clone());
    drop(bytes);
    // A malformed batch is refused first, key or not: nothing of it is recorded.
    let (decoded, keyed) = match (decoded, keyed) {
        (Err(problem), _) | (_, Err(problem)) => return problem.into_response(),
        (Ok(decoded), Ok(keyed)) => (decoded, keyed),
    };
    let place: Hold = place;
    let batch = Setting {
        outer,
        config: config.clone(),
        trace,
        place,
        keyed: None,
    };
    if let (Some(job), Some(request)) = (job, request) {
        return jobs::submit(svc, decoded, batch, job, keyed, request).await;
    }
    let (Some(keyed), Some(idempotency)) = (keyed, &config.idempotency) else {
        return run(svc, decoded, batch, None).await;
    };
    keyed_run(svc, decoded, batch, idempotency, keyed).await
}

/// A batch with an idempotency key: run (to its end, whether or not its client stays, and
/// resuming what an earlier run left), replayed, or refused, as its record says.
async fn keyed_run<S, B, ResBody>(
    svc: S,
    decoded: Decoded,
    batch: Setting,
    idempotency: &Idempotency,
    keyed: Keyed,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    match idempotency.claim(&keyed).await {
        Err(problem) => problem.into_response(),
        Ok(Claim::Replay(entries)) => {
            let resuming = Resuming {
                entries,
                writer: None,
            };
            let mut response = run(svc, decoded, batch, Some(resuming)).await;
            let replayed = HeaderValue::from_static("true");
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED.clone(), replayed);
            response
        }
        Ok(Claim::Run(writer, entries)) => {
            let resuming = Resuming {
                entries,
                writer: Some(writer),
            };
            // On a task of its own, so that it runs to its end whether or not its client
            // stays: a retry then finds it finished.
            let task = tokio::spawn(run(svc, decoded, batch, Some(resuming)).in_current_span());
            task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "a keyed batch's run failed");
                run_failed().into_response()
            })
        }
    }
}

/// What a keyed batch's run resumes from: what its record holds, and the writer that
/// records it (`None`: it is replayed, and nothing runs).
struct Resuming {
    entries: Vec<(String, Bytes)>,
    writer: Option<Writer>,
}

/// `500`: a keyed batch's task failed (it panicked).
fn run_failed() -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "urn:tower-http-batch:internal",
        "Batch failed",
        "the batch's run failed",
    )
}

/// What the codecs read of the outer request and the configuration.
fn context<'a>(
    outer: &'a Outer,
    config: &'a Config,
    keeps_header: &'a (dyn Fn(&HeaderName) -> bool + Sync),
) -> DecodeContext<'a> {
    let path = outer.parts().uri.path();
    DecodeContext {
        limits: &config.decode,
        base: &path[..path.rfind('/').map_or(0, |i| i + 1)],
        keeps_header,
        root: config.decode.root_for(path),
        origin: Origin::of(outer.parts()),
    }
}

/// Runs a decoded batch: its lookup first when it has one, then its plan, into the reply.
async fn run<S, B, ResBody>(
    mut svc: S,
    decoded: Decoded,
    mut batch: Setting,
    resuming: Option<Resuming>,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    let (plan, reply) = match resolved(&mut svc, decoded, &mut batch, resuming.as_ref()).await {
        Ok(resolved) => resolved,
        Err(problem) => {
            // Nothing but reads ran: a retry may run it again at once.
            if let Some(writer) = resuming.as_ref().and_then(|r| r.writer.as_ref()) {
                writer.give_up().await;
            }
            return problem.into_response();
        }
    };
    match reply.streams() {
        true => reply::streamed(svc, plan, reply, batch).await,
        false => reply::whole(svc, plan, reply, batch).await,
    }
}

/// The plan a decoded batch runs and its reply, once its lookup, if it has one, has run
/// (`batch.keyed` is then set for the plan); or the problem its lookup led to.
async fn resolved<S, B, ResBody>(
    // `&mut`, which is `Send` with `S` alone (`&S` would ask `S: Sync`).
    svc: &mut S,
    mut decoded: Decoded,
    batch: &mut Setting,
    resuming: Option<&Resuming>,
) -> Result<(Plan, Box<dyn Reply>), Problem>
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    let config = batch.config.clone();
    let keeps_header = |name: &HeaderName| config.headers.keeps(name);
    let keyed_for = |plan: &Plan, phase: usize, last: bool| {
        let r = resuming?;
        let writer = r.writer.as_ref();
        Some(idempotency::keyed_for(
            plan, phase, &r.entries, writer, last,
        ))
    };
    let mut phase = 0;
    loop {
        let cx = context(&batch.outer, &config, &keeps_header);
        let (Decoded::Run(plan, _) | Decoded::Lookup(plan, _)) = &mut decoded;
        plan.under_root = cx.root.is_some();
        match decoded {
            Decoded::Run(plan, reply) => {
                batch.trace.size(plan.items.len());
                batch.keyed = keyed_for(&plan, phase, true);
                return Ok((plan, reply));
            }
            Decoded::Lookup(plan, resume) => {
                let mut outcomes = Vec::with_capacity(plan.items.len());
                let keep = |_: usize, _: &str, outcome: &Outcome| outcomes.push(outcome.clone());
                let per_run = PerRun {
                    traced: batch.trace.is_enabled(),
                    hold: batch.place.clone(),
                    keyed: keyed_for(&plan, phase, false),
                };
                engine::run(svc.clone(), &batch.outer, plan, &config.run, keep, per_run).await;
                decoded = resume.resume(outcomes, &cx)?;
                phase += 1;
            }
        }
    }
}

/// `408`: the batch body did not arrive in time. The connection is closed, since the rest
/// of the body may still come.
fn body_timed_out(limit: std::time::Duration) -> Problem {
    Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "urn:tower-http-batch:body-timeout",
        "Batch body timed out",
        format!("the batch body did not arrive within {limit:?} (body_timeout)"),
    )
    .with_header(header::CONNECTION, http::HeaderValue::from_static("close"))
}

/// `400`: the outer body failed while it was read.
fn unreadable(e: BoxError) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "urn:tower-http-batch:unreadable-body",
        "Unreadable batch body",
        format!("the batch body could not be read: {e}"),
    )
}
