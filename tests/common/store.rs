//! A small in-memory collection (`/items`) with a transaction hook, for the resource bulk
//! and atomicity tests.

use super::{serve, Calls, Http};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tower_http_batch::{BatchLayer, TransactionHook};

type Items = BTreeMap<u64, Value>;

/// The committed data, and switches that make the hook fail.
#[derive(Clone, Default)]
pub struct Store {
    pub items: Arc<Mutex<Items>>,
    pub fail_begin: Arc<AtomicBool>,
    pub fail_commit: Arc<AtomicBool>,
    /// What the hook was asked to do, in order: "begin by <user>", "commit", "rollback".
    pub log: Arc<Mutex<Vec<String>>>,
    pub hold: Hold,
}

/// Switches that make the hook's calls wait.
#[derive(Clone, Default)]
pub struct Hold {
    /// `begin` never returns.
    pub begin: Arc<AtomicBool>,
    /// `commit` makes the data permanent, signals `committed`, waits for `release`, then
    /// signals `returned`.
    pub commit: Arc<AtomicBool>,
    pub committed: Arc<Notify>,
    pub release: Arc<Notify>,
    pub returned: Arc<Notify>,
}

/// The transaction handle: a private copy of the data that becomes the data on commit.
#[derive(Clone)]
pub struct Tx(Arc<Mutex<Items>>);

impl Store {
    pub fn with(items: impl IntoIterator<Item = (u64, Value)>) -> Self {
        let store = Self::default();
        store.items.lock().unwrap().extend(items);
        store
    }

    pub fn ids(&self) -> Vec<u64> {
        self.items.lock().unwrap().keys().copied().collect()
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl TransactionHook for Store {
    type Handle = Tx;
    type Error = String;

    async fn begin(&self, outer: &http::request::Parts) -> Result<Tx, String> {
        let user = outer
            .extensions
            .get::<super::User>()
            .map_or("nobody".to_string(), |u| u.0.clone());
        self.log.lock().unwrap().push(format!("begin by {user}"));
        if self.hold.begin.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.fail_begin.load(Ordering::SeqCst) {
            return Err("the store is read-only".into());
        }
        Ok(Tx(Arc::new(Mutex::new(self.items.lock().unwrap().clone()))))
    }

    async fn commit(&self, tx: Tx) -> Result<(), String> {
        self.log.lock().unwrap().push("commit".into());
        if self.fail_commit.load(Ordering::SeqCst) {
            return Err("the disk is full".into());
        }
        *self.items.lock().unwrap() = tx.0.lock().unwrap().clone();
        if self.hold.commit.load(Ordering::SeqCst) {
            self.hold.committed.notify_one();
            self.hold.release.notified().await;
            self.hold.returned.notify_one();
        }
        Ok(())
    }

    async fn rollback(&self, _tx: Tx) -> Result<(), String> {
        self.log.lock().unwrap().push("rollback".into());
        Ok(())
    }
}

/// Runs `f` on the transaction's copy when the request has one, else on the store.
fn with_items<T>(store: &Store, tx: &Option<Extension<Tx>>, f: impl FnOnce(&mut Items) -> T) -> T {
    match tx {
        Some(Extension(tx)) => f(&mut tx.0.lock().unwrap()),
        None => f(&mut store.items.lock().unwrap()),
    }
}

fn error(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// `/items`: list (filter `?color=`; any other parameter is a `400`), create (needs a string `name`; the
/// name `"boom"` answers 500 in plain text), get, patch, delete; `/items-wrapped` lists
/// as `{"data": [...]}`. `/in-tx` tells whether the request carries a transaction;
/// `/hang` never answers and `/panic` panics.
pub fn router(store: Store, calls: Calls) -> Router {
    let counter = calls.clone();
    Router::new()
        .route("/items", get(list).post(create))
        .route("/items-wrapped", get(list_wrapped))
        .route("/hang", get(std::future::pending::<&'static str>))
        .route(
            "/panic",
            get(|| async {
                panic!("a handler bug");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .route("/items/{id}", get(get_one).patch(patch).delete(delete))
        .route(
            "/in-tx",
            get(|tx: Option<Extension<Tx>>| async move { Json(json!({ "in_tx": tx.is_some() })) }),
        )
        .with_state(store)
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            counter.0.fetch_add(1, Ordering::SeqCst);
            next.run(req)
        }))
}

fn matches(item: &Value, q: &HashMap<String, String>) -> bool {
    q.iter()
        .all(|(k, v)| item.get(k).and_then(Value::as_str) == Some(v.as_str()))
}

async fn list(
    State(store): State<Store>,
    tx: Option<Extension<Tx>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    // A listing a delete by filters reads refuses what it does not know, as it must.
    if let Some(unknown) = q.keys().find(|k| k.as_str() != "color") {
        return error(
            StatusCode::BAD_REQUEST,
            json!({ "message": format!("no such filter: {unknown}") }),
        );
    }
    let items: Vec<Value> = with_items(&store, &tx, |items| {
        items.values().filter(|i| matches(i, &q)).cloned().collect()
    });
    Json(items).into_response()
}

async fn list_wrapped(
    State(store): State<Store>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let items: Vec<Value> = store
        .items
        .lock()
        .unwrap()
        .values()
        .filter(|i| matches(i, &q))
        .cloned()
        .collect();
    Json(json!({ "data": items })).into_response()
}

async fn create(
    State(store): State<Store>,
    tx: Option<Extension<Tx>>,
    Json(mut body): Json<Map<String, Value>>,
) -> Response {
    match body.get("name").and_then(Value::as_str) {
        Some("boom") => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "storage exploded").into_response()
        }
        Some(_) => {}
        None => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "type": "about:blank", "title": "Invalid item", "detail": "name is required" }),
            )
        }
    }
    let item = with_items(&store, &tx, |items| {
        let id = items.keys().next_back().map_or(1, |last| last + 1);
        body.insert("id".into(), json!(id));
        let item = Value::Object(body);
        items.insert(id, item.clone());
        item
    });
    let location = format!("/items/{}", item["id"]);
    (StatusCode::CREATED, [("location", location)], Json(item)).into_response()
}

async fn get_one(
    State(store): State<Store>,
    tx: Option<Extension<Tx>>,
    Path(id): Path<u64>,
) -> Response {
    match with_items(&store, &tx, |items| items.get(&id).cloned()) {
        Some(item) => Json(item).into_response(),
        None => error(StatusCode::NOT_FOUND, json!({ "error": "Item not found" })),
    }
}

async fn patch(
    State(store): State<Store>,
    tx: Option<Extension<Tx>>,
    Path(id): Path<String>,
    Json(body): Json<Map<String, Value>>,
) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            json!({ "error": { "message": format!("bad id {id:?}") } }),
        );
    };
    if body.contains_key("id") {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": "id cannot be written" }),
        );
    }
    let updated = with_items(&store, &tx, |items| {
        let item = items.get_mut(&id)?.as_object_mut()?;
        item.extend(body);
        Some(Value::Object(item.clone()))
    });
    match updated {
        Some(item) => Json(item).into_response(),
        None => error(StatusCode::NOT_FOUND, json!({ "error": "Item not found" })),
    }
}

async fn delete(
    State(store): State<Store>,
    tx: Option<Extension<Tx>>,
    Path(id): Path<u64>,
) -> Response {
    if id == 13 {
        return StatusCode::FORBIDDEN.into_response();
    }
    match with_items(&store, &tx, |items| items.remove(&id)) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(StatusCode::NOT_FOUND, json!({ "error": "Item not found" })),
    }
}

/// Auth outside, then `layer` around the store's router; a server on 127.0.0.1:0.
pub async fn start(layer: BatchLayer, store: Store) -> (Http, Calls) {
    let calls = Calls::default();
    let app = tower::Layer::layer(
        &middleware::from_fn(super::auth),
        layer.layer_router(router(store, calls.clone())),
    );
    (Http::new(serve(app).await), calls)
}

/// Items `1..=n`, named `item i`, colored red (odd) or blue (even).
pub fn seeded(n: u64) -> Store {
    Store::with((1..=n).map(|i| {
        let color = if i % 2 == 1 { "red" } else { "blue" };
        (
            i,
            json!({ "id": i, "name": format!("item {i}"), "color": color }),
        )
    }))
}
