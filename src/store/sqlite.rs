//! [`SqliteStore`]: records in a SQLite file (feature `sqlite`).

use super::{held_by, IdempotencyStore, Record, State};
use crate::BoxError;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Keyed batches in a SQLite file: they survive a restart of the process, and processes
/// on one machine may share the file. Writes use SQLite's write-ahead log with
/// `synchronous = NORMAL`: a record survives the process's crash, not the machine's
/// power failing. Calls run on tokio's blocking threads. Expired records (none a run still
/// holds) are deleted as new ones are created, at most 1,000 at a time.
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS batch_records (
        key TEXT PRIMARY KEY,
        fingerprint BLOB NOT NULL,
        owner INTEGER NOT NULL,
        lease_until INTEGER NOT NULL,
        finished INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS batch_entries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        value BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS batch_entries_by_key ON batch_entries (key, seq);
    CREATE INDEX IF NOT EXISTS batch_records_by_expiry ON batch_records (expires_at);
";

/// The records `purge` deletes at `?1`: expired, and held by no run (finished, or their
/// lease passed), at most 1,000 per call.
const EXPIRED: &str = "SELECT key FROM batch_records
    WHERE expires_at <= ?1 AND (finished = 1 OR lease_until <= ?1) LIMIT 1000";

impl SqliteStore {
    /// Opens (or creates) the store in the SQLite file at `path`; its tables are
    /// `batch_records` and `batch_entries`, so the file may be the service's own.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BoxError> {
        let db = Connection::open(path)?;
        db.busy_timeout(Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    fn with<T, F>(&self, f: F) -> BoxFuture<'static, Result<T, BoxError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, BoxError> + Send + 'static,
    {
        let db = self.db.clone();
        Box::pin(async move {
            let call = tokio::task::spawn_blocking(move || {
                let mut db = db.lock().unwrap_or_else(|e| e.into_inner());
                f(&mut db)
            });
            call.await?
        })
    }
}

/// The state stored as (owner, lease_until, finished). An owner is stored as the `i64`
/// with its bits, and read back as the same `u64`.
fn columns(state: State) -> (i64, i64, bool) {
    match state {
        State::Running { owner, lease_until } => (owner as i64, clamp(lease_until), false),
        State::Finished => (0, 0, true),
    }
}

fn clamp(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn state_of(owner: i64, lease_until: i64, finished: bool) -> State {
    match finished {
        true => State::Finished,
        false => State::Running {
            owner: owner as u64,
            lease_until: lease_until.max(0) as u64,
        },
    }
}

/// The record at `key`.
fn load(tx: &Transaction<'_>, key: &str) -> Result<Option<Record>, BoxError> {
    let row = tx
        .query_row(
            "SELECT fingerprint, owner, lease_until, finished FROM batch_records WHERE key = ?1",
            params![key],
            |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    Ok(
        row.map(|(fingerprint, owner, lease_until, finished)| Record {
            fingerprint: fingerprint.into(),
            state: state_of(owner, lease_until, finished),
        }),
    )
}

/// Deletes expired records no run holds, and their entries.
fn purge(tx: &Transaction<'_>, now: i64) -> Result<(), BoxError> {
    let entries = format!("DELETE FROM batch_entries WHERE key IN ({EXPIRED})");
    tx.execute(&entries, params![now])?;
    let records = format!("DELETE FROM batch_records WHERE key IN ({EXPIRED})");
    tx.execute(&records, params![now])?;
    Ok(())
}

fn insert_entries(
    tx: &Transaction<'_>,
    key: &str,
    entries: &[(String, Bytes)],
) -> Result<(), BoxError> {
    let mut insert =
        tx.prepare_cached("INSERT INTO batch_entries (key, name, value) VALUES (?1, ?2, ?3)")?;
    for (name, value) in entries {
        insert.execute(params![key, name, &value[..]])?;
    }
    Ok(())
}

impl IdempotencyStore for SqliteStore {
    fn create<'a>(
        &'a self,
        key: &'a str,
        record: &'a Record,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Record>, BoxError>> {
        let (key, record) = (key.to_owned(), record.clone());
        self.with(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = clamp(super::now_ms());
            purge(&tx, now)?;
            // This key's own record, if expired, whatever the purge reached.
            let mine = "SELECT 1 FROM batch_records WHERE key = ?2 AND expires_at <= ?1 AND (finished = 1 OR lease_until <= ?1)";
            let gone = format!("DELETE FROM batch_entries WHERE key = ?2 AND EXISTS ({mine})");
            tx.execute(&gone, params![now, key])?;
            let gone = format!("DELETE FROM batch_records WHERE key = ?2 AND EXISTS ({mine})");
            tx.execute(&gone, params![now, key])?;
            if let Some(existing) = load(&tx, &key)? {
                return Ok(Some(existing));
            }
            // Entries no record owns (left by an older build's purge) are not this one's.
            tx.execute("DELETE FROM batch_entries WHERE key = ?1", params![key])?;
            let (owner, lease_until, finished) = columns(record.state);
            let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            tx.execute(
                "INSERT INTO batch_records (key, fingerprint, owner, lease_until, finished, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key, &record.fingerprint[..], owner, lease_until, finished, now.saturating_add(ttl)],
            )?;
            tx.commit()?;
            Ok(None)
        })
    }

    fn replace<'a>(
        &'a self,
        key: &'a str,
        expected: State,
        new: State,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        let key = key.to_owned();
        self.with(move |db| {
            let (o, l, f) = columns(expected);
            let (new_o, new_l, new_f) = columns(new);
            // A run that outlived the retention: its reply is kept a minute more.
            let grace = clamp(super::now_ms()).saturating_add(60_000);
            let changed = db.execute(
                "UPDATE batch_records SET owner = ?1, lease_until = ?2, finished = ?3,
                    expires_at = CASE WHEN ?3 THEN MAX(expires_at, ?8) ELSE expires_at END
                 WHERE key = ?4 AND owner = ?5 AND lease_until = ?6 AND finished = ?7",
                params![new_o, new_l, new_f, key, o, l, f, grace],
            )?;
            Ok(changed == 1)
        })
    }

    fn append<'a>(
        &'a self,
        key: &'a str,
        owner: u64,
        entries: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        let (key, entries) = (key.to_owned(), entries.to_vec());
        self.with(move |db| {
            let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let held = load(&tx, &key)?.is_some_and(|r| held_by(&r.state, owner));
            if !held {
                return Ok(false);
            }
            insert_entries(&tx, &key, &entries)?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn entries<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Bytes)>, BoxError>> {
        let key = key.to_owned();
        self.with(move |db| {
            let mut query = db.prepare_cached(
                "SELECT name, value FROM batch_entries WHERE key = ?1 ORDER BY seq",
            )?;
            let rows = query.query_map(params![key], |r| {
                Ok((r.get::<_, String>(0)?, Bytes::from(r.get::<_, Vec<u8>>(1)?)))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Record>, BoxError>> {
        let key = key.to_owned();
        self.with(move |db| {
            let tx = db.transaction()?;
            let now = clamp(super::now_ms());
            let expired: bool = tx
                .query_row(
                    "SELECT expires_at <= ?2 AND (finished = 1 OR lease_until <= ?2) FROM batch_records WHERE key = ?1",
                    params![key, now],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(false);
            match expired {
                true => Ok(None),
                false => load(&tx, &key),
            }
        })
    }
}
