//! Peak memory while the layer answers one batch whose responses are 10 KB JSON bodies
//! (1,000 items by default), against the size of the reply.
//!
//! ```text
//! cargo run --release --example memory                    # 1,000 items: about 10 MB of reply
//! cargo run --release --example memory -- --items 10000   # about 100 MB of reply
//! ```
//!
//! The program builds the app (an axum `Router` inside `BatchLayer`, with `max_requests`
//! and `max_response_bytes` raised to fit), warms it up with a small batch, then sends the
//! batch through `oneshot` and reads the reply frame by frame as fast as it can, counting
//! its bytes without keeping them (as a socket would take them). Two figures:
//!
//! - the peak of the bytes allocated on the heap, above what was allocated before the batch
//!   (a counting global allocator: exact, and blind to how the allocator reuses memory);
//! - the peak resident set size above the idle process (`VmHWM` after the kernel's mark was
//!   reset through `/proc/self/clear_refs`, minus `VmRSS` before): what the machine saw,
//!   which memory the allocator kept from earlier work can hide.

use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::ServiceExt;
use tower_http_batch::BatchLayer;

/// The system allocator, counting the bytes allocated now and at the peak.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = ALLOCATED.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed to `System` as it is; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

#[derive(Parser)]
struct Args {
    /// Items in the batch.
    #[arg(long, default_value_t = 1000)]
    items: usize,
    /// Bytes of each item's response body (about).
    #[arg(long, default_value_t = 10 * 1024)]
    body_bytes: usize,
    /// Instead: send this many batches, each with a new `Idempotency-Key`, and report the
    /// heap their records hold in the (default, in-memory) store, per batch.
    #[arg(long)]
    stored: Option<usize>,
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
    let send_keyed = |body: String, key: Option<String>| {
        let app = app.clone();
        async move {
            let mut req = http::Request::post("/batch")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap();
            if let Some(key) = key {
                req.headers_mut()
                    .insert("idempotency-key", key.try_into().unwrap());
            }
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

    let send = |body: String| send_keyed(body, None);
    send(batch(10)).await;
    if let Some(n) = args.stored {
        send_keyed(batch(args.items), Some("warm-up".into())).await;
        let before = ALLOCATED.load(Ordering::Relaxed);
        for k in 0..n {
            send_keyed(batch(args.items), Some(format!("key-{k}"))).await;
        }
        // Each run finishes its record on a task of its own: let the last ones do so.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let held = ALLOCATED.load(Ordering::Relaxed) - before;
        println!(
            "{n} keyed batches of {} items ({} B bodies) recorded in memory: {:.1} KiB each, {} B per item",
            args.items,
            args.body_bytes,
            held as f64 / n as f64 / 1024.0,
            held / n / args.items
        );
        return;
    }
    let request = batch(args.items);
    // Reset the peak marks, so both peaks are from here on.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let idle = status_kib("VmRSS:");
    let before = ALLOCATED.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let reply = send(request).await;
    let heap = (PEAK.load(Ordering::Relaxed) - before) as u64;
    let peak = status_kib("VmHWM:");
    let above = peak.saturating_sub(idle);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "one batch of {} items, {} B bodies",
        args.items, args.body_bytes
    );
    println!("reply:              {:>8.2} MiB", mib(reply as u64));
    println!("peak heap above idle: {:>6.2} MiB", mib(heap));
    println!("ratio to the reply: {:>8.2}x", heap as f64 / reply as f64);
    println!("idle RSS:           {:>8.2} MiB", mib(idle));
    println!("peak RSS:           {:>8.2} MiB", mib(peak));
    println!("peak RSS above idle: {:>7.2} MiB", mib(above));
}
