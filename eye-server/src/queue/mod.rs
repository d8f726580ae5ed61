//! The queue between ingest and the store, behind one trait.
//!
//! - [`journal`]: the default. An append-only journal on disk: `enqueue` returns once
//!   the messages are appended (group commit), and a background task stores them.
//! - [`embedded`]: `--ack-after store`. An in-process group-commit writer: `enqueue`
//!   returns once the messages are committed to the store, so they are readable at
//!   the 2xx.
//! - [`redis`]: a Redis Stream shared by many API nodes and workers; `enqueue` returns
//!   once Redis confirmed the append, and workers move messages into the store.
//!
//! - [`metered`]: a wrapper around any of them that records metrics.
//!
//! The messages they carry are [`crate::message`]'s; the store they write to is
//! reached through [`crate::sink`]'s fallback rule. The Redis worker, the consumer
//! side, is [`crate::worker`]: this module never starts it.

pub mod embedded;
pub mod journal;
pub mod metered;
pub mod redis;

use async_trait::async_trait;

use crate::message::Message;

/// Why the queue could not take messages. Every variant maps to a 503 with
/// `Retry-After`: the sender should retry, nothing was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The backlog reached its configured limit (backpressure).
    #[error("queue is full (backlog {backlog}, limit {limit})")]
    Full {
        /// Current backlog.
        backlog: u64,
        /// Configured limit.
        limit: u64,
    },
    /// The queue's backend is unreachable or failed.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The queue is shutting down.
    #[error("queue is shutting down")]
    ShuttingDown,
}

/// The queue ingest writes to.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Appends messages. Returns only once they are durable (appended to the journal,
    /// committed to the store,
    /// or acknowledged by Redis); on error none of them may be considered accepted.
    async fn enqueue(&self, messages: Vec<Message>) -> Result<(), QueueError>;

    /// Messages accepted but not yet in the store.
    async fn backlog(&self) -> Result<u64, QueueError>;

    /// Checks the backend is reachable, for `/readyz`.
    async fn ready(&self) -> Result<(), QueueError>;

    /// A short name for logs and `/readyz` (`embedded`, `redis`).
    fn kind(&self) -> &'static str;

    /// Stops taking messages and returns once every message already accepted is
    /// durable where it belongs (graceful shutdown). Later `enqueue` calls fail with
    /// [`QueueError::ShuttingDown`].
    async fn close(&self) {}
}
