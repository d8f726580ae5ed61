//! Fault behaviour of the sender against a scripted HTTP server: the faults the real
//! eye-server cannot be made to produce on demand (5xx, 429 with Retry-After, 413,
//! refused connections, slow answers, blanket 400/401).

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eye_client::{EyeClient, EyeClientBuilder, FailureReason, RetryPolicy, TrackError};
use eye_core::{ErrorCode, Event, EventResult, FieldError, IngestResponse, ValidationErrors};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers like eye-server's ingest: decodes the (gzip) batch and accepts every event,
/// except those of session `reject-me`; answers 413 to batches over `max_events`.
/// Records every request it answers.
#[derive(Clone, Default)]
struct Ingest {
    max_events: Option<usize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    ids: Vec<Uuid>,
    gzip: bool,
}

impl Ingest {
    fn max_events(n: usize) -> Self {
        Self {
            max_events: Some(n),
            ..Self::default()
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Ids of the events accepted (answered 201), in order.
    fn accepted_ids(&self) -> Vec<Uuid> {
        let max = self.max_events.unwrap_or(usize::MAX);
        self.seen()
            .into_iter()
            .filter(|s| s.ids.len() <= max)
            .flat_map(|s| s.ids)
            .collect()
    }
}

fn decode(request: &Request) -> (Vec<Value>, bool) {
    let gzip = request
        .headers
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let mut body = Vec::new();
    if gzip {
        flate2::read::GzDecoder::new(&request.body[..])
            .read_to_end(&mut body)
            .unwrap();
    } else {
        body = request.body.clone();
    }
    (serde_json::from_slice(&body).unwrap(), gzip)
}

impl Respond for Ingest {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let (events, gzip) = decode(request);
        let ids: Vec<Uuid> = events
            .iter()
            .map(|e| e["id"].as_str().unwrap().parse().unwrap())
            .collect();
        self.seen.lock().unwrap().push(Seen {
            at: Instant::now(),
            ids: ids.clone(),
            gzip,
        });
        if self.max_events.is_some_and(|max| events.len() > max) {
            return ResponseTemplate::new(413).set_body_json(json!({"error": {
                "code": "batch_too_large", "message": "split it"}}));
        }
        let results: Vec<EventResult> = events
            .iter()
            .zip(ids)
            .map(|(e, id)| {
                if e["session_id"] == "reject-me" {
                    EventResult::Rejected {
                        errors: ValidationErrors::single(FieldError::new(
                            "/timestamp",
                            ErrorCode::TimestampInFuture,
                            "too far ahead",
                        )),
                    }
                } else {
                    EventResult::Accepted { id }
                }
            })
            .collect();
        let accepted = results
            .iter()
            .filter(|r| matches!(r, EventResult::Accepted { .. }))
            .count();
        let status = if accepted == 0 { 400 } else { 201 };
        ResponseTemplate::new(status).set_body_json(IngestResponse {
            accepted,
            rejected: results.len() - accepted,
            results,
        })
    }
}

fn fast_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

fn builder(url: &str) -> EyeClientBuilder {
    EyeClient::builder(url)
        .api_key("eye_test")
        .retry_policy(fast_retries(5))
        .flush_interval(Duration::from_millis(20))
}

fn page_view(session: &str) -> Event {
    Event::page_view(session, "shop.example", "/").unwrap()
}

fn track_n(client: &EyeClient, n: usize) -> Vec<Uuid> {
    (0..n)
        .map(|i| client.track(page_view(&format!("s{i}"))).unwrap())
        .collect()
}

async fn mount_after(server: &MockServer, first: ResponseTemplate, times: u64, then: &Ingest) {
    if times > 0 {
        Mock::given(method("POST"))
            .and(path("/events"))
            .respond_with(first)
            .up_to_n_times(times)
            .mount(server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/events"))
        .respond_with(then.clone())
        .mount(server)
        .await;
}

async fn mount_ingest(server: &MockServer, ingest: &Ingest) {
    mount_after(server, ResponseTemplate::new(200), 0, ingest).await;
}

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
async fn payload_too_large_splits_the_batch_until_it_fits() {
    let server = MockServer::start().await;
    let ingest = Ingest::max_events(2);
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri()).build().unwrap();

    let ids = track_n(&client, 7);
    let report = client.flush().await;

    assert_eq!(report.delivered, 7, "{report}");
    let mut stored = ingest.accepted_ids();
    stored.sort();
    let mut expected = ids;
    expected.sort();
    assert_eq!(stored, expected, "each event stored exactly once");
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
    let slow = ResponseTemplate::new(503).set_delay(Duration::from_secs(3));
    mount_after(&server, slow, 1, &ingest).await;
    let client = builder(&server.uri())
        .request_timeout(Duration::from_millis(300))
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

#[tokio::test]
async fn full_buffer_refuses_events_and_counts_the_drops() {
    let server = MockServer::start().await;
    let stuck = ResponseTemplate::new(503).set_delay(Duration::from_secs(30));
    mount_after(&server, stuck, 1000, &Ingest::default()).await;
    let client = builder(&server.uri())
        .batch_size(1)
        .buffer_capacity(4)
        .max_in_flight(1)
        .build()
        .unwrap();

    let results: Vec<_> = (0..100).map(|_| client.track(page_view("s"))).collect();

    let refused = results
        .iter()
        .filter(|r| **r == Err(TrackError::BufferFull))
        .count();
    // At most: the buffer, one event waiting in a batch, one in flight.
    assert!(refused >= 100 - (4 + 1 + 1), "only {refused} refused");
    let stats = client.stats();
    assert_eq!(stats.dropped, refused as u64);
    assert_eq!(stats.tracked, 100 - refused as u64);
    let report = client.shutdown(Duration::from_millis(200)).await;
    assert_eq!(report.dropped, refused as u64);
    assert_eq!(report.pending, stats.tracked, "{report}");
}

#[tokio::test]
async fn shutdown_past_its_deadline_reports_the_rest_as_pending() {
    let server = MockServer::start().await;
    mount_after(
        &server,
        ResponseTemplate::new(503),
        10_000,
        &Ingest::default(),
    )
    .await;
    let client = builder(&server.uri())
        .retry_policy(fast_retries(1000))
        .build()
        .unwrap();

    track_n(&client, 5);
    let report = client.shutdown(Duration::from_millis(300)).await;

    assert_eq!((report.pending, report.delivered), (5, 0), "{report}");
    assert_eq!(client.track(page_view("late")), Err(TrackError::Closed));
    assert_eq!(client.stats().dropped, 1);
}

#[tokio::test]
async fn shutdown_delivers_everything_buffered() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri())
        .flush_interval(Duration::from_secs(3600))
        .batch_size(64)
        .build()
        .unwrap();

    let ids = track_n(&client, 1000);
    let report = client.shutdown(Duration::from_secs(10)).await;

    assert_eq!(report.delivered, 1000, "{report}");
    assert_eq!(ingest.accepted_ids(), ids, "in order, each once");
    assert!(ingest.seen().iter().all(|s| s.gzip && s.ids.len() <= 64));
}

#[tokio::test]
async fn dropping_the_last_clone_delivers_the_buffer() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri())
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let ids = track_n(&client, 10);

    let clone = client.clone();
    drop(client);
    assert!(ingest.seen().is_empty(), "a clone is still alive");
    drop(clone);

    assert_eq!(ingest.accepted_ids(), ids);
}

#[tokio::test]
async fn gzip_can_be_turned_off() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri()).gzip(false).build().unwrap();

    track_n(&client, 2);
    let report = client.flush().await;

    assert_eq!(report.delivered, 2);
    assert!(!ingest.seen()[0].gzip);
}

#[tokio::test]
async fn an_event_with_an_id_keeps_it() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri()).build().unwrap();
    let id = Uuid::now_v7();

    let tracked = client.track(page_view("s").with_id(id)).unwrap();
    let _ = client.flush().await;

    assert_eq!(tracked, id);
    assert_eq!(ingest.accepted_ids(), vec![id]);
}

#[tokio::test]
async fn batches_over_the_byte_limit_are_split_before_sending() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri())
        .max_batch_bytes(2048)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let form = json!({"comment": "x".repeat(500)});

    for i in 0..16 {
        let e = Event::form_submit(&format!("s{i}"), "shop.example", "/f", form.clone()).unwrap();
        client.track(e).unwrap();
    }
    let report = client.flush().await;

    assert_eq!(report.delivered, 16, "{report}");
    let seen = ingest.seen();
    assert!(seen.iter().all(|s| s.ids.len() <= 3), "{seen:?}");
    assert_eq!(
        client.stats().requests,
        seen.len() as u64,
        "no request was refused"
    );
}
