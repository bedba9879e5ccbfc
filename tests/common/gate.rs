//! `/wait` (`POST`), a write that waits: it counts, tells the test it was entered, then
//! waits until the gate opens; and the items the keyed and job tests send.

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore};

/// The gate of `/wait`. `dropped` is for the test's server to tell when it drops a
/// response, or its future before it is ready: its client left.
#[derive(Clone)]
pub struct Gate {
    pub entered: Arc<Notify>,
    pub open: Arc<Semaphore>,
    pub count: Arc<AtomicUsize>,
    pub dropped: Arc<Notify>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            entered: Arc::default(),
            open: Arc::new(Semaphore::new(0)),
            count: Arc::default(),
            dropped: Arc::default(),
        }
    }
}

impl Gate {
    pub fn open(&self) {
        self.open.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    /// `/wait`, behind this gate.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/wait", post(wait))
            .with_state(self.clone())
    }
}

async fn wait(State(gate): State<Gate>) -> &'static str {
    gate.count.fetch_add(1, Ordering::SeqCst);
    gate.entered.notify_one();
    drop(gate.open.acquire().await);
    "waited"
}

/// Creates the item `id` (`POST /items`).
pub fn create(id: &str) -> Value {
    json!({ "id": id, "method": "POST", "url": "/items", "body": { "name": id } })
}

/// The item that waits at the gate.
pub fn wait_item() -> Value {
    json!({ "id": "wait", "method": "POST", "url": "/wait" })
}
