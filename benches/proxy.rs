//! What `batch-proxy` costs per sub-request it forwards, against the same GETs sent straight
//! to the upstream. One command builds the proxy and runs it all:
//!
//! ```text
//! cargo bench --features proxy --bench proxy                     # 100 GETs per batch, 10 s each
//! cargo bench --features proxy --bench proxy -- --seconds 20 --connections 4 --items 100
//! cargo bench --features proxy --bench proxy -- --proxy /path/to/another/batch-proxy
//! ```
//!
//! The upstream is a small hyper server (HTTP/1.1, or HTTP/2 with prior knowledge) on one
//! thread, answering every `GET` with a small JSON object. The proxy is the release
//! `batch-proxy` binary, in its own process, in front of it, in each of [`SETUPS`] in turn
//! (another binary, `--proxy`, runs once with its defaults). The load is `--connections`
//! keep-alive connections (hyper's client), each sending one request at a time for
//! `--seconds`: batches of `--items` GETs to the proxy, and first the same GETs one by one
//! to the upstream. Figures: sub-requests per second against direct requests, and the
//! proxy's CPU time (user + system, from `/proc/<pid>/stat`) per million sub-requests it
//! forwarded.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Args {
    seconds: u64,
    connections: usize,
    items: usize,
    /// Another `batch-proxy` binary to measure (an older build, to compare).
    proxy: Option<String>,
}

impl Args {
    /// `--seconds N --connections N --items N`; anything else (cargo bench's own flags) is
    /// ignored.
    fn parse() -> Self {
        let mut args = Self {
            seconds: 10,
            connections: 4,
            items: 100,
            proxy: None,
        };
        let all: Vec<String> = std::env::args().collect();
        for pair in all.windows(2) {
            let value = || pair[1].parse().expect("a number");
            match pair[0].as_str() {
                "--seconds" => args.seconds = value() as u64,
                "--connections" => args.connections = value(),
                "--items" => args.items = value(),
                "--proxy" => args.proxy = Some(pair[1].clone()),
                _ => {}
            }
        }
        args
    }
}

/// The upstream: one thread, HTTP/1.1, `{"id":1,"name":"small"}` for every request.
fn upstream() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let service = service_fn(|_req| async {
                    let body = Full::new(Bytes::from_static(br#"{"id":1,"name":"small"}"#));
                    let mut res = http::Response::new(body);
                    let json = http::HeaderValue::from_static("application/json");
                    res.headers_mut().insert(http::header::CONTENT_TYPE, json);
                    Ok::<_, std::convert::Infallible>(res)
                });
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    // HTTP/1.1, or HTTP/2 with prior knowledge (`--upstream-http2`).
                    let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = server.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
    });
    addr
}

/// The release proxy (or `bin`) in front of `upstream`, with `flags`; its address.
fn proxy(bin: Option<&str>, upstream: SocketAddr, flags: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(bin.unwrap_or(env!("CARGO_BIN_EXE_batch-proxy")))
        .args(["--upstream", &format!("http://{upstream}")])
        .args(["--listen", "127.0.0.1:0", "--max-requests", "1000"])
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the batch-proxy binary");
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    // "batch-proxy listening on http://ADDR -> upstream ..."
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

/// User + system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which ends with ')'): utime is the 14th field of the
    // line, stime the 15th; counted from the state, the 3rd, they are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // Linux counts them in USER_HZ, 100 per second.
    ticks / 100.0
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// `connections` loops sending `make()` requests for `seconds`; the requests answered.
async fn load(
    client: &HttpClient,
    connections: usize,
    seconds: u64,
    make: impl Fn() -> http::Request<Full<Bytes>> + Send + Sync + 'static,
) -> u64 {
    let make = Arc::new(make);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, make, stop, done) = (client.clone(), make.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A request that fails is not counted (and said, below).
                let Ok(res) = client.request(make()).await else {
                    eprintln!("a request failed");
                    continue;
                };
                let ok = res.status() == 200;
                if res.into_body().collect().await.is_ok() && ok {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed)
}

/// The proxy set-ups measured, each with its own process: its defaults (HTTP/1.1 to the
/// upstream, one sub-request at a time, one worker thread), h2c with four at a time, and
/// the defaults on two worker threads (on a 2-core machine that the upstream and the load
/// share, this shows what thread switches cost).
const SETUPS: [(&str, &[&str]); 3] = [
    ("HTTP/1.1, concurrency 1, 1 thread", &[]),
    (
        "h2c, concurrency 4, 1 thread",
        &["--upstream-http2", "--concurrency", "4"],
    ),
    ("HTTP/1.1, concurrency 1, 2 threads", &["--threads", "2"]),
];

fn main() {
    let args = Args::parse();
    let upstream = upstream();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let requests: Vec<String> = (0..args.items)
        .map(|i| format!(r#"{{"url":"/items/{i}"}}"#))
        .collect();
    let batch = Bytes::from(format!(r#"{{"requests":[{}]}}"#, requests.join(",")));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let per_second = |n: u64| n as f64 / args.seconds as f64;
    println!(
        "{} connections, {} s each, {} GETs per batch",
        args.connections, args.seconds, args.items
    );
    let direct_get = move || {
        http::Request::get(format!("http://{upstream}/items/1"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let direct = rt.block_on(async {
        load(&client, args.connections, 1, direct_get).await;
        load(&client, args.connections, args.seconds, direct_get).await
    });
    println!(
        "direct to the upstream:              {:>8.0} requests/s",
        per_second(direct)
    );
    let setups = match args.proxy {
        Some(_) => vec![("the given binary, its defaults", &[][..])],
        None => SETUPS.to_vec(),
    };
    for (name, flags) in setups {
        let (mut child, proxy) = proxy(args.proxy.as_deref(), upstream, flags);
        let batch = batch.clone();
        let batch_post = move || {
            http::Request::post(format!("http://{proxy}/batch"))
                .header("content-type", "application/json")
                .body(Full::new(batch.clone()))
                .unwrap()
        };
        let (batched, cpu) = rt.block_on(async {
            load(&client, args.connections, 1, batch_post.clone()).await;
            let before = cpu_seconds(child.id());
            let batches = load(&client, args.connections, args.seconds, batch_post).await;
            let batched = batches * args.items as u64;
            (batched, cpu_seconds(child.id()) - before)
        });
        let _ = child.kill();
        println!(
            "batch-proxy, {name:<36} {:>8.0} sub-requests/s ({:.2}x direct), CPU {:.2} s per million sub-requests",
            per_second(batched),
            batched as f64 / direct as f64,
            cpu / batched as f64 * 1e6,
        );
    }
}
