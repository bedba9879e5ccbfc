//! The server the HTTP benchmarks load (`benches/http.sh`): an axum `Router` whose
//! handler answers a small JSON object, wrapped in `BatchLayer`, served by hyper-util's
//! `auto` builder (HTTP/1.1, and HTTP/2 without TLS) on a two-thread runtime. It prints
//! its address, then serves until killed.
//!
//! ```text
//! cargo run --release --example bench_server -- --concurrency 8
//! ```

use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tower::ServiceExt as _;
use tower_http_batch::BatchLayer;

#[derive(Parser)]
struct Args {
    /// `BatchLayer::concurrency`.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(serve(args));
}

async fn serve(args: Args) {
    let router = Router::new().route(
        "/items/{id}",
        get(|Path(id): Path<u64>| async move { Json(json!({"id": id, "name": "small"})) }),
    );
    let app = BatchLayer::new("/batch")
        .concurrency(args.concurrency)
        .layer_router(router);
    let listener = tokio::net::TcpListener::bind(&args.listen).await.unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        // As `axum::serve` does: hyper's body, as axum's.
        let app = app
            .clone()
            .map_request(|req: http::Request<Incoming>| req.map(Body::new));
        let service = TowerToHyperService::new(app);
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
