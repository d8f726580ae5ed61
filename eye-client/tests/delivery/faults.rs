//! Retries, splits and refusals.

use std::time::{Duration, Instant};

use eye_client::{EyeClient, FailureReason};
use eye_core::{ErrorCode, EventResult, IngestResponse};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::scripted::{
    Ingest, builder, decode, fast_retries, mount_after, mount_ingest, page_view, sorted, track_n,
};

#[tokio::test]
async fn service_unavailable_then_created_is_delivered_after_one_retry() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_after(&server, ResponseTemplate::new(503), 1, &ingest).await;
    let client = builder(&server.uri()).build().unwrap();

    let ids = track_n(&client, 5);
    let report = client.flush().await;

    assert_eq!(report.delivered, 5, "{report}");
    assert!(report.is_complete());
    assert_eq!(ingest.accepted_ids(), ids);
    assert_eq!(client.stats().retried, 1);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn too_many_requests_waits_at_least_retry_after() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    let limited = ResponseTemplate::new(429).insert_header("retry-after", "1");
    mount_after(&server, limited, 1, &ingest).await;
    let client = builder(&server.uri()).build().unwrap();

    track_n(&client, 3);
    let started = Instant::now();
    let report = client.flush().await;

    assert_eq!(report.delivered, 3, "{report}");
    // The backoff alone would retry after at most 50 ms.
    let retried_at = ingest.seen()[0].at;
    assert!(retried_at.duration_since(started) >= Duration::from_secs(1));
}

#[tokio::test]
async fn every_attempt_carries_its_own_sent_at() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    let limited = ResponseTemplate::new(429).insert_header("retry-after", "1");
    mount_after(&server, limited, 1, &ingest).await;
    let client = builder(&server.uri()).build().unwrap();

    track_n(&client, 2);
    let report = client.flush().await;

    assert_eq!(report.delivered, 2, "{report}");
    let requests = server.received_requests().await.unwrap();
    let stamps: Vec<chrono::DateTime<chrono::Utc>> = requests
        .iter()
        .map(|r| {
            let v = r
                .headers
                .get("eye-sent-at")
                .expect("Eye-Sent-At on every attempt");
            eye_core::parse_timestamp(v.to_str().unwrap()).unwrap()
        })
        .collect();
    assert_eq!(stamps.len(), 2);
    // The retry waited Retry-After (1 s): a stamp made once per batch would repeat.
    assert!(
        stamps[1] - stamps[0] >= chrono::Duration::milliseconds(900),
        "{stamps:?}"
    );
}

#[tokio::test]
async fn payload_too_large_splits_the_batch_until_it_fits() {
    let server = MockServer::start().await;
    let ingest = Ingest::max_events(2);
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri()).build().unwrap();

    let ids = track_n(&client, 7);
    let report = client.flush().await;

    assert_eq!(report.delivered, 7, "{report}");
    assert_eq!(
        sorted(ingest.accepted_ids()),
        sorted(ids),
        "each event stored exactly once"
    );
    assert_eq!(client.stats().retried, 0, "a split is not a retry");
}

#[tokio::test]
async fn a_single_event_too_large_fails_without_retry() {
    let server = MockServer::start().await;
    let ingest = Ingest::max_events(0);
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri()).build().unwrap();

    track_n(&client, 2);
    let report = client.flush().await;

    assert_eq!(report.failed, 2, "{report}");
    assert!(
        report
            .failures
            .iter()
            .all(|f| f.reason == FailureReason::TooLarge)
    );
    // One request for the pair, one for each half.
    assert_eq!(ingest.seen().len(), 3);
}

#[tokio::test]
async fn connection_refused_then_accepted_is_delivered() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = builder(&format!("http://127.0.0.1:{port}"))
        .retry_policy(fast_retries(50))
        .build()
        .unwrap();
    let ids = track_n(&client, 4);
    let flushing = tokio::spawn({
        let client = client.clone();
        async move { client.flush().await }
    });

    tokio::time::sleep(Duration::from_millis(300)).await;
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = MockServer::builder().listener(listener).start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let report = flushing.await.unwrap();

    assert_eq!(report.delivered, 4, "{report}");
    assert_eq!(ingest.accepted_ids(), ids);
    assert!(client.stats().retried >= 1);
}

#[tokio::test]
async fn slow_answer_past_the_timeout_is_retried_without_duplicates() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    let slow = ResponseTemplate::new(503).set_delay(Duration::from_secs(10));
    mount_after(&server, slow, 1, &ingest).await;
    let client = builder(&server.uri())
        .request_timeout(Duration::from_secs(1))
        .build()
        .unwrap();

    let ids = track_n(&client, 3);
    let report = client.flush().await;

    assert_eq!(report.delivered, 3, "{report}");
    assert_eq!(ingest.accepted_ids(), ids);
    assert_eq!(client.stats().retried, 1);
}

#[tokio::test]
async fn bad_request_is_never_retried() {
    let server = MockServer::start().await;
    let bad = ResponseTemplate::new(400).set_body_json(json!({"error": {
        "code": "malformed_json", "message": "expected value"}}));
    mount_after(&server, bad, 10, &Ingest::default()).await;
    let client = builder(&server.uri()).build().unwrap();

    track_n(&client, 3);
    let report = client.flush().await;

    assert_eq!(report.failed, 3, "{report}");
    assert!(matches!(
        &report.failures[0].reason,
        FailureReason::Refused { status: 400, code, .. } if code == "malformed_json"
    ));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    assert_eq!(client.stats().retried, 0);
}

#[tokio::test]
async fn unauthorized_and_forbidden_are_never_retried() {
    for status in [401, 403] {
        let server = MockServer::start().await;
        let refused = ResponseTemplate::new(status).set_body_json(json!({"error": {
            "code": "unauthorized", "message": "bad key"}}));
        mount_after(&server, refused, 10, &Ingest::default()).await;
        let client = builder(&server.uri()).build().unwrap();

        track_n(&client, 2);
        let report = client.flush().await;

        assert_eq!(report.failed, 2, "{status}: {report}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn per_event_rejections_are_reported_with_reasons_and_not_retried() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri()).build().unwrap();

    let good = client.track(page_view("fine")).unwrap();
    let bad = client.track(page_view("reject-me")).unwrap();
    let report = client.flush().await;

    assert_eq!((report.delivered, report.rejected), (1, 1), "{report}");
    let rejection = &report.rejections[0];
    assert_eq!(rejection.id(), bad);
    assert!(rejection.errors.has_code(ErrorCode::TimestampInFuture));
    assert_eq!(ingest.seen().len(), 1);
    assert_eq!(ingest.seen()[0].ids, vec![good, bad]);
}

#[tokio::test]
async fn a_batch_of_only_rejections_answered_400_is_not_retried() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri()).build().unwrap();

    client.track(page_view("reject-me")).unwrap();
    let report = client.flush().await;

    assert_eq!(report.rejected, 1, "{report}");
    assert_eq!(ingest.seen().len(), 1);
}

#[tokio::test]
async fn retries_exhausted_are_reported_as_failed() {
    let server = MockServer::start().await;
    mount_after(&server, ResponseTemplate::new(500), 100, &Ingest::default()).await;
    let client = builder(&server.uri())
        .retry_policy(fast_retries(2))
        .build()
        .unwrap();

    track_n(&client, 3);
    let report = client.flush().await;

    assert_eq!(report.failed, 3, "{report}");
    assert!(matches!(
        report.failures[0].reason,
        FailureReason::RetriesExhausted { attempts: 3, .. }
    ));
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

fn unexpected(report: &eye_client::DeliveryReport) -> Vec<u16> {
    report
        .failures
        .iter()
        .map(|f| match &f.reason {
            FailureReason::UnexpectedResponse { status, .. } => *status,
            other => panic!("not an unexpected response: {other}"),
        })
        .collect()
}

#[tokio::test]
async fn a_2xx_that_is_not_an_eye_answer_fails_without_retry_instead_of_delivering() {
    let answers = [
        // A proxy or captive portal answering with its own page.
        ResponseTemplate::new(200).set_body_raw("<html>Sign in to Wi-Fi</html>", "text/html"),
        // Some other service's JSON.
        ResponseTemplate::new(201).set_body_json(json!({"ok": true})),
        ResponseTemplate::new(200),
        ResponseTemplate::new(204),
    ];
    for answer in answers {
        let server = MockServer::start().await;
        mount_after(&server, answer, 100, &Ingest::default()).await;
        let client = builder(&server.uri()).build().unwrap();

        track_n(&client, 3);
        let report = client.flush().await;

        assert_eq!((report.delivered, report.failed), (0, 3), "{report}");
        let statuses = unexpected(&report);
        assert!(
            statuses.iter().all(|s| (200..300).contains(s)),
            "{statuses:?}"
        );
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
        let stats = client.stats();
        assert_eq!((stats.delivered, stats.failed, stats.retried), (0, 3, 0));
    }
}

#[tokio::test]
async fn results_that_do_not_cover_the_batch_deliver_nothing_unconfirmed() {
    // One result short: no event can be matched to its result.
    let (_server, client) = created_with(|events| {
        events[1..]
            .iter()
            .map(|e| EventResult::Accepted { id: id_of(e) })
            .collect()
    })
    .await;
    track_n(&client, 3);
    let report = client.flush().await;
    assert_eq!((report.delivered, report.failed), (0, 3), "{report}");
    assert_eq!(unexpected(&report), vec![201; 3]);

    // As many results as events, but the first accepts an id that was not sent.
    let (_server, client) = created_with(|events| {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| EventResult::Accepted {
                id: if i == 0 { Uuid::now_v7() } else { id_of(e) },
            })
            .collect()
    })
    .await;
    let ids = track_n(&client, 3);
    let report = client.flush().await;
    assert_eq!((report.delivered, report.failed), (2, 1), "{report}");
    assert_eq!(report.failures[0].event.id(), Some(ids[0]));
    assert_eq!(unexpected(&report), vec![201]);
}

fn id_of(event: &Value) -> Uuid {
    event["id"].as_str().unwrap().parse().unwrap()
}

/// A server that answers every batch 201, all accepted, with the results `results_for`
/// makes of the batch's events; and a client sending to it.
async fn created_with(
    results_for: impl Fn(&[Value]) -> Vec<EventResult> + Send + Sync + 'static,
) -> (MockServer, EyeClient) {
    let server = MockServer::start().await;
    let respond = move |request: &Request| {
        let (events, _) = decode(request);
        let results = results_for(&events);
        ResponseTemplate::new(201).set_body_json(IngestResponse {
            accepted: results.len(),
            rejected: 0,
            results,
        })
    };
    Mock::given(method("POST"))
        .respond_with(respond)
        .mount(&server)
        .await;
    let client = builder(&server.uri()).build().unwrap();
    (server, client)
}
