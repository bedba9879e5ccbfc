//! The tower contract: readiness, cloning, body types, and where the layer goes.

mod common;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use serde_json::{json, Value};
use std::convert::Infallible;
use tower::{Layer, Service, ServiceExt};
use tower_http_batch::{BatchLayer, BatchRequestBody};

fn batch_request<B: From<String>>(batch: Value) -> Request<B> {
    Request::post("/batch")
        .header("content-type", "application/json")
        .body(B::from(batch.to_string()))
        .unwrap()
}

async fn reply_json<B>(res: Response<B>) -> Value
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

type MockReq = Request<BatchRequestBody<Full<Bytes>>>;
type MockRes = Response<Full<Bytes>>;

/// tower-test's mock panics when called before `poll_ready` said ready; a panic would
/// show as a 500 item. Each sub-request waits for the mock to allow it.
#[tokio::test]
async fn every_sub_request_is_made_ready_before_it_is_called() {
    let (mock, mut handle) = tower_test::mock::pair::<MockReq, MockRes>();
    let mut svc = BatchLayer::new("/batch").layer(mock);

    handle.allow(0);
    assert!(
        svc.ready().now_or_never().is_none(),
        "poll_ready is the inner service's"
    );
    handle.allow(1);
    svc.ready().await.unwrap();
    let batch = json!({"requests": [{"url": "/a"}, {"url": "/b"}, {"url": "/c"}]});
    // The reply streams: the batch runs as its body is read, so the task reads it.
    let call = svc.call(batch_request(batch));
    let pending = tokio::spawn(async move { reply_json(call.await.unwrap()).await });

    for path in ["/a", "/b", "/c"] {
        handle.allow(1);
        // A call made before readiness panics inside the mock and poisons it: bound the
        // wait so that regression fails instead of hanging.
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), handle.next_request());
        let (req, send) = next
            .await
            .expect("the batch stalled")
            .expect("a sub-request");
        assert_eq!(req.uri().path(), path);
        send.send_response(Response::new(Full::from(format!("answer {path}"))));
    }
    let reply = pending.await.unwrap();
    let bodies: Vec<_> = reply["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["status"].clone(), r["body"].clone()))
        .collect();
    assert_eq!(
        bodies,
        [
            (json!(200), json!("answer /a")),
            (json!(200), json!("answer /b")),
            (json!(200), json!("answer /c"))
        ]
    );
}

#[tokio::test]
async fn pass_through_calls_the_ready_inner_service_once() {
    let (mock, mut handle) = tower_test::mock::pair::<MockReq, MockRes>();
    let mut svc = BatchLayer::new("/batch").layer(mock);
    handle.allow(1);
    let call = svc
        .ready()
        .await
        .unwrap()
        .call(Request::get("/users/1").body(Full::from("x")).unwrap());
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.uri(), "/users/1");
    assert_eq!(req.into_body().collect().await.unwrap().to_bytes(), "x");
    send.send_response(
        Response::builder()
            .status(201)
            .body(Full::from("made"))
            .unwrap(),
    );
    let res = call.await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "made");
}

#[tokio::test]
async fn inner_errors_on_pass_through_stay_errors() {
    let (mock, mut handle) = tower_test::mock::pair::<MockReq, MockRes>();
    let mut svc = BatchLayer::new("/batch").layer(mock);
    handle.allow(1);
    let call = svc
        .ready()
        .await
        .unwrap()
        .call(Request::get("/x").body(Full::from("")).unwrap());
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error(std::io::Error::other("boom"));
    assert_eq!(call.await.unwrap_err().to_string(), "boom");
}

/// A service that cannot be cloned, wrapped in `Buffer` as the docs say.
struct NotClone;

impl Service<Request<BatchRequestBody<Full<Bytes>>>> for NotClone {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BatchRequestBody<Full<Bytes>>>) -> Self::Future {
        std::future::ready(Ok(Response::new(Full::from(format!(
            "not clone saw {}",
            req.uri()
        )))))
    }
}

#[tokio::test]
async fn a_service_that_is_not_clone_works_in_buffer() {
    let buffered = tower::buffer::Buffer::new(NotClone, 4);
    let svc = BatchLayer::new("/batch").layer(buffered);
    let batch = json!({"requests": [{"url": "/a"}, {"url": "/b"}]});
    let reply = reply_json(svc.clone().oneshot(batch_request(batch)).await.unwrap()).await;
    assert_eq!(reply["responses"][1]["body"], "not clone saw /b");
    let res = svc
        .oneshot(Request::get("/c").body(Full::from("")).unwrap())
        .await
        .unwrap();
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "not clone saw /c"
    );
}

/// `Router::layer` wraps each route (and the fallback) *after* routing. A batch then
/// arrives through the fallback, and its sub-requests reach only the service the layer
/// wraps there, the fallback: every one is a 404. Wrap the whole router instead.
#[tokio::test]
async fn router_layer_is_the_wrong_place() {
    use axum::routing::get;
    let routes = || axum::Router::new().route("/hello", get(|| async { "hello" }));
    let batch = json!({"requests": [{"url": "/hello"}]});

    // Wrong: through Router::layer.
    let wrong = routes().layer(BatchLayer::new("/batch"));
    let reply = reply_json(
        wrong
            .oneshot(batch_request::<axum::body::Body>(batch.clone()))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        reply["responses"][0]["status"], 404,
        "the sub-request never reached /hello"
    );

    // Right: around the whole router.
    let right = BatchLayer::new("/batch").layer_router(routes());
    let reply = reply_json(
        right
            .oneshot(batch_request::<axum::body::Body>(batch))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply["responses"][0]["status"], 200);
    assert_eq!(reply["responses"][0]["body"], "hello");
}

type HyperBody = BoxBody<Bytes, std::io::Error>;

fn full(s: &'static str) -> HyperBody {
    Full::new(Bytes::from_static(s.as_bytes()))
        .map_err(|e| match e {})
        .boxed()
}

/// A plain hyper service on `Incoming`, with a service error and a failing body.
async fn hyper_app(
    req: Request<BatchRequestBody<hyper::body::Incoming>>,
) -> Result<Response<HyperBody>, std::io::Error> {
    match req.uri().path() {
        "/fail" => Err(std::io::Error::other("upstream exploded")),
        "/bad-body" => {
            let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = vec![
                Ok(http_body::Frame::data(Bytes::from_static(b"partial"))),
                Err(std::io::Error::other("body broke")),
            ];
            Ok(Response::new(
                StreamBody::new(futures_util::stream::iter(frames)).boxed(),
            ))
        }
        "/upgrade" => {
            let has = req
                .extensions()
                .get::<hyper::upgrade::OnUpgrade>()
                .is_some();
            Ok(Response::new(full(if has {
                "upgradable"
            } else {
                "not upgradable"
            })))
        }
        "/echo" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            Ok(Response::new(
                Full::new(body).map_err(|e| match e {}).boxed(),
            ))
        }
        _ => Ok(Response::new(full("ok"))),
    }
}

async fn serve_hyper() -> common::Http {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = BatchLayer::new("/batch").layer(tower::service_fn(hyper_app));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    common::Http::new(addr)
}

#[tokio::test]
async fn hyper_service_errors_become_502_items() {
    let http = serve_hyper().await;
    let items = http
        .batch(&json!({"requests": [{"url": "/ok"}, {"url": "/fail"}, {"url": "/bad-body"}, {"url": "/ok"}]}), &[])
        .await
        .items();
    let statuses: Vec<_> = items
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 502, 502, 200]);
    assert!(items[1]["body"]["detail"]
        .as_str()
        .unwrap()
        .contains("upstream exploded"));
    assert!(items[2]["body"]["detail"]
        .as_str()
        .unwrap()
        .contains("body broke"));
}

#[tokio::test]
async fn hyper_incoming_passes_through_and_upgrades_stay_outer() {
    let http = serve_hyper().await;
    // hyper gives a request that asks to upgrade a handle on its connection.
    let upgrade = [("connection", "upgrade"), ("upgrade", "websocket")];
    let direct = http.send("GET", "/upgrade", &upgrade, "").await;
    assert_eq!(direct.body, "upgradable");
    let items = http
        .batch(&json!({"requests": [{"url": "/upgrade"}]}), &upgrade)
        .await
        .items();
    assert_eq!(
        items[0]["body"], "not upgradable",
        "a sub-request never gets the outer connection's upgrade"
    );
    let echoed = http.send("POST", "/echo", &[], "streamed through").await;
    assert_eq!(echoed.body, "streamed through");
}

/// Both body types are `Send` and `Sync` when the wrapped body is (`BoxBody`,
/// `reqwest::Body::wrap` and others ask for both); a streamed reply keeps them so.
#[test]
fn the_body_types_are_send_and_sync_when_the_wrapped_body_is() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<tower_http_batch::BatchRequestBody<Full<Bytes>>>();
    send_sync::<tower_http_batch::BatchResponseBody<Full<Bytes>>>();
}

/// Through `layer_router`, a sub-request without a body reaches an axum handler with an
/// empty one (exactly 0 bytes, at its end), and one with a body with its bytes.
#[tokio::test]
async fn axum_handlers_see_each_sub_request_body_as_sent() {
    use axum::routing::any;
    let echo = |body: axum::body::Body| async move {
        let exact = http_body::Body::size_hint(&body).exact();
        let end = http_body::Body::is_end_stream(&body);
        let bytes = body.collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        axum::Json(json!({"exact": exact, "end": end, "body": text}))
    };
    let router = axum::Router::new().route("/echo", any(echo));
    let app = BatchLayer::new("/batch").layer_router(router);
    let batch = json!({"requests": [
        {"id": "1", "url": "/echo"},
        {"id": "2", "method": "POST", "url": "/echo", "body": "abc",
         "headers": {"content-type": "text/plain"}},
    ]});
    let res = app.oneshot(batch_request(batch)).await.unwrap();
    let reply = reply_json(res).await;
    let bodies = [
        &reply["responses"][0]["body"],
        &reply["responses"][1]["body"],
    ];
    assert_eq!(*bodies[0], json!({"exact": 0, "end": true, "body": ""}));
    assert_eq!(*bodies[1], json!({"exact": 3, "end": false, "body": "abc"}));
}
