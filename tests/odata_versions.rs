//! What a multipart batch gets by the OData version it names, over real HTTP: OData 4.0
//! stops at the first failure unless it prefers `odata.continue-on-error`; OData V2
//! (configured, or named by `MaxDataServiceVersion`) is answered `202 Accepted` with
//! `DataServiceVersion`; a request naming no version runs everything, as Google's clients
//! expect. A failed changeset is answered with its failure alone in every dialect.

mod common;

use common::multipart::{changeset, multipart, parts, parts_with, request};
use common::store::{self, seeded, Store};
use common::{Http, Reply};
use tower_http_batch::BatchLayer;

fn layer(store: &Store) -> BatchLayer {
    BatchLayer::new("/batch")
        .odata_v2("/v2/$batch")
        .transactions(store.clone())
}

async fn send(http: &Http, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut all = vec![
        ("content-type", "multipart/mixed; boundary=batch_1"),
        ("authorization", "Bearer alice-token"),
    ];
    all.extend_from_slice(headers);
    http.send("POST", path, &all, body.to_string()).await
}

/// Three reads; the second finds nothing (`404`).
fn reads() -> String {
    let get = |path: &str| request(None, &format!("GET {path} HTTP/1.1"), "");
    multipart(
        "batch_1",
        &[get("/items/1"), get("/items/99"), get("/items/1")],
    )
}

/// A changeset whose second create is invalid (`422`), then a read.
fn failing_changeset() -> String {
    let create = |id: &str, body: &str| {
        let head = "POST /items HTTP/1.1\r\nContent-Type: application/json";
        request(Some(id), head, body)
    };
    let set = changeset("cs", &[create("a", r#"{"name":"new"}"#), create("b", "{}")]);
    let read = request(Some("r"), "GET /items/1 HTTP/1.1", "");
    multipart("batch_1", &[set, read])
}

fn statuses(reply: &Reply, status: u16) -> Vec<u16> {
    parts_with(reply, status).iter().map(|p| p.status).collect()
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn odata_4_stops_at_the_first_failure_unless_it_prefers_to_continue() {
    let store = seeded(1);
    let (http, calls) = store::start(layer(&store), store.clone()).await;
    let v4 = [("odata-version", "4.0")];
    let stopped = send(&http, "/batch", &v4, &reads()).await;
    assert_eq!(statuses(&stopped, 200), [200, 404]);
    assert_eq!(calls.get(), 2, "the read after the failure was not sent");
    assert_eq!(header(&stopped, "preference-applied"), None);

    let go_on = [
        ("odata-maxversion", "4.0"),
        ("prefer", "odata.continue-on-error"),
    ];
    let all = send(&http, "/batch", &go_on, &reads()).await;
    assert_eq!(statuses(&all, 200), [200, 404, 200]);
    assert_eq!(
        header(&all, "preference-applied"),
        Some("odata.continue-on-error")
    );
    // OData 4.01's spelling, with a value.
    let new = [
        ("odata-version", "4.01"),
        ("prefer", "continue-on-error=true"),
    ];
    let all = send(&http, "/batch", &new, &reads()).await;
    assert_eq!(statuses(&all, 200), [200, 404, 200]);
    assert_eq!(
        header(&all, "preference-applied"),
        Some("continue-on-error")
    );
}

#[tokio::test]
async fn a_request_naming_no_version_runs_everything() {
    let store = seeded(1);
    let (http, calls) = store::start(layer(&store), store.clone()).await;
    let reply = send(&http, "/batch", &[], &reads()).await;
    assert_eq!(statuses(&reply, 200), [200, 404, 200]);
    assert_eq!(calls.get(), 3);
    assert_eq!(header(&reply, "dataserviceversion"), None);
    // Asking to stop is heard.
    let stop = [("prefer", "continue-on-error=false")];
    let reply = send(&http, "/batch", &stop, &reads()).await;
    assert_eq!(statuses(&reply, 200), [200, 404]);
    assert_eq!(
        header(&reply, "preference-applied"),
        Some("continue-on-error=false")
    );
}

#[tokio::test]
async fn a_failed_changeset_is_one_response_and_ends_an_odata_4_batch() {
    let store = seeded(1);
    let (http, calls) = store::start(layer(&store), store.clone()).await;
    let v4 = [("odata-version", "4.0")];
    let reply = send(&http, "/batch", &v4, &failing_changeset()).await;
    let reply = parts(&reply);
    assert_eq!(reply.len(), 1, "{reply:#?}");
    assert_eq!((reply[0].status, reply[0].changeset), (422, None));
    assert_eq!(reply[0].content_id.as_deref(), Some("b"));
    assert_eq!(store.log(), ["begin by alice", "rollback"]);
    assert_eq!(calls.get(), 2, "the read after the changeset was not sent");
}

#[tokio::test]
async fn odata_v2_is_answered_202_with_its_version() {
    let store = seeded(1);
    let (http, _) = store::start(layer(&store), store.clone()).await;
    // The configured V2 endpoint, a client that names no version (pyodata).
    let reply = send(&http, "/v2/$batch", &[], &reads()).await;
    assert_eq!(statuses(&reply, 202), [200, 404, 200], "V2 never stops");
    assert_eq!(header(&reply, "dataserviceversion"), Some("2.0"));
    let reply = send(&http, "/v2/$batch", &[], &failing_changeset()).await;
    let reply = parts_with(&reply, 202);
    let seen: Vec<_> = reply.iter().map(|p| (p.status, p.changeset)).collect();
    assert_eq!(seen, [(422, None), (200, None)]);
    // A V2 client at the OData 4 endpoint is known by the version it names.
    let v2 = [
        ("maxdataserviceversion", "2.0"),
        ("dataserviceversion", "1.0"),
    ];
    let reply = send(&http, "/batch", &v2, &reads()).await;
    assert_eq!(statuses(&reply, 202), [200, 404, 200]);
    assert_eq!(header(&reply, "dataserviceversion"), Some("2.0"));
    let v1 = [("maxdataserviceversion", "1.0")];
    let reply = send(&http, "/batch", &v1, &reads()).await;
    assert_eq!(header(&reply, "dataserviceversion"), Some("1.0"));
    // Naming OData 4 too makes it an OData 4 request.
    let both = [
        ("maxdataserviceversion", "3.0"),
        ("odata-maxversion", "4.0"),
    ];
    let reply = send(&http, "/batch", &both, &reads()).await;
    assert_eq!(statuses(&reply, 200), [200, 404]);
    // The V2 endpoint takes no JSON batch.
    let json = http
        .send(
            "POST",
            "/v2/$batch",
            &[("content-type", "application/json")],
            r#"{"requests":[]}"#,
        )
        .await;
    assert_eq!(json.status, 415);
}

#[tokio::test]
async fn a_replayed_v2_batch_is_answered_as_the_first() {
    let store = seeded(1);
    let (http, calls) = store::start(layer(&store), store.clone()).await;
    let keyed = [("idempotency-key", "\"v2-once\"")];
    let first = send(&http, "/v2/$batch", &keyed, &reads()).await;
    let again = send(&http, "/v2/$batch", &keyed, &reads()).await;
    assert_eq!(statuses(&again, 202), statuses(&first, 202));
    assert_eq!(header(&again, "dataserviceversion"), Some("2.0"));
    assert_eq!(header(&again, "idempotent-replayed"), Some("true"));
    assert_eq!(calls.get(), 3, "the retry ran nothing");
}

#[tokio::test]
async fn a_retry_naming_another_version_is_another_request() {
    let store = seeded(1);
    let (http, calls) = store::start(layer(&store), store.clone()).await;
    let keyed = [("idempotency-key", "\"versions\"")];
    let first = send(&http, "/batch", &keyed, &reads()).await;
    assert_eq!(statuses(&first, 200), [200, 404, 200]);
    // The same body under the same key, now asking to stop at the first failure: a
    // replay would show what the first run did, not what this one asks.
    let v4 = [
        ("idempotency-key", "\"versions\""),
        ("odata-version", "4.0"),
    ];
    let again = send(&http, "/batch", &v4, &reads()).await;
    assert_eq!(
        again.status,
        422,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(calls.get(), 3, "nothing ran again");
}

#[tokio::test]
async fn an_odata_4_changeset_stops_inside_at_its_failure() {
    let store = seeded(1);
    let (http, calls) = store::start(layer(&store), store.clone()).await;
    let create = |id: &str, body: &str| {
        let head = "POST /items HTTP/1.1\r\nContent-Type: application/json";
        request(Some(id), head, body)
    };
    let three = [
        create("a", r#"{"name":"x"}"#),
        create("b", "{}"),
        create("c", r#"{"name":"z"}"#),
    ];
    let body = multipart("batch_1", &[changeset("cs", &three)]);
    let reply = send(&http, "/batch", &[("odata-version", "4.0")], &body).await;
    let reply = parts(&reply);
    let seen: Vec<_> = reply
        .iter()
        .map(|p| (p.status, p.content_id.clone()))
        .collect();
    assert_eq!(
        seen,
        [(422, Some("b".to_string()))],
        "the member after it never ran"
    );
    assert_eq!(calls.get(), 2);
    assert_eq!(store.log(), ["begin by alice", "rollback"]);
}

/// A V2 batch run as a job: its monitor gives the V2 reply as `200` once the job has ended
/// (a `202` there means it still runs), with the version and the parts it would have had.
#[tokio::test]
async fn an_odata_v2_job_ends_with_its_reply_as_200() {
    let store = seeded(1);
    let (http, _) = store::start(layer(&store), store.clone()).await;
    let accepted = send(
        &http,
        "/v2/$batch",
        &[("prefer", "respond-async")],
        &reads(),
    )
    .await;
    assert_eq!(accepted.status, 202);
    assert_eq!(accepted.headers["preference-applied"], "respond-async");
    let monitor = accepted.headers["location"].to_str().unwrap().to_owned();
    assert!(monitor.starts_with("/v2/$batch/jobs/"), "{monitor}");
    let auth = [("authorization", "Bearer alice-token")];
    let done = common::jobs::finished(&http, &monitor, &auth).await;
    assert_eq!(statuses(&done, 200), [200, 404, 200]);
    assert_eq!(header(&done, "dataserviceversion"), Some("2.0"));
}
