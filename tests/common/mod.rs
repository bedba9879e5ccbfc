//! Shared by the integration tests: servers on 127.0.0.1:0, an HTTP client, a test app.
#![allow(dead_code)]

pub mod client;
pub mod gate;
pub mod jobs;
pub mod multipart;
pub mod process;
pub mod records;
pub mod store;

use axum::extract::{ConnectInfo, Query, Request};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tower::Service;

/// Serves an axum-style service on 127.0.0.1:0 (with `ConnectInfo`), returns its address.
///
/// Tests that pause tokio's clock (`start_paused`) use these servers too. A paused clock
/// jumps to the next timer whenever every task waits, even while a socket has data coming.
/// That is safe here: neither the server nor the client sets a timer of its own; the
/// layer's timers (per sub-request, per batch, per hook call) exist only while a batch
/// runs, after its body has been read; and while its reply streams, what one task writes
/// on loopback is readable at once, before the runtime next looks for work. So the clock
/// moves only when a sub-request waits for its timer, or by at most 1 ms when a streamed
/// reply gathers items for one write (which only makes it write sooner).
pub async fn serve<S>(svc: S) -> SocketAddr
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let make = axum::ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(svc);
    // As the README says to serve streamed replies: TCP_NODELAY.
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, make).await.unwrap() });
    addr
}

/// A reply as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `responses` array of a batch reply.
    pub fn items(&self) -> Vec<Value> {
        assert_eq!(
            self.status,
            200,
            "batch failed: {}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()["responses"]
            .as_array()
            .expect("responses array")
            .clone()
    }

    /// The status of each item of a batch reply, in order.
    pub fn statuses(&self) -> Vec<u64> {
        let items = self.items();
        items
            .iter()
            .map(|i| i["status"].as_u64().unwrap())
            .collect()
    }

    /// Asserts a problem+json reply with this status and returns it.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.headers["content-type"], "application/problem+json");
        let p = self.json();
        assert_eq!(p["status"], status);
        p
    }
}

/// An HTTP/1.1 keep-alive client for one server.
#[derive(Clone)]
pub struct Http {
    pub addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .client
            .request(req.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let (parts, body) = res.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// `method path` with a JSON body and `content-type: application/json`.
    pub async fn send_json(&self, method: &str, path: &str, body: impl Into<Bytes>) -> Reply {
        self.send(method, path, &[("content-type", "application/json")], body)
            .await
    }

    /// `POST /batch` with a JSON body and `content-type: application/json`.
    pub async fn batch(&self, batch: &Value, headers: &[(&str, &str)]) -> Reply {
        self.batch_raw(&batch.to_string(), headers).await
    }

    pub async fn batch_raw(&self, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send("POST", "/batch", &all, body.to_string()).await
    }
}

/// The user an auth layer outside the batch layer found.
#[derive(Clone, Debug)]
pub struct User(pub String);

/// `Authorization: Bearer <name>-token` is that user; none is anonymous; else 401.
pub async fn auth(mut req: Request, next: Next) -> Response {
    let user = match req.headers().get("authorization") {
        None => "anonymous".to_string(),
        Some(v) => match v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| t.strip_suffix("-token"))
        {
            Some(name) => name.to_string(),
            None => return StatusCode::UNAUTHORIZED.into_response(),
        },
    };
    req.extensions_mut().insert(User(user));
    next.run(req).await
}

/// Counts every request that reaches the test router's handlers.
#[derive(Clone, Default)]
pub struct Calls(pub Arc<AtomicUsize>);

impl Calls {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// The test router: handlers that echo, fail, panic, hang, sleep (`/sleep?s=60`), and
/// report what they saw.
pub fn router(calls: Calls) -> Router {
    let counter = calls.clone();
    Router::new()
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
        .route("/whoami", get(|u: Option<Extension<User>>| async move {
            Json(json!({ "user": u.map(|u| u.0 .0) }))
        }))
        .route("/panic", get(|| async {
            if std::hint::black_box(true) {
                panic!("handler panicked on purpose");
            }
            "unreachable"
        }))
        .route("/hang", get(std::future::pending::<&'static str>))
        .route("/sleep", get(|Query(q): Query<HashMap<String, u64>>| async move {
            tokio::time::sleep(std::time::Duration::from_secs(q["s"])).await;
            "slept"
        }))
        .route("/text", get(|| async { "plain text, ünïcode" }))
        .route("/binary", get(|| async { ([("content-type", "application/octet-stream")], vec![0u8, 159, 146, 150, 255]) }))
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
        .route("/cookies", get(|| async {
            let mut res = "ok".into_response();
            res.headers_mut().append("set-cookie", "a=1; Path=/".parse().unwrap());
            res.headers_mut().append("set-cookie", "b=2; Path=/".parse().unwrap());
            res
        }))
        .route("/big", get(|Query(q): Query<HashMap<String, usize>>| async move { "a".repeat(q["n"]) }))
        .route("/bytes", get(|Query(q): Query<HashMap<String, usize>>| async move {
            // `n` copies of byte `b`, as text.
            ([("content-type", "text/plain")], vec![q["b"] as u8; q["n"]])
        }))
        .route("/headers", get(|Query(q): Query<HashMap<String, usize>>| async move {
            // `n` response headers of `size` bytes each.
            let mut res = "ok".into_response();
            for i in 0..q["n"] {
                let name = http::HeaderName::from_bytes(format!("x-big-{i}").as_bytes()).unwrap();
                res.headers_mut().insert(name, "v".repeat(q["size"]).parse().unwrap());
            }
            res
        }))
        .route("/bigjson", get(|Query(q): Query<HashMap<String, usize>>| async move {
            // A JSON array of about `n` bytes: `[0,0,…,0]`.
            let body = format!("[{}0]", "0,".repeat(q["n"].saturating_sub(3) / 2));
            ([("content-type", "application/json")], body)
        }))
        .route("/etag", put(|headers: HeaderMap| async move {
            match headers.get("if-match") {
                Some(v) if v == "\"v1\"" => (StatusCode::OK, "updated"),
                _ => (StatusCode::PRECONDITION_FAILED, "etag mismatch"),
            }
        }))
        .route("/json", any(|body: Bytes| async move { ([("content-type", "application/json")], body) }))
        .route("/located", any(|Query(q): Query<HashMap<String, String>>| async move {
            (StatusCode::CREATED, [("location", q["to"].clone())], "made")
        }))
        .route("/created", any(|| async {
            (StatusCode::CREATED, [("location", "http://somewhere.example/echo/created/7")], "made")
        }))
        .route("/status/{code}", any(|axum::extract::Path(code): axum::extract::Path<u16>| async move {
            (StatusCode::from_u16(code).unwrap(), Json(json!({ "error": format!("status {code}") })))
        }))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            counter.0.fetch_add(1, Ordering::SeqCst);
            next.run(req)
        }))
}

/// Echoes the request: method, uri, headers (name -> all values), body as text or base64,
/// and which extensions it carries.
async fn echo(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    user: Option<Extension<User>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Json<Value> {
    let mut h: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in &headers {
        h.entry(k.to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    Json(json!({
        "method": method.as_str(),
        "uri": uri.to_string(),
        "headers": h,
        "body": String::from_utf8_lossy(&body),
        "body_bytes": body.to_vec(),
        "user": user.map(|u| u.0 .0),
        "connect_info": connect.is_some(),
    }))
}

/// The usual test server: auth outside, batch layer (as configured), router inside.
pub async fn start(layer: tower_http_batch::BatchLayer) -> (Http, Calls) {
    let calls = Calls::default();
    let app = tower::Layer::layer(
        &middleware::from_fn(auth),
        layer.layer_router(router(calls.clone())),
    );
    (Http::new(serve(app).await), calls)
}

/// Notifies when dropped: a handler future that holds it was cancelled.
pub struct DropSignal(pub Arc<tokio::sync::Notify>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// `f`'s output; a test failure naming `what` if it takes 20 s (a guard against a hang,
/// not a timing: what it waits for happens at once when the code is right).
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what} never happened"))
}

/// `send()`'s reply once it is not the `409` of a keyed batch still running (or whose
/// stopped run's lease has not passed yet): a client's retries, without a clock.
pub async fn once_free<F, Fut>(mut send: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    within("the keyed batch to be free", async {
        loop {
            let reply = send().await;
            if reply.status != 409 {
                return reply;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

/// On paused time: returns once every task waits (the paused clock moves only then, here
/// by 1 s), so what the server could do meanwhile, it has done.
pub async fn settle() {
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}

/// Posts the JSON batch `body` to `/batch` at `addr` on a connection with a small receive
/// buffer (so that what the kernels hold stays far below a large reply), and returns the
/// connection unread: a slow reader's, to read from as slowly as the test likes.
pub async fn post_slowly(addr: SocketAddr, body: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let head = format!(
        "POST /batch HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    stream
}

/// Posts the JSON `body` to `path` at `addr` with an `Idempotency-Key` of `key`, on a
/// connection of its own, and returns the connection unread: a client that may leave.
pub async fn post_keyed(
    addr: SocketAddr,
    path: &str,
    key: &str,
    body: &str,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nidempotency-key: {key}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    stream
}

/// Reads `stream` until a response head has come, no further; what was read.
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        got.extend_from_slice(&buf[..n]);
    }
    got
}
