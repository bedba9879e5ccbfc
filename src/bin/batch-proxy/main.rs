//! `batch-proxy`: batch endpoints in front of any HTTP service, in any language.
//!
//! ```text
//! cargo run --features proxy --bin batch-proxy -- --upstream http://127.0.0.1:8080 --listen 127.0.0.1:3001
//! ```
//!
//! Every request that is not a batch is reverse-proxied to the upstream unchanged, bodies
//! streamed both ways. Batch sub-requests go to the same upstream through the same pooled
//! client, carrying the outer request's identity headers. Nothing can reach another host:
//! every request the proxy sends goes to the configured upstream's scheme and authority.

use bytes::Bytes;
use clap::Parser;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::Layer;
use tower_http_batch::BatchRequestBody;

mod args;
use args::{layer, Args};

type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// Whether the client sends something (or closes) within `limit`. (`peek`, not
/// `readable`, whose readiness may be a false positive.)
async fn first_byte(stream: &tokio::net::TcpStream, limit: Duration) -> bool {
    let mut byte = [0; 1];
    tokio::time::timeout(limit, stream.peek(&mut byte))
        .await
        .is_ok()
}

/// Sends every request to the upstream: same method, path, query, headers and body.
#[derive(Clone)]
struct Upstream {
    client: Client<HttpConnector, BatchRequestBody<Incoming>>,
    scheme: Scheme,
    authority: Authority,
    /// How long a request waits for the upstream's response head.
    timeout: Option<Duration>,
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

impl tower::Service<Request<BatchRequestBody<Incoming>>> for Upstream {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<BatchRequestBody<Incoming>>) -> Self::Future {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build();
        let client = self.client.clone();
        let authority = self.authority.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let Ok(uri) = uri else {
                return Ok(bad_gateway(
                    "the request's path cannot be sent upstream".into(),
                ));
            };
            *req.uri_mut() = uri;
            let headers = req.headers_mut();
            for name in HOP_BY_HOP {
                headers.remove(name);
            }
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                headers.insert(header::HOST, host);
            }
            let sent = client.request(req);
            let answered = match timeout {
                Some(t) => match tokio::time::timeout(t, sent).await {
                    Ok(answered) => answered,
                    Err(_) => return Ok(upstream_timed_out(&authority, t)),
                },
                None => sent.await,
            };
            match answered {
                Ok(res) => {
                    let (mut parts, body) = res.into_parts();
                    for name in HOP_BY_HOP {
                        parts.headers.remove(name);
                    }
                    Ok(Response::from_parts(parts, body.boxed_unsync()))
                }
                Err(e) => {
                    let mut why = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        why.push_str(": ");
                        why.push_str(&s.to_string());
                        source = s.source();
                    }
                    tracing::warn!(error = %why, "upstream request failed");
                    Ok(bad_gateway(format!(
                        "the upstream {authority} did not answer: {why}"
                    )))
                }
            }
        })
    }
}

/// `502` with a problem+json body saying why.
fn bad_gateway(detail: String) -> Response<ProxyBody> {
    problem(
        StatusCode::BAD_GATEWAY,
        "urn:tower-http-batch:upstream-unavailable",
        "Upstream unavailable",
        detail,
    )
}

/// `504`: the upstream did not answer in time.
fn upstream_timed_out(authority: &Authority, limit: Duration) -> Response<ProxyBody> {
    problem(
        StatusCode::GATEWAY_TIMEOUT,
        "urn:tower-http-batch:upstream-timeout",
        "Upstream timed out",
        format!(
            "the upstream {authority} did not answer within {limit:?} (--upstream-timeout-secs)"
        ),
    )
}

/// A problem+json response.
fn problem(status: StatusCode, kind: &str, title: &str, detail: String) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "type": kind,
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut res = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let (Some(scheme), Some(authority)) = (
        args.upstream.scheme().cloned(),
        args.upstream.authority().cloned(),
    ) else {
        return Err(format!(
            "--upstream must be an absolute URL like http://127.0.0.1:8080, not {}",
            args.upstream
        )
        .into());
    };
    if scheme != Scheme::HTTP {
        return Err("--upstream must use http:// (TLS to the upstream is not supported)".into());
    }
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let service = layer(&args)?.layer(Upstream {
        client,
        scheme,
        authority: authority.clone(),
        timeout: (args.upstream_timeout_secs > 0)
            .then(|| Duration::from_secs(args.upstream_timeout_secs)),
    });

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!(
        "batch-proxy listening on http://{} -> upstream http://{authority}",
        listener.local_addr()?
    );

    serve(listener, service, &args).await
}

/// Serves `service` until Ctrl-C or SIGTERM, then finishes the requests in flight. A
/// request head (and an idle keep-alive connection) has a deadline, and the number of open
/// connections a cap: more wait in the listen backlog.
async fn serve<S>(
    listener: tokio::net::TcpListener,
    service: S,
    args: &Args,
) -> Result<(), Box<dyn std::error::Error>>
where
    S: tower::Service<
            Request<Incoming>,
            Response = Response<tower_http_batch::BatchResponseBody<ProxyBody>>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let header_timeout = Duration::from_secs(args.header_timeout_secs);
    // HTTP/1.1 only: hyper has no idle timeout for an HTTP/2 connection without streams.
    let mut server = hyper::server::conn::http1::Builder::new();
    server
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let permits = Arc::new(Semaphore::new(args.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &permits) => accepted,
            _ = &mut shutdown => {
                eprintln!("batch-proxy: shutting down, finishing requests in flight");
                break;
            }
        };
        let (stream, permit) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let service = TowerToHyperService::new(service.clone());
        // A streamed reply goes out in pieces: without TCP_NODELAY, each piece after the
        // first waits for the client's (delayed) ACK of the one before, up to 40 ms.
        let _ = stream.set_nodelay(true);
        // A client that stops reading its reply is cut off (hyper has no write timeout).
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        let write_timeout = args.write_timeout_secs;
        stream.set_write_timeout((write_timeout > 0).then(|| Duration::from_secs(write_timeout)));
        let (server, watcher) = (server.clone(), graceful.watcher());
        tokio::spawn(async move {
            // A deadline for the first byte, whatever the builder does before its header
            // timer starts: a silent connection ends here.
            if first_byte(stream.get_ref(), header_timeout).await {
                let conn = server.serve_connection(TokioIo::new(Box::pin(stream)), service);
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The next connection, once there is room for it.
async fn accept(
    listener: &tokio::net::TcpListener,
    permits: &Arc<Semaphore>,
) -> std::io::Result<(tokio::net::TcpStream, OwnedSemaphorePermit)> {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .map_err(std::io::Error::other)?;
    let (stream, _) = listener.accept().await?;
    Ok((stream, permit))
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
