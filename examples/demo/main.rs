//! The demo: a users API on SQLite with batch endpoints.
//!
//! ```text
//! cargo run --example demo                      # 127.0.0.1:3000, database in memory
//! cargo run --example demo -- --addr 127.0.0.1:8080 --db demo.db
//! ```

mod app;
mod serve;

use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

/// A users API on SQLite, with `POST /batch` from tower-http-batch.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// SQLite database file to keep the data in (default: in memory).
    #[arg(long)]
    db: Option<String>,
    /// Seconds a request head may take to arrive, and an idle connection may stay open.
    #[arg(long, default_value_t = 10)]
    header_timeout_secs: u64,
    /// Seconds a reply may make no progress because the client does not read it.
    #[arg(long, default_value_t = 30)]
    write_timeout_secs: u64,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// Where batches sent with an `Idempotency-Key`, and batch jobs (`Prefer:
    /// respond-async`), are recorded: `memory`, `sqlite:FILE` (kept across restarts) or
    /// `redis://HOST:PORT` (shared by several demos: any answers a job's monitor).
    #[arg(long, default_value = "memory")]
    store: String,
    /// Seconds a keyed batch's record is kept.
    #[arg(long, default_value_t = 86_400)]
    idempotency_retention_secs: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let db = app::Db::open(args.db.as_deref())?;
    // A backlog for a burst (`tokio::net::TcpListener::bind` keeps std's 128, past which
    // the kernel resets new connections): connections past `--max-connections` wait there.
    let socket = match args.addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(args.addr)?;
    let listener = socket.listen(4096)?;
    let addr = listener.local_addr()?;

    println!("tower-http-batch demo listening on http://{addr}");
    println!("database: {}", args.db.as_deref().unwrap_or("in memory"));
    println!(
        "keyed batches (Idempotency-Key) and batch jobs (Prefer: respond-async) recorded in: {}",
        args.store
    );
    println!("demo tokens (Authorization: Bearer <token>):");
    for (token, user) in app::TOKENS {
        println!("  {token:<12} -> {user}");
    }
    println!("no Authorization header acts as `anonymous`; any other token gets 401.");
    println!();
    println!("try:");
    println!(
        r#"  curl -s http://{addr}/batch -H 'authorization: Bearer alice-token' -H 'content-type: application/json' -d '{{"requests": [{{"id": "me", "url": "/whoami"}}, {{"id": "new", "method": "POST", "url": "/users", "body": {{"name": "Alice", "email": "alice@example.com"}}}}, {{"id": "one", "url": "/users/1"}}, {{"id": "gone", "url": "/users/9999"}}]}}'"#
    );

    println!(
        r#"  curl -s -X PATCH http://{addr}/users/batch -H 'content-type: application/json' -d '{{"updates": [{{"id": 42, "name": "Alice Updated"}}, {{"id": 999, "name": "NonExistent"}}]}}'"#
    );
    println!(
        r#"  curl -s -X POST 'http://{addr}/users/batch?atomic=true' -H 'content-type: application/json' -d '{{"users": [{{"name": "Ann", "email": "ann@example.com"}}, {{"name": "", "email": "x@example.com"}}]}}'"#
    );

    println!(
        r#"  curl -si http://{addr}/batch -H 'prefer: respond-async' -H 'content-type: application/json' -d '{{"requests": [{{"id": "list", "url": "/users"}}]}}'   # 202, then GET its Location"#
    );

    // `ConnectInfo` goes into the outer request's extensions; sub-requests inherit it.
    let limits = serve::Limits {
        header_timeout: Duration::from_secs(args.header_timeout_secs),
        write_timeout: Duration::from_secs(args.write_timeout_secs),
        max_connections: args.max_connections,
    };
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let keys = app::Keys {
        store: tower_http_batch::store::open(&args.store)
            .await
            .map_err(|e| format!("--store {}: {e}", args.store))?,
        retention: Duration::from_secs(args.idempotency_retention_secs),
    };
    serve::serve(listener, app::app_with_keys(db, keys), limits, ctrl_c).await?;
    Ok(())
}
