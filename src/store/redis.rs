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
/// cluster slot), both expiring with the retention; each operation is one Lua script,
/// so it is atomic. Calls time out after two seconds (then the batch gets `503`), and
/// the connection is made again after a failure.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

/// Creates the record unless it exists; else returns it: `{fingerprint, owner, lease,
/// finished, entries}`.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 1 then
            local r = redis.call('HMGET', KEYS[1], 'f', 'o', 'l', 'd')
            return {r[1], r[2], r[3], r[4], redis.call('LRANGE', KEYS[2], 0, -1)}
        end
        redis.call('HSET', KEYS[1], 'f', ARGV[1], 'o', ARGV[2], 'l', ARGV[3], 'd', ARGV[4])
        redis.call('PEXPIRE', KEYS[1], ARGV[5])
        return 0
        ",
    )
});

/// Sets the state if it is the one expected: 1 if it was.
static REPLACE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local r = redis.call('HMGET', KEYS[1], 'o', 'l', 'd')
        if r[1] == ARGV[1] and r[2] == ARGV[2] and r[3] == ARGV[3] then
            redis.call('HSET', KEYS[1], 'o', ARGV[4], 'l', ARGV[5], 'd', ARGV[6])
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
    let [fingerprint, owner, lease, finished, entries] = &parts[..] else {
        return Err(bad());
    };
    let state = match bytes(finished).as_deref() {
        Some(b"1") => State::Finished,
        _ => State::Running {
            owner: number(owner).ok_or_else(bad)?,
            lease_until: number(lease).ok_or_else(bad)?,
        },
    };
    let Value::Array(entries) = entries else {
        return Err(bad());
    };
    let entries = entries.iter().map(|e| {
        let e = bytes(e).ok_or_else(bad)?;
        let nul = e.iter().position(|b| *b == 0).ok_or_else(bad)?;
        let name = String::from_utf8(e[..nul].to_vec()).map_err(|_| bad())?;
        Ok((name, Bytes::copy_from_slice(&e[nul + 1..])))
    });
    Ok(Some(Record {
        fingerprint: bytes(fingerprint).ok_or_else(bad)?.into(),
        state,
        entries: entries.collect::<Result<_, BoxError>>()?,
    }))
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
            call.arg(ttl.as_millis().clamp(1, i64::MAX as u128) as i64);
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
            let (hash, _) = keys(key);
            let mut call = REPLACE.key(hash);
            call.arg(&fields(expected)[..]).arg(&fields(new)[..]);
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
}
