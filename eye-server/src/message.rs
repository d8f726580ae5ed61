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
    /// The sender's own timestamp when the request carried `sent_at` and the event's
    /// timestamp was corrected for the sender's clock.
    ///
    /// Added to `event.v1` as an optional field rather than as an `event.v2`: a message
    /// without it is byte for byte what it was, and a worker of the previous version
    /// that reads one with it stores the (already corrected) event and only drops this
    /// informational field, which is better than dead-lettering the event.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_micros"
    )]
    pub client_timestamp: Option<DateTime<Utc>>,
}

/// [`eye_core::serde_micros`] for an optional instant.
mod optional_micros {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => eye_core::serde_micros::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        s.map(|s| {
            eye_core::parse_timestamp(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid timestamp `{s}`")))
        })
        .transpose()
    }
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
    /// The problems found: at most [`eye_core::MAX_ERRORS_PER_EVENT`], then one
    /// `too_many_errors` entry counting the rest (see [`RejectedEvent::new`]).
    pub errors: Vec<FieldError>,
    /// The raw payload, truncated to [`MAX_LOGGED_PAYLOAD`] bytes.
    pub payload: String,
}

/// How much of a rejected payload the errors log keeps.
pub const MAX_LOGGED_PAYLOAD: usize = 4096;

impl RejectedEvent {
    /// A record for the errors log that stays a few kilobytes whatever was sent: the
    /// errors capped by [`eye_core::cap_errors`] (a list built elsewhere than
    /// eye-core's validation may be longer), the payload cut to
    /// [`MAX_LOGGED_PAYLOAD`] bytes on a character boundary.
    ///
    /// ```
    /// use eye_core::{ErrorCode, FieldError};
    /// use eye_server::message::{MAX_LOGGED_PAYLOAD, RejectedEvent};
    /// let errors = vec![FieldError::new("/x", ErrorCode::UnknownField, "unknown"); 100];
    /// let r = RejectedEvent::new("shop".into(), chrono::Utc::now(), errors, &"é".repeat(5000));
    /// assert_eq!(r.errors.len(), 21);
    /// assert!(r.payload.len() <= MAX_LOGGED_PAYLOAD);
    /// ```
    pub fn new(
        application: String,
        received_at: DateTime<Utc>,
        errors: Vec<FieldError>,
        payload: &str,
    ) -> Self {
        Self {
            key: Uuid::now_v7(),
            application,
            received_at,
            errors: eye_core::cap_errors(errors, 0),
            payload: truncate_payload(payload).to_owned(),
        }
    }
}

/// At most [`MAX_LOGGED_PAYLOAD`] bytes of `payload`, on a character boundary.
fn truncate_payload(payload: &str) -> &str {
    let mut end = payload.len().min(MAX_LOGGED_PAYLOAD);
    while !payload.is_char_boundary(end) {
        end -= 1;
    }
    &payload[..end]
}

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

/// Whether `text` (an errors-log payload, a queue message, a dead letter) carries
/// `session_id`: as the value of a `session_id` member anywhere in it, including
/// inside a string member that itself holds JSON (a rejected message's payload, a
/// dead letter's raw message). Text that is not JSON (cut at
/// [`MAX_LOGGED_PAYLOAD`], or malformed) carries it when the id appears in it as a
/// JSON string, plain or escaped once.
///
/// ```
/// use eye_server::message::carries_session;
/// assert!(carries_session(r#"{"session_id":"abc","name":"x"}"#, "abc"));
/// assert!(!carries_session(r#"{"session_id":"abcd"}"#, "abc"));
/// // A queue message whose event is nested, and a rejected event's payload in a string.
/// assert!(carries_session(r#"{"type":"event.v1","event":{"session_id":"abc"}}"#, "abc"));
/// assert!(carries_session(r#"{"payload":"{\"session_id\":\"abc\"}"}"#, "abc"));
/// // Cut short: not JSON, but the id is there as a string.
/// assert!(carries_session(r#"{"session_id":"abc","data":{"form":{"a"#, "abc"));
/// ```
pub fn carries_session(text: &str, session_id: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => value_carries(&value, session_id),
        Err(_) => {
            let literal = serde_json::to_string(session_id).unwrap_or_default();
            let escaped = serde_json::to_string(&literal).unwrap_or_default();
            let escaped = escaped
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or(&escaped);
            text.contains(&literal) || text.contains(escaped)
        }
    }
}

fn value_carries(value: &serde_json::Value, session_id: &str) -> bool {
    use serde_json::Value;
    match value {
        Value::Object(map) => map.iter().any(|(key, v)| {
            (key == "session_id" && v.as_str() == Some(session_id)) || value_carries(v, session_id)
        }),
        Value::Array(items) => items.iter().any(|v| value_carries(v, session_id)),
        // JSON held as text: a rejected event's raw payload, a dead letter's message.
        Value::String(s) => {
            (s.starts_with('{') || s.starts_with('[')) && carries_session(s, session_id)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_in_another_member_is_not_carried() {
        assert!(!carries_session(
            r#"{"session_id":"x","name":"abc"}"#,
            "abc"
        ));
        assert!(carries_session(
            r#"[{"session_id":"x"},{"session_id":"abc"}]"#,
            "abc"
        ));
        assert!(!carries_session("not json at all abc", "abc"));
    }

    #[test]
    fn truncation_keeps_a_character_boundary() {
        let s = "é".repeat(MAX_LOGGED_PAYLOAD);
        let t = truncate_payload(&s);
        assert!(t.len() <= MAX_LOGGED_PAYLOAD);
        assert!(t.chars().all(|c| c == 'é'));
        assert_eq!(truncate_payload("short"), "short");
    }
}
