//! A client that leaves mid-batch, with handlers that never wait (they answer in the poll
//! that calls them): the batch yields between items, so the connection sees the reset
//! within one item and the batch stops there; no item starts after it, an open atomic group
//! is dropped (its `Drop` rolls back), a commit already in flight still finishes, and other
//! connections on the same thread are served while such a batch runs.
//!
//! No timing: the item that makes the client leave waits, in its handler, until the reset
//! has reached the server's socket (read through a duplicate of it), so the next look at
//! the connection sees it.

mod common;

use axum::extract::State;
use axum::middleware;
use axum::routing::get;
use axum::Router;
use common::store::{self, Store};
use common::{within, Calls, DropSignal};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::Notify;
use tower::{Layer as _, ServiceExt as _};
use tower_http_batch::BatchLayer;

/// What the handlers share with the test.
#[derive(Clone, Default)]
struct Shared {
    /// Items run by `/count`.
    count: Arc<AtomicUsize>,
    /// A duplicate of the server's side of the last connection accepted.
    watched: Arc<Mutex<Option<std::net::TcpStream>>>,
    /// Tells the client to reset its connection.
    leave: Arc<Mutex<Option<mpsc::Sender<()>>>>,
    /// The server's address, for `/visit`.
    addr: Arc<Mutex<Option<SocketAddr>>>,
    /// `count` when a second connection's request was served.
    seen_by_visitor: Arc<AtomicUsize>,
    /// The second connection, kept open.
    visitor: Arc<Mutex<Option<TcpStream>>>,
    /// The batch's future (or reply) was dropped.
    dropped: Arc<Notify>,
}

impl Shared {
    /// Makes the client reset its connection, and returns once the reset has reached the
    /// server's socket.
    fn client_leaves(&self) {
        let leave = self
            .leave
            .lock()
            .unwrap()
            .take()
            .expect("a client to reset");
        leave.send(()).unwrap();
        let watched = self.watched.lock().unwrap();
        let socket = watched.as_ref().expect("a connection");
        let mut byte = [0; 1];
        // Non-blocking (shared with tokio's copy): spin until the reset (or the end) shows.
        loop {
            match socket.peek(&mut byte) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                _ => return,
            }
        }
    }
}

/// `/count` counts and answers; `/count?leave=N` makes the client leave at the Nth item;
/// `/big` answers 20 KB; `/visit` opens a second connection and sends it a request (it
/// reaches `/visitor`, which notes how many items had run). With the store's routes.
fn router(shared: Shared, store: Store) -> Router {
    let counted = Router::new()
        .route("/count", get(count))
        .route("/big", get(big))
        .route("/visit", get(visit))
        .route("/visitor", get(visitor))
        .with_state(shared);
    counted.merge(store::router(store, Calls::default()))
}

async fn count(
    State(s): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, usize>>,
) -> &'static str {
    let n = s.count.fetch_add(1, Ordering::SeqCst) + 1;
    if q.get("leave") == Some(&n) {
        s.client_leaves();
    }
    "counted"
}

async fn big(State(s): State<Shared>) -> String {
    let n = s.count.fetch_add(1, Ordering::SeqCst) + 1;
    if n == 10 {
        s.client_leaves();
    }
    "x".repeat(20_000)
}

async fn visit(State(s): State<Shared>) -> &'static str {
    s.count.fetch_add(1, Ordering::SeqCst);
    let addr = s.addr.lock().unwrap().unwrap();
    // The handshake completes in the listen backlog, and the request waits in the socket:
    // the server takes it up when it next looks, without this handler waiting.
    let mut visitor = TcpStream::connect(addr).unwrap();
    visitor
        .write_all(b"GET /visitor HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    *s.visitor.lock().unwrap() = Some(visitor);
    "visited"
}

async fn visitor(State(s): State<Shared>) -> &'static str {
    s.seen_by_visitor
        .store(s.count.load(Ordering::SeqCst), Ordering::SeqCst);
    "welcome"
}

/// Serves `layer` around the router with hyper on 127.0.0.1:0, keeping a duplicate of each
/// connection's socket in `shared.watched`, and signalling `shared.dropped` when a request's
/// response future or body is dropped.
async fn serve(layer: BatchLayer, shared: &Shared, store: Store) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    *shared.addr.lock().unwrap() = Some(addr);
    let app = layer.layer_router(router(shared.clone(), store.clone()));
    let dropped = shared.dropped.clone();
    let app = middleware::from_fn(move |req: axum::extract::Request, next: middleware::Next| {
        let signal = DropSignal(dropped.clone());
        async move {
            let response = next.run(req).await;
            // Held by the body too: a streamed reply is dropped with its body.
            let (parts, body) = response.into_parts();
            let body = axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |f| {
                let _ = &signal;
                f
            }));
            axum::response::Response::from_parts(parts, body)
        }
    })
    .layer(middleware::from_fn(common::auth).layer(app));
    let watched = shared.watched.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let std = stream.into_std().unwrap();
            *watched.lock().unwrap() = Some(std.try_clone().unwrap());
            let stream = tokio::net::TcpStream::from_std(std).unwrap();
            let app = app.clone();
            let service = TowerToHyperService::new(tower::service_fn(
                move |req: hyper::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(axum::body::Body::new))
                },
            ));
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Sends `batch` on a connection of its own (a thread), and resets that connection when
/// the server says so. Returns what it read until then.
fn send_then_leave(
    addr: SocketAddr,
    batch: &Value,
    shared: &Shared,
) -> std::thread::JoinHandle<Vec<u8>> {
    let (leave, client) = client_that_leaves(addr, batch);
    *shared.leave.lock().unwrap() = Some(leave);
    client
}

/// Sends `batch` on a connection of its own (a thread), which it resets once told to on
/// the sender returned; the thread returns what it read until then.
fn client_that_leaves(
    addr: SocketAddr,
    batch: &Value,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<Vec<u8>>) {
    let (leave, told) = mpsc::channel();
    let body = batch.to_string();
    let client = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /batch HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        told.recv().unwrap();
        let mut read = Vec::new();
        stream.set_nonblocking(true).unwrap();
        let _ = stream.read_to_end(&mut read);
        // A zero linger makes the close a reset (RST), not an orderly end.
        socket2::SockRef::from(&stream)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(stream);
        read
    });
    (leave, client)
}

fn gets(url: &str, n: usize) -> Value {
    let requests: Vec<Value> = (0..n).map(|_| json!({"url": url})).collect();
    json!({ "requests": requests })
}

#[tokio::test]
async fn no_item_starts_after_the_client_is_seen_to_leave() {
    let shared = Shared::default();
    let addr = serve(BatchLayer::new("/batch"), &shared, Store::default()).await;
    let client = send_then_leave(addr, &gets("/count?leave=10", 50), &shared);
    within("the batch to be dropped", shared.dropped.notified()).await;
    assert_eq!(shared.count.load(Ordering::SeqCst), 10, "items run");
    // Nothing of the reply had been sent: it would have gone whole, at the end.
    assert!(client.join().unwrap().is_empty());
}

#[tokio::test]
async fn a_streamed_reply_stops_within_one_item_too() {
    let shared = Shared::default();
    let addr = serve(BatchLayer::new("/batch"), &shared, Store::default()).await;
    // 20 KB items: past 64 KiB the reply streams, and the run goes on as a task.
    let client = send_then_leave(addr, &gets("/big", 50), &shared);
    within("the reply to be dropped", shared.dropped.notified()).await;
    let run = shared.count.load(Ordering::SeqCst);
    assert_eq!(run, 10, "items run");
    let read = client.join().unwrap();
    assert!(read.starts_with(b"HTTP/1.1 200 OK"));
}

fn create(name: &str) -> Value {
    json!({"method": "POST", "url": "/items", "body": {"name": name}})
}

/// Sends `requests` as one atomic group to a server with the store's hook, and returns
/// once the client has left and the batch has been dropped.
async fn atomic_then_leave(requests: Value) -> (Shared, Store) {
    let shared = Shared::default();
    let store = Store::default();
    let layer = BatchLayer::new("/batch").transactions(store.clone());
    let addr = serve(layer, &shared, store.clone()).await;
    let batch = json!({"atomic": true, "requests": requests});
    let _client = send_then_leave(addr, &batch, &shared);
    within("the batch to be dropped", shared.dropped.notified()).await;
    (shared, store)
}

#[tokio::test]
async fn an_open_group_is_dropped_when_its_client_leaves() {
    let (shared, store) = atomic_then_leave(json!([
        create("a"), create("b"), {"url": "/count?leave=1"}, create("c"), create("d"),
    ]))
    .await;
    // Neither committed nor rolled back by call: dropped, its copy never became the data.
    assert_eq!(store.log(), ["begin by anonymous"]);
    assert!(store.ids().is_empty(), "nothing was committed");
    assert_eq!(shared.count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_commit_in_flight_finishes_when_its_client_leaves() {
    let shared = Shared::default();
    let store = Store::default();
    store.hold.commit.store(true, Ordering::SeqCst);
    let layer = BatchLayer::new("/batch")
        .transactions(store.clone())
        .max_concurrent_batches(1)
        .max_waiting_batches(0);
    let addr = serve(layer, &shared, store.clone()).await;
    let batch = json!({"atomic": true, "requests": [
        {"method": "POST", "url": "/items", "body": {"name": "a"}},
    ]});
    let (leave, client) = client_that_leaves(addr, &batch);
    // The commit has begun and waits: the client leaves, and the batch is dropped.
    within("the commit to start", store.hold.committed.notified()).await;
    leave.send(()).unwrap();
    client.join().unwrap();
    within("the batch to be dropped", shared.dropped.notified()).await;
    // The commit still holds the batch's place: the one place is taken.
    let http = common::Http::new(addr);
    let text = json!({"requests": [{"url": "/count"}]});
    http.batch(&text, &[]).await.problem(503);
    // Let go, the commit runs to its end although no one will read what it returned.
    store.hold.release.notify_one();
    within("the commit to return", store.hold.returned.notified()).await;
    assert_eq!(store.log(), ["begin by anonymous", "commit"]);
    assert_eq!(store.ids().len(), 1);
    // And with it the place comes back.
    let reply = within("a place", async {
        loop {
            let reply = http.batch(&text, &[]).await;
            if reply.status != 503 {
                return reply;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn other_connections_are_served_while_a_batch_runs() {
    // One thread (the test's runtime): the second connection is served between items.
    let shared = Shared::default();
    let addr = serve(BatchLayer::new("/batch"), &shared, Store::default()).await;
    let mut requests = vec![json!({"url": "/visit"})];
    requests.extend((0..60).map(|_| json!({"url": "/count"})));
    let http = common::Http::new(addr);
    let reply = http.batch(&json!({ "requests": requests }), &[]).await;
    assert_eq!(reply.items().len(), 61);
    let seen = shared.seen_by_visitor.load(Ordering::SeqCst);
    assert!(
        seen > 0 && seen < 61,
        "the visitor was served after {seen} of 61 items"
    );
}

#[tokio::test]
async fn with_concurrency_the_client_is_seen_within_that_many_items() {
    let shared = Shared::default();
    let layer = BatchLayer::new("/batch").concurrency(4);
    let addr = serve(layer, &shared, Store::default()).await;
    let _client = send_then_leave(addr, &gets("/count?leave=10", 50), &shared);
    within("the batch to be dropped", shared.dropped.notified()).await;
    // Item 10 runs among up to 4 in flight, and the yield comes within 4 answers.
    let run = shared.count.load(Ordering::SeqCst);
    assert!((10..=18).contains(&run), "{run} items run");
}

#[tokio::test]
async fn a_group_whose_last_member_saw_the_client_leave_does_not_commit() {
    let (_, store) =
        atomic_then_leave(json!([create("a"), create("b"), {"url": "/count?leave=1"}])).await;
    // Every member answered, but the client was gone before the commit could start.
    assert_eq!(store.log(), ["begin by anonymous"]);
    assert!(store.ids().is_empty(), "nothing was committed");
}
