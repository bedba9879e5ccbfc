//! A batch sent with `Prefer: respond-async`: accepted as a job once it has validated,
//! and run on a task of its own into its record (see [`crate::jobs`]).

use super::admit::{self, Admitted};
use super::{monitor, resolved, Resuming};
use crate::batch::outcome::Outcome;
use crate::batch::prefer;
use crate::body::BatchResponseBody;
use crate::codec::Decoded;
use crate::config::Config;
use crate::engine::{self, PerRun, Wrapped, WrappedBody};
use crate::error::Problem;
use crate::idempotency::{store_problem, within, Idempotency, JobRun, Keyed};
use crate::jobs::progress::{JobState, Progress};
use crate::jobs::{self, stored, JobKey, LocalJob};
use crate::reply::Setting;
use crate::store::State;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

/// The longest `Prefer: wait` taken: a client that would wait longer waits on the monitor.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// What a client asks of a job: how long it would wait for the reply (`Prefer: wait`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Asked {
    wait: Option<Duration>,
}

/// Whether the outer request asks to run as a job, and the layer runs jobs.
pub(super) fn asked(config: &Config, parts: &Parts) -> Option<Asked> {
    config.served_jobs()?;
    // `respond-async` takes no value (RFC 7240 §4.1): one with a value is not it.
    prefer::find(&parts.headers, "respond-async").filter(|p| p.value.is_none())?;
    let wait = prefer::find(&parts.headers, "wait")
        .and_then(|p| p.value)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        // Past `u64`, as long as may be: the longest wait taken.
        .map(|v| Duration::from_secs(v.parse().unwrap_or(u64::MAX)).min(MAX_WAIT));
    Some(Asked { wait })
}

/// Accepts the validated batch `decoded` as a job: its record is created (or found, for
/// the same `Idempotency-Key`), its request kept, and its run started; answers `202` with
/// its monitor's `Location`, or, with `Prefer: wait`, its reply if it finishes in time.
pub(super) async fn submit<S, B, ResBody>(
    svc: S,
    decoded: Decoded,
    batch: Setting,
    asked: Asked,
    keyed: Option<Keyed>,
    request: Bytes,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    let config = batch.config.clone();
    let Some((jobs, idempotency)) = config.served_jobs() else {
        return super::run(svc, decoded, batch, None).await;
    };
    let parts = batch.outer.parts();
    let scope = idempotency.scope_of(parts, &config.headers);
    let path = parts.uri.path().to_owned();
    let state = idempotency.new_running();
    let named = match admit::name(jobs, idempotency, keyed.as_ref(), &scope, state).await {
        Ok(named) => named,
        Err(problem) => return problem.into_response(),
    };
    let key = JobKey::new(&path, &scope, &named.id);
    batch.trace.job(&named.id);
    let location = jobs::monitor_path(&path, &named.id);
    let fingerprint = keyed.map(|k| k.fingerprint).unwrap_or_default();
    let admitted = admit::admit(jobs, idempotency, &key, &scope, fingerprint, named, state);
    let admitted = match admitted.await {
        Ok(Ok(admitted)) => admitted,
        // The same request again: the same job, as it is now.
        Ok(Err(state)) => {
            let place = batch.place.clone();
            return again(svc, config.clone(), &key, &location, state, asked, place).await;
        }
        Err(problem) => return problem.into_response(),
    };
    let job = admitted.slot.job.clone();
    // The job holds its place among the jobs running; the batch's place among those in
    // flight is kept only while the client waits for its reply.
    let place = batch.place.clone();
    let started = start(
        svc.clone(),
        decoded,
        batch,
        idempotency,
        &key,
        admitted,
        request,
    );
    if let Err(problem) = started.await {
        return problem.into_response();
    }
    if let Some(wait) = asked.wait {
        if let Some(reply) = waited(svc, &config, &key, place, &job, wait).await {
            return reply;
        }
    }
    submitted(&location, &job.tally.progress(&key.id, JobState::Running))
}

/// The reply of the job at `key`, which runs here as `job`, once its record says it has
/// finished, within `wait`; `None` past it.
async fn waited<S, B, ResBody>(
    svc: S,
    config: &Arc<Config>,
    key: &JobKey,
    place: crate::engine::Hold,
    job: &LocalJob,
    wait: Duration,
) -> Option<Response<BatchResponseBody<ResBody>>>
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    tokio::time::timeout(wait, job.done.cancelled())
        .await
        .ok()?;
    // Its place is free once its run has ended; its record says whether it finished (a
    // run a store failure left unfinished is not replayed as if it had).
    let store = &config.idempotency.as_ref()?.store;
    let record = within(store.get(&key.store_key)).await.ok()??;
    if record.state != State::Finished {
        return None;
    }
    let trace = crate::trace::BatchTrace::open(key.path());
    Some(monitor::replay(svc, config.clone(), key, place, trace, None).await)
}

/// Starts the run of an admitted job: its record keeps its request, and its run goes on
/// on a task of its own, holding the job's place (`batch`'s place among those in flight
/// goes).
async fn start<S, B, ResBody>(
    svc: S,
    decoded: Decoded,
    mut batch: Setting,
    idempotency: &Idempotency,
    key: &JobKey,
    admitted: Admitted,
    request: Bytes,
) -> Result<(), Problem>
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    let Admitted {
        slot,
        state,
        entries,
        alias,
    } = admitted;
    let owner = match state {
        State::Running { owner, .. } => owner,
        State::Finished => return Err(store_problem("a new run's record is not running".into())),
    };
    slot.job.tally.resume(&entries);
    let run = JobRun {
        cancel: slot.job.cancel.clone(),
        flag: key.cancel_flag(owner),
        progress: slot.job.tally.clone(),
        alias,
    };
    let writer = idempotency.job_writer(&key.store_key, state, run);
    // Taken over from a run that stopped, the record holds the request already.
    if !entries.iter().any(|(name, _)| name == stored::ENTRY) {
        let entry = (
            stored::ENTRY.to_owned(),
            stored::encode(batch.outer.parts(), &request),
        );
        if let Err(e) = writer.record(&[entry]).await {
            writer.give_up().await;
            return Err(store_problem(e));
        }
    }
    drop(request);
    batch.place = Arc::new(slot);
    let span = batch.trace.span().clone();
    let resuming = Resuming {
        entries,
        writer: Some(writer),
    };
    tokio::spawn(run_job(svc, decoded, batch, resuming).instrument(span));
    Ok(())
}

/// The same request sent again under its `Idempotency-Key`, whose job is `state`: with
/// `wait`, its reply once it has finished (waiting for a job run here), else `202` with
/// its progress.
async fn again<S, B, ResBody>(
    svc: S,
    config: Arc<Config>,
    key: &JobKey,
    location: &str,
    state: JobState,
    asked: Asked,
    place: crate::engine::Hold,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    let local = config.jobs.as_ref().and_then(|jobs| jobs.local(key));
    if let Some(wait) = asked.wait {
        let ended = match &local {
            Some(job) => waited(svc, &config, key, place, job, wait).await,
            None if state == JobState::Finished => {
                let trace = crate::trace::BatchTrace::open(key.path());
                Some(monitor::replay(svc, config.clone(), key, place, trace, None).await)
            }
            None => None,
        };
        if let Some(reply) = ended {
            return reply;
        }
    }
    match monitor::counted(&config, key, state, local.as_deref()).await {
        Ok(progress) => submitted(location, &progress),
        Err(problem) => problem.into_response(),
    }
}

/// Runs a job to its end: its lookup, if it has one, then its plan, each outcome recorded
/// as it is final; a lookup that leads to a refusal records the problem.
async fn run_job<S, B, ResBody>(
    mut svc: S,
    decoded: Decoded,
    mut batch: Setting,
    resuming: Resuming,
) where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    let plan = match resolved(&mut svc, decoded, &mut batch, Some(&resuming)).await {
        Ok((plan, _reply)) => plan,
        Err(problem) => {
            if let Some(writer) = &resuming.writer {
                match writer.record(&[stored::problem_entry(&problem)]).await {
                    Ok(()) => writer.finish().await,
                    Err(e) => tracing::error!(error = %e, "could not record a batch job's refusal"),
                }
            }
            return;
        }
    };
    let per_run = PerRun {
        traced: batch.trace.is_enabled(),
        hold: batch.place.clone(),
        keyed: batch.keyed.take(),
    };
    // Nobody reads a reply: the outcomes go to the record alone.
    let discard = |_: usize, _: &str, _: &Outcome| {};
    let config = &batch.config;
    let summary = engine::run(svc, &batch.outer, plan, &config.run, discard, per_run).await;
    batch.trace.finished(&summary);
}

/// `202 Accepted` with the job's progress: it runs (or, on its monitor, still runs).
pub(super) fn accepted<ResBody>(progress: &Progress) -> Response<BatchResponseBody<ResBody>> {
    let mut response = Response::new(BatchResponseBody::full(progress.to_bytes()));
    *response.status_mut() = StatusCode::ACCEPTED;
    let headers = response.headers_mut();
    let json = HeaderValue::from_static("application/json");
    headers.insert(header::CONTENT_TYPE, json);
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// `202 Accepted` for a job sent: its monitor is at `location`.
fn submitted<ResBody>(location: &str, progress: &Progress) -> Response<BatchResponseBody<ResBody>> {
    let mut response = accepted(progress);
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    let applied = HeaderValue::from_static("respond-async");
    headers.insert(HeaderName::from_static("preference-applied"), applied);
    response
}
