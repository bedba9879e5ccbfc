//! A batch sent with `Prefer: respond-async`: accepted as a job once it has validated,
//! and run on a task of its own into its record (see [`crate::jobs`]).

use super::{monitor, resolved, Resuming};
use crate::batch::outcome::Outcome;
use crate::batch::prefer;
use crate::body::BatchResponseBody;
use crate::codec::Decoded;
use crate::config::Config;
use crate::engine::{self, PerRun, Wrapped, WrappedBody};
use crate::error::Problem;
use crate::idempotency::{
    now_ms, reused_problem, store_problem, within, Idempotency, JobRun, Keyed,
};
use crate::jobs::{self, progress::Progress, stored, JobKey, Jobs, Slot};
use crate::reply::Setting;
use crate::store::{Record, State};
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

/// The longest `Prefer: wait` taken: a client that would wait longer waits on the monitor.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// The entry of a job whose lookup led to a refusal: its status and problem document.
pub(super) const PROBLEM_ENTRY: &str = "job.problem";

/// What a client asks of a job: how long it would wait for the reply (`Prefer: wait`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Asked {
    wait: Option<Duration>,
}

/// Whether the outer request asks to run as a job, and the layer runs jobs.
pub(super) fn asked(config: &Config, parts: &Parts) -> Option<Asked> {
    config.jobs.as_ref()?;
    config.idempotency.as_ref()?;
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
    let (Some(jobs), Some(idempotency)) = (&config.jobs, &config.idempotency) else {
        return super::run(svc, decoded, batch, None).await;
    };
    let parts = batch.outer.parts();
    let scope = idempotency.scope_of(parts, &config.headers);
    let path = parts.uri.path().to_owned();
    let id = match &keyed {
        None => JobKey::new_id(),
        Some(keyed) => match job_of_key(idempotency, keyed).await {
            Ok(id) => id,
            Err(problem) => return problem.into_response(),
        },
    };
    let key = JobKey::new(&path, &scope, &id);
    batch.trace.job(&id);
    let location = jobs::monitor_path(&path, &id);
    let fingerprint = keyed.map(|k| k.fingerprint).unwrap_or_default();
    let admitted = match admit(jobs, idempotency, &key, &scope, fingerprint).await {
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
    if let Err(problem) = start(svc.clone(), decoded, batch, &key, admitted, request).await {
        return problem.into_response();
    }
    if let Some(wait) = asked.wait {
        if tokio::time::timeout(wait, job.done.cancelled())
            .await
            .is_ok()
        {
            let trace = crate::trace::BatchTrace::open(&path);
            return monitor::replay(svc, config, &key, place, trace, None).await;
        }
    }
    submitted(&location, &job.tally.progress(&id, "running"))
}

/// Starts the run of an admitted job: its record keeps its request, and its run goes on
/// on a task of its own, holding the job's place (`batch`'s place among those in flight
/// goes).
async fn start<S, B, ResBody>(
    svc: S,
    decoded: Decoded,
    mut batch: Setting,
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
    } = admitted;
    let config = batch.config.clone();
    let Some(idempotency) = &config.idempotency else {
        return Err(store_problem("no store".into()));
    };
    let owner = match state {
        State::Running { owner, .. } => owner,
        State::Finished => return Err(store_problem("a new run's record is not running".into())),
    };
    slot.job.tally.resume(&entries);
    let run = JobRun {
        cancel: slot.job.cancel.clone(),
        flag: key.cancel_flag(owner),
        progress: slot.job.tally.clone(),
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

/// The same request sent again under its `Idempotency-Key`, whose job is `state`: its
/// reply when it has finished and the client would wait, else `202` with its progress.
async fn again<S, B, ResBody>(
    svc: S,
    config: Arc<Config>,
    key: &JobKey,
    location: &str,
    state: &'static str,
    asked: Asked,
    place: crate::engine::Hold,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    let local = config.jobs.as_ref().and_then(|jobs| jobs.local(key));
    let mut state = state;
    if let (Some(wait), Some(job)) = (asked.wait, &local) {
        if tokio::time::timeout(wait, job.done.cancelled())
            .await
            .is_ok()
        {
            state = "finished";
        }
    }
    if state == "finished" && asked.wait.is_some() {
        let trace = crate::trace::BatchTrace::open(key.id.as_str());
        return monitor::replay(svc, config.clone(), key, place, trace, None).await;
    }
    let progress = match &local {
        Some(job) => job.tally.progress(&key.id, state),
        None => Progress::of(&key.id, state, &[]),
    };
    submitted(location, &progress)
}

/// The id of the job an `Idempotency-Key` names, recorded under the key as a keyed batch
/// is: so that the same key without `respond-async` is another request (`422`), and the
/// id is random (no one works it out from the key). The record holds the request's
/// fingerprint and the id.
async fn job_of_key(idempotency: &Idempotency, keyed: &Keyed) -> Result<String, Problem> {
    let id = JobKey::new_id();
    let named = Record {
        fingerprint: [&keyed.fingerprint[..], id.as_bytes()].concat().into(),
        state: State::Finished,
    };
    let store = &idempotency.store;
    let existing = within(store.create(&keyed.store_key, &named, idempotency.retention)).await;
    let Some(existing) = existing.map_err(store_problem)? else {
        return Ok(id);
    };
    let split = keyed.fingerprint.len().min(existing.fingerprint.len());
    let (fingerprint, named) = existing.fingerprint.split_at(split);
    let named = std::str::from_utf8(named)
        .ok()
        .filter(|n| n.len() == id.len());
    match (fingerprint == &keyed.fingerprint[..], existing.state, named) {
        (true, State::Finished, Some(named)) => Ok(named.to_owned()),
        _ => Err(reused_problem()),
    }
}

/// A job admitted to run: its place, the state its record is held in, and what a run that
/// stopped left in it (nothing for a new job).
struct Admitted {
    slot: Slot,
    state: State,
    entries: Vec<(String, Bytes)>,
}

/// A place for the job at `key` and its record: new, or taken over from a run that stopped
/// (its process ended, and its lease has passed: the same request, sent again under the
/// same `Idempotency-Key`, resumes it as a keyed batch resumes). When the job runs or has
/// finished (the same request again): its state; else the problem to answer.
async fn admit(
    jobs: &Jobs,
    idempotency: &Idempotency,
    key: &JobKey,
    scope: &[u8],
    fingerprint: Bytes,
) -> Result<Result<Admitted, &'static str>, Problem> {
    let store = &idempotency.store;
    let Some(slot) = jobs.admit(key, scope, &fingerprint)? else {
        return Ok(Err("running"));
    };
    let state = idempotency.new_running();
    let record = Record { fingerprint, state };
    let existing = within(store.create(&key.store_key, &record, idempotency.retention)).await;
    let existing = match existing.map_err(store_problem)? {
        None => {
            return Ok(Ok(Admitted {
                slot,
                state,
                entries: Vec::new(),
            }))
        }
        Some(existing) if existing.fingerprint != record.fingerprint => {
            return Err(reused_problem())
        }
        Some(existing) => existing,
    };
    match existing.state {
        State::Running { lease_until, .. } if lease_until <= now_ms() => {
            let taken = within(store.replace(&key.store_key, existing.state, state)).await;
            if !taken.map_err(store_problem)? {
                return Ok(Err("running"));
            }
            let entries = within(store.entries(&key.store_key)).await;
            let entries = entries.map_err(store_problem)?;
            Ok(Ok(Admitted {
                slot,
                state,
                entries,
            }))
        }
        State::Running { .. } => Ok(Err("running")),
        State::Finished => Ok(Err("finished")),
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
                let mut value = problem.status().as_u16().to_le_bytes().to_vec();
                value.extend_from_slice(&problem.to_bytes());
                let entry = (PROBLEM_ENTRY.to_owned(), Bytes::from(value));
                match writer.record(&[entry]).await {
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
