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
//! Messages are a tagged, versioned enum so an old worker and a new API can tell each
//! other apart.

pub mod embedded;
pub mod journal;
pub mod redis;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use eye_core::{Event, FieldError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An accepted event on its way to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedEvent {
    /// The final id: the sender's, or one assigned at ingest (UUIDv7).
    pub id: Uuid,
    /// The application that sent it.
    pub application: String,
    /// When ingest accepted it.
    #[serde(with = "eye_core::serde_micros")]
    pub received_at: DateTime<Utc>,
    /// The validated event. Its own `id` field is ignored in favour of [`Self::id`].
    pub event: Event,
}

/// A rejected event, for the errors log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedEvent {
    /// Unique key of this record, so a redelivered message is logged once.
    pub key: Uuid,
    /// The application that sent it.
    pub application: String,
    /// When ingest received it.
    #[serde(with = "eye_core::serde_micros")]
    pub received_at: DateTime<Utc>,
    /// Every problem found.
    pub errors: Vec<FieldError>,
    /// The raw payload, truncated to [`MAX_LOGGED_PAYLOAD`] bytes.
    pub payload: String,
}

/// How much of a rejected payload the errors log keeps.
pub const MAX_LOGGED_PAYLOAD: usize = 4096;

/// One message on the queue, tagged with its type and version (`"type": "event.v1"`).
/// Change a format by adding a new variant (`event.v2`), never by editing one, so a
/// worker can tell a message it does not understand and dead-letter it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Message {
    /// An accepted event to store.
    #[serde(rename = "event.v1")]
    EventV1(AcceptedEvent),
    /// A rejected event to record in the errors log.
    #[serde(rename = "rejected.v1")]
    RejectedV1(RejectedEvent),
}

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
    /// Appends messages. Returns only once they are durable (committed to the store,
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
