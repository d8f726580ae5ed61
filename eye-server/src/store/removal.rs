//! What both backends' removal paths (erasure, retention) share: the rows a `DELETE
//! ... RETURNING` hands back, and the counter deltas they take off. Every map is
//! ordered, so Postgres writes rows in key order, the lock order of the write path.

use std::collections::BTreeMap;

use eye_core::EventType;

use super::StoreError;
use super::batch::Deltas;
use super::rows::hour_of;

/// The columns a removal returns for each deleted event, in [`RemovedEvent`] order.
pub(super) const REMOVED_EVENT_COLUMNS: &str = "session_id, application, category, name, timestamp";

/// The columns a removal returns for each deleted errors-log entry.
pub(super) const REMOVED_ERROR_COLUMNS: &str = "application, received_at, codes";

/// One deleted event: what its counters were keyed by.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RemovedEvent {
    pub session_id: String,
    pub application: String,
    pub category: String,
    pub name: String,
    pub timestamp: i64,
}

/// One deleted errors-log entry: what its hourly counters were keyed by.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RemovedError {
    pub application: String,
    pub received_at: i64,
    /// JSON array of its distinct codes.
    pub codes: String,
}

/// The deltas `removed` adds to sessions and counters, with the counters positive
/// (call [`Deltas::negated`] before applying them).
pub(super) fn deltas_of(removed: &[RemovedEvent]) -> Result<Deltas<'_>, StoreError> {
    let mut d = Deltas::default();
    for r in removed {
        let t = EventType::from_pair(&r.category, &r.name).ok_or_else(|| {
            StoreError::Corrupt(format!("stored event type {}/{}", r.category, r.name))
        })?;
        d.add(
            &r.session_id,
            (&r.application, t.category(), t.name()),
            r.timestamp,
        );
    }
    Ok(d)
}

/// `error_hours` keys (hour, application, code) and what removing `removed` takes off
/// each (negative): every entry counts once under code `''` and once per code.
pub(super) fn error_hour_deltas(
    removed: &[RemovedError],
) -> Result<BTreeMap<(i64, String, String), i64>, StoreError> {
    let mut out: BTreeMap<(i64, String, String), i64> = BTreeMap::new();
    for r in removed {
        let codes: Vec<String> = serde_json::from_str(&r.codes)
            .map_err(|e| StoreError::Corrupt(format!("errors-log codes: {e}")))?;
        let hour = hour_of(r.received_at);
        for code in std::iter::once(String::new()).chain(codes) {
            *out.entry((hour, r.application.clone(), code)).or_default() -= 1;
        }
    }
    Ok(out)
}

/// What to search payloads for with a plain substring test before
/// [`crate::message::carries_session`] decides: the longest run of the session id's
/// characters that JSON never escapes (a `"` or `\` is escaped, `/` may be, and so
/// may anything outside ASCII). Empty (every payload is a candidate) when there is
/// no such run.
pub(super) fn payload_prefilter(session_id: &str) -> String {
    session_id
        .split(|c: char| !c.is_ascii() || matches!(c, '"' | '\\' | '/'))
        .max_by_key(|run| run.len())
        .unwrap_or("")
        .to_owned()
}

/// What one erasure removed from the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Events of the session.
    pub events: u64,
    /// Session rows (0 or 1).
    pub sessions: u64,
    /// Errors-log entries whose payload carried the session id.
    pub errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefilter_is_the_longest_run_json_never_escapes() {
        assert_eq!(payload_prefilter("abc-123"), "abc-123");
        assert_eq!(payload_prefilter("a\"bcd/ef"), "bcd");
        assert_eq!(payload_prefilter("é"), "");
    }
}
