//! The Eye's client SDK: track events without ever blocking the application, deliver
//! them in the background in gzip batches with retries, and query them back typed.
//!
//! ```no_run
//! use std::time::Duration;
//! use eye_client::EyeClient;
//! use eye_core::Event;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = EyeClient::builder("http://127.0.0.1:8000")
//!     .api_key(std::env::var("EYE_API_KEY")?)
//!     .build()?;
//!
//! // Never blocks, never awaits the network: the event goes into a bounded buffer.
//! client.track(Event::page_view("session-1", "shop.example", "/")?)?;
//! client.track(Event::cta_click("session-1", "shop.example", "/", "buy now")?)?;
//!
//! // Before exiting: deliver what is buffered and learn what could not be.
//! let report = client.shutdown(Duration::from_secs(10)).await;
//! assert!(report.is_complete(), "not delivered: {report}");
//! # Ok(()) }
//! ```
//!
//! Nothing is lost silently. With no server listening, a shutdown reports the events
//! as pending instead of pretending they were sent:
//!
//! ```
//! use std::time::Duration;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = eye_client::EyeClient::builder("http://127.0.0.1:9").build()?;
//! for path in ["/", "/pricing", "/signup"] {
//!     client.track(eye_core::Event::page_view("s1", "shop.example", path)?)?;
//! }
//! assert_eq!(client.stats().tracked, 3);
//!
//! // `shutdown` is a plain future: any executor can drive it.
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let report = runtime.block_on(client.shutdown(Duration::from_millis(100)));
//! assert_eq!((report.delivered, report.pending), (0, 3));
//! assert!(!report.is_complete());
//! # Ok(()) }
//! ```
//!
//! # Threads and runtimes
//!
//! [`EyeClientBuilder::build`] starts one OS thread, `eye-client`, running its own
//! single-threaded Tokio runtime; that thread batches and sends. So `track` works from
//! any thread, with or without an async runtime, and `flush`, `shutdown` and
//! `track_wait` are futures that work under any executor. The queries
//! ([`EyeClient::events`] and friends) are reqwest calls that run on the caller's Tokio
//! runtime.
//!
//! # Delivery guarantees
//!
//! - Every event gets an id (UUIDv7 unless it has one) before it is buffered; the
//!   server stores each id once, so retries never duplicate an event.
//! - An event counted as delivered was answered 2xx with the Eye's ingest answer, whose
//!   result in the event's place accepts the event's id: the server has committed it.
//!   Any other 2xx (a wrong base URL, a captive portal, a proxy's page) or an answer
//!   with too few or too many results fails those events with
//!   [`FailureReason::UnexpectedResponse`], without retrying.
//! - Connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff
//!   and jitter ([`RetryPolicy`]), waiting at least as long as `Retry-After` says. A
//!   413 splits the batch in halves. 400, 401 and 403 are never retried: per-event
//!   rejections are reported with the server's reasons ([`Rejection`]), whole-request
//!   refusals as [`Failure`]s.
//! - The buffer is bounded: when it is full `track` returns
//!   [`TrackError::BufferFull`] and counts the drop; memory never grows without
//!   bound.
//! - [`EyeClient::flush`] and [`EyeClient::shutdown`] return a [`DeliveryReport`] in
//!   which every event appears exactly once: delivered, rejected, failed or pending,
//!   plus what `track` dropped.
//! - Dropping the last clone without `shutdown` is best effort: the drop blocks up to
//!   the builder's `drop_timeout` while the buffer is sent.
//!
//! # Layout
//!
//! - `builder`: [`EyeClientBuilder`], every setting and the checks in `build`.
//! - `client`: [`EyeClient`], `track`, `flush`, `shutdown`, the sender thread and the
//!   best-effort flush on drop.
//! - `worker`: the background task that batches by size or age and keeps a bounded
//!   number of requests in flight.
//! - `transport`: one batch to `POST /events`: gzip, retries, 413 splits, per-event
//!   results.
//! - `retry`: [`RetryPolicy`] and `Retry-After` parsing.
//! - `report`: [`DeliveryReport`], [`Rejection`], [`Failure`], [`Stats`].
//! - `query`: typed queries and page streams.
//! - `error`: [`TrackError`], [`BuildError`], [`RequestError`], [`FailureReason`].
//! - `shared`: counters and the stop deadline shared by handles and sender.

mod builder;
mod client;
mod error;
mod query;
mod report;
mod retry;
mod shared;
mod transport;
mod worker;

pub use builder::EyeClientBuilder;
pub use client::EyeClient;
pub use error::{BuildError, FailureReason, RequestError, TrackError};
pub use report::{DeliveryReport, Failure, Rejection, Stats};
pub use retry::RetryPolicy;
