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
//!   batch endpoint's directory. Scheme, host, fragment, non-ASCII and any spelling of a
//!   batch path are refused.
//! - `headers` maps names to a string (or an array of strings).
//! - `body`: a JSON value is sent as `application/json` unless `content-type` says
//!   otherwise; a string with a text content type is sent as that text; with another
//!   content type, a base64 string is decoded and sent as bytes.
//! - `dependsOn` lists ids of earlier requests to wait for; a failed dependency gives `424`.
//!   With [`BatchLayer::concurrency`] independent sub-requests run together.
//! - `{{id#/json/pointer}}` in a URL, header value or JSON body string reads the result of
//!   a request in `dependsOn`; `$id` at the start of a URL is that request's `location`.
//! - A reply `body` is a JSON value for JSON media types, a string for text, base64url
//!   (no padding) for anything else; empty bodies are left out.
//!
//! # Other formats
//!
//! - [`BatchLayer::bulk`]: SugarCRM's `POST /rest/v10/bulk`.
//! - [`BatchLayer::resource`]: resource bulk endpoints, `POST`, `PATCH` and `DELETE
//!   /users/batch`, with per-item results (`success_count`, `created`, `failed`, …).
//!
//! # Atomic batches
//!
//! With a [`TransactionHook`] ([`BatchLayer::transactions`]), `"atomic": true` and OData's
//! `atomicityGroup` run a group's members in order inside one transaction of the
//! application's storage: all of them take effect, or none. Without a hook, atomic batches
//! are refused before anything runs.
//!
//! # Identity
//!
//! Sub-requests carry the outer request's extensions and its `authorization`, `cookie`,
//! `proxy-authorization`, client-address (`forwarded`, `x-forwarded-*`, `x-real-ip`) and
//! `host` headers. Those headers written inside a sub-request are dropped, as are
//! hop-by-hop and framing headers. A batch never acts as anyone but its sender.
//!
//! # Where other layers go
//!
//! Layers *outside* the batch layer see one request per batch (authentication, access
//! logs, CORS); layers *inside* it see every sub-request (rate limits, per-route
//! authorization, metrics).
//!
//! # Runtime
//!
//! Batches use tokio's timer for the per-sub-request timeout: serve them on a tokio
//! runtime.
#![deny(unsafe_code, missing_docs, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
mod axum;
mod batch;
mod body;
mod codec;
mod config;
mod engine;
mod error;
mod future;
mod identity;
mod layer;
mod service;
mod transaction;

#[cfg(feature = "axum")]
pub use crate::axum::{BatchRouter, BatchRouterFuture};
pub use crate::body::{BatchRequestBody, BatchResponseBody};
pub use crate::codec::resource::{Resource, DEFAULT_CHUNK_SIZE, DEFAULT_MAX_ITEMS};
pub use crate::future::ResponseFuture;
pub use crate::layer::{
    BatchLayer, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ITEM_RESPONSE_BYTES, DEFAULT_MAX_REQUESTS,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT,
};
pub use crate::service::Batch;
pub use crate::transaction::TransactionHook;

/// The error type the bounds speak of.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
