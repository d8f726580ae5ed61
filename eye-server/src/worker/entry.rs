//! Decoding stream entries, and the errors-log record of a dead letter.

use chrono::Utc;
use eye_core::{ErrorCode, FieldError};
use redis::Value;
use redis::streams::StreamId;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::message::{MAX_LOGGED_PAYLOAD, Message, RejectedEvent};
use crate::streams::MESSAGE_FIELD;

/// What an entry holds.
pub(super) enum Decoded {
    /// A message this worker understands.
    Message(Box<Message>),
    /// Anything else: why it cannot be read.
    Undecodable(String),
}

/// The raw bytes of an entry's message field (empty when it has none).
pub(super) fn raw(entry: &StreamId) -> Vec<u8> {
    match entry.map.get(MESSAGE_FIELD) {
        Some(Value::BulkString(bytes)) => bytes.clone(),
        Some(Value::SimpleString(s)) => s.clone().into_bytes(),
        _ => Vec::new(),
    }
}

/// Decodes an entry. An unknown `type` tag (a message from a newer API), corrupt JSON
/// or a missing field is [`Decoded::Undecodable`], never a panic.
pub(super) fn decode(entry: &StreamId) -> Decoded {
    if !entry.map.contains_key(MESSAGE_FIELD) {
        return Decoded::Undecodable(format!("entry has no `{MESSAGE_FIELD}` field"));
    }
    match serde_json::from_slice::<Message>(&raw(entry)) {
        Ok(m) => Decoded::Message(Box::new(m)),
        Err(e) => Decoded::Undecodable(format!("undecodable message: {e}")),
    }
}

/// A stable errors-log key for an entry, so a dead letter redelivered after a crash
/// is logged once.
fn record_key(stream: &str, entry_id: &str) -> Uuid {
    let digest = Sha256::new()
        .chain_update(stream.as_bytes())
        .chain_update([0])
        .chain_update(entry_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn truncate(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if text.len() <= MAX_LOGGED_PAYLOAD {
        return text.into_owned();
    }
    let mut end = MAX_LOGGED_PAYLOAD;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The errors-log record of a dead letter, and the raw bytes to keep in the
/// dead-letter stream.
pub(super) fn dead_letter_record(
    stream: &str,
    entry: &StreamId,
    message: Option<Message>,
    reason: &str,
) -> (Message, Vec<u8>) {
    let raw = raw(entry);
    let (application, received_at) = match &message {
        Some(Message::EventV1(e)) => (e.application.clone(), e.received_at),
        Some(Message::RejectedV1(r)) => (r.application.clone(), r.received_at),
        None => ("unknown".to_owned(), Utc::now()),
    };
    let record = RejectedEvent {
        key: record_key(stream, &entry.id),
        application,
        received_at,
        errors: vec![FieldError::new(
            "",
            ErrorCode::DeadLettered,
            format!("queue entry {} dead-lettered: {reason}", entry.id),
        )],
        payload: truncate(&raw),
    };
    (Message::RejectedV1(record), raw)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn entry(id: &str, m: &str) -> StreamId {
        StreamId {
            id: id.into(),
            map: HashMap::from([(
                MESSAGE_FIELD.to_owned(),
                Value::BulkString(m.as_bytes().to_vec()),
            )]),
            ..StreamId::default()
        }
    }

    #[test]
    fn unknown_type_tag_is_undecodable_not_a_panic() {
        let e = entry("1-0", r#"{"type":"event.v99","id":"x"}"#);
        assert!(matches!(decode(&e), Decoded::Undecodable(_)));
    }

    #[test]
    fn entry_without_message_field_is_undecodable() {
        let e = StreamId {
            id: "1-0".into(),
            ..StreamId::default()
        };
        assert!(matches!(decode(&e), Decoded::Undecodable(_)));
    }

    #[test]
    fn dead_letter_record_key_is_stable_per_entry() {
        let e = entry("1-0", "garbage");
        let (a, raw) = dead_letter_record("s", &e, None, "undecodable");
        let (b, _) = dead_letter_record("s", &e, None, "undecodable");
        let (c, _) = dead_letter_record("s", &entry("2-0", "garbage"), None, "undecodable");
        let key = |m: &Message| match m {
            Message::RejectedV1(r) => r.key,
            Message::EventV1(_) => Uuid::nil(),
        };
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        assert_eq!(raw, b"garbage");
    }

    #[test]
    fn logged_payload_is_truncated_on_a_char_boundary() {
        let long = "é".repeat(MAX_LOGGED_PAYLOAD);
        let t = truncate(long.as_bytes());
        assert!(t.len() <= MAX_LOGGED_PAYLOAD);
        assert!(t.chars().all(|c| c == 'é'));
    }
}
