//! The batch-job tests' server: a gated `/wait`, the store's `/items` with its hook, and
//! what reads a job's monitor.

use super::gate::Gate;
use super::store::{self, Store};
use super::{within, Calls, Http, Reply};
use axum::middleware;
use tower_http_batch::BatchLayer;

/// Auth outside, `layer` (with `data` as its transaction hook) around `/items`, `/wait`.
pub async fn start(layer: BatchLayer, data: Store, gate: Gate) -> Http {
    let routes = store::router(data.clone(), Calls::default()).merge(gate.router());
    let app = layer.transactions(data).layer_router(routes);
    let app = tower::Layer::layer(&middleware::from_fn(super::auth), app);
    Http::new(super::serve(app).await)
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
