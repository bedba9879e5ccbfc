//! Admitting a batch job: its name (a new id, or the one its `Idempotency-Key` names),
//! the bounds on jobs running, and its record (new, or taken over from a run that stopped).

use crate::error::Problem;
use crate::idempotency::{now_ms, reused_problem, store_problem, within, Idempotency, Keyed};
use crate::jobs::progress::JobState;
use crate::jobs::{JobKey, Jobs, Slot};
use crate::store::{Record, State};
use bytes::Bytes;

/// A job's name: its id, and, for a job sent with an `Idempotency-Key`, the record under
/// the key (its store key and state) and whether it named the job before this request.
pub(super) struct Named {
    pub(super) id: String,
    alias: Option<(String, State)>,
    known: bool,
}

/// A job admitted to run: its place, the state its record is held in, what a run that
/// stopped left in it (nothing for a new job), and the record under its key.
pub(super) struct Admitted {
    pub(super) slot: Slot,
    pub(super) state: State,
    pub(super) entries: Vec<(String, Bytes)>,
    pub(super) alias: Option<String>,
}

/// The name of a job about to run in `state`: a new random id, or, under an
/// `Idempotency-Key`, the id recorded under the key as a keyed batch is (so that the same
/// key without `respond-async` is another request, `422`, and the id is random: no one
/// works it out from the key). The record holds the request's fingerprint and the id, in
/// the job's state while it runs (no store lets it go then). A new job is refused (`429`,
/// `503`) before anything is recorded.
pub(super) async fn name(
    jobs: &Jobs,
    idempotency: &Idempotency,
    keyed: Option<&Keyed>,
    scope: &[u8],
    state: State,
) -> Result<Named, Problem> {
    let id = JobKey::new_id();
    let Some(keyed) = keyed else {
        jobs.has_room(scope)?;
        return Ok(Named {
            id,
            alias: None,
            known: false,
        });
    };
    let store = &idempotency.store;
    let key = &keyed.store_key;
    if let Some(existing) = within(store.get(key)).await.map_err(store_problem)? {
        return named_by(keyed, existing);
    }
    jobs.has_room(scope)?;
    let fingerprint = [&keyed.fingerprint[..], id.as_bytes()].concat().into();
    let alias = Record { fingerprint, state };
    match within(store.create(key, &alias, idempotency.retention))
        .await
        .map_err(store_problem)?
    {
        None => Ok(Named {
            id,
            alias: Some((key.clone(), state)),
            known: false,
        }),
        Some(existing) => named_by(keyed, existing),
    }
}

/// The job the record under `keyed`'s key names: `422` when it is another request's (or
/// a keyed batch's that is not a job).
fn named_by(keyed: &Keyed, existing: Record) -> Result<Named, Problem> {
    let split = keyed.fingerprint.len().min(existing.fingerprint.len());
    let (fingerprint, id) = existing.fingerprint.split_at(split);
    let id = std::str::from_utf8(id).ok().filter(|id| id.len() == 32);
    match (fingerprint == &keyed.fingerprint[..], id) {
        (true, Some(id)) => Ok(Named {
            id: id.to_owned(),
            alias: Some((keyed.store_key.clone(), existing.state)),
            known: true,
        }),
        _ => Err(reused_problem()),
    }
}

/// A place for the job at `key` and its record: new, or taken over from a run that stopped
/// (its process ended, and its lease has passed: the same request, sent again under the
/// same `Idempotency-Key`, resumes it as a keyed batch resumes). When the job runs or has
/// finished (the same request again): its state, with no place taken; else the problem
/// to answer.
pub(super) async fn admit(
    jobs: &Jobs,
    idempotency: &Idempotency,
    key: &JobKey,
    scope: &[u8],
    fingerprint: Bytes,
    named: Named,
    state: State,
) -> Result<Result<Admitted, JobState>, Problem> {
    let store = &idempotency.store;
    if named.known {
        let record = within(store.get(&key.store_key))
            .await
            .map_err(store_problem)?;
        match record.map(|r| r.state) {
            Some(State::Finished) => return Ok(Err(JobState::Finished)),
            Some(State::Running { lease_until, .. }) if lease_until > now_ms() => {
                return Ok(Err(JobState::Running))
            }
            // Stopped, or never created (its first request was refused): it runs.
            _ => {}
        }
    }
    let Some(slot) = jobs.admit(key, scope, &fingerprint)? else {
        return Ok(Err(JobState::Running));
    };
    let record = Record { fingerprint, state };
    let created = within(store.create(&key.store_key, &record, idempotency.retention)).await;
    let entries = match created.map_err(store_problem)? {
        None => Vec::new(),
        Some(existing) if existing.fingerprint != record.fingerprint => {
            return Err(reused_problem())
        }
        Some(existing) => match existing.state {
            State::Running { lease_until, .. } if lease_until <= now_ms() => {
                let taken = within(store.replace(&key.store_key, existing.state, state)).await;
                if !taken.map_err(store_problem)? {
                    return Ok(Err(JobState::Running));
                }
                within(store.entries(&key.store_key))
                    .await
                    .map_err(store_problem)?
            }
            State::Running { .. } => return Ok(Err(JobState::Running)),
            State::Finished => return Ok(Err(JobState::Finished)),
        },
    };
    // The record under the key follows the job's from now on.
    let alias = match named.alias {
        Some((alias, held)) if held != state => {
            let taken = within(store.replace(&alias, held, state)).await;
            taken.map_err(store_problem)?.then_some(alias)
        }
        alias => alias.map(|(alias, _)| alias),
    };
    Ok(Ok(Admitted {
        slot,
        state,
        entries,
        alias,
    }))
}
