//! Batch endpoints for any HTTP service written as a [`tower::Service`].
//!
//! A client sends one `POST /batch` holding many sub-requests; [`BatchLayer`] decodes
//! them, calls the wrapped service once per sub-request with the sender's identity, and
//! answers with every result in one response. Every other request passes straight
//! through, unboxed.
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower::ServiceExt;
//! use tower_http_batch::BatchLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let router = Router::new().route("/hello/{name}", get(|p: axum::extract::Path<String>| async move {
//!     format!("hello {}", p.0)
//! }));
//! // Wrap the whole router: one line.
//! let app = BatchLayer::new("/batch").layer_router(router);
//!
//! let batch = r#"{"requests": [
//!     {"id": "1", "method": "GET", "url": "/hello/alice"},
//!     {"id": "2", "url": "/hello/bob"}
//! ]}"#;
//! let request = http::Request::post("/batch")
//!     .header("content-type", "application/json")
//!     .body(axum::body::Body::from(batch))
//!     .unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
//! let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(reply["responses"][0]["body"], "hello alice");
//! assert_eq!(reply["responses"][1]["status"], 200);
//! # }
//! ```
//!
//! # The wire format
//!
//! The OData 4.01 JSON batch format, which is also Microsoft Graph's `$batch`:
//! `{"requests": [{"id", "method", "url", "headers", "body"}], "stop_on_error": bool}` in,
//! `{"responses": [{"id", "status", "headers", "body"}]}` out, in request order. See the
//! README for every rule; in short:
//!
//! - `id` is optional (the index as a string) and unique; `method` defaults to `GET` and is
//!   one of `GET HEAD POST PUT PATCH DELETE OPTIONS` (any case).
//! - `url` is a path and query (`/users?x=1`), or a relative path resolved against the
//!   batch endpoint's directory, or an absolute URL of this server (its scheme and `Host`).
//!   Another origin, a fragment, non-ASCII and any spelling of a batch path are refused.
//! - `headers` maps names to a string (or an array of strings).
//! - `body`: a JSON value is sent as `application/json` unless `content-type` says
//!   otherwise; a string with a text content type is sent as that text; with another
//!   content type, a base64 string is decoded and sent as bytes.
//! - A reply `body` is a JSON value for JSON media types, a string for text, base64url
//!   (no padding) for anything else; empty bodies are left out.
//!
//! Reply header names are spelled as Graph spells them (`Content-Type`). Every JSON batch
//! path also takes OData 4.0's `multipart/mixed` batch (changesets are atomicity groups);
//! [`BatchLayer::service_root`] gives Graph's `/v1.0/$batch` its URL rule; `depends_on` is
//! read as `dependsOn`, and ids ignore letter case. The README shows the Graph and OData
//! clients the tests run.
//!
//! A malformed batch is refused whole with one `400` `application/problem+json` that lists
//! every problem by index and field; nothing of it runs.
//!
//! # `dependsOn` and references
//!
//! `dependsOn` lists ids of earlier requests to wait for; a failed dependency gives `424`
//! and the request is not sent. `{{id#/json/pointer}}` in a URL, header value or JSON body
//! string reads the result (`{status, headers, body}`) of a request in `dependsOn`;
//! `$id` at the start of a URL is that request's `location`. With
//! [`BatchLayer::concurrency`], independent requests run together.
//!
//! ```
//! use axum::{extract::Path, http::StatusCode, routing::{get, post}, Json, Router};
//! use serde_json::{json, Value};
//! use tower_http_batch::BatchLayer;
//! # use tower::ServiceExt;
//! # async fn send(app: tower_http_batch::BatchRouter, method: &str, path: &str, body: Value) -> (u16, Value) {
//! #     let req = http::Request::builder().method(method).uri(path)
//! #         .header("content-type", "application/json")
//! #         .body(axum::body::Body::from(body.to_string())).unwrap();
//! #     let res = app.oneshot(req).await.unwrap();
//! #     let status = res.status().as_u16();
//! #     let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
//! #     (status, serde_json::from_slice(&bytes).unwrap())
//! # }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let router = Router::new()
//!     .route("/users", post(|Json(user): Json<Value>| async move {
//!         (StatusCode::CREATED, Json(json!({"id": 7, "name": user["name"]})))
//!     }))
//!     .route("/users/{id}/greeting", get(|Path(id): Path<u32>| async move {
//!         format!("hello, user {id}")
//!     }));
//! let app = BatchLayer::new("/batch").concurrency(4).layer_router(router);
//!
//! let (status, reply) = send(app, "POST", "/batch", json!({"requests": [
//!     {"id": "new", "method": "POST", "url": "/users", "body": {"name": "Ada"}},
//!     {"id": "hi", "url": "/users/{{new#/body/id}}/greeting", "dependsOn": ["new"]},
//!     {"id": "other", "url": "/users/8/greeting"},
//! ]})).await;
//! assert_eq!(status, 200);
//! assert_eq!(reply["responses"][0]["status"], 201);
//! assert_eq!(reply["responses"][1]["body"], "hello, user 7");
//! # }
//! ```
//!
//! # Atomic groups
//!
//! With a [`TransactionHook`] ([`BatchLayer::transactions`]), `"atomic": true` and OData's
//! `atomicityGroup` run a group's members in order inside one transaction of the
//! application's storage: all of them take effect, or none. Without a hook, atomic batches
//! are refused before anything runs. [`TransactionHook`]'s docs run one.
//!
//! # Other formats
//!
//! [`BatchLayer::bulk`]: SugarCRM's `POST /rest/v10/bulk`, a bare array of
//! `{contents, headers, status}` in reply.
//!
//! ```
//! use axum::{routing::post, Json, Router};
//! use serde_json::{json, Value};
//! use tower_http_batch::BatchLayer;
//! # use tower::ServiceExt;
//! # async fn send(app: tower_http_batch::BatchRouter, method: &str, path: &str, body: Value) -> (u16, Value) {
//! #     let req = http::Request::builder().method(method).uri(path)
//! #         .header("content-type", "application/json")
//! #         .body(axum::body::Body::from(body.to_string())).unwrap();
//! #     let res = app.oneshot(req).await.unwrap();
//! #     let status = res.status().as_u16();
//! #     let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
//! #     (status, serde_json::from_slice(&bytes).unwrap())
//! # }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let router = Router::new().route("/rest/v10/Accounts", post(|Json(a): Json<Value>| async move {
//!     Json(json!({"id": "a1", "name": a["name"]}))
//! }));
//! // No JSON batch endpoint: only the bulk one.
//! let app = BatchLayer::default().bulk("/rest/v10/bulk", "/rest").layer_router(router);
//!
//! let (status, reply) = send(app, "POST", "/rest/v10/bulk", json!({"requests": [
//!     {"url": "/v10/Accounts", "method": "POST", "data": "{\"name\": \"Acme\"}"},
//! ]})).await;
//! assert_eq!(status, 200);
//! assert_eq!(reply[0]["status"], 200);
//! assert_eq!(reply[0]["contents"]["name"], "Acme");
//! # }
//! ```
//!
//! [`BatchLayer::resource`]: resource bulk endpoints, `POST`, `PATCH` and `DELETE
//! /users/batch`, with per-item results (`success_count`, `created`, `failed`, …), and no
//! handler to write.
//!
//! ```
//! use axum::{http::StatusCode, routing::post, Json, Router};
//! use serde_json::{json, Value};
//! use tower_http_batch::BatchLayer;
//! # use tower::ServiceExt;
//! # async fn send(app: tower_http_batch::BatchRouter, method: &str, path: &str, body: Value) -> (u16, Value) {
//! #     let req = http::Request::builder().method(method).uri(path)
//! #         .header("content-type", "application/json")
//! #         .body(axum::body::Body::from(body.to_string())).unwrap();
//! #     let res = app.oneshot(req).await.unwrap();
//! #     let status = res.status().as_u16();
//! #     let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
//! #     (status, serde_json::from_slice(&bytes).unwrap())
//! # }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let router = Router::new().route("/users", post(|Json(user): Json<Value>| async move {
//!     match user["name"].as_str() {
//!         Some(name) => (StatusCode::CREATED, Json(json!({"id": 1, "name": name}))),
//!         None => (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": "name is required"}))),
//!     }
//! }));
//! let app = BatchLayer::default().resource("/users").layer_router(router);
//!
//! let (status, reply) = send(app, "POST", "/users/batch", json!({"users": [
//!     {"name": "Ada"},
//!     {"nick": "bob"},
//! ]})).await;
//! assert_eq!(status, 207);
//! assert_eq!(reply["success_count"], 1);
//! assert_eq!(reply["created"][0]["name"], "Ada");
//! assert_eq!(reply["failed"][0]["index"], 1);
//! assert_eq!(reply["failed"][0]["error"], "name is required");
//! # }
//! ```
//!
//! # hyper
//!
//! Any tower service works, hyper's own included: it receives [`BatchRequestBody`] around
//! hyper's `Incoming`, the outer body for ordinary requests and a sub-request's bytes
//! inside a batch.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper::body::Incoming;
//! use hyper_util::rt::TokioIo;
//! use hyper_util::service::TowerToHyperService;
//! use std::convert::Infallible;
//! use tower::{service_fn, Layer};
//! use tower_http_batch::{BatchLayer, BatchRequestBody};
//! # use http_body_util::BodyExt;
//!
//! async fn app(req: http::Request<BatchRequestBody<Incoming>>) -> Result<http::Response<Full<Bytes>>, Infallible> {
//!     let reply = format!("you asked for {}", req.uri().path());
//!     Ok(http::Response::new(Full::new(Bytes::from(reply))))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = BatchLayer::new("/batch").layer(service_fn(app));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((stream, _)) = listener.accept().await {
//!         let service = TowerToHyperService::new(service.clone());
//!         let conn = hyper::server::conn::http1::Builder::new()
//!             .serve_connection(TokioIo::new(stream), service);
//!         tokio::spawn(conn);
//!     }
//! });
//! # let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
//! #     .build_http::<Full<Bytes>>();
//! # let batch = r#"{"requests": [{"url": "/a"}, {"url": "/b"}]}"#;
//! # let req = http::Request::post(format!("http://{addr}/batch"))
//! #     .header("content-type", "application/json")
//! #     .body(Full::new(Bytes::from(batch)))?;
//! # let body = client.request(req).await?.into_body().collect().await?.to_bytes();
//! # let reply: serde_json::Value = serde_json::from_slice(&body)?;
//! // POST /batch {"requests": [{"url": "/a"}, {"url": "/b"}]} to `addr`:
//! assert_eq!(reply["responses"][1]["body"], "you asked for /b");
//! # Ok(())
//! # }
//! ```
//!
//! # Identity
//!
//! Sub-requests carry the outer request's extensions and its identity (`authorization`,
//! `cookie`, `proxy-authorization`, `x-remote-user`, …, and any named with
//! [`BatchLayer::identity_header`]), client-address (`forwarded`, `x-forwarded`, `x-forwarded-*`,
//! `x-real-ip`, `cf-connecting-ip`, …) and `host` headers. Those headers written inside a
//! sub-request are dropped, as are hop-by-hop and framing headers, routing overrides
//! (`x-http-method-override`, `x-original-url`, …), whatever a sub-request's `connection:`
//! names, and any named with [`BatchLayer::drop_header`], whatever the wire format. Names
//! compare with `_` as `-`. A batch never acts as anyone but its sender.
//!
//! # Hostile clients
//!
//! One batch is many requests in front of every route, so the layer bounds what one can
//! cost, in the bytes it sends: the body ([`BatchLayer::max_body_bytes`], within
//! [`BatchLayer::body_timeout`]), headers per sub-request, what references parse
//! ([`BatchLayer::max_reference_bytes`]), the reply and the bodies held for it
//! ([`BatchLayer::max_response_bytes`]), the batches in flight
//! ([`BatchLayer::max_concurrent_batches`]; more wait for a place, up to
//! [`BatchLayer::max_waiting_batches`] within [`BatchLayer::admission_timeout`], then
//! `503`), and how slowly a client may read its reply while holding a place
//! ([`BatchLayer::reply_min_rate`]). A batch yields between items that answer without
//! waiting, so a client that left is seen within one item. Delete by filters sends only the
//! filters a [`Resource`] declares, and a key given twice is refused, never read as its last
//! value. URLs are canonicalised once and checked last, after references. Paths a batch
//! must never reach are refused per item with `403`:
//!
//! ```
//! use axum::{routing::{get, delete}, Router};
//! use tower::ServiceExt;
//! use tower_http_batch::BatchLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let router = Router::new()
//!     .route("/users/{id}", get(|| async { "a user" }))
//!     .route("/admin/users/{id}", delete(|| async { "gone" }));
//! let app = BatchLayer::new("/batch").refuse_path("/admin").layer_router(router);
//!
//! let batch = r#"{"requests": [
//!     {"url": "/users/1"},
//!     {"method": "DELETE", "url": "/users/../%41dmin/users/1"}
//! ]}"#;
//! let request = http::Request::post("/batch")
//!     .header("content-type", "application/json")
//!     .body(axum::body::Body::from(batch))
//!     .unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
//! let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(reply["responses"][0]["status"], 200);
//! assert_eq!(reply["responses"][1]["status"], 403);
//! # }
//! ```
//!
//! The server around the layer must bound the rest: how long a request head may take,
//! idle connections, open connections. The README says how, and the demo does it.
//!
//! # Where other layers go
//!
//! Layers *outside* the batch layer see one request per batch (authentication, access
//! logs, CORS, tower-http's `TraceLayer` and request-id layers); layers *inside* it see
//! every sub-request (rate limits, per-route authorization, metrics).
//!
//! # Streamed replies, spans and request ids
//!
//! A reply streams: its head leaves once the batch has validated, and each item follows as
//! soon as it and every item before it have finished. The rest of the batch runs on a
//! tokio task of its own, which starts nothing new while 64 KiB of reply wait unread, and
//! which dropping the body cancels. A JSON batch sent with `Accept: application/x-ndjson`
//! gets one line per item in the order they finish, then a closing line with the counts:
//!
//! ```
//! use axum::{routing::get, Router};
//! use http_body_util::BodyExt;
//! use tower::ServiceExt;
//! use tower_http_batch::BatchLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let router = Router::new().route("/echo-id", get(|h: http::HeaderMap| async move {
//!     h["x-request-id"].to_str().unwrap().to_string()
//! }));
//! let app = BatchLayer::new("/batch").layer_router(router);
//! let batch = r#"{"requests": [{"id": "a", "url": "/echo-id"}, {"id": "b", "url": "/nowhere"}]}"#;
//! let request = http::Request::post("/batch")
//!     .header("content-type", "application/json")
//!     .header("accept", "application/x-ndjson")
//!     .header("x-request-id", "req-7") // e.g. set by tower-http's SetRequestIdLayer outside
//!     .body(axum::body::Body::from(batch))
//!     .unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.headers()["content-type"], "application/x-ndjson");
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! let lines: Vec<serde_json::Value> = body
//!     .split(|&b| b == b'\n')
//!     .filter(|line| !line.is_empty())
//!     .map(|line| serde_json::from_slice(line).unwrap())
//!     .collect();
//! // Each sub-request got an id derived from the outer one, and gives it back.
//! assert_eq!(lines[0]["body"], "req-7.a");
//! assert_eq!(lines[0]["headers"]["X-Request-ID"], "req-7.a");
//! assert_eq!(lines[1]["status"], 404);
//! assert_eq!(lines[2]["done"], true);
//! assert_eq!(lines[2]["statusClasses"]["4xx"], 1);
//! # }
//! ```
//!
//! Each batch has a `DEBUG` span `batch` with a child `subrequest` per sub-request (method,
//! path, status, latency, and why the layer answered when it did), under the span current
//! when the batch is called. See [`BatchLayer::request_id_header`] and the README.
//!
//! # How it works
//!
//! Each wire format is a codec: it validates the outer body into a plan (nothing runs
//! until the whole batch is valid) and writes the reply. The engine runs the plan against
//! the wrapped service, knowing no format: sub-requests in request order (or concurrently
//! up to [`BatchLayer::concurrency`]), each made ready with `oneshot`, within its timeout,
//! its panic caught; it hands each outcome to the reply, in request order (or as each is
//! final, for NDJSON), as soon as it is final.
//!
//! # Runtime
//!
//! Batches use tokio's timer for their timeouts, and a streamed reply runs the rest of its
//! batch on a task (`tokio::spawn`): serve them on a tokio runtime.
#![deny(unsafe_code, missing_docs, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod admission;
#[cfg(feature = "axum")]
mod axum;
mod batch;
mod body;
#[cfg(feature = "client")]
pub mod client;
mod codec;
mod config;
mod engine;
mod error;
mod future;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod idempotency;
mod jobs;
mod layer;
mod openapi;
mod reply;
mod service;
pub mod store;
mod subrequest;
mod trace;
mod transaction;

#[cfg(feature = "axum")]
pub use crate::axum::{BatchRouter, BatchRouterFuture};
pub use crate::body::{BatchRequestBody, BatchResponseBody};
pub use crate::codec::resource::{Resource, DEFAULT_CHUNK_SIZE, DEFAULT_MAX_ITEMS};
pub use crate::future::ResponseFuture;
pub use crate::jobs::{DEFAULT_MAX_JOBS, DEFAULT_MAX_JOBS_PER_CALLER};
pub use crate::layer::{
    BatchLayer, DEFAULT_ADMISSION_TIMEOUT, DEFAULT_BODY_TIMEOUT, DEFAULT_IDEMPOTENCY_RETENTION,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENT_BATCHES, DEFAULT_MAX_ITEM_HEADERS,
    DEFAULT_MAX_ITEM_HEADER_BYTES, DEFAULT_MAX_ITEM_RESPONSE_BYTES, DEFAULT_MAX_REFERENCE_BYTES,
    DEFAULT_MAX_REQUESTS, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MAX_WAITING_BATCHES,
    DEFAULT_REPLY_GRACE, DEFAULT_REPLY_MIN_RATE, DEFAULT_TIMEOUT,
};
pub use crate::service::Batch;
pub use crate::transaction::TransactionHook;

/// The error type the bounds speak of, and what an [`store::IdempotencyStore`] fails with
/// (tower's `BoxError`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
