//! Peak memory while the layer answers one batch of 1,000 items whose responses are 10 KB
//! JSON bodies, against the size of the reply.
//!
//! ```text
//! cargo run --release --example memory                 # prints the figures
//! /usr/bin/time -v target/release/examples/memory      # "Maximum resident set size"
//! /usr/bin/time -v target/release/examples/memory --idle   # the same process, no batch
//! ```
//!
//! The program builds the app (an axum `Router` inside `BatchLayer`), warms it up with a
//! small batch, resets the kernel's peak-RSS mark (`/proc/self/clear_refs`), then sends the
//! batch through `oneshot` and reads the reply frame by frame, counting its bytes without
//! keeping them (as a socket would take them). Peak RSS above the idle process
//! (`VmHWM` after, minus `VmRSS` before) is compared with the reply's size.

use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;
use tower_http_batch::BatchLayer;

#[derive(Parser)]
struct Args {
    /// Items in the batch.
    #[arg(long, default_value_t = 1000)]
    items: usize,
    /// Bytes of each item's response body (about).
    #[arg(long, default_value_t = 10 * 1024)]
    body_bytes: usize,
    /// Set everything up, but send no batch: the idle process, for `/usr/bin/time -v`.
    #[arg(long)]
    idle: bool,
}

/// A field of `/proc/self/status`, in bytes.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let size = args.body_bytes;
    // Each response is built per request, as a real handler would.
    let router = Router::new().route(
        "/docs/{id}",
        get(
            move |axum::extract::Path(id): axum::extract::Path<u64>| async move {
                Json(json!({"id": id, "text": "x".repeat(size.saturating_sub(24))}))
            },
        ),
    );
    let app = BatchLayer::new("/batch")
        .max_requests(args.items)
        .max_response_bytes(args.items * (size + 1024))
        .layer_router(router);
    let batch = |n: usize| {
        json!({"requests": (0..n).map(|i| json!({"url": format!("/docs/{i}")})).collect::<Vec<_>>()})
            .to_string()
    };
    let send = |body: String| {
        let app = app.clone();
        async move {
            let req = http::Request::post("/batch")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            let res = app.oneshot(req).await.unwrap();
            assert_eq!(res.status(), 200);
            // Read frame by frame, keeping nothing, as a socket takes them.
            let mut body = res.into_body();
            let mut len = 0usize;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    len += data.len();
                }
            }
            len
        }
    };

    send(batch(10)).await;
    let request = batch(args.items);
    if args.idle {
        println!("idle: set up, no batch sent");
        return;
    }
    // Reset the peak-RSS mark, so VmHWM is the peak from here on.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let idle = status_kib("VmRSS:");
    let reply = send(request).await;
    let peak = status_kib("VmHWM:");
    let above = peak.saturating_sub(idle);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "one batch of {} items, {} B bodies",
        args.items, args.body_bytes
    );
    println!("reply:              {:>8.2} MiB", mib(reply as u64));
    println!("idle RSS:           {:>8.2} MiB", mib(idle));
    println!("peak RSS:           {:>8.2} MiB", mib(peak));
    println!("peak above idle:    {:>8.2} MiB", mib(above));
    println!("ratio to the reply: {:>8.2}x", above as f64 / reply as f64);
}
