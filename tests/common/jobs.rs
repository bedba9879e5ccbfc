//! The batch-job tests' server: a gated `/wait`, the store's `/items` with its hook, and
//! what reads a job's monitor.

use super::store::{self, Store};
use super::{within, Calls, Http, Reply};
use axum::extract::State;
use axum::middleware;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore};
use tower_http_batch::BatchLayer;

/// `/wait` (`POST`): counts, tells the test it was entered, then waits for the gate.
#[derive(Clone)]
pub struct Gate {
    pub entered: Arc<Notify>,
    pub open: Arc<Semaphore>,
    pub count: Arc<AtomicUsize>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            entered: Arc::default(),
            open: Arc::new(Semaphore::new(0)),
            count: Arc::default(),
        }
    }
}

impl Gate {
    pub fn open(&self) {
        self.open.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

async fn wait(State(gate): State<Gate>) -> &'static str {
    gate.count.fetch_add(1, Ordering::SeqCst);
    gate.entered.notify_one();
    drop(gate.open.acquire().await);
    "waited"
}

/// Auth outside, `layer` (with `data` as its transaction hook) around `/items`, `/wait`.
pub async fn start(layer: BatchLayer, data: Store, gate: Gate) -> Http {
    let routes = store::router(data.clone(), Calls::default())
        .merge(Router::new().route("/wait", post(wait)).with_state(gate));
    let app = layer.transactions(data).layer_router(routes);
    let app = tower::Layer::layer(&middleware::from_fn(super::auth), app);
    Http::new(super::serve(app).await)
}

pub fn create(id: &str) -> Value {
    json!({ "id": id, "method": "POST", "url": "/items", "body": { "name": id } })
}

pub fn wait_item() -> Value {
    json!({ "id": "wait", "method": "POST", "url": "/wait" })
}

pub const ASYNC: (&str, &str) = ("prefer", "respond-async");

pub fn as_user(user: &str) -> String {
    format!("Bearer {user}-token")
}

/// The monitor `reply` points to.
pub fn location(reply: &Reply) -> String {
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    assert_eq!(reply.headers["preference-applied"], "respond-async");
    assert_eq!(reply.headers["retry-after"], "1");
    let location = reply.headers["location"].to_str().unwrap().to_owned();
    let id = location
        .strip_prefix("/batch/jobs/")
        .expect("under the batch path");
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    location
}

/// `GET monitor` until the job has finished (not `202`).
pub async fn finished(http: &Http, monitor: &str, headers: &[(&str, &str)]) -> Reply {
    within("the job to finish", async {
        loop {
            let reply = http.send("GET", monitor, headers, "").await;
            if reply.status != 202 {
                return reply;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}
