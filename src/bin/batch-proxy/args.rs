//! The command line of `batch-proxy`, and the layer it builds.

use clap::Parser;
use http::{HeaderName, Uri};
use std::net::SocketAddr;
use std::time::Duration;
use tower_http_batch::BatchLayer;

/// Batch endpoints in front of any HTTP service.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Batch endpoints (POST /batch, SugarCRM-style bulk) in front of any HTTP service"
)]
pub(crate) struct Args {
    /// The service to put batch endpoints in front of, as `http://host:port`. Every request,
    /// batch sub-requests included, goes there and nowhere else.
    #[arg(long)]
    pub(crate) upstream: Uri,
    /// Address to listen on (`127.0.0.1:0` picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:3001")]
    pub(crate) listen: SocketAddr,
    /// Path of the batch endpoint: JSON (OData 4.01 / Microsoft Graph) and multipart/mixed
    /// (OData 4.0), chosen by content-type. `none` to disable.
    #[arg(long, default_value = "/batch")]
    pub(crate) json_path: String,
    /// Microsoft Graph's service root, e.g. `/v1.0`: adds the batch endpoint `{root}/$batch`,
    /// where sub-request paths are taken under the root (`/users/1` -> `/v1.0/users/1`),
    /// as Graph SDKs expect.
    #[arg(long, value_name = "PATH", value_parser = service_root)]
    pub(crate) service_root: Option<String>,
    /// Path of an OData V2 batch endpoint, e.g. `/sap/opu/odata/sap/DEMO_SRV/$batch`:
    /// multipart/mixed answered `202 Accepted` with `DataServiceVersion: 2.0`, as SAP
    /// Gateway answers (V2 clients such as pyodata take nothing else). Repeatable.
    #[arg(long = "odata-v2-path", value_name = "PATH", value_parser = batch_path)]
    pub(crate) odata_v2_paths: Vec<String>,
    /// Path of a SugarCRM-style bulk endpoint, e.g. `/rest/v10/bulk` (off by default).
    #[arg(long)]
    pub(crate) bulk_path: Option<String>,
    /// Prefix bulk sub-URLs resolve under, e.g. `/rest` (`/v10/Accounts` -> `/rest/v10/Accounts`).
    #[arg(long, default_value = "")]
    pub(crate) bulk_base: String,
    /// Most sub-requests in one batch.
    #[arg(long, default_value_t = tower_http_batch::DEFAULT_MAX_REQUESTS)]
    pub(crate) max_requests: usize,
    /// Most bytes in a batch request body.
    #[arg(long, default_value_t = tower_http_batch::DEFAULT_MAX_BODY_BYTES)]
    pub(crate) max_body_bytes: usize,
    /// Sub-requests of one batch in flight at once (1: in order).
    #[arg(long, default_value_t = 1)]
    pub(crate) concurrency: usize,
    /// Seconds one sub-request may take before its item reports 504 (0: no limit).
    #[arg(long, default_value_t = 30)]
    pub(crate) timeout_secs: u64,
    /// Seconds a whole batch may take (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub(crate) batch_timeout_secs: u64,
    /// One more identity header, like `authorization`: sub-requests carry the outer value,
    /// and the one a sub-request sets is dropped (e.g. `x-api-key`). Repeatable.
    #[arg(long = "identity-header", value_name = "NAME")]
    pub(crate) identity_headers: Vec<HeaderName>,
    /// One more header sub-requests may never set (e.g. `x-tenant`). Repeatable.
    #[arg(long = "drop-header", value_name = "NAME")]
    pub(crate) drop_headers: Vec<HeaderName>,
    /// The request-id header: when a batch carries one, each sub-request gets
    /// `<id>.<item id>` in it, and its item gives it back.
    #[arg(
        long = "request-id-header",
        value_name = "NAME",
        default_value = "x-request-id"
    )]
    pub(crate) request_id_header: HeaderName,
    /// A path prefix batches may not reach (e.g. `/admin`: also `/admin/…`, in any
    /// spelling); such a sub-request reports 403. Repeatable.
    #[arg(long = "refuse-path", value_name = "PREFIX", value_parser = refused_path)]
    pub(crate) refuse_paths: Vec<String>,
    /// Seconds a plain (not batch) request may wait for the upstream's response head; then
    /// 504 (0: no limit). Batch sub-requests have --timeout-secs (this one too if that is 0).
    #[arg(long, default_value_t = 30)]
    pub(crate) upstream_timeout_secs: u64,
    /// Speak HTTP/2 to the upstream, without TLS (h2c with prior knowledge: the upstream
    /// must accept it). A batch's sub-requests then share connections and their writes.
    #[arg(long)]
    pub(crate) upstream_http2: bool,
    /// Worker threads, each serving the connections it is given on a runtime of its own,
    /// with its own upstream connections (0: one per core). One forwards over 60,000
    /// sub-requests a second; more pay off only with cores the upstream does not need.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Seconds a request head may take to arrive, and an idle connection may stay open.
    #[arg(long, default_value_t = 10)]
    pub(crate) header_timeout_secs: u64,
    /// Seconds a reply may make no progress because the client does not read it; then the
    /// connection is closed (0: no limit).
    #[arg(long, default_value_t = 30)]
    pub(crate) write_timeout_secs: u64,
    /// Seconds a batch body may take to arrive; then 408.
    #[arg(long, default_value_t = 30)]
    pub(crate) body_timeout_secs: u64,
    /// Connections open at once; more wait to be accepted.
    #[arg(long, default_value_t = 1024)]
    pub(crate) max_connections: usize,
    /// Batches in flight at once (from their body until their reply is taken); more wait
    /// for a place (--max-waiting-batches, --admission-timeout-secs).
    #[arg(long, default_value_t = tower_http_batch::DEFAULT_MAX_CONCURRENT_BATCHES)]
    pub(crate) max_concurrent_batches: usize,
    /// Batches that may wait for a place at once, their bodies unread; one more gets 503
    /// with Retry-After (0: none waits).
    #[arg(long, default_value_t = tower_http_batch::DEFAULT_MAX_WAITING_BATCHES)]
    pub(crate) max_waiting_batches: usize,
    /// Seconds a batch may wait for a place; then 503 with Retry-After.
    #[arg(long, default_value_t = tower_http_batch::DEFAULT_ADMISSION_TIMEOUT.as_secs())]
    pub(crate) admission_timeout_secs: u64,
    /// The slowest a client may read a batch reply, in bytes a second, once
    /// --reply-grace-secs of waiting on it have passed; a slower reader's reply is cut and
    /// its place freed (0: no minimum).
    #[arg(long, default_value_t = tower_http_batch::DEFAULT_REPLY_MIN_RATE)]
    pub(crate) reply_min_rate: u64,
    /// Seconds a batch reply may wait on its reader before --reply-min-rate counts.
    #[arg(long, default_value_t = tower_http_batch::DEFAULT_REPLY_GRACE.as_secs())]
    pub(crate) reply_grace_secs: u64,
    /// Where batches sent with an Idempotency-Key are recorded, so that a retry replays
    /// them: memory, sqlite:FILE (survives a restart) or redis://HOST:PORT (shared by
    /// every proxy that uses it).
    #[arg(long, default_value = "memory")]
    pub(crate) store: String,
    /// Seconds a keyed batch's record is kept.
    #[arg(long, default_value_t = tower_http_batch::DEFAULT_IDEMPOTENCY_RETENTION.as_secs())]
    pub(crate) idempotency_retention_secs: u64,
    /// Refuse batches without an Idempotency-Key (400).
    #[arg(long)]
    pub(crate) require_idempotency_key: bool,
    /// Batch jobs (Prefer: respond-async, kept in --store) running at once; one more
    /// gets 503 with Retry-After.
    #[arg(long, default_value_t = tower_http_batch::DEFAULT_MAX_JOBS)]
    pub(crate) max_jobs: usize,
    /// Batch jobs one caller (its identity headers) runs at once; one more gets 429.
    #[arg(long, default_value_t = tower_http_batch::DEFAULT_MAX_JOBS_PER_CALLER)]
    pub(crate) max_jobs_per_caller: usize,
    /// Ignore Prefer: respond-async: every batch is answered when it has run.
    #[arg(long)]
    pub(crate) no_jobs: bool,
}

/// `--service-root` takes a plain path: the layer would panic on anything else.
fn service_root(root: &str) -> Result<String, String> {
    let root = root.trim_end_matches('/');
    // What the layer asks of a root: one every server reads as itself.
    let plain = root.starts_with('/')
        && root.parse::<http::uri::PathAndQuery>().is_ok()
        && !root.contains(['?', '#', '%', '\\', ';', ':'])
        && !root.contains("//")
        && !root
            .split('/')
            .skip(1)
            .any(|s| s.is_empty() || s.ends_with('.'));
    match plain {
        true => Ok(root.to_string()),
        false => Err(format!(
            "{root:?} is not a plain path starting with `/` (e.g. /v1.0)"
        )),
    }
}

/// `--odata-v2-path` takes a batch path: the layer would panic on anything else.
fn batch_path(path: &str) -> Result<String, String> {
    let valid = path.starts_with('/')
        && path.parse::<http::uri::PathAndQuery>().is_ok()
        && !path.contains('?');
    match valid {
        true => Ok(path.to_string()),
        false => Err(format!("{path:?} is not a path starting with `/`")),
    }
}

/// `--refuse-path` takes paths: the layer would panic on anything else.
fn refused_path(prefix: &str) -> Result<String, String> {
    match prefix.starts_with('/') {
        true => Ok(prefix.to_string()),
        false => Err(format!("{prefix:?} does not start with `/`")),
    }
}

/// The batch layer the arguments describe.
pub(crate) fn layer(args: &Args) -> Result<BatchLayer, String> {
    let mut layer = match (args.json_path.as_str(), &args.bulk_path) {
        ("none", Some(bulk)) => BatchLayer::default().bulk(bulk.clone(), args.bulk_base.clone()),
        ("none", None) if args.odata_v2_paths.is_empty() => {
            return Err(
                "--json-path none needs a --bulk-path or an --odata-v2-path: there would be no batch endpoint".into(),
            )
        }
        ("none", None) => BatchLayer::default(),
        (json, bulk) => {
            let layer = BatchLayer::new(json);
            match bulk {
                Some(bulk) => layer.bulk(bulk.clone(), args.bulk_base.clone()),
                None => layer,
            }
        }
    };
    let mut v2_paths = args.odata_v2_paths.clone();
    v2_paths.sort_unstable();
    v2_paths.dedup();
    for path in &v2_paths {
        if *path == args.json_path
            || args
                .service_root
                .as_ref()
                .is_some_and(|r| *path == format!("{r}/$batch"))
        {
            return Err(format!(
                "--odata-v2-path {path} is already the OData 4 batch endpoint"
            ));
        }
        layer = layer.odata_v2(path.clone());
    }
    if let Some(root) = &args.service_root {
        let graph = format!("{root}/$batch");
        if graph != args.json_path {
            layer = layer.path(graph);
        }
        layer = layer.service_root(root);
    }
    layer = layer
        .max_requests(args.max_requests)
        .max_body_bytes(args.max_body_bytes)
        .body_timeout(Duration::from_secs(args.body_timeout_secs))
        .max_concurrent_batches(args.max_concurrent_batches)
        .max_waiting_batches(args.max_waiting_batches)
        .admission_timeout(Duration::from_secs(args.admission_timeout_secs))
        .concurrency(args.concurrency);
    layer = match args.reply_min_rate {
        0 => layer.no_reply_min_rate(),
        rate => layer.reply_min_rate(rate, Duration::from_secs(args.reply_grace_secs)),
    };
    layer = match args.timeout_secs {
        0 => layer.no_timeout(),
        secs => layer.timeout(Duration::from_secs(secs)),
    };
    for name in &args.identity_headers {
        layer = layer.identity_header(name.clone());
    }
    for name in &args.drop_headers {
        layer = layer.drop_header(name.clone());
    }
    layer = layer.request_id_header(args.request_id_header.clone());
    for prefix in &args.refuse_paths {
        layer = layer.refuse_path(prefix);
    }
    if args.batch_timeout_secs > 0 {
        layer = layer.batch_timeout(Duration::from_secs(args.batch_timeout_secs));
    }
    Ok(keyed_batches_and_jobs(layer, args))
}

/// The flags of keyed batches and batch jobs (their store is given in `main`).
fn keyed_batches_and_jobs(mut layer: BatchLayer, args: &Args) -> BatchLayer {
    layer = layer
        .idempotency_retention(Duration::from_secs(args.idempotency_retention_secs))
        .max_jobs(args.max_jobs)
        .max_jobs_per_caller(args.max_jobs_per_caller);
    if args.require_idempotency_key {
        layer = layer.require_idempotency_key();
    }
    if args.no_jobs {
        layer = layer.no_jobs();
    }
    layer
}
