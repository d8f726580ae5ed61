//! Prometheus metrics: what says whether the pipeline is healthy.
//!
//! The recorder is installed once per process ([`install`]); every later call returns
//! the same handle, so tests that build many routers share one registry. Counters are
//! recorded where the thing happens:
//!
//! - ingest: [`MeteredQueue`] wraps whatever [`Queue`] the server runs and counts every
//!   message it is handed (accepted events by type, rejected events by error code), the
//!   size of each enqueue and how long it took (in embedded mode, the time to commit);
//! - the store: [`batch_committed`] after each transaction;
//! - the Redis queue and worker count their own (`eye_queue_*`, `eye_worker_*`,
//!   dead-lettered messages included);
//! - HTTP: [`track_http`], a middleware labelled by the matched route (never the raw
//!   path, so `/events/{id}` is one series and unknown paths are `unmatched`);
//! - at scrape time ([`render`]): queue backlog and store size.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `eye_events_accepted_total` | counter | `category`, `name` |
//! | `eye_events_rejected_total` | counter | `code` |
//! | `eye_events_stored_total` | counter | |
//! | `eye_events_duplicate_total` | counter | |
//! | `eye_errors_logged_total` | counter | |
//! | `eye_enqueue_batch_size` | histogram | |
//! | `eye_enqueue_duration_seconds` | histogram | `outcome` |
//! | `eye_commit_batch_size` | histogram | |
//! | `eye_commit_duration_seconds` | histogram | |
//! | `eye_queue_backlog` | gauge | |
//! | `eye_queue_dropped_total` | counter | `reason` |
//! | `eye_store_bytes` | gauge | |
//! | `eye_http_requests_total` | counter | `method`, `route`, `status` |
//! | `eye_http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//!
//! The ingest handler and the embedded queue add `eye_ingest_events_total{outcome}`,
//! `eye_errors_log_dropped_total` and `eye_commit_group_messages`; the Redis queue
//! `eye_queue_enqueued_total` and `eye_queue_rejected_total{reason}`; the Redis worker
//! `eye_worker_{stored,duplicates,errors_logged,dead_lettered,claimed,failures,
//! store_failures}_total` and `eye_worker_batch_seconds`. The README lists them all.
//!
//! ```
//! let handle = eye_server::metrics::install();
//! eye_server::metrics::batch_committed(3, 3, 0, std::time::Duration::from_millis(2));
//! assert!(handle.render().contains("eye_events_stored_total"));
//! ```

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::queue::{Message, Queue, QueueError};
use crate::state::AppState;

/// Every metric name, so producers and tests spell them alike.
pub mod names {
    /// Events accepted at ingest, by `category` and `name`.
    pub const EVENTS_ACCEPTED: &str = "eye_events_accepted_total";
    /// Events rejected at ingest, by error `code` (an event with two codes counts once
    /// under each).
    pub const EVENTS_REJECTED: &str = "eye_events_rejected_total";
    /// Events newly written to the store.
    pub const EVENTS_STORED: &str = "eye_events_stored_total";
    /// Events whose id was already stored (retries, redeliveries): not stored again.
    pub const EVENTS_DUPLICATE: &str = "eye_events_duplicate_total";
    /// Rejected events written to the errors log.
    pub const ERRORS_LOGGED: &str = "eye_errors_logged_total";
    /// Messages per enqueue call (one per request: 1, or a batch's size).
    pub const ENQUEUE_BATCH_SIZE: &str = "eye_enqueue_batch_size";
    /// Time an enqueue took, by `outcome` (`ok`, `full`, `unavailable`,
    /// `shutting_down`). In embedded mode this is the time until the commit.
    pub const ENQUEUE_DURATION: &str = "eye_enqueue_duration_seconds";
    /// Messages per store transaction.
    pub const COMMIT_BATCH_SIZE: &str = "eye_commit_batch_size";
    /// Time one store transaction took.
    pub const COMMIT_DURATION: &str = "eye_commit_duration_seconds";
    /// Messages accepted but not yet stored, sampled at scrape time.
    pub const QUEUE_BACKLOG: &str = "eye_queue_backlog";
    /// Messages the queue refused or lost, by `reason` (`full`, `unavailable`, ...).
    pub const QUEUE_DROPPED: &str = "eye_queue_dropped_total";
    /// Messages the Redis worker moved to the dead-letter stream (counted by the
    /// worker).
    pub const WORKER_DEAD_LETTERED: &str = "eye_worker_dead_lettered_total";
    /// Size of the SQLite database in bytes, sampled at scrape time.
    pub const STORE_BYTES: &str = "eye_store_bytes";
    /// HTTP requests by `method`, matched `route` and `status`.
    pub const HTTP_REQUESTS: &str = "eye_http_requests_total";
    /// HTTP request latency by `method`, matched `route` and `status`.
    pub const HTTP_DURATION: &str = "eye_http_request_duration_seconds";
}

/// Latency buckets (seconds): from 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];

/// Batch-size buckets (messages).
const SIZE_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's global recorder, once; later
/// calls return the same handle. If some other recorder was installed first (a test
/// harness), the handle still renders, it just sees nothing.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = builder().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "metrics buckets rejected; using the defaults");
                PrometheusBuilder::new()
            });
            match builder.install_recorder() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder was already installed; /metrics will be empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    let mut b = PrometheusBuilder::new();
    for name in [
        names::HTTP_DURATION,
        names::COMMIT_DURATION,
        names::ENQUEUE_DURATION,
    ] {
        b = b.set_buckets_for_metric(Matcher::Full(name.to_owned()), &LATENCY_BUCKETS)?;
    }
    for name in [names::COMMIT_BATCH_SIZE, names::ENQUEUE_BATCH_SIZE] {
        b = b.set_buckets_for_metric(Matcher::Full(name.to_owned()), &SIZE_BUCKETS)?;
    }
    Ok(b)
}

/// Records one store transaction: how many messages it held, what it inserted, how
/// many were duplicates, and how long it took. Called by the store after each commit.
pub fn batch_committed(messages: usize, inserted: u64, duplicates: u64, elapsed: Duration) {
    histogram!(names::COMMIT_BATCH_SIZE).record(messages as f64);
    histogram!(names::COMMIT_DURATION).record(elapsed.as_secs_f64());
    counter!(names::EVENTS_STORED).increment(inserted);
    counter!(names::EVENTS_DUPLICATE).increment(duplicates);
}

/// Records rejected events written to the errors log.
pub fn errors_logged(n: u64) {
    counter!(names::ERRORS_LOGGED).increment(n);
}

/// Records `n` messages the queue refused or lost, and why (`full`, `unavailable`,
/// `shutting_down`, `undecodable`).
pub fn message_dropped(reason: &'static str, n: u64) {
    counter!(names::QUEUE_DROPPED, "reason" => reason).increment(n);
}

/// What an enqueue carries, by metric label: taken before the messages move into the
/// queue, counted once the queue took them.
enum Tally {
    Accepted(eye_core::EventType),
    Rejected(Vec<&'static str>),
}

fn tally(messages: &[Message]) -> Vec<Tally> {
    messages
        .iter()
        .map(|m| match m {
            Message::EventV1(accepted) => Tally::Accepted(accepted.event.event_type()),
            Message::RejectedV1(rejected) => {
                let mut codes: Vec<&'static str> =
                    rejected.errors.iter().map(|e| e.code.as_str()).collect();
                codes.sort_unstable();
                codes.dedup();
                Tally::Rejected(codes)
            }
        })
        .collect()
}

fn count(tallies: Vec<Tally>) {
    for t in tallies {
        match t {
            Tally::Accepted(t) => {
                counter!(names::EVENTS_ACCEPTED, "category" => t.category(), "name" => t.name())
                    .increment(1);
            }
            Tally::Rejected(codes) => {
                for code in codes {
                    counter!(names::EVENTS_REJECTED, "code" => code).increment(1);
                }
            }
        }
    }
}

/// A [`Queue`] that records metrics about everything passing through the queue it
/// wraps; behaviour is unchanged.
///
/// ```
/// # use std::sync::Arc;
/// # fn wrap(queue: Arc<dyn eye_server::queue::Queue>) -> Arc<dyn eye_server::queue::Queue> {
/// eye_server::metrics::MeteredQueue::wrap(queue)
/// # }
/// ```
pub struct MeteredQueue {
    inner: Arc<dyn Queue>,
}

impl MeteredQueue {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn Queue>) -> Arc<dyn Queue> {
        Arc::new(Self { inner })
    }
}

#[async_trait]
impl Queue for MeteredQueue {
    async fn enqueue(&self, messages: Vec<Message>) -> Result<(), QueueError> {
        let n = messages.len();
        let tallies = tally(&messages);
        let start = Instant::now();
        let result = self.inner.enqueue(messages).await;
        let outcome = match &result {
            Ok(()) => {
                count(tallies);
                "ok"
            }
            Err(QueueError::Full { .. }) => "full",
            Err(QueueError::Unavailable(_)) => "unavailable",
            Err(QueueError::ShuttingDown) => "shutting_down",
        };
        if outcome != "ok" {
            message_dropped(outcome, n as u64);
        }
        histogram!(names::ENQUEUE_BATCH_SIZE).record(n as f64);
        histogram!(names::ENQUEUE_DURATION, "outcome" => outcome)
            .record(start.elapsed().as_secs_f64());
        result
    }

    async fn backlog(&self) -> Result<u64, QueueError> {
        self.inner.backlog().await
    }

    async fn ready(&self) -> Result<(), QueueError> {
        self.inner.ready().await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

/// Middleware: counts every request and its latency by method, matched route and
/// status. Add it with `Router::layer(axum::middleware::from_fn(track_http))` so the
/// matched route is known.
pub async fn track_http(request: Request, next: Next) -> Response {
    let start = Instant::now();
    // Methods are open-ended (any token is valid HTTP): bound the label's values.
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    counter!(names::HTTP_REQUESTS, &labels).increment(1);
    histogram!(names::HTTP_DURATION, &labels).record(start.elapsed().as_secs_f64());
    response
}

/// Samples the gauges (queue backlog, store size) and renders every metric in the
/// Prometheus text format.
pub async fn render(state: &AppState) -> String {
    let handle = install();
    match state.queue.backlog().await {
        Ok(n) => gauge!(names::QUEUE_BACKLOG).set(n as f64),
        Err(e) => tracing::warn!(error = %e, "cannot read the queue backlog for /metrics"),
    }
    if let Ok(size) = state.store.store_size().await {
        gauge!(names::STORE_BYTES).set(size.database_bytes as f64);
    }
    handle.render()
}

/// `GET /metrics`: Prometheus text format. Unauthenticated, like most exporters; it
/// carries counts, never event data.
pub async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        render(&state).await,
    )
}

/// `GET /metrics`.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/metrics", axum::routing::get(metrics_handler))
}
