//! Hostile input, class 8: a sub-request cannot set identity, client-address or routing
//! headers in any spelling frameworks read as the same (`_` for `-`), nor smuggle one past
//! by naming it in `connection:`. What the handler received is read back from the echo
//! handler.

mod common;

use common::start;
use serde_json::{json, Map, Value};
use tower_http_batch::BatchLayer;

const ALICE: (&str, &str) = ("authorization", "Bearer alice-token");

/// Sends one sub-request to `/echo` with `headers`; the headers the handler saw.
async fn seen(layer: BatchLayer, headers: Value, outer: &[(&str, &str)]) -> Map<String, Value> {
    let (http, _) = start(layer).await;
    let batch = json!({"requests": [{"url": "/echo", "headers": headers}]});
    let items = http.batch(&batch, outer).await.items();
    assert_eq!(items[0]["status"], 200, "{items:#?}");
    items[0]["body"]["headers"].as_object().unwrap().clone()
}

#[tokio::test]
async fn lookalikes_and_overrides_never_reach_the_handler() {
    let written = [
        "x_forwarded_for",
        "X_Real_IP",
        "proxy_authorization",
        "Authorization",
        "cookie",
        "cf-connecting-ip",
        "x-cluster-client-ip",
        "fastly-client-ip",
        "x-original-forwarded-for",
        "x-forwarded-host",
        "x_forwarded_proto",
        // The bare name, a lookalike of `forwarded`.
        "x-forwarded",
        "X_Forwarded",
        "x-remote-user",
        "x_authenticated_user",
        "remote-user",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "X_HTTP_Method_Override",
        "x-method-override",
        "x-http-method",
        "x-original-host",
        "x-host",
        "host",
        "transfer-encoding",
        "te",
        // Set by authenticating proxies in front: who the request acts as.
        "x-amzn-oidc-identity",
        "x_goog_authenticated_user_email",
        "x-goog-iap-jwt-assertion",
        "X-MS-CLIENT-PRINCIPAL-NAME",
        "cf-access-authenticated-user-email",
        "x-auth-request-user",
        "x-webauth-user",
        "ssl-client-verify",
        "x-ssl-client-cert",
        "x-client-cert",
        "x-original-uri",
        "x-original-method",
        "x-envoy-original-path",
        "x-middleware-subrequest",
    ];
    let mut headers: Map<String, Value> = written
        .iter()
        .map(|h| (h.to_string(), json!("evil")))
        .collect();
    headers.insert("x-fine".into(), json!("ok"));
    let seen = seen(BatchLayer::new("/batch"), Value::Object(headers), &[ALICE]).await;
    for name in written {
        let name = name.to_ascii_lowercase();
        let values = seen.get(&name).cloned().unwrap_or(json!([]));
        assert!(
            !values.to_string().contains("evil"),
            "{name} reached the handler: {values}"
        );
    }
    assert_eq!(seen["x-fine"], json!(["ok"]));
    assert_eq!(
        seen["authorization"],
        json!(["Bearer alice-token"]),
        "the outer identity"
    );
}

#[tokio::test]
async fn the_outer_identity_headers_are_carried_in_every_spelling() {
    let outer = [
        ALICE,
        ("x-remote-user", "alice@front"),
        ("cf-connecting-ip", "203.0.113.7"),
    ];
    let seen = seen(
        BatchLayer::new("/batch"),
        json!({"x-remote-user": "mallory", "cf_connecting_ip": "10.0.0.1"}),
        &outer,
    )
    .await;
    assert_eq!(seen["x-remote-user"], json!(["alice@front"]));
    assert_eq!(seen["cf-connecting-ip"], json!(["203.0.113.7"]));
    assert!(seen.get("cf_connecting_ip").is_none());
}

#[tokio::test]
async fn headers_named_in_connection_are_dropped() {
    let seen = seen(
        BatchLayer::new("/batch"),
        json!({"connection": "x-secret, X_Other", "x-secret": "1", "x-other": "2", "x-kept": "3"}),
        &[],
    )
    .await;
    assert!(seen.get("connection").is_none());
    assert!(seen.get("x-secret").is_none());
    assert!(seen.get("x-other").is_none(), "`X_Other` names `x-other`");
    assert_eq!(seen["x-kept"], json!(["3"]));
}

#[tokio::test]
async fn the_lists_extend() {
    let layer = BatchLayer::new("/batch")
        .identity_header(http::HeaderName::from_static("x-api-key"))
        .drop_header(http::HeaderName::from_static("x-tenant"))
        .inherit_header(http::HeaderName::from_static("x-http-method-override"));
    let seen = seen(
        layer,
        json!({"x_api_key": "stolen", "x-tenant": "other", "x_tenant": "other"}),
        &[("x-api-key", "mine"), ("x-http-method-override", "DELETE")],
    )
    .await;
    assert_eq!(seen["x-api-key"], json!(["mine"]));
    assert!(seen.get("x_api_key").is_none());
    assert!(seen.get("x-tenant").is_none() && seen.get("x_tenant").is_none());
    assert!(
        seen.get("x-http-method-override").is_none(),
        "an override is never inherited"
    );
}
