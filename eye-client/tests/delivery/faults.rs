//! Retries, splits and refusals. The real server produces 413, per-event rejections,
//! 401, 403 and refused connections; a wiremock stub stands in only for the faults it
//! cannot be made to produce on demand, each marked "A stub:".

use std::time::{Duration, Instant};

use eye_client::{EyeClient, FailureReason};
use eye_core::{ErrorCode, EventResult, IngestResponse};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::real::{Limits, Server, from_the_future};
use crate::scripted::{Ingest, builder, decode, fast_retries, mount_after, page_view, track_n};

/// A stub: the real server answers 503 only when it is overloaded or shutting down,
/// not once on demand.
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

/// A stub: the real server's 429 carries a Retry-After its rate limiter computes; this
/// needs a fixed one. The wait is measured on the stub's side, from the moment it
/// answered 429 to the arrival of the retry; a loaded machine can only lengthen it.
#[tokio::test]
async fn too_many_requests_waits_at_least_retry_after() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    let answered_429 = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let limited = {
        let answered_429 = std::sync::Arc::clone(&answered_429);
        move |_: &Request| {
            *answered_429.lock().unwrap() = Some(Instant::now());
            ResponseTemplate::new(429).insert_header("retry-after", "1")
        }
    };
    Mock::given(method("POST"))
        .respond_with(limited)
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ingest.clone())
        .mount(&server)
        .await;
    let client = builder(&server.uri()).build().unwrap();

    track_n(&client, 3);
    let report = client.flush().await;

    assert_eq!(report.delivered, 3, "{report}");
    // The backoff alone would retry after at most 50 ms.
    let answered = answered_429.lock().unwrap().expect("the 429 was sent");
    let retried_at = ingest.seen()[0].at;
    assert!(
        retried_at.duration_since(answered) >= Duration::from_secs(1),
        "retried {:?} after the 429",
        retried_at.duration_since(answered)
    );
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
    // The real server refuses bodies over 1024 bytes (about 260 bytes an event).
    let server = Server::start_with(Limits {
        max_body_bytes: Some(1024),
        ..Limits::default()
    })
    .await;
    let client = server.client().gzip(false).build().unwrap();

    track_n(&client, 7);
    let report = client.flush().await;

    assert_eq!(report.delivered, 7, "{report}");
    assert!(client.stats().requests > 1, "the batch was split");
    assert_eq!(
        server.stored_eventually(7).await,
        7,
        "each event stored exactly once"
    );
    assert_eq!(client.stats().retried, 0, "a split is not a retry");
}

#[tokio::test]
async fn a_single_event_too_large_fails_without_retry() {
    // Each event alone is over the real server's body limit.
    let server = Server::start_with(Limits {
        max_body_bytes: Some(1024),
        ..Limits::default()
    })
    .await;
    let client = server.client().gzip(false).build().unwrap();
    let form = json!({"comment": "x".repeat(2000)});

    for i in 0..2 {
        let e = eye_core::Event::form_submit(&format!("s{i}"), "shop.example", "/f", form.clone())
            .unwrap();
        client.track(e).unwrap();
    }
    let report = client.flush().await;

    assert_eq!(report.failed, 2, "{report}");
    assert!(
        report
            .failures
            .iter()
            .all(|f| f.reason == FailureReason::TooLarge),
        "{report}"
    );
    // One request for the pair, one for each half.
    assert_eq!(client.stats().requests, 3);
    assert_eq!(client.stats().retried, 0);
    assert_eq!(server.store.total_events().await.unwrap(), 0);
}

#[tokio::test]
async fn connection_refused_then_accepted_is_delivered() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    // The server's key is made when it starts: it takes any key until then.
    let client = builder(&base)
        .retry_policy(fast_retries(1000))
        .build()
        .unwrap();
    track_n(&client, 4);
    let flushing = tokio::spawn({
        let client = client.clone();
        async move { client.flush().await }
    });

    // Once a connection was refused and retried, the real server starts on the port.
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.stats().retried == 0 {
        assert!(Instant::now() < deadline, "no retry within 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let server = Server::start_on(
        listener,
        Limits {
            insecure_no_auth: true,
            ..Limits::default()
        },
    )
    .await;
    let report = flushing.await.unwrap();

    assert_eq!(report.delivered, 4, "{report}");
    assert_eq!(server.stored_eventually(4).await, 4);
    assert!(client.stats().retried >= 1);
}

/// A stub: the real server cannot be made to answer slowly on demand.
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

/// A stub: the SDK only sends well-formed JSON, so the real server never answers it
/// `malformed_json`.
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
    // The real server: an unknown key is 401, a key without the ingest scope 403.
    let server = Server::start().await;
    let keys = [
        (401, "eye_not_a_key_it_knows".to_owned()),
        (403, server.query_only_key.clone()),
    ];
    for (status, key) in keys {
        let client = server.client().api_key(&key).build().unwrap();

        track_n(&client, 2);
        let report = client.flush().await;

        assert_eq!(report.failed, 2, "{status}: {report}");
        assert!(
            report.failures.iter().all(|f| matches!(
                &f.reason,
                FailureReason::Refused { status: s, .. } if *s == status
            )),
            "{status}: {report}"
        );
        let stats = client.stats();
        assert_eq!((stats.requests, stats.retried), (1, 0), "{status}");
    }
    assert_eq!(server.store.total_events().await.unwrap(), 0);
}

#[tokio::test]
async fn per_event_rejections_are_reported_with_reasons_and_not_retried() {
    let server = Server::start().await;
    let client = server.client().build().unwrap();

    client.track(page_view("fine")).unwrap();
    let bad = client.track(from_the_future("reject-me")).unwrap();
    let report = client.flush().await;

    assert_eq!((report.delivered, report.rejected), (1, 1), "{report}");
    let rejection = &report.rejections[0];
    assert_eq!(rejection.id(), bad);
    assert!(rejection.errors.has_code(ErrorCode::TimestampInFuture));
    let stats = client.stats();
    assert_eq!((stats.requests, stats.retried), (1, 0));
    assert_eq!(server.stored_eventually(1).await, 1);
}

#[tokio::test]
async fn a_batch_of_only_rejections_answered_400_is_not_retried() {
    let server = Server::start().await;
    let client = server.client().build().unwrap();

    client.track(from_the_future("reject-me")).unwrap();
    let report = client.flush().await;

    assert_eq!(report.rejected, 1, "{report}");
    let stats = client.stats();
    assert_eq!((stats.requests, stats.retried), (1, 0));
    assert_eq!(server.store.total_events().await.unwrap(), 0);
}

/// A stub: the real server does not answer 500 on demand.
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

/// A stub: a proxy or another service answering in the server's place.
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

/// A stub: the real server always answers one result per event.
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
