//! [`RedisStore`]: records in Redis (feature `redis`), shared by every instance.

use super::{IdempotencyStore, Record, State};
use crate::BoxError;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use std::sync::LazyLock;
use std::time::Duration;

/// Keyed batches in Redis: every instance behind a load balancer that uses the same
/// Redis finds every batch, so a retry that lands on another instance replays (or
/// resumes) it. Each record is a hash and a list of entries (`{key}` and `{key}:e`, one
/// cluster slot), both expiring with the retention (a record a run holds lives at least
/// a minute past its lease); each operation is one Lua script, so it is atomic. Calls
/// time out after two seconds (then the batch gets `503`), and the connection is made
/// again after a failure. Run Redis with `maxmemory-policy noeviction` (its default):
/// a record evicted early lets its batch run again.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

/// Creates the record (with no entries: a list left by an expired one goes) unless it
/// exists; else returns it: `{fingerprint, owner, lease, finished}`.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then
            return redis.call('HMGET', KEYS[1], 'f', 'o', 'l', 'd')
        end
        redis.call('DEL', KEYS[2])
        redis.call('HSET', KEYS[1], 'f', ARGV[1], 'o', ARGV[2], 'l', ARGV[3], 'd', ARGV[4])
        redis.call('PEXPIRE', KEYS[1], ARGV[5])
        return 0
        ",
    )
});

/// Sets the state if it is the one expected: 1 if it was. A record a run holds lives at
/// least `ARGV[7]` ms more (its lease, and a minute), its entries as long.
static REPLACE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local r = redis.call('HMGET', KEYS[1], 'o', 'l', 'd')
        if r[1] == ARGV[1] and r[2] == ARGV[2] and r[3] == ARGV[3] then
            redis.call('HSET', KEYS[1], 'o', ARGV[4], 'l', ARGV[5], 'd', ARGV[6])
            local floor = tonumber(ARGV[7])
            if floor > 0 and redis.call('PTTL', KEYS[1]) < floor then
                redis.call('PEXPIRE', KEYS[1], floor)
                redis.call('PEXPIRE', KEYS[2], floor)
            end
            return 1
        end
        return 0
        ",
    )
});

/// Appends entries if the owner holds the record: 1 if it does.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local r = redis.call('HMGET', KEYS[1], 'o', 'd')
        if r[1] ~= ARGV[1] or r[2] ~= '0' then
            return 0
        end
        for i = 2, #ARGV do
            redis.call('RPUSH', KEYS[2], ARGV[i])
        end
        local ttl = redis.call('PTTL', KEYS[1])
        if ttl > 0 then
            redis.call('PEXPIRE', KEYS[2], ttl)
        end
        return 1
        ",
    )
});

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://host:port/db`).
    pub async fn open(url: &str) -> Result<Self, BoxError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self { conn })
    }
}

/// The hash and the list of the record at `key`.
fn keys(key: &str) -> (String, String) {
    (format!("{{{key}}}"), format!("{{{key}}}:e"))
}

/// The state as stored: owner, lease, finished.
fn fields(state: State) -> [String; 3] {
    match state {
        State::Running { owner, lease_until } => {
            [owner.to_string(), lease_until.to_string(), "0".into()]
        }
        State::Finished => ["0".into(), "0".into(), "1".into()],
    }
}

/// The longest expiry set, in ms (ten years): Redis refuses one past its clock's range.
const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// How long, in ms, a record in `state` must live at least: a minute past its lease
/// while a run holds it.
fn held_for(state: State) -> u64 {
    let now = super::now_ms();
    match state {
        State::Running { lease_until, .. } if lease_until > now => {
            (lease_until - now).saturating_add(60_000)
        }
        _ => 0,
    }
}

/// An entry as a list element: its name, a NUL, its value (names hold no NUL).
fn element(name: &str, value: &[u8]) -> Vec<u8> {
    [name.as_bytes(), b"\0", value].concat()
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    std::str::from_utf8(&bytes(value)?).ok()?.parse().ok()
}

/// The record `CREATE` returned.
fn record(value: Value) -> Result<Option<Record>, BoxError> {
    let Value::Array(parts) = value else {
        return Ok(None);
    };
    let bad = || BoxError::from("Redis returned a malformed batch record");
    let [fingerprint, owner, lease, finished] = &parts[..] else {
        return Err(bad());
    };
    let state = match bytes(finished).as_deref() {
        Some(b"1") => State::Finished,
        _ => State::Running {
            owner: number(owner).ok_or_else(bad)?,
            lease_until: number(lease).ok_or_else(bad)?,
        },
    };
    Ok(Some(Record {
        fingerprint: bytes(fingerprint).ok_or_else(bad)?.into(),
        state,
    }))
}

/// An entry as `element` wrote it.
fn entry(element: Vec<u8>) -> Result<(String, Bytes), BoxError> {
    let bad = || BoxError::from("Redis returned a malformed batch entry");
    let nul = element.iter().position(|b| *b == 0).ok_or_else(bad)?;
    let name = String::from_utf8(element[..nul].to_vec()).map_err(|_| bad())?;
    Ok((name, Bytes::copy_from_slice(&element[nul + 1..])))
}

impl IdempotencyStore for RedisStore {
    fn create<'a>(
        &'a self,
        key: &'a str,
        record: &'a Record,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Record>, BoxError>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let (hash, list) = keys(key);
            let [owner, lease, finished] = fields(record.state);
            let mut call = CREATE.key(hash);
            call.key(list).arg(&record.fingerprint[..]);
            call.arg(owner).arg(lease).arg(finished);
            // A record a run holds outlives its lease by a minute, whatever the retention.
            let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            let ttl = ttl.max(held_for(record.state));
            call.arg(ttl.clamp(1, MAX_TTL_MS));
            let value: Value = call.invoke_async(&mut conn).await?;
            self::record(value)
        })
    }

    fn replace<'a>(
        &'a self,
        key: &'a str,
        expected: State,
        new: State,
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let (hash, list) = keys(key);
            let mut call = REPLACE.key(hash);
            call.key(list)
                .arg(&fields(expected)[..])
                .arg(&fields(new)[..]);
            call.arg(held_for(new).min(MAX_TTL_MS));
            let replaced: i64 = call.invoke_async(&mut conn).await?;
            Ok(replaced == 1)
        })
    }

    fn append<'a>(
        &'a self,
        key: &'a str,
        owner: u64,
        entries: &'a [(String, Bytes)],
    ) -> BoxFuture<'a, Result<bool, BoxError>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let (hash, list) = keys(key);
            let mut call = APPEND.key(hash);
            call.key(list).arg(owner.to_string());
            for (name, value) in entries {
                call.arg(element(name, value));
            }
            let appended: i64 = call.invoke_async(&mut conn).await?;
            Ok(appended == 1)
        })
    }

    fn entries<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Bytes)>, BoxError>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let (_, list) = keys(key);
            let elements: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(list)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await?;
            elements.into_iter().map(entry).collect()
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Record>, BoxError>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let (hash, _) = keys(key);
            let value: Value = redis::cmd("HMGET")
                .arg(hash)
                .arg(&["f", "o", "l", "d"][..])
                .query_async(&mut conn)
                .await?;
            // A hash that does not exist answers four nils.
            match &value {
                Value::Array(parts) if parts.iter().all(|p| matches!(p, Value::Nil)) => Ok(None),
                _ => self::record(value),
            }
        })
    }
}
