//! What the API answers with: stored events, sessions, the errors log, ingest results
//! and error bodies. Shared by the server (which writes them) and the SDK (which reads
//! them), so both sides agree by construction.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{FieldError, ValidationErrors};
use crate::event::{EventType, Payload};
use crate::fields::SessionId;
use crate::timestamp::serde_micros;

/// An event as The Eye stored it: the validated event plus what the server added.
///
/// ```
/// let json = serde_json::json!({
///     "id": "0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c", "session_id": "s1",
///     "category": "page_interaction", "name": "page_view",
///     "data": {"host": "a.com", "path": "/"},
///     "timestamp": "2022-01-01T00:00:00.000000Z",
///     "application": "shop", "received_at": "2022-01-01T00:00:01.000000Z"});
/// let stored: eye_core::StoredEvent = serde_json::from_value(json.clone()).unwrap();
/// assert_eq!(serde_json::to_value(&stored).unwrap(), json);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event's id: the sender's idempotency key, or one assigned at ingest.
    pub id: Uuid,
    /// The session.
    pub session_id: SessionId,
    /// The typed payload (its variant is the event type).
    pub payload: Payload,
    /// When the interaction happened.
    pub timestamp: DateTime<Utc>,
    /// The application that sent it.
    pub application: String,
    /// When The Eye accepted it.
    pub received_at: DateTime<Utc>,
    /// The sender's own timestamp, when the request said when it was sent (`sent_at`)
    /// and `timestamp` was corrected for the sender's clock; `None` otherwise.
    pub client_timestamp: Option<DateTime<Utc>>,
}

impl StoredEvent {
    /// The event type.
    pub fn event_type(&self) -> EventType {
        self.payload.event_type()
    }
}

/// The wire form of [`StoredEvent`], also what its JSON Schema is derived from.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "StoredEvent")]
struct StoredEventWire<'a> {
    id: Uuid,
    session_id: std::borrow::Cow<'a, str>,
    category: std::borrow::Cow<'a, str>,
    name: std::borrow::Cow<'a, str>,
    /// The payload; its shape depends on (category, name).
    data: Value,
    #[serde(with = "serde_micros")]
    #[schemars(with = "String")]
    timestamp: DateTime<Utc>,
    application: std::borrow::Cow<'a, str>,
    #[serde(with = "serde_micros")]
    #[schemars(with = "String")]
    received_at: DateTime<Utc>,
    /// The sender's own timestamp, present when the request carried `sent_at` (or
    /// `Eye-Sent-At`) and `timestamp` was corrected by the difference between the
    /// server's receive time and `sent_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    client_timestamp: Option<std::borrow::Cow<'a, str>>,
}

impl Serialize for StoredEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.event_type();
        StoredEventWire {
            id: self.id,
            session_id: self.session_id.as_str().into(),
            category: t.category().into(),
            name: t.name().into(),
            data: self.payload.to_value(),
            timestamp: self.timestamp,
            application: self.application.as_str().into(),
            received_at: self.received_at,
            client_timestamp: self
                .client_timestamp
                .map(|t| crate::format_timestamp(&t).into()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for StoredEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = StoredEventWire::deserialize(d)?;
        let payload =
            Payload::from_parts(&w.category, &w.name, &w.data).map_err(serde::de::Error::custom)?;
        let session_id = SessionId::parse(&w.session_id).map_err(serde::de::Error::custom)?;
        let client_timestamp = match &w.client_timestamp {
            None => None,
            Some(s) => Some(crate::parse_timestamp(s).ok_or_else(|| {
                serde::de::Error::custom(format!("invalid client_timestamp `{s}`"))
            })?),
        };
        Ok(StoredEvent {
            id: w.id,
            session_id,
            payload,
            timestamp: w.timestamp,
            application: w.application.into_owned(),
            received_at: w.received_at,
            client_timestamp,
        })
    }
}

impl JsonSchema for StoredEvent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StoredEvent".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        StoredEventWire::json_schema(g)
    }
}

/// One session as the store keeps it: updated race-free as its events are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Session {
    /// The session id.
    pub session_id: String,
    /// Timestamp of its earliest event.
    #[serde(with = "serde_micros")]
    #[schemars(with = "String")]
    pub first_seen: DateTime<Utc>,
    /// Timestamp of its latest event.
    #[serde(with = "serde_micros")]
    #[schemars(with = "String")]
    pub last_seen: DateTime<Utc>,
    /// How many events it has.
    pub event_count: u64,
    /// The applications that sent its events, sorted.
    pub applications: Vec<String>,
}

/// One entry of the errors log: an event The Eye rejected, for the team to monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorRecord {
    /// Sequence number of the entry.
    pub id: i64,
    /// The application that sent the event.
    pub application: String,
    /// When The Eye received it.
    #[serde(with = "serde_micros")]
    #[schemars(with = "String")]
    pub received_at: DateTime<Utc>,
    /// The distinct error codes, for filtering.
    pub codes: Vec<String>,
    /// Every problem found.
    pub errors: Vec<FieldError>,
    /// The raw payload as received, truncated to a few KiB.
    pub payload: String,
}

/// The outcome of one event of an ingest request, tagged by `status`.
///
/// ```
/// let id = uuid::Uuid::nil();
/// let json = serde_json::to_value(eye_core::EventResult::Accepted { id }).unwrap();
/// assert_eq!(json, serde_json::json!({"status": "accepted", "id": id.to_string()}));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EventResult {
    /// Accepted: it will be stored exactly once under this id.
    Accepted {
        /// The event's id.
        id: Uuid,
    },
    /// Rejected, with every reason.
    Rejected {
        /// Every problem found.
        errors: ValidationErrors,
    },
}

/// The answer to an ingest request: for one event, its result; for a batch, one result
/// per event in request order plus totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IngestResponse {
    /// How many events were accepted.
    pub accepted: usize,
    /// How many were rejected.
    pub rejected: usize,
    /// One result per event, in request order.
    pub results: Vec<EventResult>,
}

/// The body of every 4xx and 5xx answer: `{"error": {"code", "message", "details"}}`.
///
/// ```
/// use eye_core::{ErrorBody, ErrorDetail};
/// let body = ErrorBody { error: ErrorDetail {
///     code: "unauthorized".into(), message: "unknown key".into(), details: serde_json::Value::Null } };
/// assert_eq!(serde_json::to_value(&body).unwrap(),
///     serde_json::json!({"error": {"code": "unauthorized", "message": "unknown key"}}));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error inside an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// Stable machine code, e.g. `validation_failed`, `unauthorized`, `payload_too_large`.
    pub code: String,
    /// Human explanation.
    pub message: String,
    /// Structured details, e.g. the per-field errors.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
}
