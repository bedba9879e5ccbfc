//! `batch-proxy`: batch endpoints in front of any HTTP service, in any language.
//!
//! ```text
//! cargo run --features proxy --bin batch-proxy -- --upstream http://127.0.0.1:8080 --listen 127.0.0.1:3001
//! ```
//!
//! Every request that is not a batch is reverse-proxied to the upstream unchanged, bodies
//! streamed both ways. Batch sub-requests go to the same upstream through the pool of
//! connections of the worker thread serving the batch, carrying the outer request's
//! identity headers. Nothing can reach another host:
//! every request the proxy sends goes to the configured upstream's scheme and authority.

use clap::Parser;
use http::uri::Scheme;
use std::time::Duration;
use tower::Layer;

mod args;
mod serve;
mod upstream;
use args::{layer, Args};
use upstream::Upstream;

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
    let upstream = Upstream::new(
        authority.clone(),
        seconds(args.upstream_timeout_secs),
        args.timeout_secs > 0,
        args.upstream_http2,
    );
    // The store's connections are driven by a runtime of their own, shared by the workers.
    let stores = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("batch-proxy-store")
        .enable_all()
        .build()?;
    let store = stores
        .block_on(tower_http_batch::store::open(&args.store))
        .map_err(|e| format!("--store {}: {e}", args.store))?;
    let service = layer(&args)?.idempotency(store).layer(upstream);

    let listener = listen(args.listen)?;
    println!(
        "batch-proxy listening on http://{} -> upstream http://{authority}",
        listener.local_addr()?
    );
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let settings = serve::Settings {
        threads,
        header_timeout: Duration::from_secs(args.header_timeout_secs),
        write_timeout: seconds(args.write_timeout_secs),
        max_connections: args.max_connections,
    };
    serve::serve(listener, service, settings)?;
    Ok(())
}

/// Connections that wait to be accepted (past `--max-connections`, or in a burst): the
/// listen backlog. `std`'s is 128; past it the kernel resets new connections, so a burst of
/// a thousand would see resets instead of waiting its turn. (The kernel caps it at
/// `net.core.somaxconn`, 4096 on current Linux.)
const BACKLOG: i32 = 4096;

/// A listener on `addr` with a backlog of [`BACKLOG`].
fn listen(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
