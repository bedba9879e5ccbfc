//! What each wire format looks like in an OpenAPI 3.1 document: its request body and its
//! replies, as JSON Schema, with the configured limits as `maxItems`. The schemas are
//! inline (no `components`), so a document that merges them has no names to clash.

use super::DecodeLimits;
use http::Method;
use serde_json::{json, Value};

/// One method of one format at an endpoint.
#[derive(Debug)]
pub(crate) struct Operation {
    pub(crate) method: Method,
    pub(crate) summary: &'static str,
    /// The request's media type and schema.
    pub(crate) request: (&'static str, Value),
    /// Its success replies: status, description, media type, schema.
    pub(crate) replies: Vec<Described>,
}

/// One reply of an operation.
#[derive(Debug)]
pub(crate) struct Described {
    pub(crate) status: u16,
    pub(crate) description: &'static str,
    pub(crate) media_type: &'static str,
    pub(crate) schema: Value,
}

impl Described {
    fn new(
        status: u16,
        description: &'static str,
        media_type: &'static str,
        schema: Value,
    ) -> Self {
        Self {
            status,
            description,
            media_type,
            schema,
        }
    }
}

/// `application/problem+json` (RFC 9457), as the layer writes it.
pub(crate) fn problem() -> Value {
    json!({
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {
                "description": "Every bad field: the sub-request's index (absent for the batch itself), the field as the client spelled it, and what is wrong.",
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "detail"],
                    "properties": {
                        "index": {"type": "integer", "minimum": 0},
                        "field": {"type": "string"},
                        "detail": {"type": "string"}
                    }
                }
            }
        }
    })
}

/// Any JSON value. Every schema names its type: utoipa reads no schema without one.
fn any() -> Value {
    json!({"type": ["object", "array", "string", "number", "integer", "boolean", "null"]})
}

/// Header values by name: a string (or a number), or an array for a repeated header.
fn header_map() -> Value {
    json!({"type": "object", "additionalProperties": {
        "type": ["string", "number", "array"],
        "items": {"type": "string"}
    }})
}

/// The JSON batch (OData 4.01 / Microsoft Graph), and its NDJSON reply.
pub(crate) fn json_batch(limits: &DecodeLimits) -> Vec<Operation> {
    let item = json!({
        "type": "object",
        "required": ["url"],
        "properties": {
            "id": {"type": ["string", "integer"], "description": "Unique in the batch, ignoring letter case (default: the item's position)."},
            "method": {"type": "string", "default": "GET", "examples": ["GET", "POST", "PATCH", "DELETE"]},
            "url": {"type": "string", "description": "Relative to the batch endpoint, an absolute path, or an absolute URL of this server. May hold {{id#/json/pointer}} references to items it depends on."},
            "headers": header_map(),
            "body": {"description": "A JSON value for JSON content types, else a string (base64 for binary types).", "type": ["object", "array", "string", "number", "integer", "boolean", "null"]},
            "dependsOn": {"type": "array", "items": {"type": "string"}},
            "atomicityGroup": {"type": "string"}
        }
    });
    let request = json!({
        "type": "object",
        "required": ["requests"],
        "properties": {
            "requests": {"type": "array", "maxItems": limits.max_requests, "items": item},
            "stop_on_error": {"type": "boolean", "default": false},
            "atomic": {"type": "boolean", "default": false}
        }
    });
    let response = json!({
        "type": "object",
        "required": ["id", "status"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "integer"},
            "headers": header_map(),
            "body": any()
        }
    });
    let reply = json!({
        "type": "object",
        "required": ["responses"],
        "properties": {"responses": {"type": "array", "items": response}}
    });
    let line = json!({
        "description": "One JSON object per line: one per item in completion order, then a closing line with the counts.",
        "type": "string"
    });
    vec![Operation {
        method: Method::POST,
        summary: "Run a JSON batch (OData 4.01, Microsoft Graph)",
        request: ("application/json", request),
        replies: vec![
            Described::new(
                200,
                "Every item's response, in request order (streamed).",
                "application/json",
                reply,
            ),
            Described::new(
                200,
                "With `Accept: application/x-ndjson`: a line per item as it finishes.",
                "application/x-ndjson",
                line,
            ),
        ],
    }]
}

/// OData's multipart batch (4.0, and V2 at a V2 endpoint).
pub(crate) fn multipart(limits: &DecodeLimits, v2: bool) -> Vec<Operation> {
    let max = limits.max_requests;
    let body = json!({
        "type": "string",
        "description": format!("multipart/mixed: one application/http part per request (at most {max} in all), or a multipart/mixed changeset of them, run atomically."),
    });
    let reply = json!({"type": "string", "description": "multipart/mixed: one application/http part per response, a changeset's in a nested multipart/mixed; a failed changeset is one response."});
    let (status, summary, description) = match v2 {
        true => (202, "Run an OData V2 multipart batch", "The responses (OData V2: 202 Accepted, DataServiceVersion)."),
        false => (200, "Run an OData 4.0 multipart batch", "The responses, in request order (streamed). OData 4.0 requests stop at the first failure unless `Prefer: odata.continue-on-error`."),
    };
    let mut replies = vec![Described::new(
        status,
        description,
        "multipart/mixed",
        reply.clone(),
    )];
    if !v2 {
        let named = "The responses, to a request that names OData V2 (DataServiceVersion, MaxDataServiceVersion).";
        replies.push(Described::new(202, named, "multipart/mixed", reply));
    }
    vec![Operation {
        method: Method::POST,
        summary,
        request: ("multipart/mixed", body),
        replies,
    }]
}

/// SugarCRM's bulk format.
pub(crate) fn bulk(limits: &DecodeLimits) -> Vec<Operation> {
    let item = json!({
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "examples": ["/v10/Accounts"]},
            "method": {"type": "string", "default": "GET"},
            "data": {"type": ["string", "object", "array"], "description": "The body: JSON-encoded in a string, or the JSON itself."},
            "headers": {"type": ["object", "array"], "description": "By name, or as `Name: value` strings.", "items": {"type": "string"}}
        }
    });
    let request = json!({
        "type": "object",
        "required": ["requests"],
        "properties": {"requests": {"type": "array", "maxItems": limits.max_requests, "items": item}}
    });
    let entry = json!({
        "type": "object",
        "required": ["contents", "headers", "status"],
        "properties": {"contents": any(), "headers": {"type": ["object", "array"]}, "status": {"type": "integer"}}
    });
    vec![Operation {
        method: Method::POST,
        summary: "Run a SugarCRM bulk request",
        request: ("application/json", request),
        replies: vec![Described::new(
            200,
            "Each request's response, in order.",
            "application/json",
            json!({"type": "array", "items": entry}),
        )],
    }]
}

/// A collection's bulk endpoints: create, update, delete.
pub(crate) fn resource(name: &str, id_field: &str, max_items: usize) -> Vec<Operation> {
    let list = |items: Value| json!({"type": "array", "maxItems": max_items, "items": items});
    let wrapped = |key: &str, items: Value| {
        json!({"oneOf": [
            {"type": "object", "required": [key], "properties": {key: list(items.clone()), "atomic": {"type": "boolean"}}},
            list(items)
        ]})
    };
    let failed = json!({"type": "array", "items": {"type": "object", "required": ["index", "status", "error"], "properties": {
        "index": {"type": "integer"}, "id": any(), "status": {"type": "integer"}, "error": {"type": "string"}, "item": any()
    }}});
    let summary = |done: &str| {
        json!({"type": "object", "required": ["success_count", "error_count", "failed"], "properties": {
            "success_count": {"type": "integer"}, "error_count": {"type": "integer"},
            done: {"type": "array"}, "failed": failed.clone(), "atomic": {"type": "boolean"}, "rolled_back": {"type": "boolean"}
        }})
    };
    let deletions = json!({"type": "object", "required": ["deleted_count", "not_found_count", "error_count", "deleted", "not_found", "failed"], "properties": {
        "deleted_count": {"type": "integer"}, "not_found_count": {"type": "integer"}, "error_count": {"type": "integer"},
        "deleted": {"type": "array"}, "not_found": {"type": "array"}, "failed": failed, "atomic": {"type": "boolean"}, "rolled_back": {"type": "boolean"}
    }});
    let update = json!({"type": "object", "required": [id_field]});
    let delete = json!({"oneOf": [
        {"type": "object", "required": ["ids"], "properties": {"ids": list(any()), "atomic": {"type": "boolean"}}},
        {"type": "object", "required": ["filters"], "properties": {"filters": {"type": "object"}, "atomic": {"type": "boolean"}}},
        list(any())
    ]});
    let partly = "Some items failed: `failed` says which and why.";
    let op = |method, summary, request: Value, ok: (u16, Value)| Operation {
        method,
        summary,
        request: ("application/json", request),
        replies: vec![
            Described::new(
                ok.0,
                "Every item succeeded.",
                "application/json",
                ok.1.clone(),
            ),
            Described::new(207, partly, "application/json", ok.1),
        ],
    };
    vec![
        op(
            Method::POST,
            "Create items",
            wrapped(name, json!({"type": "object"})),
            (201, summary("created")),
        ),
        op(
            Method::PATCH,
            "Update items",
            wrapped("updates", update),
            (200, summary("succeeded")),
        ),
        op(
            Method::DELETE,
            "Delete items by id or by filters",
            delete,
            (200, deletions),
        ),
    ]
}
