//! A batch job's status monitor (`{batch path}/jobs/{id}`): `GET` answers with the job's
//! progress while it runs and with its reply once it has finished; `DELETE` cancels it.
//! Everything is read from the store, so any instance sharing it answers; only the caller
//! that sent the job finds it (its scope is part of the record's key).

use super::jobs::accepted;
use super::{context, run, Resuming};
use crate::batch::media::accept_weight;
use crate::body::BatchResponseBody;
use crate::codec::{Decoded, ReplyWriter};
use crate::config::Config;
use crate::engine::{Hold, Wrapped, WrappedBody};
use crate::error::Problem;
use crate::idempotency::{now_ms, record, store_problem, within, Idempotency};
use crate::jobs::progress::{JobState, Progress};
use crate::jobs::{self, stored, JobKey, LocalJob};
use crate::reply::Setting;
use crate::store::{Record, State};
use crate::subrequest::Outer;
use crate::trace::BatchTrace;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;

/// Answers a request to the monitor of job `id` of the endpoint at `endpoint`.
pub(super) async fn answer<S, B, ResBody>(
    svc: S,
    config: Arc<Config>,
    endpoint: usize,
    id: String,
    req: Request<B>,
    trace: BatchTrace,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    let (parts, _body) = req.into_parts();
    let (Some(idempotency), true) = (&config.idempotency, is_monitor_method(&parts.method)) else {
        return jobs::method_not_allowed().into_response();
    };
    let scope = idempotency.scope_of(&parts, &config.headers);
    let key = JobKey::new(config.endpoints[endpoint].path(), &scope, &id);
    trace.job(&id);
    // Reading a job's record costs what the job holds: a monitor takes a place among the
    // batches in flight, as a batch does, so that a flood of polls waits its turn.
    let place = match config.admission.enter().await {
        Ok(place) => place,
        Err(busy) => return busy.into_response(),
    };
    let record = match within(idempotency.store.get(&key.store_key)).await {
        Err(e) => return store_problem(e).into_response(),
        Ok(None) => return jobs::not_found().into_response(),
        Ok(Some(record)) => record,
    };
    let local = config.jobs.as_ref().and_then(|jobs| jobs.local(&key));
    let cancelling = local.as_ref().map(|job| job.cancel.is_cancelled());
    let state = match state_of(idempotency, &key, &record, cancelling).await {
        Ok(state) => state,
        Err(problem) => return problem.into_response(),
    };
    let local = local.as_deref();
    match (parts.method == Method::DELETE, state.runs()) {
        (false, true) => progress(&config, &key, &parts, state, local).await,
        (false, false) => {
            let mut reply = replay(svc, config.clone(), &key, place, trace, Some(&parts)).await;
            // A `202` here means "still running": a format whose reply is a `202` (OData
            // V2's) is given as `200` once its job has ended.
            if reply.status() == StatusCode::ACCEPTED {
                *reply.status_mut() = StatusCode::OK;
            }
            reply
        }
        (true, true) => {
            if let Some(job) = local {
                job.cancel.cancel();
            }
            cancel(&config, &key, record.state, local).await
        }
        (true, false) => jobs::not_running(state).into_response(),
    }
}

fn is_monitor_method(method: &Method) -> bool {
    method == Method::GET || method == Method::DELETE
}

/// Where the job is. A job this instance runs is cancelling once its run knows it (`local`: a `DELETE` made on another instance
/// reaches it when it next renews its lease); another instance's, once it was asked.
async fn state_of(
    idempotency: &Idempotency,
    key: &JobKey,
    record: &Record,
    local: Option<bool>,
) -> Result<JobState, Problem> {
    match (record.state, local) {
        (State::Finished, _) => Ok(JobState::Finished),
        // Run here: what its run knows (a late renewal is no stop).
        (State::Running { .. }, Some(true)) => Ok(JobState::Cancelling),
        (State::Running { .. }, Some(false)) => Ok(JobState::Running),
        (State::Running { lease_until, .. }, None) if lease_until <= now_ms() => {
            Ok(JobState::Failed)
        }
        (State::Running { owner, .. }, None) => {
            match within(idempotency.store.get(&key.cancel_flag(owner))).await {
                Ok(Some(_)) => Ok(JobState::Cancelling),
                Ok(None) => Ok(JobState::Running),
                Err(e) => Err(store_problem(e)),
            }
        }
    }
}

/// `202` while the job runs: its progress, or, when the client asks for NDJSON and the
/// job's format has it, the items finished so far.
async fn progress<ResBody>(
    config: &Config,
    key: &JobKey,
    parts: &Parts,
    state: JobState,
    local: Option<&LocalJob>,
) -> Response<BatchResponseBody<ResBody>> {
    if asks_ndjson(&parts.headers) {
        // The items so far: the job's record read and its request decoded again.
        if let Some(so_far) = items_so_far(config, key, parts).await {
            return so_far;
        }
    }
    match counted(config, key, state, local).await {
        Ok(progress) => accepted(&progress),
        Err(problem) => problem.into_response(),
    }
}

/// The job's progress: as its run counts it when it runs here; else as its record says,
/// read at most once a second per job (a read costs what the job holds).
pub(super) async fn counted(
    config: &Config,
    key: &JobKey,
    state: JobState,
    local: Option<&LocalJob>,
) -> Result<Progress, Problem> {
    if let Some(job) = local {
        return Ok(job.tally.progress(&key.id, state));
    }
    let Some((jobs, idempotency)) = config.served_jobs() else {
        return Err(jobs::not_found());
    };
    if let Some(mut seen) = jobs.seen(key) {
        seen.state = state;
        return Ok(seen);
    }
    let entries = within(idempotency.store.entries(&key.store_key)).await;
    let progress = Progress::of(&key.id, state, &entries.map_err(store_problem)?);
    jobs.saw(key, &progress);
    Ok(progress)
}

/// `202` with the items of a running job that have finished, when its format has a reply
/// that reads in part (NDJSON).
async fn items_so_far<ResBody>(
    config: &Config,
    key: &JobKey,
    parts: &Parts,
) -> Option<Response<BatchResponseBody<ResBody>>> {
    let (jobs, idempotency) = config.served_jobs()?;
    let lines = match jobs.seen_lines(key) {
        Some(lines) => lines,
        None => {
            let entries = match within(idempotency.store.entries(&key.store_key)).await {
                Ok(entries) => entries,
                Err(e) => return Some(store_problem(e).into_response()),
            };
            let lines = finished_so_far(config, &entries, parts);
            jobs.saw_lines(key, &lines);
            lines
        }
    };
    let (content_type, body) = lines?;
    let mut response = accepted(&Progress::of(&key.id, JobState::Running, &[]));
    *response.body_mut() = BatchResponseBody::full(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Some(response)
}

/// The items of a running job that have finished, in a reply format that reads in part
/// (NDJSON), as `monitor` asks for it.
fn finished_so_far(
    config: &Config,
    entries: &[(String, Bytes)],
    monitor: &Parts,
) -> Option<(HeaderValue, Bytes)> {
    let Ok((_, Decoded::Run(plan, mut reply))) = decoded(config, entries, Some(monitor)) else {
        return None;
    };
    if !reply.reads_in_part() {
        return None;
    }
    let mut w = ReplyWriter::new(config.run.max_response_bytes);
    reply.begin(&mut w);
    for (name, value) in entries {
        let Some(index) = name
            .strip_prefix("0.o.")
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        let (Some(item), Some(outcome)) = (plan.items.get(index), record::decode(value.clone()))
        else {
            continue;
        };
        reply.item(index, &item.id, &outcome, &mut w);
    }
    let body: Vec<u8> = w.finish().concat();
    Some((reply.content_type(), Bytes::from(body)))
}

/// The job's request as it was sent (with the monitor's `Accept` when it asks for NDJSON),
/// decoded again: what its replay runs, or its items so far are written with.
fn decoded(
    config: &Config,
    entries: &[(String, Bytes)],
    monitor: Option<&Parts>,
) -> Result<(Outer, Decoded), Problem> {
    let stored = entries.iter().find(|(n, _)| n == stored::ENTRY);
    let (mut parts, body) = stored
        .and_then(|(_, request)| stored::decode(request.clone()))
        .ok_or_else(unreadable)?;
    if let Some(monitor) = monitor.filter(|m| asks_ndjson(&m.headers)) {
        parts.headers.remove(header::ACCEPT);
        for accept in monitor.headers.get_all(header::ACCEPT) {
            parts.headers.append(header::ACCEPT, accept.clone());
        }
    }
    let endpoint = config.endpoint(parts.uri.path()).ok_or_else(unreadable)?;
    let outer = Outer::new(parts, config.headers.clone());
    let keeps_header = |name: &HeaderName| config.headers.keeps(name);
    let cx = context(&outer, config, &keeps_header);
    // The monitor's `Accept` may ask for what the format does not give (`406`).
    let codec = config.endpoints[endpoint].accept(outer.parts(), usize::MAX)?;
    let decoded = codec
        .decode(outer.parts(), &body, &cx)
        .map_err(|_| unreadable())?;
    Ok((outer, decoded))
}

/// Whether `headers` ask for NDJSON by name (a weight above zero).
fn asks_ndjson(headers: &http::HeaderMap) -> bool {
    accept_weight(headers, "application/x-ndjson").is_some_and(|q| q > 0)
}

/// The reply of a job that has ended (finished, cancelled, or failed), replayed from its
/// record as the synchronous batch would have had it: nothing is sent.
pub(super) async fn replay<S, B, ResBody>(
    svc: S,
    config: Arc<Config>,
    key: &JobKey,
    place: Hold,
    trace: BatchTrace,
    monitor: Option<&Parts>,
) -> Response<BatchResponseBody<ResBody>>
where
    S: Wrapped<B, ResBody>,
    B: Send + 'static,
    ResBody: WrappedBody,
{
    let Some(idempotency) = &config.idempotency else {
        return jobs::not_found().into_response();
    };
    let entries = match within(idempotency.store.entries(&key.store_key)).await {
        Ok(entries) => entries,
        Err(e) => return store_problem(e).into_response(),
    };
    if let Some(problem) = stored::problem(&entries) {
        return problem;
    }
    let (outer, decoded) = match decoded(&config, &entries, monitor) {
        Ok(decoded) => decoded,
        Err(problem) => return problem.into_response(),
    };
    let batch = Setting {
        outer,
        config: config.clone(),
        trace,
        place,
        keyed: None,
    };
    let resuming = Resuming {
        entries,
        writer: None,
    };
    run(svc, decoded, batch, Some(resuming)).await
}

/// `DELETE` on a running job: its run, here at once, or on another instance when it next
/// renews its lease, starts nothing more. `202` with its progress.
async fn cancel<ResBody>(
    config: &Config,
    key: &JobKey,
    state: State,
    local: Option<&LocalJob>,
) -> Response<BatchResponseBody<ResBody>> {
    let Some(idempotency) = &config.idempotency else {
        return jobs::not_found().into_response();
    };
    let flag = Record {
        fingerprint: Bytes::new(),
        state: State::Finished,
    };
    let owner = match state {
        State::Running { owner, .. } => owner,
        State::Finished => 0,
    };
    let store = &idempotency.store;
    let flag_key = key.cancel_flag(owner);
    if let Err(e) = within(store.create(&flag_key, &flag, idempotency.retention)).await {
        return store_problem(e).into_response();
    }
    match counted(config, key, JobState::Cancelling, local).await {
        Ok(progress) => accepted(&progress),
        Err(problem) => problem.into_response(),
    }
}

/// `500`: the job's record holds no request this layer can read (another version wrote
/// it, or the store corrupted it).
fn unreadable() -> Problem {
    let why = "the batch job's record holds no request this server can read again, so its reply cannot be given";
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "urn:tower-http-batch:job-unreadable",
        "Batch job unreadable",
        why,
    )
}
