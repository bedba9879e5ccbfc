//! An OpenAPI 3.1 description of the configured batch endpoints: each path, its methods,
//! the request and reply schemas of each format (inline, so that merging adds no
//! component names), the error document, the `Idempotency-Key` header, and the limits
//! (`maxItems`, and every limit in the `x-batch-limits` extension of each operation).

use crate::codec::describe::{self, Operation};
use crate::config::Config;
use crate::BatchLayer;
use serde_json::{json, Map, Value};

impl BatchLayer {
    /// An OpenAPI 3.1 document of the batch endpoints this layer serves, as configured:
    /// paths, formats, limits, error replies. Serve it, or merge its `paths` into your
    /// application's document (with the `utoipa` feature, [`BatchLayer::utoipa`] gives
    /// it as utoipa's type, to `merge`).
    ///
    /// ```
    /// use tower_http_batch::BatchLayer;
    ///
    /// let doc = BatchLayer::new("/batch").max_requests(20).openapi();
    /// assert_eq!(doc["openapi"], "3.1.0");
    /// let post = &doc["paths"]["/batch"]["post"];
    /// let json = &post["requestBody"]["content"]["application/json"]["schema"];
    /// assert_eq!(json["properties"]["requests"]["maxItems"], 20);
    /// assert!(post["requestBody"]["content"]["multipart/mixed"].is_object());
    /// ```
    pub fn openapi(&self) -> Value {
        document(self.config())
    }

    /// [`openapi`](Self::openapi) as utoipa's document, to merge into yours:
    /// `ApiDoc::openapi().merge_from(layer.utoipa())`.
    ///
    /// ```
    /// use tower_http_batch::BatchLayer;
    ///
    /// let mut doc = utoipa::openapi::OpenApiBuilder::new().build();
    /// doc.merge(BatchLayer::new("/batch").utoipa());
    /// assert!(doc.paths.paths.contains_key("/batch"));
    /// ```
    #[cfg(feature = "utoipa")]
    pub fn utoipa(&self) -> utoipa::openapi::OpenApi {
        // The document is built from types utoipa reads; a failure would be this crate's bug.
        serde_json::from_value(self.openapi()).expect("utoipa reads the batch document")
    }
}

/// The document of `config`'s endpoints.
fn document(config: &Config) -> Value {
    let mut paths = Map::new();
    for endpoint in &config.endpoints {
        let mut item = Map::new();
        for codec in endpoint.codecs() {
            for op in codec.describe(&config.decode) {
                let method = op.method.as_str().to_ascii_lowercase();
                let entry = item
                    .entry(method.clone())
                    .or_insert_with(|| operation(config, endpoint.path(), &method));
                add(entry, op);
            }
        }
        if config.served_jobs().is_some() {
            item.values_mut().for_each(as_job);
        }
        if config.served_jobs().is_some() {
            let monitor = crate::jobs::monitor_path(endpoint.path(), "{jobId}");
            paths.insert(monitor, monitor_item(endpoint.path()));
        }
        paths.insert(endpoint.path().to_string(), Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Batch endpoints",
            "description": "Batch endpoints served by tower-http-batch: many sub-requests in one request, each sent to the service with the sender's identity.",
            "version": env!("CARGO_PKG_VERSION")
        },
        "paths": paths
    })
}

/// An operation with what every batch endpoint shares: the error replies, the key
/// header, the limits.
fn operation(config: &Config, path: &str, method: &str) -> Value {
    let mut responses = Map::new();
    for (status, why) in errors(config) {
        let content = json!({"application/problem+json": {"schema": describe::problem()}});
        responses.insert(
            status.to_string(),
            json!({"description": why, "content": content}),
        );
    }
    let mut parameters = Vec::new();
    if let Some(keys) = &config.idempotency {
        parameters.push(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": keys.required,
            "description": "Runs the batch once: a retry with the same key and body replays the first reply (Idempotent-Replayed: true).",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255}
        }));
    }
    json!({
        "operationId": format!("batch_{method}{}", operation_id(path)),
        "tags": ["batch"],
        "summary": "",
        "parameters": parameters,
        "requestBody": {"required": true, "content": {}},
        "responses": responses,
        "x-batch-limits": limits(config)
    })
}

/// `path` as an operation id's part: each byte that is not a letter or digit as `_` and its
/// hex, so that no two paths read alike.
fn operation_id(path: &str) -> String {
    path.bytes()
        .map(|b| match b.is_ascii_alphanumeric() {
            true => char::from(b).to_string(),
            false => format!("_{b:02x}"),
        })
        .collect()
}

/// What a batch operation answers as a job (`Prefer: respond-async`): a `202` with the
/// job's progress (beside the format's own `202`, OData V2's), and `429`.
fn as_job(entry: &mut Value) {
    if let Some(parameters) = entry["parameters"].as_array_mut() {
        parameters.push(json!({
            "name": "Prefer",
            "in": "header",
            "required": false,
            "description": "`respond-async` runs the batch as a job: 202 with the Location of its status monitor. With `wait=N`, a job that finishes within N seconds is answered as without it.",
            "schema": {"type": "string"}
        }));
    }
    let why = "Run as a job (Prefer: respond-async): its status monitor is at Location.";
    let job = accepted(why, true);
    let response = &mut entry["responses"]["202"];
    if response.is_null() {
        *response = job;
    } else {
        let own = response["description"].as_str().unwrap_or_default();
        response["description"] = Value::String(format!("{own} Or: {why}"));
        response["headers"] = job["headers"].clone();
        response["content"]["application/json"] = job["content"]["application/json"].clone();
    }
    let busy = json!({"application/problem+json": {"schema": describe::problem()}});
    let why = "Too many batch jobs of this caller are running (Retry-After). Nothing ran.";
    entry["responses"]["429"] = json!({"description": why, "content": busy});
}

/// A `202` with a job's progress document.
fn accepted(why: &str, location: bool) -> Value {
    let mut response = json!({
        "description": why,
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": crate::jobs::progress::schema()}}
    });
    if location {
        response["headers"]["Location"] = json!({"schema": {"type": "string"}});
    }
    response
}

/// The status monitor of the jobs of the batch endpoint at `path`.
fn monitor_item(path: &str) -> Value {
    let id = operation_id(path);
    let problem = json!({"application/problem+json": {"schema": describe::problem()}});
    let not_found = json!({"description": "No job of this caller has this id (or its results are past the retention).", "content": problem});
    let job_id = json!({"name": "jobId", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}});
    json!({
        "parameters": [job_id],
        "get": {
            "operationId": format!("job_get{id}"),
            "tags": ["batch"],
            "summary": "A batch job: its progress while it runs, then the batch's reply",
            "responses": {
                "200": {"description": "The job has ended: the batch's reply, as the synchronous batch gives it (same status, content type and body)."},
                "202": accepted("The job runs: its progress (or, with Accept: application/x-ndjson, the items finished so far).", false),
                "404": not_found
            }
        },
        "delete": {
            "operationId": format!("job_delete{id}"),
            "tags": ["batch"],
            "summary": "Cancels a batch job: nothing new starts, an open atomic group rolls back",
            "responses": {
                "202": accepted("Cancelling: GET the monitor for what ran.", false),
                "404": not_found,
                "409": {"description": "The job has ended: nothing to cancel.", "content": problem}
            }
        }
    })
}

/// Adds one format's request and replies to `entry`.
fn add(entry: &mut Value, op: Operation) {
    let summary = match entry["summary"].as_str() {
        Some("") | None => op.summary.to_string(),
        Some(before) => format!("{before}; {}", op.summary),
    };
    entry["summary"] = Value::String(summary);
    let (media, schema) = op.request;
    entry["requestBody"]["content"][media] = json!({ "schema": schema });
    for reply in op.replies {
        let response = &mut entry["responses"][reply.status.to_string()];
        if response.is_null() {
            *response = json!({"description": reply.description, "content": {}});
        }
        response["content"][reply.media_type] = json!({ "schema": reply.schema });
    }
}

/// The replies the layer gives in the service's place, before anything runs.
fn errors(config: &Config) -> Vec<(u16, &'static str)> {
    let mut errors = vec![
        (400, "The batch is malformed or breaks a limit; `errors` lists every bad item and field. Nothing ran."),
        (405, "The method is not one this endpoint takes (Allow)."),
        (408, "The batch body did not arrive in time."),
        (413, "The batch body is larger than the limit."),
        (415, "The content type is not one this endpoint takes."),
        (503, "Too many batches in flight and waiting, or the idempotency store failed (Retry-After). Nothing ran."),
    ];
    if config.idempotency.is_some() {
        errors.push((
            409,
            "A batch with this Idempotency-Key is still running (Retry-After).",
        ));
        errors.push((422, "This Idempotency-Key was used for another request (another body, target or OData version)."));
    }
    errors.sort_unstable();
    errors
}

/// Every limit, for clients that split their batches.
fn limits(config: &Config) -> Value {
    let seconds = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64());
    json!({
        "maxRequests": config.decode.max_requests,
        "maxBodyBytes": config.max_body_bytes,
        "maxItemHeaders": config.decode.max_item_headers,
        "maxItemHeaderBytes": config.decode.max_item_header_bytes,
        "maxItemResponseBytes": config.run.max_item_response_bytes,
        "maxResponseBytes": config.run.max_response_bytes,
        "concurrency": config.run.concurrency,
        "timeoutSeconds": seconds(config.run.timeout),
        "batchTimeoutSeconds": seconds(config.run.batch_timeout),
        "atomic": config.decode.atomic
    })
}

#[cfg(all(test, feature = "utoipa"))]
mod tests {
    use crate::{BatchLayer, Resource};

    /// utoipa reads every schema: nothing of the document is lost on the way.
    #[test]
    fn utoipa_reads_the_whole_document() {
        let layer = BatchLayer::new("/batch")
            .path("/v1.0/$batch")
            .odata_v2("/v2/$batch")
            .bulk("/rest/v10/bulk", "/rest")
            .resource(Resource::new("/users"))
            .max_requests(7);
        let ours = layer.openapi();
        let theirs = serde_json::to_value(layer.utoipa()).unwrap();
        let count = |v: &serde_json::Value, key: &str| v.to_string().matches(key).count();
        for key in [
            "\"maxItems\"",
            "\"items\"",
            "\"properties\"",
            "\"type\"",
            "\"required\"",
            "x-batch-limits",
        ] {
            assert_eq!(
                count(&theirs["paths"], key),
                count(&ours["paths"], key),
                "{key}"
            );
        }
        let batch = &theirs["paths"]["/batch"]["post"]["requestBody"]["content"];
        assert_eq!(
            batch["application/json"]["schema"]["properties"]["requests"]["maxItems"],
            7
        );
    }
}
