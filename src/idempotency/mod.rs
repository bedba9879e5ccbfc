//! Batches sent with an `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header):
//! the first run is recorded in a store as it goes, and the same request sent again
//! with the same key replays it instead of running it again.
//!
//! A key is the caller's: it is scoped to the batch path and the values of the outer
//! request's identity headers (or what [`BatchLayer::idempotency_scope`] returns), and
//! bound to a fingerprint of the request (method, path and query, content type, body).
//! The store sees neither the key nor the identity: its key is a SHA-256 of them.
//!
//! [`BatchLayer::idempotency_scope`]: crate::BatchLayer::idempotency_scope

mod journal;
pub(crate) mod record;
mod resume;

pub(crate) use journal::{JobRun, Progressing, Writer};
pub(crate) use resume::keyed_for;

use crate::batch::prefer;
use crate::error::Problem;
pub(crate) use crate::store::now_ms;
use crate::store::{IdempotencyStore, Record, State};
use crate::subrequest::HeaderPolicy;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderName, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The request header that carries the key.
pub(crate) static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The reply header of a batch replayed whole.
pub(crate) static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The longest key taken, in bytes.
const MAX_KEY_BYTES: usize = 255;

/// Who a key belongs to, as a user decides it ([`crate::BatchLayer::idempotency_scope`]).
pub(crate) type Scope = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// The layer's settings for keyed batches.
#[derive(Clone)]
pub(crate) struct Idempotency {
    pub(crate) store: Arc<dyn IdempotencyStore>,
    /// How long a record is kept after its batch was first sent.
    pub(crate) retention: Duration,
    /// How long a run's hold on its record lasts without renewal: past it, a retry takes
    /// over a run whose process stopped.
    pub(crate) lease: Duration,
    /// Refuse batches without a key (`400`).
    pub(crate) required: bool,
    pub(crate) scope: Option<Scope>,
}

impl fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("retention", &self.retention)
            .field("lease", &self.lease)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

/// A keyed batch, before its record is claimed.
pub(crate) struct Keyed {
    /// Where the store keeps it.
    pub(crate) store_key: String,
    pub(crate) fingerprint: Bytes,
}

/// What the record under a key allows.
pub(crate) enum Claim {
    /// Run the batch, resuming from what an earlier run recorded (none on a first run).
    Run(Writer, Vec<(String, Bytes)>),
    /// The batch finished: replay what it recorded.
    Replay(Vec<(String, Bytes)>),
}

impl Idempotency {
    /// The outer request's key, scoped and bound to the request; `None` without a key.
    pub(crate) fn keyed(
        &self,
        parts: &Parts,
        body: &[u8],
        policy: &HeaderPolicy,
    ) -> Result<Option<Keyed>, Problem> {
        let mut values = parts.headers.get_all(&IDEMPOTENCY_KEY).iter();
        let Some(value) = values.next() else {
            return match self.required {
                true => Err(key_problem(
                    "a batch here must carry an Idempotency-Key header",
                )),
                false => Ok(None),
            };
        };
        if values.next().is_some() {
            return Err(key_problem(
                "the Idempotency-Key header is given more than once",
            ));
        }
        let key = parse_key(value).map_err(key_problem)?;
        let scope = self.scope_of(parts, policy);
        let path = parts.uri.path();
        let store_key = digest(&[
            b"tower-http-batch key 1",
            path.as_bytes(),
            &scope,
            key.as_bytes(),
        ]);
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .map_or(&b""[..], |v| v.as_bytes());
        let target = parts.uri.path_and_query().map_or(path, |p| p.as_str());
        let fingerprint = digest(&[
            parts.method.as_str().as_bytes(),
            target.as_bytes(),
            content_type,
            &shaping(&parts.headers),
            body,
        ]);
        Ok(Some(Keyed {
            store_key: format!("tower-http-batch:{}", hex(&store_key)),
            fingerprint: Bytes::copy_from_slice(&fingerprint),
        }))
    }

    /// Who the outer request's caller is, as keys and jobs are scoped: the user's scope
    /// ([`crate::BatchLayer::idempotency_scope`]), else the identity headers' values.
    pub(crate) fn scope_of(&self, parts: &Parts, policy: &HeaderPolicy) -> Vec<u8> {
        match self.scope.as_ref().and_then(|scope| scope(parts)) {
            Some(scope) => [b"scope\n", scope.as_bytes()].concat(),
            None => [&b"headers\n"[..], &policy.identity_of(&parts.headers)].concat(),
        }
    }

    /// Claims the record of `keyed`: a first run, a run that takes over one whose process
    /// stopped, or a replay; else the problem to answer (`409` while another run holds
    /// it, `422` for another request under the same key, `503` when the store fails).
    pub(crate) async fn claim(&self, keyed: &Keyed) -> Result<Claim, Problem> {
        let owner = new_owner();
        let running = State::Running {
            owner,
            lease_until: now_ms().saturating_add(self.lease.as_millis() as u64),
        };
        let record = Record {
            fingerprint: keyed.fingerprint.clone(),
            state: running,
        };
        let key = &keyed.store_key;
        let store = &self.store;
        let existing = within(store.create(key, &record, self.retention)).await;
        let existing = match existing.map_err(store_problem)? {
            None => return Ok(Claim::Run(self.writer(key, owner, running), Vec::new())),
            Some(existing) => existing,
        };
        if existing.fingerprint != keyed.fingerprint {
            return Err(reused_problem());
        }
        match existing.state {
            State::Finished => {
                let entries = within(store.entries(key)).await.map_err(store_problem)?;
                Ok(Claim::Replay(entries))
            }
            State::Running { lease_until, .. } if lease_until > now_ms() => Err(busy_problem()),
            stopped => {
                let taken = within(store.replace(key, stopped, running)).await;
                if !taken.map_err(store_problem)? {
                    return Err(busy_problem());
                }
                // Read once the record is this run's: the stopped run can add nothing more.
                let writer = self.writer(key, owner, running);
                let entries = within(store.entries(key)).await.map_err(store_problem)?;
                Ok(Claim::Run(writer, entries))
            }
        }
    }

    fn writer(&self, key: &str, owner: u64, state: State) -> Writer {
        Writer::start(
            self.store.clone(),
            key.to_owned(),
            owner,
            state,
            self.lease,
            None,
        )
    }

    /// The writer of a batch job's run, whose record was created in `state`.
    pub(crate) fn job_writer(&self, key: &str, state: State, job: JobRun) -> Writer {
        // A job's record is created running (`new_running`).
        let owner = match state {
            State::Running { owner, .. } => owner,
            State::Finished => 0,
        };
        let (store, lease) = (self.store.clone(), self.lease);
        Writer::start(store, key.to_owned(), owner, state, lease, Some(job))
    }

    /// A new run's state: held by a new owner for one lease.
    pub(crate) fn new_running(&self) -> State {
        State::Running {
            owner: new_owner(),
            lease_until: now_ms().saturating_add(self.lease.as_millis() as u64),
        }
    }
}

/// How long any one call of a store may take: past it, the call failed (a keyed batch
/// then gets `503`, or its item is not sent).
pub(crate) const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// `call` within [`STORE_TIMEOUT`].
pub(crate) async fn within<T>(
    call: impl std::future::Future<Output = Result<T, crate::BoxError>>,
) -> Result<T, crate::BoxError> {
    match tokio::time::timeout(STORE_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {STORE_TIMEOUT:?}").into()),
    }
}

/// The key in `value`: a structured-field string (`"…"`, as the draft writes it) or a
/// bare token (as Stripe's clients send it), 1 to 255 visible ASCII characters.
fn parse_key(value: &HeaderValue) -> Result<String, &'static str> {
    let raw = value
        .to_str()
        .map_err(|_| "the Idempotency-Key must be ASCII")?
        .trim();
    let key = match raw.strip_prefix('"') {
        Some(quoted) => {
            let inner = quoted
                .strip_suffix('"')
                .ok_or("the Idempotency-Key's quoted string is not closed")?;
            let mut key = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some(e @ ('"' | '\\')) => key.push(e),
                        _ => return Err("the Idempotency-Key's quoted string has a bad escape"),
                    },
                    '"' => return Err("the Idempotency-Key's quoted string has a bare quote"),
                    c => key.push(c),
                }
            }
            key
        }
        None => raw.to_owned(),
    };
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err("the Idempotency-Key must be 1 to 255 characters");
    }
    if !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("the Idempotency-Key must be printable ASCII");
    }
    Ok(key)
}

/// The values of the headers that change what a batch runs (a multipart batch's OData
/// version decides whether it stops at a failure; `Prefer` may ask it to go on): a retry
/// that differs in them is another request (`422`), not a replay.
fn shaping(headers: &http::HeaderMap) -> Vec<u8> {
    const SHAPING: [&str; 4] = [
        "odata-version",
        "odata-maxversion",
        "dataserviceversion",
        "maxdataserviceversion",
    ];
    let mut out = Vec::new();
    for name in SHAPING {
        for value in headers.get_all(name) {
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
    }
    // Each preference but `wait`: how long a client would wait for a job's reply changes
    // nothing that runs, and a retry may wait longer or less.
    for preference in prefer::preferences(headers) {
        if !preference.name.eq_ignore_ascii_case("wait") {
            out.extend_from_slice(b"prefer:");
            out.extend_from_slice(preference.name.to_ascii_lowercase().as_bytes());
            if let Some(value) = preference.value {
                out.push(b'=');
                out.extend_from_slice(value.as_bytes());
            }
            out.push(b'\n');
        }
    }
    out
}

/// SHA-256 of `parts`, each length-prefixed (so that no two lists read alike).
pub(crate) fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A number no other run picks (in practice): the clock and a per-process hash seed.
fn new_owner() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

fn key_problem(why: &str) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "urn:tower-http-batch:idempotency-key",
        "Bad Idempotency-Key",
        why,
    )
}

pub(crate) fn reused_problem() -> Problem {
    let why = "this Idempotency-Key was first sent with another request (method, URL, content type, OData version or Prefer headers, or body); a key names one request: send a new key for a new batch";
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "urn:tower-http-batch:idempotency-key-reused",
        "Idempotency-Key reused",
        why,
    )
}

fn busy_problem() -> Problem {
    let why = "a batch with this Idempotency-Key is still running; retry after it has finished to get its reply";
    Problem::new(
        StatusCode::CONFLICT,
        "urn:tower-http-batch:idempotency-key-in-use",
        "Batch still running",
        why,
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
}

pub(crate) fn store_problem(e: crate::BoxError) -> Problem {
    tracing::error!(error = %e, "the idempotency store failed");
    let why = format!("the idempotency store could not record this batch, so it was not run: {e}");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "urn:tower-http-batch:store-unavailable",
        "Idempotency store unavailable",
        why,
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
}
