//! Serving the demo as a server open to clients that may be hostile: every connection has
//! a deadline for its request head (which also bounds how long an idle keep-alive
//! connection waits) and for each write of its replies (a client that stops reading is
//! cut off, which also gives back its batch's place), and the number of open connections
//! has a cap; more wait in the listen backlog. The batch layer bounds its own work (body, sub-requests, batch); the
//! routes' request bodies are bounded in `app.rs`.
//!
//! `axum::serve` sets none of these (it has no timer), so the demo serves with hyper-util's
//! builder, as a user of this crate would.

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{Service, ServiceExt as _};

/// What the server bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a request head may take to arrive, and an idle keep-alive connection may
    /// wait for the next one.
    pub header_timeout: Duration,
    /// How long a reply may make no progress because the client does not read it.
    pub write_timeout: Duration,
    /// How many connections may be open at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in
/// flight. Each request carries axum's `ConnectInfo<SocketAddr>`.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Service<axum::extract::Request, Response = axum::response::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    // HTTP/1.1 only: hyper has no idle timeout for an HTTP/2 connection without streams
    // (keep-alive pings only find dead peers), so h2c would let idle connections stay.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut pause = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &permits, pause) => accepted,
            () = &mut shutdown => break,
        };
        let (stream, addr, permit) = match accepted {
            Ok(accepted) => accepted,
            // The peer's failure, not the server's: on to the next at once.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors (`EMFILE`), accepting again at once fails again: wait,
                // 5 ms doubling to 1 s while it lasts, rather than spin on a core.
                pause = (pause * 2).clamp(ACCEPT_PAUSE.0, ACCEPT_PAUSE.1);
                tracing::warn!(error = %e, retry_in = ?pause, "accept failed");
                continue;
            }
        };
        pause = Duration::ZERO;
        let app = app.clone();
        let service = tower::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(addr));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        // Streamed replies go out in pieces: without TCP_NODELAY each piece after the first
        // waits for the client's delayed ACK of the one before (up to 40 ms).
        let _ = stream.set_nodelay(true);
        // hyper has no write timeout: the stream has one.
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write_timeout));
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            // A deadline for the first byte, whatever the builder does before its header
            // timer starts (hyper-util's auto builder waits for the first bytes without
            // one): a connection that sends nothing ends here.
            // (`peek`, not `readable`, whose readiness may be a false positive.)
            let mut byte = [0; 1];
            let first_byte = stream.get_ref().peek(&mut byte);
            if tokio::time::timeout(limits.header_timeout, first_byte)
                .await
                .is_ok()
            {
                let conn = builder.serve_connection(
                    TokioIo::new(Box::pin(stream)),
                    TowerToHyperService::new(service),
                );
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

/// Whether a failed accept was one connection's failure (it was reset or aborted before
/// it was taken), which says nothing of the server's resources.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// The pause after a failed accept: the first, and the longest (hyper-util's and axum's
/// servers wait too; without a pause the loop spins while descriptors are short).
const ACCEPT_PAUSE: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// The next connection, once there is room for it, after `pause`.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    pause: Duration,
) -> std::io::Result<(
    tokio::net::TcpStream,
    SocketAddr,
    tokio::sync::OwnedSemaphorePermit,
)> {
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .map_err(std::io::Error::other)?;
    let (stream, addr) = listener.accept().await?;
    Ok((stream, addr, permit))
}
