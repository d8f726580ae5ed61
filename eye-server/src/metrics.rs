//! Prometheus metrics: what says whether the pipeline is healthy.
//!
//! The recorder is installed once per process ([`install`]); every later call returns
//! the same handle, so tests that build many routers share one registry. Counters are
//! recorded where the thing happens:
//!
//! - ingest: [`crate::queue::metered::MeteredQueue`] wraps whatever queue the server runs and counts every
//!   message it is handed (accepted events by type, rejected events by error code), the
//!   size of each enqueue and how long it took (until appended to the journal, committed
//!   with `--ack-after store`, or confirmed by Redis);
//! - the store: [`batch_committed`] after each transaction;
//! - the Redis queue and worker count their own (`eye_queue_*`, `eye_worker_*`,
//!   dead-lettered messages included);
//! - HTTP: [`HttpMetricsLayer`], a middleware labelled by the matched route (never the raw
//!   path, so `/events/{id}` is one series and unknown paths are `unmatched`);
//! - at scrape time (`GET /metrics`, in [`crate::routes::metrics`]): queue backlog and
//!   store size, the memory SQLite holds, and the heap in use.
//!
//! Histogram samples are folded into their buckets every 5 s by a thread of the
//! recorder's own (and at every scrape), so memory does not depend on whether anyone
//! scrapes.
//!
//! This module is a leaf: it knows metric names and the recorder, nothing of the
//! queue, the store or the state, so all of them may record.
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
//! | `eye_sqlite_memory_bytes` | gauge | |
//! | `eye_heap_in_use_bytes` | gauge | |
//! | `eye_http_requests_total` | counter | `method`, `route`, `status` |
//! | `eye_http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//!
//! The ingest handler, the embedded queues, the Redis queue and the worker add the
//! rest; [`names`] lists every one, and every call site uses those constants.
//!
//! ```
//! let handle = eye_server::metrics::install();
//! eye_server::metrics::batch_committed(3, 3, 0, std::time::Duration::from_millis(2));
//! assert!(handle.render().contains("eye_events_stored_total"));
//! ```

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use metrics::{counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
    /// Events of erased sessions that reached the store later and were dropped.
    pub const EVENTS_SUPPRESSED: &str = "eye_events_suppressed_total";
    /// Rows deleted by retention, by `table` (`events`, `errors`).
    pub const RETENTION_DELETED: &str = "eye_retention_deleted_total";
    /// Sessions erased on request.
    pub const SESSIONS_ERASED: &str = "eye_sessions_erased_total";
    /// Messages per enqueue call (one per request: 1, or a batch's size).
    pub const ENQUEUE_BATCH_SIZE: &str = "eye_enqueue_batch_size";
    /// Time an enqueue took, by `outcome` (`ok`, `full`, `unavailable`,
    /// `shutting_down`): until appended to the journal (default), committed
    /// (`--ack-after store`) or confirmed by Redis.
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
    /// Events received at ingest, by `outcome` (`accepted`, `rejected`).
    pub const INGEST_EVENTS: &str = "eye_ingest_events_total";
    /// Rejected events the errors log could not take (the queue refused them).
    pub const ERRORS_LOG_DROPPED: &str = "eye_errors_log_dropped_total";
    /// Messages per group the embedded queues commit (journal store task, group commit).
    pub const COMMIT_GROUP_MESSAGES: &str = "eye_commit_group_messages";
    /// Messages per append of the journal's group-commit writer.
    pub const JOURNAL_GROUP_MESSAGES: &str = "eye_journal_group_messages";
    /// Messages the journal's store task wrote to its dead-letter file.
    pub const JOURNAL_DEAD_LETTERS: &str = "eye_journal_dead_letters_total";
    /// Corrupt stretches the journal's reader skipped (each lost at least one frame;
    /// the frames after it are stored).
    pub const JOURNAL_CORRUPT_FRAMES: &str = "eye_journal_corrupt_frames_total";
    /// Ingest requests refused by an application's rate limit, by `application`.
    pub const RATE_LIMITED_REQUESTS: &str = "eye_rate_limited_requests_total";
    /// Events in requests refused by an application's rate limit, by `application`.
    pub const RATE_LIMITED_EVENTS: &str = "eye_rate_limited_events_total";
    /// Messages the Redis queue appended.
    pub const QUEUE_ENQUEUED: &str = "eye_queue_enqueued_total";
    /// Messages the Redis queue refused, by `reason`.
    pub const QUEUE_REJECTED: &str = "eye_queue_rejected_total";
    /// Requests whose appends the Redis queue sent in one script call (one round
    /// trip): above 1 when concurrent requests share it.
    pub const REDIS_APPEND_GROUP_REQUESTS: &str = "eye_queue_redis_group_requests";
    /// Events the Redis worker newly stored.
    pub const WORKER_STORED: &str = "eye_worker_stored_total";
    /// Redelivered events the Redis worker found already stored.
    pub const WORKER_DUPLICATES: &str = "eye_worker_duplicates_total";
    /// Rejected events the Redis worker recorded in the errors log.
    pub const WORKER_ERRORS_LOGGED: &str = "eye_worker_errors_logged_total";
    /// Entries the Redis worker claimed from other consumers.
    pub const WORKER_CLAIMED: &str = "eye_worker_claimed_total";
    /// Worker loop steps that failed (Redis or the store).
    pub const WORKER_FAILURES: &str = "eye_worker_failures_total";
    /// Entries the worker could not store (they stay pending).
    pub const WORKER_STORE_FAILURES: &str = "eye_worker_store_failures_total";
    /// Time from reading a batch to its acknowledgement.
    pub const WORKER_BATCH_SECONDS: &str = "eye_worker_batch_seconds";
    /// Size of the SQLite database in bytes, sampled at scrape time.
    pub const STORE_BYTES: &str = "eye_store_bytes";
    /// Memory SQLite holds in this process (page caches, schemas, statements), sampled
    /// at scrape time; absent on PostgreSQL.
    pub const SQLITE_MEMORY_BYTES: &str = "eye_sqlite_memory_bytes";
    /// Heap allocated and not freed (glibc's `mallinfo2`), sampled at scrape time:
    /// what RSS is less the memory the allocator keeps for reuse after a peak.
    pub const HEAP_IN_USE_BYTES: &str = "eye_heap_in_use_bytes";
    /// HTTP requests by `method`, matched `route` and `status`.
    pub const HTTP_REQUESTS: &str = "eye_http_requests_total";
    /// HTTP request latency by `method`, matched `route` and `status`.
    pub const HTTP_DURATION: &str = "eye_http_request_duration_seconds";
    /// Connections closed as soon as accepted, by `reason`: `total`
    /// (`--max-connections` reached) or `per_ip` (the client holds
    /// `--max-connections-per-ip`).
    pub const HTTP_CONNECTIONS_REFUSED: &str = "eye_http_connections_refused_total";
    /// Connections being served.
    pub const HTTP_CONNECTIONS_OPEN: &str = "eye_http_connections_open";
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
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder was already installed; /metrics will be empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            };
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// How often histogram samples recorded since the last scrape are folded into their
/// buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The recorder keeps every histogram sample (one per request, per commit, ...) until
/// something drains them: a scrape of `/metrics` does, and nothing else unless upkeep
/// runs (`install_recorder` leaves that to its caller). A server nobody scrapes grew
/// by tens of MiB an hour under a steady load (the soak run). A thread of its own, so
/// it needs no runtime and outlives none: it sleeps between passes.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("eye-metrics".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread; histograms grow until /metrics is scraped");
    }
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
    for name in [
        names::COMMIT_BATCH_SIZE,
        names::ENQUEUE_BATCH_SIZE,
        names::REDIS_APPEND_GROUP_REQUESTS,
    ] {
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

/// Records events of erased sessions dropped at write time.
pub fn events_suppressed(n: u64) {
    if n > 0 {
        counter!(names::EVENTS_SUPPRESSED).increment(n);
    }
}

/// Records `n` messages the queue refused or lost, and why (`full`, `unavailable`,
/// `shutting_down`, `undecodable`).
pub fn message_dropped(reason: &'static str, n: u64) {
    counter!(names::QUEUE_DROPPED, "reason" => reason).increment(n);
}

/// At most two labels, all static; unused places are `("", "")`.
type StaticLabels = [(&'static str, &'static str); 2];

fn static_labels(labels: &[(&'static str, &'static str)]) -> StaticLabels {
    debug_assert!(labels.len() <= 2, "the per-thread caches key on two labels");
    let mut key = [("", ""); 2];
    for (slot, label) in key.iter_mut().zip(labels) {
        *slot = *label;
    }
    key
}

thread_local! {
    // FxHash, not std's SipHash: the keys are our own static strings (nothing an
    // attacker chooses), and SipHash of five strings cost ~900 instructions per
    // lookup, four lookups per ingest request (issue 18).
    static COUNTERS: std::cell::RefCell<rustc_hash::FxHashMap<(&'static str, StaticLabels), metrics::Counter>> =
        std::cell::RefCell::new(rustc_hash::FxHashMap::default());
    static HISTOGRAMS: std::cell::RefCell<rustc_hash::FxHashMap<(&'static str, StaticLabels), metrics::Histogram>> =
        std::cell::RefCell::new(rustc_hash::FxHashMap::default());
}

/// The counter `name{labels}` (at most two labels, static strings), from a
/// per-thread cache: `counter!` builds the metric's key and looks it up in the
/// recorder at every call, several allocations and a hash of every label, which on
/// the ingest path cost more than the work it counts (issue 18). Installs the
/// recorder first, so a handle is never taken from the no-op one.
pub fn static_counter(
    name: &'static str,
    labels: &[(&'static str, &'static str)],
) -> metrics::Counter {
    let key = (name, static_labels(labels));
    COUNTERS.with(|cache| {
        cache
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| {
                install();
                counter!(name, labels)
            })
            .clone()
    })
}

/// The histogram `name{labels}`, from a per-thread cache, like [`static_counter`].
pub fn static_histogram(
    name: &'static str,
    labels: &[(&'static str, &'static str)],
) -> metrics::Histogram {
    let key = (name, static_labels(labels));
    HISTOGRAMS.with(|cache| {
        cache
            .borrow_mut()
            .entry(key)
            .or_insert_with(|| {
                install();
                histogram!(name, labels)
            })
            .clone()
    })
}

/// The counter and histogram of one `(method, route, status)`.
#[derive(Clone)]
struct HttpSeries {
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// The series of one route, by method and status.
type RouteSeries = Vec<(&'static str, u16, HttpSeries)>;

thread_local! {
    /// Handles by route, then `(method, status)`: looking a series up in the
    /// recorder builds its key (three label strings) and hashes it, which cost more
    /// than the rest of this middleware (issue 18). The set is bounded: matched routes
    /// (or `unmatched`), eight method values, the status codes answered.
    static HTTP_SERIES: std::cell::RefCell<rustc_hash::FxHashMap<String, RouteSeries>> =
        std::cell::RefCell::new(rustc_hash::FxHashMap::default());
}

fn http_series(method: &'static str, route: &str, status: u16) -> HttpSeries {
    HTTP_SERIES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(found) = cache
            .get(route)
            .and_then(|v| v.iter().find(|(m, s, _)| *m == method && *s == status))
        {
            return found.2.clone();
        }
        let labels = [
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let series = HttpSeries {
            requests: counter!(names::HTTP_REQUESTS, &labels),
            duration: histogram!(names::HTTP_DURATION, &labels),
        };
        cache
            .entry(route.to_owned())
            .or_default()
            .push((method, status, series.clone()));
        series
    })
}

/// Middleware: counts every request and its latency by method, matched route and
/// status. Add it with `Router::layer(HttpMetricsLayer)` so the matched route is
/// known (unmatched requests count as `unmatched`).
///
/// A tower layer rather than `axum::middleware::from_fn`: `from_fn` boxes its inner
/// service and its future on every request (issue 18's profile: ~5,000 instructions
/// per request for this layer alone).
///
/// ```
/// use axum::{Router, routing::get};
/// use eye_server::metrics::HttpMetricsLayer;
/// let app: Router = Router::new().route("/", get(|| async { "hi" })).layer(HttpMetricsLayer);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpMetricsLayer;

impl<S> tower::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics { inner }
    }
}

/// The service of [`HttpMetricsLayer`].
#[derive(Debug, Clone)]
pub struct HttpMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<axum::http::Request<B>> for HttpMetrics<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
{
    type Response = axum::http::Response<R>;
    type Error = S::Error;
    type Future = HttpMetricsFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        // Methods are open-ended (any token is valid HTTP): bound the label's values.
        let method = match request.method().as_str() {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "HEAD" => "HEAD",
            "OPTIONS" => "OPTIONS",
            _ => "other",
        };
        HttpMetricsFuture {
            route: request.extensions().get::<MatchedPath>().cloned(),
            method,
            start: Instant::now(),
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`HttpMetrics`]: records the series when it is ready.
    pub struct HttpMetricsFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        method: &'static str,
        route: Option<MatchedPath>,
    }
}

impl<F, R, E> std::future::Future for HttpMetricsFuture<F>
where
    F: std::future::Future<Output = Result<axum::http::Response<R>, E>>,
{
    type Output = Result<axum::http::Response<R>, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
            let series = http_series(this.method, route, response.status().as_u16());
            series.requests.increment(1);
            series.duration.record(this.start.elapsed().as_secs_f64());
        }
        std::task::Poll::Ready(result)
    }
}
