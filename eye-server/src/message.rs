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
///
/// Decoding reads the tag and then the variant's fields straight from the input when
/// the tag comes first, as serialising writes it; serde's derive for a tagged enum
/// first copies every member into a buffer of its own, which was a third of the
/// journal reader's cost per event (issue 18). A message with its tag elsewhere still
/// decodes, from its members gathered first.
///
/// ```
/// use eye_server::message::Message;
/// let json = r#"{"type":"rejected.v1","key":"0192d3a0-0000-7000-8000-000000000000",
///     "application":"shop","received_at":"2022-01-01T00:00:00Z","errors":[],"payload":"{"}"#;
/// let Message::RejectedV1(r) = serde_json::from_str::<Message>(json).unwrap() else { panic!() };
/// assert_eq!(r.application, "shop");
/// // The same members in another order: the same message.
/// let moved = r#"{"key":"0192d3a0-0000-7000-8000-000000000000","type":"rejected.v1",
///     "application":"shop","received_at":"2022-01-01T00:00:00Z","errors":[],"payload":"{"}"#;
/// assert_eq!(serde_json::from_str::<Message>(moved).unwrap(), Message::RejectedV1(r));
/// assert!(serde_json::from_str::<Message>(r#"{"type":"event.v9"}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Message {
    /// An accepted event to store.
    #[serde(rename = "event.v1")]
    EventV1(AcceptedEvent),
    /// A rejected event to record in the errors log.
    #[serde(rename = "rejected.v1")]
    RejectedV1(RejectedEvent),
}

/// The tags [`Message`] knows.
const MESSAGE_TYPES: &[&str] = &["event.v1", "rejected.v1"];

/// The variant `tag` names, decoded from the other members in `rest`.
fn decode_variant<'de, D: serde::Deserializer<'de>>(
    tag: &str,
    rest: D,
) -> Result<Message, D::Error> {
    match tag {
        "event.v1" => AcceptedEvent::deserialize(rest).map(Message::EventV1),
        "rejected.v1" => RejectedEvent::deserialize(rest).map(Message::RejectedV1),
        other => Err(serde::de::Error::unknown_variant(other, MESSAGE_TYPES)),
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MessageVisitor)
    }
}

struct MessageVisitor;

impl<'de> serde::de::Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a queue message: an object with a `type`")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        use serde::de::{Error, value::MapAccessDeserializer};
        let Some(first) = map.next_key::<String>()? else {
            return Err(A::Error::missing_field("type"));
        };
        if first == "type" {
            let tag: String = map.next_value()?;
            return decode_variant(&tag, MapAccessDeserializer::new(map));
        }
        // The tag is elsewhere: gather the members, take it out, decode the rest.
        let mut members = serde_json::Map::new();
        members.insert(first, map.next_value()?);
        while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
            members.insert(k, v);
        }
        let tag = match members.remove("type") {
            Some(serde_json::Value::String(tag)) => tag,
            Some(other) => {
                return Err(A::Error::custom(format!("`type` is {other}, not a string")));
            }
            None => return Err(A::Error::missing_field("type")),
        };
        decode_variant(&tag, serde_json::Value::Object(members)).map_err(A::Error::custom)
    }
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
    fn messages_decode_what_they_encode_with_the_tag_anywhere() {
        let now = eye_core::truncate_to_micros(Utc::now());
        let event = Event::parse_json(
            br#"{"session_id":"s1","category":"form_interaction","name":"submit",
                "data":{"host":"a.com","path":"/","form":{"q":[1,{"r":"x"}]}},
                "timestamp":"2022-01-01T00:00:00.123456Z"}"#,
            &eye_core::ValidationContext::at(now),
        )
        .unwrap();
        let accepted = |client_timestamp| {
            Message::EventV1(AcceptedEvent {
                id: Uuid::now_v7(),
                application: "shop".into(),
                received_at: now,
                event: event.clone(),
                client_timestamp,
            })
        };
        let rejected = Message::RejectedV1(RejectedEvent::new(
            "shop".into(),
            now,
            vec![FieldError::new(
                "/x",
                eye_core::ErrorCode::UnknownField,
                "no",
            )],
            "{\"x\":1}",
        ));
        for m in [accepted(None), accepted(Some(now)), rejected] {
            let json = serde_json::to_string(&m).unwrap();
            assert!(json.starts_with(r#"{"type":""#), "{json}");
            assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), m, "{json}");
            // The tag last: the slower path, the same message.
            let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
            let tag = v.as_object_mut().unwrap().remove("type").unwrap();
            v.as_object_mut().unwrap().insert("type".into(), tag);
            let moved = serde_json::to_string(&v).unwrap();
            assert!(!moved.starts_with(r#"{"type""#), "{moved}");
            assert_eq!(serde_json::from_str::<Message>(&moved).unwrap(), m);
        }
        for bad in [
            r#"{"type":"event.v99","id":"x"}"#,
            r#"{"id":"x","type":"event.v99"}"#,
            r#"{"id":"x"}"#,
            r#"{}"#,
            r#"{"type":7}"#,
            r#"{"type":"event.v1","id":"not a uuid"}"#,
            r#"[1]"#,
        ] {
            assert!(serde_json::from_str::<Message>(bad).is_err(), "{bad}");
        }
    }

    /// What ingest accepted is decoded whatever the clock of the process that reads
    /// it: `--max-clock-skew-secs` above the default, or a worker whose clock is
    /// behind the API node's, must not turn an acknowledged event into a dead letter.
    #[test]
    fn an_accepted_event_decodes_whatever_the_readers_clock() {
        let now = eye_core::truncate_to_micros(Utc::now());
        let ahead = now + chrono::Duration::minutes(50);
        let json = format!(
            r#"{{"session_id":"s1","category":"page_interaction","name":"page_view",
                "data":{{"host":"a.com","path":"/"}},"timestamp":"{}"}}"#,
            eye_core::format_timestamp(&ahead)
        );
        // Accepted by a server allowing an hour of skew.
        let ctx =
            eye_core::ValidationContext::at(now).with_max_clock_skew(chrono::Duration::hours(1));
        let event = Event::parse_json(json.as_bytes(), &ctx).unwrap();
        let m = Message::EventV1(AcceptedEvent {
            id: Uuid::now_v7(),
            application: "shop".into(),
            received_at: now,
            event,
            client_timestamp: None,
        });
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Message>(&text).unwrap(), m);
        // Every other rule still holds on the way out.
        let broken = text.replace(r#""host":"a.com""#, r#""host":"""#);
        assert!(
            serde_json::from_str::<Message>(&broken).is_err(),
            "{broken}"
        );
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
