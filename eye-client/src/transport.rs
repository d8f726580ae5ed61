//! Sending one batch to `POST /events`: encoding, gzip, retries with backoff, splitting
//! batches over the byte limit or answered 413, and reading the per-event results.

use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use eye_core::{ErrorBody, Event, EventResult, IngestResponse};
use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::Url;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};

use crate::error::{Brief, FailureReason};
use crate::report::{Counters, Failure, Rejection};
use crate::retry::{RetryPolicy, parse_retry_after};
use crate::shared::Shared;

/// The header that tells the server when a request was sent, by this machine's clock.
pub(crate) const SENT_AT: &str = "eye-sent-at";

/// Everything needed to send batches; shared by the in-flight requests.
pub(crate) struct Transport {
    pub http: reqwest::Client,
    pub events_url: Url,
    pub api_key: Option<String>,
    pub gzip: bool,
    /// Batches whose JSON is larger are split before sending.
    pub max_batch_bytes: usize,
    pub retry: RetryPolicy,
    pub shared: Arc<Shared>,
    /// With an outbox: a batch whose retries ran out on a retryable failure is kept
    /// (returned in [`Outcome::kept`]) instead of failed, to be tried again later.
    pub keep_on_outage: bool,
}

/// What became of one dispatched batch.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub delivered: u64,
    pub rejections: Vec<Rejection>,
    pub failures: Vec<Failure>,
    /// Not delivered when the stop deadline passed.
    pub abandoned: u64,
    /// Retries ran out on a retryable failure and the outbox keeps them: not settled.
    pub kept: Vec<Event>,
}

/// The final answer to one request (after retries).
enum Sent {
    /// Per-event results, with the HTTP status they came with.
    Answered(u16, IngestResponse),
    TooLarge,
    Failed(FailureReason),
    Abandoned,
}

/// What to do after one attempt.
enum Verdict {
    Done(Sent),
    Retry {
        retry_after: Option<std::time::Duration>,
        why: String,
    },
}

impl Transport {
    /// Delivers a batch, splitting it in halves on 413, and counts every outcome.
    pub async fn deliver(self: Arc<Self>, events: Vec<Event>) -> Outcome {
        let mut out = Outcome::default();
        let mut todo = vec![events];
        while let Some(batch) = todo.pop() {
            match self.send(&batch).await {
                Sent::Answered(status, resp) => apply(batch, status, resp, &mut out),
                Sent::TooLarge if batch.len() > 1 => {
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    tracing::debug!(
                        halves = ?(first.len(), second.len()),
                        "413: splitting the batch"
                    );
                    todo.push(second);
                    todo.push(first);
                }
                Sent::TooLarge => fail(batch, &FailureReason::TooLarge, &mut out),
                Sent::Failed(FailureReason::RetriesExhausted {
                    attempts,
                    last_error,
                }) if self.keep_on_outage => {
                    tracing::debug!(events = batch.len(), attempts, %last_error, "server unreachable: the batch waits in the outbox");
                    out.kept.extend(batch);
                }
                Sent::Failed(reason) => {
                    tracing::warn!(events = batch.len(), %reason, "giving up on a batch");
                    fail(batch, &reason, &mut out);
                }
                Sent::Abandoned => out.abandoned += batch.len() as u64,
            }
        }
        let c = &self.shared.counters;
        Counters::add(&c.delivered, out.delivered);
        Counters::add(&c.rejected, out.rejections.len() as u64);
        Counters::add(&c.failed, out.failures.len() as u64);
        out
    }

    /// Sends one batch with retries.
    async fn send(&self, batch: &[Event]) -> Sent {
        let json = match serde_json::to_vec(batch) {
            Ok(j) => j,
            Err(e) => return Sent::Failed(FailureReason::Encode(e.to_string())),
        };
        // Split before the server has to answer 413; one event goes as it is.
        if json.len() > self.max_batch_bytes && batch.len() > 1 {
            return Sent::TooLarge;
        }
        let body = match self.compress(json) {
            Ok(b) => b,
            Err(e) => return Sent::Failed(FailureReason::Encode(e.to_string())),
        };
        let mut attempt: u32 = 0;
        loop {
            if self.shared.past_deadline() {
                return Sent::Abandoned;
            }
            attempt += 1;
            Counters::add(&self.shared.counters.requests, 1);
            let answer = tokio::select! {
                r = self.post(body.clone()) => r,
                () = self.shared.deadline_reached() => return Sent::Abandoned,
            };
            let (retry_after, why) = match answer {
                Ok(resp) => match classify(resp).await {
                    Verdict::Done(sent) => return sent,
                    Verdict::Retry { retry_after, why } => (retry_after, why),
                },
                Err(e) => (None, Brief(&e).to_string()),
            };
            if attempt > self.retry.max_retries {
                return Sent::Failed(FailureReason::RetriesExhausted {
                    attempts: attempt,
                    last_error: why,
                });
            }
            Counters::add(&self.shared.counters.retried, 1);
            let delay = self.retry.delay(attempt, retry_after);
            tracing::debug!(attempt, ?delay, %why, "retrying a batch");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shared.deadline_reached() => return Sent::Abandoned,
            }
        }
    }

    fn compress(&self, json: Vec<u8>) -> std::io::Result<Vec<u8>> {
        if !self.gzip {
            return Ok(json);
        }
        let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::fast());
        gz.write_all(&json)?;
        gz.finish()
    }

    /// One attempt. Each carries its own `Eye-Sent-At` (this machine's clock now), so
    /// the server corrects the events' timestamps for this clock's error with the
    /// attempt it receives: a retry an hour later, or a batch kept in the outbox
    /// across a restart, is corrected as right as the first attempt would have been.
    async fn post(&self, body: Vec<u8>) -> reqwest::Result<reqwest::Response> {
        let mut req = self
            .http
            .post(self.events_url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(SENT_AT, eye_core::format_timestamp(&chrono::Utc::now()))
            .body(body);
        if self.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        req.send().await
    }
}

/// Reads per-event results. An event counts as delivered only when the result in its
/// place accepts its own id; an answer that does not cover the batch one result per
/// event (not the Eye's ingest, or a broken proxy) delivers none of it.
fn apply(batch: Vec<Event>, status: u16, resp: IngestResponse, out: &mut Outcome) {
    let answered = resp.results.len();
    if answered != batch.len() {
        tracing::warn!(
            sent = batch.len(),
            answered,
            "the server answered a different number of results"
        );
        let reason = FailureReason::UnexpectedResponse {
            status,
            detail: format!("{answered} results for a batch of {}", batch.len()),
        };
        fail(batch, &reason, out);
        return;
    }
    for (event, result) in batch.into_iter().zip(resp.results) {
        match result {
            EventResult::Accepted { id } if event.id() == Some(id) => out.delivered += 1,
            EventResult::Accepted { id } => {
                let detail = format!(
                    "accepted id {id} in the place of event {}",
                    event.id().unwrap_or_default()
                );
                out.failures.push(Failure {
                    event,
                    reason: FailureReason::UnexpectedResponse { status, detail },
                });
            }
            EventResult::Rejected { errors } => {
                out.rejections.push(Rejection { event, errors });
            }
        }
    }
}

fn fail(batch: Vec<Event>, reason: &FailureReason, out: &mut Outcome) {
    out.failures.extend(batch.into_iter().map(|event| Failure {
        event,
        reason: reason.clone(),
    }));
}

/// Decides what an HTTP answer means for the batch.
async fn classify(resp: reqwest::Response) -> Verdict {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    match status {
        // Only an ingest answer says what was stored. Any other 2xx (a wrong base URL,
        // a captive portal, a proxy's page) is a misconfiguration that retrying will
        // not fix, so the batch fails at once instead of counting as delivered.
        200..=299 => match resp.bytes().await {
            Ok(body) => Verdict::Done(match serde_json::from_slice::<IngestResponse>(&body) {
                Ok(r) => Sent::Answered(status, r),
                Err(e) => Sent::Failed(FailureReason::UnexpectedResponse {
                    status,
                    detail: format!("not an Eye ingest answer ({e}): {}", excerpt(&body)),
                }),
            }),
            // The server may have stored them; a retry is harmless thanks to the ids.
            Err(e) => Verdict::Retry {
                retry_after: None,
                why: Brief(&e).to_string(),
            },
        },
        413 => Verdict::Done(Sent::TooLarge),
        408 | 429 | 500..=599 => Verdict::Retry {
            retry_after,
            why: format!("HTTP {status}"),
        },
        _ => {
            let body = resp.bytes().await.unwrap_or_default();
            if status == 400
                && let Ok(r) = serde_json::from_slice::<IngestResponse>(&body)
            {
                return Verdict::Done(Sent::Answered(status, r));
            }
            Verdict::Done(Sent::Failed(refused(status, &body)))
        }
    }
}

/// A refusal from an error body, or from the status alone.
pub(crate) fn refused(status: u16, body: &[u8]) -> FailureReason {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => FailureReason::Refused {
            status,
            code: b.error.code,
            message: b.error.message,
        },
        Err(_) => FailureReason::Refused {
            status,
            code: format!("http_{status}"),
            message: excerpt(body),
        },
    }
}

/// The start of a body, for messages.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}
