//! The Rust batch client against the demo: 250 requests, some in `dependsOn` chains (a
//! create, then two reads that wait for it), sent as the fewest batch requests the demo's
//! limit (100) allows, every chain in one; throttled items would be sent again, and each
//! batch request carries an `Idempotency-Key`.
//!
//! ```text
//! cargo run --example demo &
//! cargo run --example client -- --base http://127.0.0.1:3000 --requests 250
//! ```
//!
//! Prints one line per request (`id status`), then a summary.

use bytes::Bytes;
use clap::Parser;
use http::{header, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;
use tower_http_batch::client::{Batch, BatchClient, Item};

#[derive(Parser)]
#[command(about = "Send many requests to the demo as JSON batches")]
struct Args {
    /// The demo's address.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    base: String,
    /// How many requests to send.
    #[arg(long, default_value_t = 250)]
    requests: usize,
    /// The most requests per batch request: the demo takes 100.
    #[arg(long, default_value_t = 100)]
    max_requests: usize,
    /// The demo token the batches are sent with.
    #[arg(long, default_value = "alice-token")]
    token: String,
}

/// Request `i`: every fifth a create, the two after it reads waiting for it (a chain of
/// three), the rest independent reads.
fn item(i: usize) -> Item {
    let get = |path: String| Request::get(path).body(Bytes::new()).expect("a valid path");
    let id = format!("r{i}");
    match i % 5 {
        0 => {
            let body = format!(r#"{{"name": "Client {i}", "email": "client{i}@example.com"}}"#);
            let create = Request::post("/users")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Bytes::from(body))
                .expect("a valid request");
            Item::new(create).id(id)
        }
        1 | 2 => Item::new(get(format!("/users/{}", i % 100 + 1)))
            .id(id)
            .depends_on(format!("r{}", i - i % 5)),
        _ => Item::new(get(format!("/users/{}", i % 100 + 1))).id(id),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let endpoint = format!("{}/batch", args.base.trim_end_matches('/')).parse()?;
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = BatchClient::new(http, endpoint).max_requests(args.max_requests);
    let token = format!("Bearer {}", args.token).parse()?;
    let batch = (0..args.requests).map(item).fold(
        Batch::new().header(header::AUTHORIZATION, token),
        Batch::push,
    );
    let responses = client.oneshot(batch).await?;
    for (i, response) in responses.iter().enumerate() {
        println!("r{i} {}", response.status().as_u16());
    }
    let report = responses.report();
    println!(
        "{} requests in {} batch requests: {} failed, {} sent again, waited {} ms",
        responses.len(),
        report.batch_requests,
        responses.failed().count(),
        report.items_resent,
        report.waited.as_millis()
    );
    Ok(())
}
