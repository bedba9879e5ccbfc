//! The two load attacks of issue 12, over real HTTP against a running server, with the
//! server's CPU time and memory read from `/proc/<pid>` before and after.
//!
//! ```text
//! cargo build --release --example demo --example attack
//! target/release/examples/demo --addr 127.0.0.1:3000 & PID=$!
//! target/release/examples/attack --target 127.0.0.1:3000 --pid $PID amplify --demo
//! target/release/examples/attack --target 127.0.0.1:3000 --pid $PID in-flight
//! ```
//!
//! `amplify`: 16 items that each return a 1 MB JSON body, then 84 items that each depend on
//! all 16 and read `{{a0#/status}}` (or `--pointer /body/0`, which parses). With `--demo`,
//! the 1 MB body is a demo user created first with a 1 MB name; otherwise `--big-url`
//! (for `batch-proxy` in front of `python3 -m http.server`, a 1 MB `.json` file).
//!
//! `in-flight`: `--batches` (1,000) connections at once, each sending a batch of about
//! 2 MB (100 `GET /whoami` and padding in an unknown field), reading the reply to the end.
//!
//! `burst`: `--batches` (1,000) connections at once, each sending a batch of `--items`
//! (100) `GET /users/1`, reading the reply to the end (issue 25: served, not refused).
//!
//! `slow-readers`: `--readers` (64) connections each sending a batch of `--items` (50)
//! `GET /users` (about 750 KB of reply on the demo; with `--big-user BYTES`, one user with
//! a name that long, read by every item) and reading it at `--rate` bytes a
//! second (32 KiB/s) through a 4 KiB receive buffer; once they are all in, `--probes` (20)
//! small batches one after another, each timed. Reports how long the slow readers held on
//! and what the probes got.
//!
//! Memory is the peak resident set above the idle server (`VmHWM` after, once the kernel's
//! mark is reset through `/proc/<pid>/clear_refs`, minus `VmRSS` before).

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// The server, as `host:port`.
    #[arg(long)]
    target: String,
    /// The server's process id, to read its CPU time and memory.
    #[arg(long)]
    pid: u32,
    /// The batch endpoint.
    #[arg(long, default_value = "/batch")]
    path: String,
    #[command(subcommand)]
    attack: Attack,
}

#[derive(Subcommand)]
enum Attack {
    /// References into big dependencies.
    Amplify {
        /// Create a demo user with a 1 MB name and read it as the big body.
        #[arg(long)]
        demo: bool,
        /// A URL that answers a 1 MB JSON body (without `--demo`).
        #[arg(long, default_value = "/big.json")]
        big_url: String,
        /// What each of the 84 items reads from each dependency.
        #[arg(long, default_value = "/status")]
        pointer: String,
    },
    /// Many 2 MB batches at once.
    InFlight {
        #[arg(long, default_value_t = 1000)]
        batches: usize,
    },
    /// Many small batches at once.
    Burst {
        #[arg(long, default_value_t = 1000)]
        batches: usize,
        #[arg(long, default_value_t = 100)]
        items: usize,
    },
    /// Clients that read their replies slowly, and batches sent meanwhile.
    SlowReaders {
        #[arg(long, default_value_t = 64)]
        readers: usize,
        #[arg(long, default_value_t = 50)]
        items: usize,
        /// Bytes a second each slow reader reads.
        #[arg(long, default_value_t = 32 * 1024)]
        rate: usize,
        #[arg(long, default_value_t = 20)]
        probes: usize,
        /// Each item reads one demo user created with a name of this many bytes (instead of
        /// `GET /users`): replies past what the kernels buffer (4 MiB on Linux).
        #[arg(long)]
        big_user: Option<usize>,
    },
}

/// CPU seconds (user + system) and resident memory of a process.
struct Usage {
    cpu_secs: f64,
    rss_kib: u64,
    hwm_kib: u64,
}

fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the server runs");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    Usage {
        cpu_secs: ticks / 100.0,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    }
}

/// One HTTP/1.1 request on its own connection; the status and body of the reply.
async fn send(
    target: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(target).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {target}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    // A server may answer (503, 413) without reading the body, and close: read its reply
    // all the same.
    let written = stream.write_all(body).await;
    let mut reply = Vec::new();
    let read = stream.read_to_end(&mut reply).await;
    if reply.is_empty() {
        written?;
        read?;
    }
    let status = reply.get(9..12).and_then(|s| std::str::from_utf8(s).ok());
    let status = status.and_then(|s| s.parse().ok()).unwrap_or(0);
    let at = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| i + 4);
    Ok((status, reply.split_off(at)))
}

async fn amplify(args: &Args, demo: bool, big_url: &str, pointer: &str) -> String {
    let big_url = if demo {
        let user = json!({"name": "x".repeat(1_000_000), "email": "big@example.com"});
        let (status, body) = send(&args.target, "POST", "/users", user.to_string().as_bytes())
            .await
            .unwrap();
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let user: Value = serde_json::from_slice(&body).unwrap();
        format!("/users/{}", user["id"])
    } else {
        big_url.to_string()
    };
    let mut requests: Vec<Value> = (0..16)
        .map(|i| json!({"id": format!("a{i}"), "url": big_url}))
        .collect();
    let ids: Vec<String> = (0..16).map(|i| format!("a{i}")).collect();
    let headers: serde_json::Map<String, Value> = (0..16)
        .map(|i| (format!("x-{i}"), json!(format!("{{{{a{i}#{pointer}}}}}"))))
        .collect();
    for i in 0..84 {
        requests.push(
            json!({"id": format!("r{i}"), "url": "/whoami", "dependsOn": ids, "headers": headers}),
        );
    }
    let batch = json!({ "requests": requests }).to_string();
    let (status, body) = send(&args.target, "POST", &args.path, batch.as_bytes())
        .await
        .unwrap();
    let reply: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut counts = std::collections::BTreeMap::new();
    for item in reply["responses"].as_array().into_iter().flatten() {
        *counts.entry(item["status"].to_string()).or_insert(0) += 1;
    }
    format!(
        "batch of {} bytes: {status}, item statuses {counts:?}, reply {} bytes",
        batch.len(),
        body.len()
    )
}

/// `batch` sent `batches` times at once, each on a connection of its own, each reply read
/// to the end; how many got each status (or error).
async fn at_once(
    args: &Args,
    batch: &std::sync::Arc<Vec<u8>>,
    batches: usize,
) -> std::collections::BTreeMap<String, usize> {
    let tasks: Vec<_> = (0..batches)
        .map(|_| {
            let (batch, target, path) = (batch.clone(), args.target.clone(), args.path.clone());
            tokio::spawn(async move { send(&target, "POST", &path, &batch).await })
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for task in tasks {
        let status = match task.await.unwrap() {
            Ok((status, _)) => status.to_string(),
            Err(e) => format!("{:?}", e.kind()),
        };
        *counts.entry(status).or_insert(0) += 1;
    }
    counts
}

async fn in_flight(args: &Args, batches: usize) -> String {
    let requests: Vec<Value> = (0..100).map(|_| json!({"url": "/whoami"})).collect();
    let pad = "x".repeat(2_000_000 - 3_000);
    let batch = json!({ "requests": requests, "pad": pad })
        .to_string()
        .into_bytes();
    let batch = std::sync::Arc::new(batch);
    let counts = at_once(args, &batch, batches).await;
    format!("{batches} batches of {} bytes: {counts:?}", batch.len())
}

async fn burst(args: &Args, batches: usize, items: usize) -> String {
    let requests: Vec<Value> = (0..items).map(|_| json!({"url": "/users/1"})).collect();
    let batch = std::sync::Arc::new(json!({ "requests": requests }).to_string().into_bytes());
    let counts = at_once(args, &batch, batches).await;
    format!("{batches} batches of {items} GET /users/1: {counts:?}")
}

/// Sends `batch` on a connection with a 4 KiB receive buffer and reads the reply at `rate`
/// bytes a second; the seconds until the server ended it, and the bytes read.
async fn read_slowly(target: String, path: String, batch: Vec<u8>, rate: usize) -> (f64, usize) {
    let started = Instant::now();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let Ok(mut stream) = socket.connect(target.parse().unwrap()).await else {
        return (0.0, 0);
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {target}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        batch.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&batch).await;
    let (mut read, chunk) = (0, (rate / 10).max(1));
    let mut buf = vec![0u8; chunk];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return (started.elapsed().as_secs_f64(), read),
            Ok(n) => read += n,
        }
        // `rate` bytes a second, in tenths.
        let due = started + std::time::Duration::from_secs_f64(read as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
    }
}

/// A demo user with a name of `bytes` bytes; its URL.
async fn big_user_url(args: &Args, bytes: usize) -> String {
    let user = json!({"name": "x".repeat(bytes), "email": "big@example.com"});
    let (status, body) = send(&args.target, "POST", "/users", user.to_string().as_bytes())
        .await
        .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let user: Value = serde_json::from_slice(&body).unwrap();
    format!("/users/{}", user["id"])
}

async fn slow_readers(
    args: &Args,
    url: &str,
    readers: usize,
    items: usize,
    rate: usize,
    probes: usize,
) -> String {
    let requests: Vec<Value> = (0..items).map(|_| json!({"url": url})).collect();
    let batch = json!({ "requests": requests }).to_string().into_bytes();
    let slow: Vec<_> = (0..readers)
        .map(|_| {
            let (target, path, batch) = (args.target.clone(), args.path.clone(), batch.clone());
            tokio::spawn(read_slowly(target, path, batch, rate))
        })
        .collect();
    let started = Instant::now();
    // Let the slow readers take their places first.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let probe = json!({"requests": [{"url": "/users/1"}]})
        .to_string()
        .into_bytes();
    let mut answers = Vec::new();
    for _ in 0..probes {
        let sent = Instant::now();
        let status = match send(&args.target, "POST", &args.path, &probe).await {
            Ok((status, _)) => status.to_string(),
            Err(e) => format!("{:?}", e.kind()),
        };
        answers.push(format!("{status} in {:.1} s", sent.elapsed().as_secs_f64()));
    }
    // Before the slow readers end, which may be long.
    eprintln!(
        "probes, {:.1} s after the slow readers started: {answers:?}",
        started.elapsed().as_secs_f64()
    );
    let mut held = Vec::new();
    for task in slow {
        held.push(task.await.unwrap());
    }
    let longest = held.iter().map(|h| h.0).fold(0.0, f64::max);
    let shortest = held.iter().map(|h| h.0).fold(f64::MAX, f64::min);
    let read: usize = held.iter().map(|h| h.1).sum::<usize>() / held.len().max(1);
    format!(
        "{readers} readers at {rate} B/s of a batch of {items} GET {url} each: held on {shortest:.1}-{longest:.1} s, read {read} bytes on average; probes: {answers:?}"
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let before = usage(args.pid);
    // Reset the peak-RSS mark, so VmHWM is this attack's peak.
    std::fs::write(format!("/proc/{}/clear_refs", args.pid), "5").expect("clear_refs");
    let started = Instant::now();
    let outcome = match &args.attack {
        Attack::Amplify {
            demo,
            big_url,
            pointer,
        } => amplify(&args, *demo, big_url, pointer).await,
        Attack::InFlight { batches } => in_flight(&args, *batches).await,
        Attack::Burst { batches, items } => burst(&args, *batches, *items).await,
        Attack::SlowReaders {
            readers,
            items,
            rate,
            probes,
            big_user,
        } => {
            let url = match big_user {
                Some(bytes) => big_user_url(&args, *bytes).await,
                None => "/users".to_string(),
            };
            slow_readers(&args, &url, *readers, *items, *rate, *probes).await
        }
    };
    let after = usage(args.pid);
    println!("{outcome}");
    println!(
        "server: {:.2} s of CPU, peak {} MiB above idle ({} MiB idle); {:.1} s wall",
        after.cpu_secs - before.cpu_secs,
        after.hwm_kib.saturating_sub(before.rss_kib) / 1024,
        before.rss_kib / 1024,
        started.elapsed().as_secs_f64()
    );
}
