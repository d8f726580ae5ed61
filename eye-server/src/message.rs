//! What travels from ingest to the store: the queue's message format.
//!
//! A leaf module: the queues (which carry messages), the store (which writes them) and
//! the worker (which decodes them) all import it, and it imports none of them.
//!
//! Messages are a tagged, versioned enum so an old worker and a new API can tell each
//! other apart.

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
