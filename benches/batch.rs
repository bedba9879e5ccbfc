//! In-process cost of the layer: `cargo bench --bench batch`. BENCHMARKS.md has the
//! figures.
//!
//! - `pass_through`: one request through `Batch<Router>` against the bare `Router`;
//! - `n_gets`: a batch of N small GETs (N = 1, 10, 100, 1000) against the same N requests
//!   as direct `oneshot` calls (bodies collected in both);
//! - `scale`: batches of 10 to 10,000 items, independent and chained (each depends on the
//!   one before and uses its result in its URL): the time per item should stay flat;
//! - `sleep_20ms_x50`: concurrency against sequential execution;
//! - `cpu_1ms_x100`: 100 sub-requests that each burn about 1 ms of CPU, on a runtime with a
//!   worker thread per core, at `concurrency(1)` and `concurrency(cores)`: sub-requests run
//!   as tasks when several may be in flight, so the second takes about 1/cores of the time;
//! - `tiny_x100`: 100 small GETs on that runtime at `concurrency(1)` and `concurrency(8)`:
//!   tiny handlers stay in the batch's task, so both should cost about the same.

use axum::body::Body;
use axum::routing::get;
use axum::{Json, Router};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::Request;
use http_body_util::BodyExt;
use serde_json::json;
use tower::{Layer, ServiceExt};
// `layer_router` is how axum users wrap a `Router`; `Layer::layer` wraps any service.
use tower_http_batch::BatchLayer;

fn router() -> Router {
    Router::new().route(
        "/items/{id}",
        get(|| async { Json(json!({"id": 1, "name": "small"})) }),
    )
}

/// A service that answers a small JSON object to a request with any body.
#[derive(Clone, Copy)]
struct Hello;

impl<B> tower::Service<Request<B>> for Hello {
    type Response = http::Response<http_body_util::Full<bytes::Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        let body = bytes::Bytes::from_static(br#"{"id":1,"name":"small"}"#);
        std::future::ready(Ok(http::Response::new(http_body_util::Full::new(body))))
    }
}

fn get_request(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn batch_request(batch: &str) -> Request<Body> {
    Request::post("/batch")
        .header("content-type", "application/json")
        .body(Body::from(batch.to_string()))
        .unwrap()
}

/// The layer with its limits raised for the largest batches.
fn layer() -> BatchLayer {
    BatchLayer::new("/batch")
        .max_requests(10_000)
        .max_body_bytes(64 << 20)
        .max_response_bytes(256 << 20)
}

fn gets(n: usize) -> String {
    json!({"requests": (0..n).map(|i| json!({"url": format!("/items/{i}")})).collect::<Vec<_>>()})
        .to_string()
}

/// Each item depends on the one before and reads its `id` into its URL.
fn chain(n: usize) -> String {
    let items: Vec<_> = (0..n)
        .map(|i| {
            if i == 0 {
                json!({"id": "0", "url": "/items/0"})
            } else {
                json!({"id": i.to_string(), "url": format!("/items/{{{{{}#/body/id}}}}", i - 1), "dependsOn": [(i - 1).to_string()]})
            }
        })
        .collect();
    json!({ "requests": items }).to_string()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bare = router();
    let wrapped = layer().layer_router(router());

    let mut g = c.benchmark_group("pass_through");
    g.bench_function("bare_router", |b| {
        b.to_async(&rt).iter(|| async {
            let res = bare.clone().oneshot(get_request("/items/1")).await.unwrap();
            res.into_body().collect().await.unwrap().to_bytes()
        })
    });
    g.bench_function("through_batch_layer", |b| {
        b.to_async(&rt).iter(|| async {
            let res = wrapped
                .clone()
                .oneshot(get_request("/items/1"))
                .await
                .unwrap();
            res.into_body().collect().await.unwrap().to_bytes()
        })
    });
    // The layer's own cost, around a service that takes any body.
    let bare = Hello;
    let batched = layer().layer(Hello);
    g.bench_function("bare_service", |b| {
        b.to_async(&rt).iter(|| async {
            let res = bare.oneshot(get_request("/items/1")).await.unwrap();
            res.into_body().collect().await.unwrap().to_bytes()
        })
    });
    g.bench_function("through_batch_layer_generic", |b| {
        b.to_async(&rt).iter(|| async {
            let res = batched
                .clone()
                .oneshot(get_request("/items/1"))
                .await
                .unwrap();
            res.into_body().collect().await.unwrap().to_bytes()
        })
    });
    g.finish();
    let bare = router();

    let mut g = c.benchmark_group("n_gets");
    for n in [1usize, 10, 100, 1000] {
        g.throughput(Throughput::Elements(n as u64));
        let batch = gets(n);
        g.bench_with_input(BenchmarkId::new("direct_oneshot", n), &n, |b, &n| {
            b.to_async(&rt).iter(|| async {
                for i in 0..n {
                    let res = bare
                        .clone()
                        .oneshot(get_request(&format!("/items/{i}")))
                        .await
                        .unwrap();
                    res.into_body().collect().await.unwrap().to_bytes();
                }
            })
        });
        g.bench_with_input(BenchmarkId::new("one_batch", n), &batch, |b, batch| {
            b.to_async(&rt).iter(|| async {
                let req = batch_request(batch);
                let res = wrapped.clone().oneshot(req).await.unwrap();
                res.into_body().collect().await.unwrap().to_bytes()
            })
        });
    }
    g.finish();
}

/// 100 small GETs without a key, with a new `Idempotency-Key` each time (recorded in
/// memory, and in SQLite with the `sqlite` feature), and with the same key (replayed).
fn keyed(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let batch = gets(100);
    let mut g = c.benchmark_group("keyed_100_gets");
    g.throughput(Throughput::Elements(100));
    let run = |app: tower_http_batch::BatchRouter, key: Option<String>| {
        let mut req = batch_request(&batch);
        if let Some(key) = key {
            req.headers_mut()
                .insert("idempotency-key", key.try_into().unwrap());
        }
        async move {
            let res = app.oneshot(req).await.unwrap();
            res.into_body().collect().await.unwrap().to_bytes()
        }
    };
    let plain = layer().layer_router(router());
    g.bench_function("no_key", |b| {
        b.to_async(&rt).iter(|| run(plain.clone(), None))
    });
    let memory = layer().layer_router(router());
    let n = std::sync::atomic::AtomicUsize::new(0);
    let next = || {
        Some(format!(
            "k{}",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ))
    };
    g.bench_function("new_key_memory", |b| {
        b.to_async(&rt).iter(|| run(memory.clone(), next()))
    });
    g.bench_function("replayed_memory", |b| {
        b.to_async(&rt)
            .iter(|| run(memory.clone(), Some("same".into())))
    });
    #[cfg(feature = "sqlite")]
    {
        let path = std::env::temp_dir().join(format!("thb-bench-{}.db", std::process::id()));
        let store = tower_http_batch::store::SqliteStore::open(&path).unwrap();
        let sqlite = layer().idempotency(store).layer_router(router());
        g.bench_function("new_key_sqlite", |b| {
            b.to_async(&rt).iter(|| run(sqlite.clone(), next()))
        });
        let _ = std::fs::remove_file(path);
    }
    g.finish();
}

/// 50 independent sub-requests whose handler sleeps 20 ms: `concurrency(50)` against
/// `concurrency(1)`. The ideal is 20 ms and 1 s.
fn sleepy(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let router = Router::new().route(
        "/sleep",
        get(|| async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            "rested"
        }),
    );
    let batch = json!({"requests": (0..50).map(|_| json!({"url": "/sleep"})).collect::<Vec<_>>()})
        .to_string();
    let mut g = c.benchmark_group("sleep_20ms_x50");
    g.sample_size(10);
    for n in [50usize, 1] {
        let svc = BatchLayer::new("/batch")
            .concurrency(n)
            .layer(router.clone());
        g.bench_with_input(BenchmarkId::new("concurrency", n), &batch, |b, batch| {
            b.to_async(&rt).iter(|| async {
                let req = batch_request(batch);
                let res = svc.clone().oneshot(req).await.unwrap();
                res.into_body().collect().await.unwrap().to_bytes()
            })
        });
    }
    g.finish();
}

/// Iterations of [`spin`] that take about 1 ms here.
fn iterations_per_ms() -> u64 {
    let start = std::time::Instant::now();
    std::hint::black_box(spin(1_000_000));
    (1_000_000.0 / (start.elapsed().as_secs_f64() * 1e3)) as u64
}

/// Fixed work: `n` rounds of a multiply-xorshift.
fn spin(n: u64) -> u64 {
    let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15u64);
    for _ in 0..n {
        x = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }
    x
}

/// A batch of `items` GETs to `path`.
fn gets_of(path: &str, items: usize) -> String {
    json!({"requests": (0..items).map(|_| json!({"url": path})).collect::<Vec<_>>()}).to_string()
}

/// Sub-requests that burn CPU, and tiny ones, on a runtime with a worker per core: the
/// same batch at `concurrency(1)` and above.
fn parallel(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    let per_ms = iterations_per_ms();
    let router = router().route(
        "/burn",
        get(move || async move { spin(per_ms).to_string() }),
    );
    let groups = [
        ("cpu_1ms_x100", gets_of("/burn", 100), [1, cores]),
        ("tiny_x100", gets(100), [1, 8]),
    ];
    for (name, batch, levels) in groups {
        let mut g = c.benchmark_group(name);
        g.sample_size(20);
        for n in levels {
            let svc = layer().concurrency(n).layer_router(router.clone());
            g.bench_with_input(BenchmarkId::new("concurrency", n), &batch, |b, batch| {
                b.to_async(&rt).iter(|| async {
                    let res = svc.clone().oneshot(batch_request(batch)).await.unwrap();
                    assert_eq!(res.status(), 200);
                    res.into_body().collect().await.unwrap().to_bytes()
                })
            });
        }
        g.finish();
    }
}

/// Time per item from 10 to 10,000 items: flat means no step grows with the batch.
fn scale(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let wrapped = layer().layer_router(router());
    let mut g = c.benchmark_group("scale");
    g.sample_size(20);
    for n in [10usize, 100, 1000, 10_000] {
        g.throughput(Throughput::Elements(n as u64));
        for (shape, batch) in [("independent", gets(n)), ("chained", chain(n))] {
            g.bench_with_input(BenchmarkId::new(shape, n), &batch, |b, batch| {
                b.to_async(&rt).iter(|| async {
                    let res = wrapped.clone().oneshot(batch_request(batch)).await.unwrap();
                    assert_eq!(res.status(), 200);
                    res.into_body().collect().await.unwrap().to_bytes()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench, scale, sleepy, parallel, keyed);
criterion_main!(benches);
