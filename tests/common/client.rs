//! The client tests' servers: a recorder in front of a server that notes every batch
//! request reaching it (its key, its ids, whether it was replayed, when it came), a server
//! that throttles, and the helpers that build batches.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tower::Layer;
use tower_http_batch::client::{Batch, BatchClient, Item};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A batch request as it reached the server.
#[derive(Debug, Clone)]
pub struct Seen {
    pub key: Option<String>,
    pub ids: Vec<String>,
    pub replayed: bool,
    /// When it arrived.
    pub at: std::time::Instant,
}

#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    pub fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

pub async fn record(State(rec): State<Recorder>, request: Request, next: Next) -> Response {
    if !request.uri().path().ends_with("batch") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let doc: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let ids = doc["requests"].as_array().into_iter().flatten();
    let ids = ids
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let key = parts
        .headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().to_string());
    let at = std::time::Instant::now();
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let replayed = response.headers().contains_key("idempotent-replayed");
    rec.0.lock().unwrap().push(Seen {
        key,
        ids,
        replayed,
        at,
    });
    response
}

/// `app` served on 127.0.0.1:0 behind a recorder.
pub async fn serve_recorded<S>(app: S) -> (SocketAddr, Recorder)
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    let rec = Recorder::default();
    let svc = from_fn_with_state(rec.clone(), record).layer(app);
    (super::serve(svc).await, rec)
}

pub fn http() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn client<S>(inner: S, addr: SocketAddr, path: &str) -> BatchClient<S> {
    BatchClient::new(inner, format!("http://{addr}{path}").parse().unwrap())
}

pub fn read(path: &str) -> Item {
    Item::new(http::Request::get(path).body(Bytes::new()).unwrap())
}

pub fn post(path: &str, body: Value) -> Item {
    let request = http::Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(body.to_string()));
    Item::new(request.unwrap())
}

pub fn alice() -> Batch {
    Batch::new().header(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer alice-token"),
    )
}

pub fn json_of(response: &http::Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).unwrap_or(Value::Null)
}

/// A service whose `/throttle/{name}/{secs}` answers `429` with `Retry-After: secs` the
/// first time, `/gateway/{name}` `504` the first time, and `/ok/{name}` at once; each
/// call counted by path.
pub fn throttling(calls: Arc<Mutex<HashMap<String, usize>>>) -> Router {
    let count = move |path: String| {
        let mut calls = calls.lock().unwrap();
        let n = calls.entry(path).or_default();
        *n += 1;
        *n
    };
    let throttle = {
        let count = count.clone();
        move |Path((name, secs)): Path<(String, u64)>| async move {
            match count(format!("throttle/{name}")) {
                1 => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, secs.to_string())],
                    "later",
                )
                    .into_response(),
                _ => name.into_response(),
            }
        }
    };
    let gateway = {
        let count = count.clone();
        move |Path(name): Path<String>| async move {
            match count(format!("gateway/{name}")) {
                1 => StatusCode::GATEWAY_TIMEOUT.into_response(),
                _ => name.into_response(),
            }
        }
    };
    let ok = move |Path(name): Path<String>| async move {
        count(format!("ok/{name}"));
        name
    };
    // The body back, with its content type, and two cookies (a repeated header).
    let echo = |headers: http::HeaderMap, body: Bytes| async move {
        let ct = headers.get(header::CONTENT_TYPE).cloned();
        let mut response = body.into_response();
        if let Some(ct) = ct {
            response.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        for cookie in ["a=1", "b=2"] {
            response
                .headers_mut()
                .append(header::SET_COOKIE, HeaderValue::from_static(cookie));
        }
        response
    };
    Router::new()
        .route("/echo", any(echo))
        .route("/throttle/{name}/{secs}", get(throttle))
        .route("/gateway/{name}", any(gateway))
        .route("/ok/{name}", any(ok))
}

/// An HTTP client that loses the answers to the requests `lose` picks (counted from 0)
/// after the server ran them, as when a connection is reset before the reply arrives.
#[derive(Clone)]
pub struct LoseAnswers {
    inner: HttpClient,
    lose: Arc<dyn Fn(usize) -> bool + Send + Sync>,
    sent: Arc<Mutex<usize>>,
}

impl LoseAnswers {
    pub fn new(lose: impl Fn(usize) -> bool + Send + Sync + 'static) -> Self {
        Self {
            inner: http(),
            lose: Arc::new(lose),
            sent: Arc::default(),
        }
    }
}

impl tower::Service<http::Request<Full<Bytes>>> for LoseAnswers {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = tower_http_batch::BoxError;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Full<Bytes>>) -> Self::Future {
        let n = {
            let mut sent = self.sent.lock().unwrap();
            *sent += 1;
            *sent - 1
        };
        let lose = (self.lose)(n);
        let sent = self.inner.call(request);
        Box::pin(async move {
            let response = sent.await?;
            if lose {
                let _ = response.into_body().collect().await;
                return Err("connection reset by peer".into());
            }
            Ok(response)
        })
    }
}
