//! Stored rows and their conversion to and from the model: microseconds, ids, JSON.
//! The same rows come out of both backends.

use chrono::{DateTime, Utc};
use eye_core::{ErrorRecord, FieldError, Payload, Session, SessionId, StoredEvent};
use uuid::Uuid;

use super::StoreError;
use super::conn::Dialect;

/// Microseconds since the Unix epoch, the stored form of every instant.
pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The instant `micros` microseconds after the Unix epoch.
pub(crate) fn from_micros(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {micros} is out of range")))
}

/// Microseconds in an hour, the bucket of `event_hours`.
pub(crate) const HOUR_MICROS: i64 = 3_600_000_000;

/// The hour bucket of an instant (floor division, so instants before 1970 work too).
pub(crate) fn hour_of(micros: i64) -> i64 {
    micros.div_euclid(HOUR_MICROS)
}

/// The columns every event query selects, in [`EventRow`] order.
pub(crate) const EVENT_COLUMNS: &str = "e.id, e.application, e.session_id, e.category, e.name, e.data, e.timestamp, e.received_at, \
     e.client_timestamp";

/// One row of `events`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRow {
    /// A 16-byte blob on SQLite, a `uuid` on Postgres.
    pub id: Uuid,
    pub application: String,
    pub session_id: String,
    pub category: String,
    pub name: String,
    pub data: String,
    pub timestamp: i64,
    pub received_at: i64,
    pub client_timestamp: Option<i64>,
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = StoreError;

    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        let id = r.id;
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("event {id}: {what}: {e}"))
        };
        let data: serde_json::Value =
            serde_json::from_str(&r.data).map_err(|e| corrupt("data", &e))?;
        let payload =
            Payload::from_parts(&r.category, &r.name, &data).map_err(|e| corrupt("payload", &e))?;
        let session_id =
            SessionId::parse(&r.session_id).map_err(|e| corrupt("session_id", &e.message))?;
        Ok(StoredEvent {
            id,
            session_id,
            payload,
            timestamp: from_micros(r.timestamp)?,
            application: r.application,
            received_at: from_micros(r.received_at)?,
            client_timestamp: r.client_timestamp.map(from_micros).transpose()?,
        })
    }
}

/// One row of `sessions`, with its applications joined (comma-separated, sorted).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub session_id: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub event_count: i64,
    pub applications: Option<String>,
}

impl TryFrom<SessionRow> for Session {
    type Error = StoreError;

    fn try_from(r: SessionRow) -> Result<Self, StoreError> {
        let mut applications: Vec<String> = match r.applications {
            Some(list) => serde_json::from_str(&list)
                .map_err(|e| StoreError::Corrupt(format!("session applications: {e}")))?,
            None => Vec::new(),
        };
        applications.sort();
        Ok(Session {
            session_id: r.session_id,
            first_seen: from_micros(r.first_seen)?,
            last_seen: from_micros(r.last_seen)?,
            event_count: u64::try_from(r.event_count).unwrap_or(0),
            applications,
        })
    }
}

/// Selects a session row; `s` is the sessions table alias. The applications come as
/// a JSON array on both backends.
pub(crate) fn session_select(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "SELECT s.session_id, s.first_seen, s.last_seen, s.event_count, \
             (SELECT json_group_array(application) FROM session_applications a \
             WHERE a.session_id = s.session_id) AS applications FROM sessions s"
        }
        Dialect::Postgres => {
            "SELECT s.session_id, s.first_seen, s.last_seen, s.event_count, \
             (SELECT json_agg(application)::text FROM session_applications a \
             WHERE a.session_id = s.session_id) AS applications FROM sessions s"
        }
    }
}

/// One row of `errors`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ErrorRow {
    pub id: i64,
    pub application: String,
    pub received_at: i64,
    pub codes: String,
    pub errors: String,
    pub payload: String,
}

/// The columns every errors-log query selects, in [`ErrorRow`] order.
pub(crate) const ERROR_COLUMNS: &str =
    "e.id, e.application, e.received_at, e.codes, e.errors, e.payload";

impl TryFrom<ErrorRow> for ErrorRecord {
    type Error = StoreError;

    fn try_from(r: ErrorRow) -> Result<Self, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("error {}: {e}", r.id));
        let codes: Vec<String> = serde_json::from_str(&r.codes).map_err(corrupt)?;
        let errors: Vec<FieldError> = serde_json::from_str(&r.errors).map_err(corrupt)?;
        Ok(ErrorRecord {
            id: r.id,
            application: r.application,
            received_at: from_micros(r.received_at)?,
            codes,
            errors,
            payload: r.payload,
        })
    }
}

/// The distinct codes of a list of errors, in first-seen order.
pub(crate) fn distinct_codes(errors: &[FieldError]) -> Vec<String> {
    let mut codes: Vec<String> = Vec::new();
    for e in errors {
        let code = e.code.as_str();
        if !codes.iter().any(|c| c == code) {
            codes.push(code.to_owned());
        }
    }
    codes
}
