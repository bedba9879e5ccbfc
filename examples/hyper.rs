//! A plain hyper 1.x server whose service gains `POST /batch` in one line.
//!
//! ```text
//! cargo run --example hyper                 # 127.0.0.1:3001
//! cargo run --example hyper -- 127.0.0.1:8081
//! curl -s localhost:3001/batch -H 'content-type: application/json' -d '{"requests":[{"url":"/hello/ada"},{"method":"POST","url":"/echo","body":{"x":1}}]}'
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use tower::{service_fn, Layer};
use tower_http_batch::{BatchLayer, BatchRequestBody};

/// The application: `GET /hello/{name}` and `POST /echo`. It receives
/// `BatchRequestBody<Incoming>`: hyper's own body for ordinary requests, a sub-request's
/// bytes inside a batch.
async fn app(
    req: Request<BatchRequestBody<Incoming>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let reply = |status: StatusCode, content_type: &'static str, body: Bytes| {
        let mut res = Response::new(Full::new(body));
        *res.status_mut() = status;
        res.headers_mut()
            .insert("content-type", content_type.parse().unwrap());
        Ok(res)
    };
    match (parts.method.as_str(), parts.uri.path()) {
        ("GET", path) if path.starts_with("/hello/") => reply(
            StatusCode::OK,
            "text/plain",
            format!("hello {}", &path[7..]).into(),
        ),
        ("POST", "/echo") => match body.collect().await {
            Ok(body) => {
                let ct = parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream");
                let ct = if ct.starts_with("application/json") {
                    "application/json"
                } else {
                    "text/plain"
                };
                reply(StatusCode::OK, ct, body.to_bytes())
            }
            Err(_) => reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                "unreadable body".into(),
            ),
        },
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found".into()),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "hyper example listening on http://{}",
        listener.local_addr()?
    );

    // The one line: the service gains `/batch`.
    let service = BatchLayer::new("/batch").layer(service_fn(app));

    loop {
        let (stream, _) = listener.accept().await?;
        // Streamed replies go out in pieces: TCP_NODELAY, so none waits for a delayed ACK.
        stream.set_nodelay(true)?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}
