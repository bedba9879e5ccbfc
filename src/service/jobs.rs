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
    now_ms, reused_problem, store_problem, within, Cancel, Idempotency, Keyed,
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
    prefer::find(&parts.headers, "respond-async")?;
    let wait = prefer::find(&parts.headers, "wait")
        .and_then(|p| p.value?.parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs).min(MAX_WAIT));
    Some(Asked { wait })
}

/// Accepts the validated batch `decoded` as a job: its record is created (or found, for
/// the same `Idempotency-Key`), its request kept, and its run started; answers `202` with
/// its monitor's `Location`, or, with `Prefer: wait`, its reply if it finishes in time.
pub(super) async fn submit<S, B, ResBody>(
    svc: S,
    decoded: Decoded,
    mut batch: Setting,
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
    let id = keyed
        .as_ref()
        .map_or_else(JobKey::new_id, |k| JobKey::id_for_key(&k.store_key));
    let key = JobKey::new(&path, &scope, &id);
    batch.trace.job(&id);
    let location = jobs::monitor_path(&path, &id);
    let fingerprint = keyed.map(|k| k.fingerprint).unwrap_or_default();
    let admitted = admit(jobs, idempotency, &key, &scope, fingerprint).await;
    let Admitted {
        slot,
        state,
        entries,
    } = match admitted {
        Ok(Ok(admitted)) => admitted,
        // The same request again: the same job, as it is now.
        Ok(Err(state)) => return submitted(&location, &Progress::of(&id, state, &[])),
        Err(problem) => return problem.into_response(),
    };
    let State::Running { owner, .. } = state else {
        return store_problem("a new run's record is not running".into()).into_response();
    };
    let cancel = Cancel {
        token: slot.job.cancel.clone(),
        flag: key.cancel_flag(owner),
    };
    let writer = idempotency.job_writer(&key.store_key, state, cancel);
    // Taken over from a run that stopped, the record holds the request already.
    if !entries.iter().any(|(name, _)| name == stored::ENTRY) {
        let entry = (stored::ENTRY.to_owned(), stored::encode(parts, &request));
        if let Err(e) = writer.record(&[entry]).await {
            writer.give_up().await;
            return store_problem(e).into_response();
        }
    }
    drop(request);
    let done = slot.job.done.clone();
    // The job holds its place among the jobs running; the batch's place among those in
    // flight is kept only while the client waits for its reply.
    let place = std::mem::replace(&mut batch.place, Arc::new(slot));
    let span = batch.trace.span().clone();
    let resuming = Resuming {
        entries,
        writer: Some(writer),
    };
    tokio::spawn(run_job(svc.clone(), decoded, batch, resuming).instrument(span));
    if let Some(wait) = asked.wait {
        if tokio::time::timeout(wait, done.cancelled()).await.is_ok() {
            let trace = crate::trace::BatchTrace::open(&path);
            return monitor::replay(svc, config, &key, place, trace, None).await;
        }
    }
    submitted(&location, &Progress::of(&id, "running", &[]))
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
