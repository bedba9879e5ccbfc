//! The demo application: a small users API on SQLite, with an auth layer outside the batch
//! layer. `main.rs` serves it; the integration tests serve the same app.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tower::{Layer, Service, ServiceBuilder};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_http_batch::store::{IdempotencyStore, MemoryStore};
use tower_http_batch::{BatchLayer, Resource, TransactionHook, DEFAULT_IDEMPOTENCY_RETENTION};

/// The fixed demo tokens: `Authorization: Bearer <token>` acts as that user.
pub const TOKENS: [(&str, &str); 2] = [("alice-token", "alice"), ("bob-token", "bob")];

/// Who sent the request; put in the extensions by the auth layer.
#[derive(Clone, Debug)]
pub struct CurrentUser(pub String);

/// The database, shared by the handlers: one SQLite connection, taken in turn.
#[derive(Clone)]
pub struct Db(Arc<Mutex<Connection>>);

/// An open transaction of an atomic batch: the connection, held from `BEGIN` to `COMMIT`
/// or `ROLLBACK`, so no other request runs inside it. The batch layer puts a clone into
/// every sub-request of the atomic group; [`Access`] finds it there.
#[derive(Clone)]
pub struct Tx(Arc<Mutex<Option<Held>>>);

/// The connection while a transaction is open. Dropped without `COMMIT` (the batch was
/// dropped), it rolls back, so the connection never goes back with a transaction open.
pub struct Held(OwnedMutexGuard<Connection>);

impl Drop for Held {
    fn drop(&mut self) {
        if !self.0.is_autocommit() {
            let _ = self.0.execute_batch("ROLLBACK");
        }
    }
}

/// The transaction hook: atomic batches run inside one SQLite transaction.
impl TransactionHook for Db {
    type Handle = Tx;
    type Error = rusqlite::Error;

    async fn begin(&self, outer: &Parts) -> Result<Tx, rusqlite::Error> {
        let conn = self.0.clone().lock_owned().await;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let user = outer.extensions.get::<CurrentUser>().map(|u| u.0.as_str());
        tracing::info!(user, "atomic batch: BEGIN");
        Ok(Tx(Arc::new(Mutex::new(Some(Held(conn))))))
    }

    async fn commit(&self, tx: Tx) -> Result<(), rusqlite::Error> {
        // Taken out, so a handler still holding a clone finds the transaction over.
        if let Some(held) = tx.0.lock().await.take() {
            held.0.execute_batch("COMMIT")?;
            tracing::info!("atomic batch: COMMIT");
        }
        Ok(())
    }

    async fn rollback(&self, tx: Tx) -> Result<(), rusqlite::Error> {
        if let Some(held) = tx.0.lock().await.take() {
            held.0.execute_batch("ROLLBACK")?;
            tracing::info!("atomic batch: ROLLBACK");
        }
        Ok(())
    }
}

/// How a handler reaches the database: inside the atomic batch's transaction when the
/// request is one of its sub-requests, else on the shared connection.
pub struct Access {
    db: Db,
    tx: Option<Tx>,
}

impl FromRequestParts<Db> for Access {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, db: &Db) -> Result<Self, Infallible> {
        Ok(Self {
            db: db.clone(),
            tx: parts.extensions.get::<Tx>().cloned(),
        })
    }
}

/// A locked connection (the shared one, or the transaction's).
pub enum Conn {
    Shared(OwnedMutexGuard<Connection>),
    InTransaction(OwnedMutexGuard<Option<Held>>),
}

impl std::ops::Deref for Conn {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            Conn::Shared(conn) => conn,
            // `Access::conn` only makes this variant around an open transaction.
            Conn::InTransaction(held) => &held.as_ref().expect("an open transaction").0,
        }
    }
}

impl Access {
    /// Waits for the connection; `409` when the transaction this request belonged to is
    /// already over.
    async fn conn(&self) -> Result<Conn, Response> {
        match &self.tx {
            None => Ok(Conn::Shared(self.db.0.clone().lock_owned().await)),
            Some(tx) => {
                let held = tx.0.clone().lock_owned().await;
                if held.is_none() {
                    return Err(error(StatusCode::CONFLICT, "the transaction is over"));
                }
                Ok(Conn::InTransaction(held))
            }
        }
    }
}

impl Db {
    /// Opens (or creates) the database at `path`, or in memory, and seeds it when empty:
    /// 100 users with ids 1–100, of which exactly 12 (ids 8, 16, …, 96) are `inactive` with a
    /// `last_login` in 2024; the next created id is 101.
    pub fn open(path: Option<&str>) -> rusqlite::Result<Self> {
        let conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        // Demos may share a file (two instances behind one Redis): a writer waits its turn.
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL,
                email TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
                last_login TEXT,
                created_by TEXT NOT NULL,
                version INTEGER NOT NULL DEFAULT 1
            );
            CREATE TABLE IF NOT EXISTS accounts (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                date_entered TEXT NOT NULL,
                date_modified TEXT NOT NULL
            );",
        )?;
        let count: i64 = conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
        if count == 0 {
            let tx = conn.unchecked_transaction()?;
            for i in 1..=100i64 {
                let inactive = i % 8 == 0;
                let status = if inactive { "inactive" } else { "active" };
                let last_login = if inactive {
                    format!("2024-{:02}-{:02}", 1 + i % 12, 1 + i % 28)
                } else {
                    format!("2025-{:02}-{:02}", 1 + i % 12, 1 + i % 28)
                };
                tx.execute(
                    "INSERT OR IGNORE INTO users (id, name, email, status, last_login, created_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'seed')",
                    params![
                        i,
                        format!("User {i}"),
                        format!("user{i}@example.com"),
                        status,
                        last_login
                    ],
                )?;
            }
            tx.commit()?;
        }
        Ok(Self(Arc::new(Mutex::new(conn))))
    }
}

/// The whole demo service: auth outside, then the batch layer, then the router.
///
/// Layers outside the batch layer (here: auth) see one request per batch; the sub-requests
/// inherit what they put into the extensions.
#[allow(dead_code)] // The tests use it; `main` gives its own store.
pub fn app(
    db: Db,
) -> impl Service<Request, Response = Response, Error = Infallible, Future = impl Send>
       + Clone
       + Send
       + 'static {
    let keys = Keys {
        store: Arc::new(MemoryStore::default()),
        retention: DEFAULT_IDEMPOTENCY_RETENTION,
    };
    app_with_keys(db, keys)
}

/// Where batches sent with an `Idempotency-Key` are recorded, and for how long.
pub struct Keys {
    pub store: Arc<dyn IdempotencyStore>,
    pub retention: Duration,
}

/// [`app`], its keyed batches recorded in `keys.store`.
pub fn app_with_keys(
    db: Db,
    keys: Keys,
) -> impl Service<Request, Response = Response, Error = Infallible, Future = impl Send>
       + Clone
       + Send
       + 'static {
    let routes = Router::new()
        .route("/whoami", get(whoami))
        .route("/admin/whoami", get(whoami))
        .route("/users", get(list_users).post(create_user))
        .route(
            "/users/{id}",
            get(get_user)
                .put(put_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route(
            "/rest/v10/Accounts",
            get(list_accounts).post(create_account),
        )
        .with_state(db.clone());
    // The same routes under `/v1.0`, as Microsoft Graph serves them: a Graph SDK pointed
    // at the demo with version `v1.0` finds `/v1.0/users` and `/v1.0/$batch`.
    // And under `/v2`, where an OData V2 client (pyodata, SAP UI5) sends its batches to
    // `/v2/$batch` (answered `202 Accepted`, as V2 services answer).
    let api = routes
        .clone()
        .nest("/v1.0", routes.clone())
        .nest("/v2", routes)
        // A route's request body that stalls is cut off (`408`); the batch layer bounds
        // its own batch bodies (`body_timeout`).
        .layer(RequestBodyTimeoutLayer::new(Duration::from_secs(30)));
    // JSON (Graph, OData 4.01) and multipart (OData 4.0) batches at `/batch` and `/$batch`,
    // and Graph's `/v1.0/$batch`, where `/users/1` means `/v1.0/users/1`.
    let layer = BatchLayer::new("/batch")
        .path("/$batch")
        .path("/v1.0/$batch")
        .service_root("/v1.0")
        .odata_v2("/v2/$batch")
        .bulk("/rest/v10/bulk", "/rest")
        // Delete by filters sends only these to the listing (any other is a `400`).
        // Up to 10,000 users in one bulk request: run it as a job (`Prefer:
        // respond-async`) and follow it on its monitor (see the README).
        .resource(
            Resource::new("/users")
                .filters(["status", "last_login_before"])
                .max_items(10_000),
        )
        .transactions(db.clone())
        .max_requests(100)
        .timeout(Duration::from_secs(10))
        // A reader slower than 128 KiB/s (after 5 s of waiting on it) has its reply cut and
        // frees its batch's place; a burst waits up to 10 s for a place (1,024 at most)
        // before `503`. These are the layer's defaults, spelled out.
        .reply_min_rate(128 * 1024, Duration::from_secs(5))
        .max_waiting_batches(1024)
        .admission_timeout(Duration::from_secs(10))
        .inherit_header(header::ACCEPT_LANGUAGE)
        // Reachable by a plain request, never from a batch (`403` per item).
        .refuse_path("/admin")
        .refuse_path("/v1.0/admin")
        .refuse_path("/v2/admin")
        // A batch sent with an `Idempotency-Key` runs once: a retry replays its reply. Batch
        // jobs (`Prefer: respond-async`) are kept there too.
        .idempotency(keys.store)
        .idempotency_retention(keys.retention)
        // Keys and jobs are the signed-in user's (as auth found them), whatever other
        // headers (cookies, a refreshed token) come with a retry or a poll.
        .idempotency_scope(|parts| parts.extensions.get::<CurrentUser>().map(|u| u.0.clone()));
    // The batch endpoints described as configured (OpenAPI 3.1), at `/openapi.json`.
    let described = Json(layer.openapi());
    let api = api.route("/openapi.json", get(move || async move { described }));
    let batch = layer.layer_router(api);
    // Outside the batch layer: one request id and one `TraceLayer` span per outer request
    // (a batch's span and its sub-requests' spans nest under it), the id sent back, and
    // authentication. Sub-requests get ids derived from the outer one (`<id>.<item id>`).
    Router::new()
        .fallback_service(middleware::from_fn(auth).layer(batch))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http())
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
}

/// `Authorization: Bearer <token>`: a demo token acts as its user, no header is anonymous,
/// anything else is refused with `401`.
async fn auth(mut req: Request, next: Next) -> Response {
    let user = match req.headers().get(header::AUTHORIZATION) {
        None => "anonymous",
        Some(value) => {
            let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer "));
            match TOKENS.iter().find(|(t, _)| Some(*t) == token) {
                Some((_, user)) => user,
                None => return error(StatusCode::UNAUTHORIZED, "invalid token"),
            }
        }
    };
    req.extensions_mut().insert(CurrentUser(user.to_string()));
    next.run(req).await
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "User not found")
}

fn internal(e: rusqlite::Error) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("database error: {e}"),
    )
}

async fn whoami(user: Option<Extension<CurrentUser>>) -> Json<Value> {
    let name = user.map_or_else(|| "anonymous".to_string(), |u| u.0 .0);
    Json(json!({ "user": name }))
}

const COLUMNS: &str = "id, name, email, status, last_login, created_by, version";

fn row_to_json(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Value, i64)> {
    Ok((
        json!({
            "id": row.get::<_, i64>(0)?,
            "name": row.get::<_, String>(1)?,
            "email": row.get::<_, String>(2)?,
            "status": row.get::<_, String>(3)?,
            "last_login": row.get::<_, Option<String>>(4)?,
            "created_by": row.get::<_, String>(5)?,
        }),
        row.get::<_, i64>(6)?,
    ))
}

fn load(conn: &Connection, id: i64) -> rusqlite::Result<Option<(Value, i64)>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
        [id],
        row_to_json,
    )
    .optional()
}

/// The user with its `ETag`, which changes on every update.
fn with_etag(status: StatusCode, (user, version): (Value, i64)) -> Response {
    let mut res = (status, Json(user)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"v{version}\"")) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

/// The listing's filters. Any other query parameter is refused (`400`), never ignored:
/// the batch layer's delete by filters deletes every user this lists, so a listing that
/// ignored a misspelled filter (`stauts`) would have it delete everyone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    last_login_before: Option<String>,
}

async fn list_users(db: Access, query: Result<Query<ListQuery>, QueryRejection>) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    if let Some(d) = &q.last_login_before {
        if !is_date(d) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "last_login_before must be a date YYYY-MM-DD",
            );
        }
    }
    let conn = match db.conn().await {
        Ok(conn) => conn,
        Err(response) => return response,
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM users
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR (last_login IS NOT NULL AND last_login < ?2))
         ORDER BY id"
    );
    let users: rusqlite::Result<Vec<Value>> = conn.prepare(&sql).and_then(|mut stmt| {
        stmt.query_map(params![q.status, q.last_login_before], |r| {
            row_to_json(r).map(|(u, _)| u)
        })?
        .collect()
    });
    match users {
        Ok(users) => Json(Value::Array(users)).into_response(),
        Err(e) => internal(e),
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && (1..=12).contains(&s[5..7].parse::<u8>().unwrap_or(0))
        && (1..=31).contains(&s[8..10].parse::<u8>().unwrap_or(0))
}

/// The user fields a client may write, checked as one.
#[derive(Default)]
struct Fields {
    name: Option<String>,
    email: Option<String>,
    status: Option<String>,
    last_login: Option<Option<String>>,
}

fn fields(body: &Value, all_required: bool) -> Result<Fields, String> {
    let Some(obj) = body.as_object() else {
        return Err("the body must be a JSON object".into());
    };
    let mut f = Fields::default();
    for (key, value) in obj {
        // Annotations (`@odata.type`, `name@odata.type`, …) are about the payload, not
        // fields of it: an OData service ignores them, and Graph's typed models write them.
        if key.contains('@') {
            continue;
        }
        match key.as_str() {
            "name" => match value.as_str().map(str::trim) {
                Some(s) if !s.is_empty() => f.name = Some(s.to_string()),
                _ => return Err("name must be a non-empty string".into()),
            },
            "email" => match value.as_str() {
                Some(s) if s.contains('@') && !s.starts_with('@') && !s.ends_with('@') => {
                    f.email = Some(s.to_string())
                }
                _ => return Err("email must be an email address".into()),
            },
            "status" => match value.as_str() {
                Some(s @ ("active" | "inactive")) => f.status = Some(s.to_string()),
                _ => return Err("status must be \"active\" or \"inactive\"".into()),
            },
            "last_login" => match value {
                Value::Null => f.last_login = Some(None),
                Value::String(s) if is_date(s) => f.last_login = Some(Some(s.clone())),
                _ => return Err("last_login must be a date YYYY-MM-DD or null".into()),
            },
            "id" | "created_by" => return Err(format!("{key} cannot be written")),
            other => return Err(format!("unknown field {other:?}")),
        }
    }
    if all_required && f.name.is_none() {
        return Err("name is required".into());
    }
    if all_required && f.email.is_none() {
        return Err("email is required".into());
    }
    Ok(f)
}

/// Reads the JSON body and checks its fields; the message for a `422` when it fails.
fn parse_fields(body: &[u8], all_required: bool) -> Result<Fields, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    fields(&value, all_required)
}

async fn create_user(
    db: Access,
    user: Option<Extension<CurrentUser>>,
    body: axum::body::Bytes,
) -> Response {
    let f = match parse_fields(&body, true) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &e),
    };
    let created_by = user.map_or_else(|| "anonymous".to_string(), |u| u.0 .0);
    let conn = match db.conn().await {
        Ok(conn) => conn,
        Err(response) => return response,
    };
    let result = conn
        .execute(
            "INSERT INTO users (name, email, status, last_login, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                f.name,
                f.email,
                f.status.as_deref().unwrap_or("active"),
                f.last_login.flatten(),
                created_by
            ],
        )
        .and_then(|_| load(&conn, conn.last_insert_rowid()));
    match result {
        Ok(Some(user)) => {
            let id = user.0["id"].clone();
            let mut res = with_etag(StatusCode::CREATED, user);
            if let Ok(v) = HeaderValue::from_str(&format!("/users/{id}")) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            res
        }
        Ok(None) => not_found(),
        Err(e) => internal(e),
    }
}

async fn get_user(db: Access, Path(id): Path<i64>) -> Response {
    let conn = match db.conn().await {
        Ok(conn) => conn,
        Err(response) => return response,
    };
    match load(&conn, id) {
        Ok(Some(user)) => with_etag(StatusCode::OK, user),
        Ok(None) => not_found(),
        Err(e) => internal(e),
    }
}

async fn put_user(
    db: Access,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    update(db, id, &headers, &body, true).await
}

async fn patch_user(
    db: Access,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    update(db, id, &headers, &body, false).await
}

/// PUT replaces (name and email required), PATCH merges. `If-Match` with the user's
/// `ETag` makes the update conditional (`412` when it has changed).
async fn update(db: Access, id: i64, headers: &HeaderMap, body: &[u8], replace: bool) -> Response {
    let f = match parse_fields(body, replace) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &e),
    };
    let conn = match db.conn().await {
        Ok(conn) => conn,
        Err(response) => return response,
    };
    let (current, version) = match load(&conn, id) {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return internal(e),
    };
    if let Some(expected) = headers.get(header::IF_MATCH) {
        let etag = format!("\"v{version}\"");
        let matches = expected
            .to_str()
            .map(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
            .unwrap_or(false);
        if !matches {
            return error(
                StatusCode::PRECONDITION_FAILED,
                "the user has changed (ETag mismatch)",
            );
        }
    }
    let keep = |field: &str| current[field].as_str().map(str::to_string);
    let (status, last_login) = if replace {
        (
            f.status.unwrap_or_else(|| "active".into()),
            f.last_login.flatten(),
        )
    } else {
        (
            f.status.or_else(|| keep("status")).unwrap_or_default(),
            f.last_login.unwrap_or_else(|| keep("last_login")),
        )
    };
    let result = conn
        .execute(
            "UPDATE users SET name = ?1, email = ?2, status = ?3, last_login = ?4, version = version + 1 WHERE id = ?5",
            params![f.name.or_else(|| keep("name")), f.email.or_else(|| keep("email")), status, last_login, id],
        )
        .and_then(|_| load(&conn, id));
    match result {
        Ok(Some(user)) => with_etag(StatusCode::OK, user),
        Ok(None) => not_found(),
        Err(e) => internal(e),
    }
}

async fn delete_user(db: Access, Path(id): Path<i64>) -> Response {
    let conn = match db.conn().await {
        Ok(conn) => conn,
        Err(response) => return response,
    };
    match conn.execute("DELETE FROM users WHERE id = ?1", [id]) {
        Ok(0) => not_found(),
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => internal(e),
    }
}

/// A SugarCRM-style record of the Accounts module.
fn account_json(row: &rusqlite::Row<'_>, with_modified: bool) -> rusqlite::Result<Value> {
    let mut record = json!({
        "my_favorite": false,
        "following": true,
        "id": row.get::<_, String>(0)?,
        "name": row.get::<_, String>(1)?,
        "date_entered": row.get::<_, String>(2)?,
        "_module": "Accounts",
    });
    if with_modified {
        record["date_modified"] = Value::String(row.get::<_, String>(3)?);
    }
    Ok(record)
}

/// `POST /rest/v10/Accounts` with `{"name": …}`: the created record, as SugarCRM returns it.
async fn create_account(db: Access, body: axum::body::Bytes) -> Response {
    let name = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.get("name")
            .and_then(Value::as_str)
            .map(str::trim)
            .map(str::to_string)
    });
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "name is required");
    };
    let conn = match db.conn().await {
        Ok(conn) => conn,
        Err(response) => return response,
    };
    // SQLite makes the UUID and the ISO 8601 time, so the demo needs no more crates.
    let result = conn
        .execute(
            "INSERT INTO accounts (id, name, date_entered, date_modified)
             VALUES (lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' ||
                     substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', abs(random()) % 4 + 1, 1) ||
                     substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
                     ?1, strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'), strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'))",
            [&name],
        )
        .and_then(|_| {
            conn.query_row(
                "SELECT id, name, date_entered, date_modified FROM accounts WHERE seq = ?1",
                [conn.last_insert_rowid()],
                |r| account_json(r, false),
            )
        });
    match result {
        Ok(record) => Json(record).into_response(),
        Err(e) => internal(e),
    }
}

/// `GET /rest/v10/Accounts`: `{"next_offset": -1, "records": [...]}`.
async fn list_accounts(db: Access) -> Response {
    let conn = match db.conn().await {
        Ok(conn) => conn,
        Err(response) => return response,
    };
    let records: rusqlite::Result<Vec<Value>> = conn
        .prepare("SELECT id, name, date_entered, date_modified FROM accounts ORDER BY seq")
        .and_then(|mut stmt| stmt.query_map([], |r| account_json(r, true))?.collect());
    match records {
        Ok(records) => Json(json!({ "next_offset": -1, "records": records })).into_response(),
        Err(e) => internal(e),
    }
}
