//! Hostile input, class 2: nothing is held for ever before a batch starts. The layer bounds
//! its batch body (`body_timeout`, 408); the demo's server, as `cargo run --example demo`
//! serves it, bounds silent connections, request heads, idle keep-alive connections, route
//! bodies, replies a client does not read, and open connections.
//!
//! Time is paused: it moves only when every task waits, so each deadline passes exactly
//! when nothing else can happen, and the tests read how much (virtual) time passed.

#[path = "../examples/demo/app.rs"]
#[allow(dead_code)]
mod app;
mod common;
#[path = "../examples/demo/serve.rs"]
mod serve;

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower_http_batch::BatchLayer;

/// Connects and writes `bytes`.
async fn send(addr: SocketAddr, bytes: &str) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(bytes.as_bytes()).await.unwrap();
    conn
}

/// Everything the server writes until it closes the connection. A connection still open
/// after a (virtual) hour fails the test rather than hanging it.
async fn until_closed(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3600), conn.read_to_end(&mut got));
    assert!(read.await.is_ok(), "the connection was held for an hour");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(start_paused = true)]
async fn a_batch_body_that_stalls_or_falls_short_gets_408() {
    let (http, calls) = common::start(BatchLayer::new("/batch")).await;
    let head = "POST /batch HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n";
    for request in [
        format!("{head}content-length: 100\r\n\r\n{{\"requests\""),
        format!("{head}transfer-encoding: chunked\r\n\r\n5\r\n{{\"req\r\n"),
    ] {
        let start = Instant::now();
        let mut conn = send(http.addr, &request).await;
        let reply = until_closed(&mut conn).await;
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        assert!(reply.contains("body_timeout"), "{reply}");
        assert!(start.elapsed() >= tower_http_batch::DEFAULT_BODY_TIMEOUT);
    }
    assert_eq!(calls.get(), 0);
}

/// The demo, served as its `main` serves it, with these limits.
async fn demo(limits: serve::Limits) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app::app(app::Db::open(None).unwrap());
    tokio::spawn(serve::serve(listener, app, limits, std::future::pending()));
    addr
}

const LIMITS: serve::Limits = serve::Limits {
    header_timeout: Duration::from_secs(10),
    write_timeout: Duration::from_secs(30),
    max_connections: 2,
};

#[tokio::test(start_paused = true)]
async fn an_unfinished_request_head_is_closed() {
    let addr = demo(LIMITS).await;
    let start = Instant::now();
    let mut conn = send(addr, "GET /whoami HTTP/1.1\r\nhost: x\r\n").await;
    let reply = until_closed(&mut conn).await;
    assert!(!reply.contains("200 OK"), "{reply}");
    let waited = start.elapsed();
    assert!(waited >= LIMITS.header_timeout && waited < 2 * LIMITS.header_timeout);
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed() {
    let addr = demo(LIMITS).await;
    let mut conn = send(addr, "GET /whoami HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut first = vec![0; 4096];
    let n = conn.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let start = Instant::now();
    let rest = until_closed(&mut conn).await;
    assert!(rest.is_empty(), "{rest}");
    assert!(start.elapsed() >= LIMITS.header_timeout);
}

#[tokio::test(start_paused = true)]
async fn a_route_body_that_stalls_is_cut_off() {
    let addr = demo(LIMITS).await;
    let start = Instant::now();
    let request = "POST /users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"na";
    let mut conn = send(addr, request).await;
    let reply = until_closed(&mut conn).await;
    assert!(reply.starts_with("HTTP/1.1 4"), "{reply}");
    assert!(start.elapsed() >= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn open_connections_have_a_cap() {
    let addr = demo(LIMITS).await;
    let start = Instant::now();
    // Two connections that never finish their heads hold both places.
    let _held: Vec<TcpStream> = vec![
        send(addr, "GET / HTTP/1.1\r\n").await,
        send(addr, "GET / HTTP/1.1\r\n").await,
    ];
    // A third waits to be accepted until the header deadline frees a place: with paused
    // time, nothing else could let it through earlier.
    let mut third = send(
        addr,
        "GET /whoami HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let reply = until_closed(&mut third).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(start.elapsed() >= LIMITS.header_timeout);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_its_reply_is_cut_off() {
    let addr = demo(LIMITS).await;
    // A user with a 1 MB name, then a batch that reads it 16 times: a 16 MB reply, more
    // than the socket buffers between client and server hold.
    let user = format!(
        r#"{{"name": "{}", "email": "big@example.com"}}"#,
        "x".repeat(1_000_000)
    );
    let create = format!(
        "POST /users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{user}",
        user.len()
    );
    let created = until_closed(&mut send(addr, &create).await).await;
    assert!(created.starts_with("HTTP/1.1 201"), "{:.200}", created);
    let requests: Vec<String> = (0..16)
        .map(|_| r#"{"url": "/users/101"}"#.to_string())
        .collect();
    let batch = format!(r#"{{"requests": [{}]}}"#, requests.join(","));
    let request = format!(
        "POST /batch HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{batch}",
        batch.len()
    );
    let mut conn = send(addr, &request).await;
    // Read nothing for a (virtual) minute: the server's write makes no progress, and its
    // write timeout closes the connection.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let mut got = 0;
    let mut buf = vec![0; 1 << 16];
    while let Ok(n @ 1..) = conn.read(&mut buf).await {
        got += n;
    }
    assert!(
        got < 16_000_000,
        "the whole reply ({got} bytes) was written"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_closed() {
    let addr = demo(LIMITS).await;
    let start = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let reply = until_closed(&mut silent).await;
    assert!(reply.is_empty(), "{reply}");
    let waited = start.elapsed();
    assert!(waited >= LIMITS.header_timeout && waited < 2 * LIMITS.header_timeout);
}

#[tokio::test(start_paused = true)]
async fn http2_is_not_served_so_no_idle_h2_connection_stays() {
    // hyper has no idle timeout for an HTTP/2 connection that opens no stream and answers
    // pings; the demo serves HTTP/1.1 only, and an h2c preface is refused at once.
    let addr = demo(LIMITS).await;
    let start = Instant::now();
    let mut h2 = send(addr, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let reply = until_closed(&mut h2).await;
    assert!(!reply.contains("200"), "{reply}");
    assert!(start.elapsed() < LIMITS.header_timeout);
}
