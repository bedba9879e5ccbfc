//! The idempotency stores, each against the same suite: create or find, state replaced
//! only from the state expected, entries appended only by the run that holds the record,
//! in order, and records expiring with their retention. SQLite's survive reopening its
//! file; Redis runs for real (a `redis-server` of the test's own) and fails cleanly when
//! it is gone.

mod common;

use bytes::Bytes;
use common::process::Redis;
use std::time::Duration;
use tower_http_batch::store::{
    IdempotencyStore, MemoryStore, Record, RedisStore, SqliteStore, State,
};

fn running(owner: u64) -> State {
    State::Running {
        owner,
        lease_until: 1_000 + owner,
    }
}

fn record(fingerprint: &'static [u8], owner: u64) -> Record {
    Record {
        fingerprint: Bytes::from_static(fingerprint),
        state: running(owner),
    }
}

fn entry(name: &str, value: &'static [u8]) -> (String, Bytes) {
    (name.to_owned(), Bytes::from_static(value))
}

const DAY: Duration = Duration::from_secs(86_400);

/// What every store does.
async fn suite(store: &dyn IdempotencyStore, prefix: &str) {
    let key = format!("{prefix}-a");
    let first = record(b"fingerprint", 1);
    assert_eq!(
        store.create(&key, &first, DAY).await.unwrap(),
        None,
        "created"
    );
    let again = store.create(&key, &record(b"other", 2), DAY).await.unwrap();
    assert_eq!(again, Some(first.clone()), "found, unchanged");

    // Entries: only the owner appends, in order; values may be empty or binary.
    let entries = [entry("0.s.0", b""), entry("0.o.0", b"\x00\xffbody")];
    assert!(store.append(&key, 1, &entries).await.unwrap());
    assert!(!store.append(&key, 2, &[entry("0.s.1", b"")]).await.unwrap());
    assert!(store.append(&key, 1, &[entry("0.s.1", b"")]).await.unwrap());

    // The state changes only from the state expected.
    assert!(!store.replace(&key, running(2), running(3)).await.unwrap());
    assert!(store.replace(&key, running(1), running(3)).await.unwrap());
    assert!(
        !store.append(&key, 1, &[entry("late", b"")]).await.unwrap(),
        "taken over"
    );
    assert!(store
        .replace(&key, running(3), State::Finished)
        .await
        .unwrap());
    assert!(
        !store.append(&key, 3, &[entry("after", b"")]).await.unwrap(),
        "finished"
    );
    let found = store.create(&key, &first, DAY).await.unwrap().unwrap();
    assert_eq!(found.state, State::Finished);
    let read = store.get(&key).await.unwrap();
    assert_eq!(read, Some(found.clone()), "get reads what create finds");
    assert_eq!(found.fingerprint, first.fingerprint);
    let entries = store.entries(&key).await.unwrap();
    let names: Vec<_> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["0.s.0", "0.o.0", "0.s.1"]);
    assert_eq!(entries[1].1, Bytes::from_static(b"\x00\xffbody"));

    // Nothing happens to a record that is not there.
    let missing = format!("{prefix}-missing");
    assert!(!store
        .replace(&missing, running(1), State::Finished)
        .await
        .unwrap());
    assert!(!store.append(&missing, 1, &[entry("x", b"")]).await.unwrap());
    assert!(store.entries(&missing).await.unwrap().is_empty());
    assert_eq!(store.get(&missing).await.unwrap(), None);

    // A record expires with its retention once no run holds it (here its lease passed
    // long ago); its key is then free, with no old entries.
    let brief = format!("{prefix}-brief");
    store
        .create(&brief, &first, Duration::from_millis(30))
        .await
        .unwrap();
    assert!(store.append(&brief, 1, &[entry("old", b"")]).await.unwrap());
    assert!(store.get(&brief).await.unwrap().is_some());
    common::within("get to find the record expired", async {
        while store.get(&brief).await.unwrap().is_some() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let expired = common::within("the record to expire", async {
        loop {
            if store
                .create(&brief, &record(b"new", 5), DAY)
                .await
                .unwrap()
                .is_none()
            {
                return;
            }
            tokio::task::yield_now().await;
        }
    });
    expired.await;
    let fresh = store.create(&brief, &first, DAY).await.unwrap().unwrap();
    assert_eq!(fresh.fingerprint, Bytes::from_static(b"new"));
    assert!(store.entries(&brief).await.unwrap().is_empty());

    // A record a run holds (its lease not passed) outlives its retention: it is still
    // there once a record created with it has expired.
    let held = format!("{prefix}-held");
    let far = State::Running {
        owner: 7,
        lease_until: u64::MAX / 2,
    };
    let holding = Record {
        fingerprint: Bytes::from_static(b"f"),
        state: far,
    };
    let short = Duration::from_millis(20);
    store.create(&held, &holding, short).await.unwrap();
    let other = format!("{prefix}-other");
    store.create(&other, &first, short).await.unwrap();
    common::within("the other record to expire", async {
        while store
            .create(&other, &record(b"again", 8), DAY)
            .await
            .unwrap()
            .is_some()
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let still = store.create(&held, &first, DAY).await.unwrap();
    assert_eq!(still, Some(holding.clone()));
    assert_eq!(store.get(&held).await.unwrap(), Some(holding), "get: held");
}

#[tokio::test]
async fn memory() {
    suite(&MemoryStore::default(), "memory").await;
}

#[tokio::test]
async fn memory_is_bounded_and_never_drops_a_running_batch() {
    let store = MemoryStore::new(2, 1 << 20);
    store.create("a", &record(b"f", 1), DAY).await.unwrap();
    store.create("b", &record(b"f", 2), DAY).await.unwrap();
    assert!(
        store.create("c", &record(b"f", 3), DAY).await.is_err(),
        "full of running batches"
    );
    store
        .replace("a", running(1), State::Finished)
        .await
        .unwrap();
    assert_eq!(
        store.create("c", &record(b"f", 3), DAY).await.unwrap(),
        None
    );
    // The finished one went to make room; the running one stayed.
    // ("a" went: its key is new again, and two running batches leave no room.)
    assert!(store.create("a", &record(b"g", 4), DAY).await.is_err());
    assert!(store
        .create("b", &record(b"g", 4), DAY)
        .await
        .unwrap()
        .is_some());
    // Bytes too: an append past the bound fails.
    let small = MemoryStore::new(10, 200);
    small.create("a", &record(b"f", 1), DAY).await.unwrap();
    assert!(small
        .append("a", 1, &[entry("big", &[0; 300])])
        .await
        .is_err());
}

#[tokio::test]
async fn sqlite_keeps_records_across_a_reopen() {
    let dir = std::env::temp_dir().join(format!("thb-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("records.db");
    let _ = std::fs::remove_file(&path);
    suite(&SqliteStore::open(&path).unwrap(), "sqlite").await;
    let reopened = SqliteStore::open(&path).unwrap();
    let found = reopened
        .create("sqlite-a", &record(b"x", 9), DAY)
        .await
        .unwrap();
    assert_eq!(found.unwrap().state, State::Finished);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn redis_for_real_and_down() {
    let redis = Redis::start();
    let store = RedisStore::open(&redis.url).await.unwrap();
    suite(&store, "redis").await;
    // A second connection (another instance) sees the same records.
    let other = RedisStore::open(&redis.url).await.unwrap();
    let found = other
        .create("redis-a", &record(b"x", 9), DAY)
        .await
        .unwrap();
    assert_eq!(found.unwrap().state, State::Finished);
    // Redis gone: every call fails, within its timeout, rather than hanging.
    drop(redis);
    let failed = common::within(
        "a call to a stopped Redis",
        store.create("z", &record(b"x", 1), DAY),
    )
    .await;
    assert!(failed.is_err());
}
