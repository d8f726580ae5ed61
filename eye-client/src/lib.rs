#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - `builder`: [`EyeClientBuilder`], every setting and the checks in `build`.
//! - `client`: [`EyeClient`], `track`, `flush`, `shutdown`, the sender thread and the
//!   best-effort flush on drop.
//! - `worker`: the background task that batches by size or age and keeps a bounded
//!   number of requests in flight; `worker::spool` is its loop with an outbox.
//! - `outbox`: the outbox on disk: segment format, lock, bounds, the disk jobs.
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
mod outbox;
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
