//! `Ingest`: a scripted stand-in for eye-server's `POST /events`, and client helpers.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eye_client::{EyeClient, EyeClientBuilder, RetryPolicy};
use eye_core::{ErrorCode, Event, EventResult, FieldError, IngestResponse, ValidationErrors};
use serde_json::Value;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers like eye-server's ingest: decodes the (gzip) batch and accepts every event,
/// except those of session `reject-me`.
/// Records every request it answers.
#[derive(Clone, Default)]
pub struct Ingest {
    seen: Arc<Mutex<Vec<Seen>>>,
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub ids: Vec<Uuid>,
    pub gzip: bool,
}

impl Ingest {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Ids of the events accepted (answered 201), in order.
    pub fn accepted_ids(&self) -> Vec<Uuid> {
        self.seen().into_iter().flat_map(|s| s.ids).collect()
    }
}

pub fn decode(request: &Request) -> (Vec<Value>, bool) {
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

pub fn fast_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

pub fn builder(url: &str) -> EyeClientBuilder {
    EyeClient::builder(url)
        .api_key("eye_test")
        .retry_policy(fast_retries(5))
        .flush_interval(Duration::from_millis(20))
}

pub fn page_view(session: &str) -> Event {
    Event::page_view(session, "shop.example", "/").unwrap()
}

pub fn track_n(client: &EyeClient, n: usize) -> Vec<Uuid> {
    (0..n)
        .map(|i| client.track(page_view(&format!("s{i}"))).unwrap())
        .collect()
}

pub async fn mount_after(server: &MockServer, first: ResponseTemplate, times: u64, then: &Ingest) {
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

pub async fn mount_ingest(server: &MockServer, ingest: &Ingest) {
    mount_after(server, ResponseTemplate::new(200), 0, ingest).await;
}
