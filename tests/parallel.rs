//! `concurrency(n)` uses the runtime's threads: sub-requests that are heavy to poll run as
//! tasks of their own, which the batch cancels when it ends or is dropped.
//!
//! Each test makes the first item heavy (its handler holds its thread for a few
//! milliseconds), so the items after it run as tasks; a light batch stays in its own task
//! (the benchmarks `tiny_x100` and `cpu_1ms_x100` show the cost either way).

mod common;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use common::{within, DropSignal, Http};
use serde_json::json;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Notify;
use tower_http_batch::BatchLayer;

/// Holds its thread for 5 ms: polling it is heavy.
async fn heavy() -> &'static str {
    std::thread::sleep(Duration::from_millis(5));
    "warm"
}

/// Two handlers that each block their thread until the other has started: they can only
/// both answer `met` if they run on two threads at once. Neither waits for ever: after
/// 20 s alone, it answers `alone`.
#[derive(Clone)]
struct Rendezvous {
    to: [SyncSender<()>; 2],
    from: [Arc<Mutex<Receiver<()>>>; 2],
}

impl Rendezvous {
    fn new() -> Self {
        let (a_tx, a_rx) = sync_channel(1);
        let (b_tx, b_rx) = sync_channel(1);
        Self {
            to: [b_tx, a_tx],
            from: [Arc::new(Mutex::new(a_rx)), Arc::new(Mutex::new(b_rx))],
        }
    }

    fn meet(&self, side: usize) -> &'static str {
        let _ = self.to[side].try_send(());
        let from = self.from[side].lock().unwrap();
        match from.recv_timeout(Duration::from_secs(20)) {
            Ok(()) => "met",
            Err(_) => "alone",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_sub_requests_run_on_the_runtime_s_threads_at_once() {
    let meeting = Rendezvous::new();
    let router = Router::new().route("/warm", get(heavy)).route(
        "/meet/{side}",
        get(move |Path(side): Path<usize>| {
            let meeting = meeting.clone();
            async move { meeting.meet(side) }
        }),
    );
    let app = BatchLayer::new("/batch")
        .concurrency(2)
        .layer_router(router);
    let http = Http::new(common::serve(app).await);
    let batch = json!({"requests": [
        {"id": "warm", "url": "/warm"},
        {"id": "a", "url": "/meet/0", "dependsOn": ["warm"]},
        {"id": "b", "url": "/meet/1", "dependsOn": ["warm"]},
    ]});
    let items = http.batch(&batch, &[]).await.items();
    let bodies: Vec<_> = items.iter().map(|i| i["body"].clone()).collect();
    assert_eq!(bodies, [json!("warm"), json!("met"), json!("met")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_request_task_that_panics_answers_500() {
    let router = Router::new().route("/warm", get(heavy)).route(
        "/panic",
        get(|| async {
            panic!("a handler bug");
            #[allow(unreachable_code)]
            ""
        }),
    );
    let app = BatchLayer::new("/batch")
        .concurrency(4)
        .layer_router(router);
    let http = Http::new(common::serve(app).await);
    let batch = json!({"requests": [
        {"id": "warm", "url": "/warm"},
        {"id": "boom", "url": "/panic", "dependsOn": ["warm"]},
        {"id": "after", "url": "/warm", "dependsOn": ["warm"]},
    ]});
    let items = http.batch(&batch, &[]).await.items();
    let statuses: Vec<_> = items.iter().map(|i| i["status"].clone()).collect();
    assert_eq!(statuses, [json!(200), json!(500), json!(200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_the_sub_request_tasks() {
    let (started, dropped) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (on_start, on_drop) = (started.clone(), dropped.clone());
    let router = Router::new().route("/warm", get(heavy)).route(
        "/forever",
        get(move || {
            let guard = DropSignal(on_drop.clone());
            on_start.notify_one();
            async move {
                std::future::pending::<()>().await;
                drop(guard);
                "never"
            }
        }),
    );
    let app = BatchLayer::new("/batch")
        .concurrency(2)
        .layer_router(router);
    let addr = common::serve(app).await;
    let batch = json!({"requests": [
        {"id": "warm", "url": "/warm"},
        {"id": "wait", "url": "/forever", "dependsOn": ["warm"]},
    ]})
    .to_string();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /batch HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        batch.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(batch.as_bytes()).await.unwrap();
    within("the second item's handler starting", started.notified()).await;
    drop(socket);
    within(
        "the second item's handler being dropped",
        dropped.notified(),
    )
    .await;
}
