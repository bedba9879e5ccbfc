//! Serving connections: one thread accepts them and hands each to the worker thread with
//! the fewest open; each worker runs a single-threaded runtime of its own.
//!
//! A batch, its sub-requests, their connections to the upstream and the reply are all
//! driven by the worker that took the connection, so forwarding a sub-request wakes no
//! other thread. On one runtime shared by all threads, the wake-ups between them cost more
//! CPU than the rest of the proxy's work (BENCHMARKS.md, issue 15).

use crate::upstream::Upstream;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// The service every connection is served by.
pub(crate) type Proxy = tower_http_batch::Batch<Upstream>;

/// How connections are served.
pub(crate) struct Settings {
    /// Worker threads.
    pub(crate) threads: usize,
    /// For a request head, and for an idle keep-alive connection.
    pub(crate) header_timeout: Duration,
    /// For a reply that makes no progress because the client does not read it.
    pub(crate) write_timeout: Option<Duration>,
    /// Connections open at once; more wait in the listen backlog.
    pub(crate) max_connections: usize,
}

/// A connection taken, and its place among those open.
struct Accepted {
    stream: std::net::TcpStream,
    _permit: OwnedSemaphorePermit,
    _open: Open,
}

/// Counts a connection open on a worker until it is dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A worker thread and what the acceptor knows of it.
struct Worker {
    connections: mpsc::UnboundedSender<Accepted>,
    open: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

/// Serves `service` on `listener` until Ctrl-C or SIGTERM, then finishes the requests in
/// flight and returns.
pub(crate) fn serve(
    listener: std::net::TcpListener,
    service: Proxy,
    settings: Settings,
) -> std::io::Result<()> {
    let settings = Arc::new(settings);
    let workers = (0..settings.threads.max(1))
        .map(|i| start_worker(i, service.clone(), settings.clone()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let acceptor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    acceptor.block_on(accept_until_stopped(listener, &workers, &settings))?;
    // Dropping the senders tells each worker to finish what it has and end.
    let threads: Vec<_> = workers.into_iter().map(|w| w.thread).collect();
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

/// Accepts connections, once there is room for them, until a signal to stop.
async fn accept_until_stopped(
    listener: std::net::TcpListener,
    workers: &[Worker],
    settings: &Settings,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let mut pause = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &permits, pause) => accepted,
            _ = &mut shutdown => {
                eprintln!("batch-proxy: shutting down, finishing requests in flight");
                return Ok(());
            }
        };
        let (stream, permit) = match accepted {
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
        // The least busy worker (the first of them on a tie) that is still there (one that
        // panicked has let go of its channel).
        let Some(worker) = workers
            .iter()
            .filter(|w| !w.connections.is_closed())
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
        else {
            return Err(std::io::Error::other("every worker thread has stopped"));
        };
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        worker.open.fetch_add(1, Ordering::Relaxed);
        let accepted = Accepted {
            stream,
            _permit: permit,
            _open: Open(worker.open.clone()),
        };
        // A worker that ended since the check above drops the connection.
        let _ = worker.connections.send(accepted);
    }
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
    listener: &tokio::net::TcpListener,
    permits: &Arc<Semaphore>,
    pause: Duration,
) -> std::io::Result<(tokio::net::TcpStream, OwnedSemaphorePermit)> {
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .map_err(std::io::Error::other)?;
    let (stream, _) = listener.accept().await?;
    Ok((stream, permit))
}

/// A thread that serves the connections it is handed until the acceptor lets go of it,
/// then finishes the requests in flight.
fn start_worker(index: usize, service: Proxy, settings: Arc<Settings>) -> std::io::Result<Worker> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (connections, mut handed) = mpsc::unbounded_channel::<Accepted>();
    let thread = std::thread::Builder::new()
        .name(format!("batch-proxy-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                let graceful = GracefulShutdown::new();
                while let Some(accepted) = handed.recv().await {
                    let (service, watcher) = (service.clone(), graceful.watcher());
                    tokio::spawn(connection(accepted, service, watcher, settings.clone()));
                }
                graceful.shutdown().await;
            })
        })?;
    Ok(Worker {
        connections,
        open: Arc::new(AtomicUsize::new(0)),
        thread,
    })
}

/// Serves one connection: a deadline for its first byte and each request head, and one
/// for each write of the reply (hyper has no write timeout).
async fn connection(accepted: Accepted, service: Proxy, watcher: Watcher, settings: Arc<Settings>) {
    let Ok(stream) = tokio::net::TcpStream::from_std(accepted.stream) else {
        return;
    };
    // A streamed reply goes out in pieces: without TCP_NODELAY, each piece after the first
    // waits for the client's (delayed) ACK of the one before, up to 40 ms.
    let _ = stream.set_nodelay(true);
    let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
    stream.set_write_timeout(settings.write_timeout);
    // A deadline for the first byte, whatever the builder does before its header timer
    // starts: a silent connection ends here.
    if !first_byte(stream.get_ref(), settings.header_timeout).await {
        return;
    }
    // HTTP/1.1 only: hyper has no idle timeout for an HTTP/2 connection without streams.
    let mut server = hyper::server::conn::http1::Builder::new();
    server
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    let service = TowerToHyperService::new(service);
    let conn = server.serve_connection(TokioIo::new(Box::pin(stream)), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Whether the client sends something (or closes) within `limit`. (`peek`, not
/// `readable`, whose readiness may be a false positive.)
async fn first_byte(stream: &tokio::net::TcpStream, limit: Duration) -> bool {
    let mut byte = [0; 1];
    tokio::time::timeout(limit, stream.peek(&mut byte))
        .await
        .is_ok()
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
