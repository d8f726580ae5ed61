//! Dashboard figures, all read from the counters or an index: none scans `events`.

use super::conn::Dialect;
use super::rows::{
    ERROR_COLUMNS, ErrorRow, HOUR_MICROS, SessionRow, from_micros, hour_of, session_select,
    to_micros,
};
use super::sql::Arg;
use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use eye_core::{ErrorRecord, EventType, Session};
use serde::Serialize;

/// How many events of one type are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TypeCount {
    /// The event type.
    pub event_type: EventType,
    /// How many events of it are stored.
    pub events: u64,
}

/// How many events occurred in one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HourCount {
    /// The start of the hour.
    #[serde(with = "eye_core::serde_micros")]
    pub hour: DateTime<Utc>,
    /// Events whose timestamp falls in it.
    pub events: u64,
}

/// The size of the database on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoreSize {
    /// Bytes of the main database file (pages in use and free), or of the
    /// PostgreSQL database.
    pub database_bytes: u64,
    /// Bytes of free pages inside it (0 on PostgreSQL).
    pub free_bytes: u64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
    /// Stored events by type, every type included (zero when none), in
    /// [`EventType::ALL`] order. Read from the counters: constant time.
    pub async fn totals_by_type(&self) -> Result<Vec<TypeCount>, StoreError> {
        let rows: Vec<(String, String, i64)> = self
            .reader()
            .await?
            .conn()
            .fetch_all(
                "SELECT category, name, CAST(sum(events) AS BIGINT) FROM event_counts \
                 GROUP BY category, name",
                &[],
            )
            .await?;
        Ok(EventType::ALL
            .into_iter()
            .map(|t| TypeCount {
                event_type: t,
                events: rows
                    .iter()
                    .filter(|(c, n, _)| c == t.category() && n == t.name())
                    .map(|(_, _, n)| count(*n))
                    .sum(),
            })
            .collect())
    }

    /// Every stored event, from the counters: constant time.
    pub async fn total_events(&self) -> Result<u64, StoreError> {
        let n = self
            .reader()
            .await?
            .conn()
            .scalar(
                "SELECT CAST(coalesce(sum(events), 0) AS BIGINT) FROM event_counts",
                &[],
            )
            .await?;
        Ok(count(n))
    }

    /// Events per hour of event time in `[start, end)`, oldest first, one entry per
    /// hour that has events (hours without events are left out). Optionally only one
    /// application's.
    pub async fn events_per_hour(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        application: Option<&str>,
    ) -> Result<Vec<HourCount>, StoreError> {
        let first = hour_of(to_micros(start));
        let last = hour_of(to_micros(end).saturating_add(HOUR_MICROS - 1));
        let mut args = vec![Arg::Int(first), Arg::Int(last)];
        let app_filter = if let Some(app) = application {
            args.push(Arg::Text(app.to_owned()));
            " AND application = ?"
        } else {
            ""
        };
        let sql = format!(
            "SELECT hour, CAST(sum(events) AS BIGINT) FROM event_hours \
             WHERE hour >= ? AND hour < ?{app_filter} GROUP BY hour ORDER BY hour"
        );
        let rows: Vec<(i64, i64)> = self.reader().await?.conn().fetch_all(&sql, &args).await?;
        rows.into_iter()
            .map(|(hour, n)| {
                Ok(HourCount {
                    hour: from_micros(hour.saturating_mul(HOUR_MICROS))?,
                    events: count(n),
                })
            })
            .collect()
    }

    /// The `limit` sessions seen most recently (by their latest event's timestamp).
    pub async fn newest_sessions(&self, limit: u32) -> Result<Vec<Session>, StoreError> {
        let mut held = self.reader().await?;
        let mut conn = held.conn();
        let sql = format!(
            "{} ORDER BY s.last_seen DESC, s.session_id DESC LIMIT ?",
            session_select(conn.dialect())
        );
        let rows: Vec<SessionRow> = conn.fetch_all(&sql, &[Arg::Int(i64::from(limit))]).await?;
        rows.into_iter().map(Session::try_from).collect()
    }

    /// The `limit` newest entries of the errors log.
    pub async fn newest_errors(&self, limit: u32) -> Result<Vec<ErrorRecord>, StoreError> {
        let sql = format!(
            "SELECT {ERROR_COLUMNS} FROM errors AS e ORDER BY e.received_at DESC, e.id DESC \
             LIMIT ?"
        );
        let rows: Vec<ErrorRow> = self
            .reader()
            .await?
            .conn()
            .fetch_all(&sql, &[Arg::Int(i64::from(limit))])
            .await?;
        rows.into_iter().map(ErrorRecord::try_from).collect()
    }

    /// How many sessions are stored.
    pub async fn total_sessions(&self) -> Result<u64, StoreError> {
        let n = self
            .reader()
            .await?
            .conn()
            .scalar("SELECT count(*) FROM sessions", &[])
            .await?;
        Ok(count(n))
    }

    /// The database's size on disk: on SQLite the main file (the WAL not included),
    /// on PostgreSQL the current database (`pg_database_size`, every table, index
    /// and TOAST; its free space inside pages is not known cheaply, so `free_bytes`
    /// is 0 there).
    pub async fn store_size(&self) -> Result<StoreSize, StoreError> {
        let mut held = self.reader().await?;
        let mut conn = held.conn();
        let sql = match conn.dialect() {
            Dialect::Sqlite => {
                "SELECT (SELECT page_count FROM pragma_page_count()) \
                 * (SELECT page_size FROM pragma_page_size()), \
                 (SELECT freelist_count FROM pragma_freelist_count()) \
                 * (SELECT page_size FROM pragma_page_size())"
            }
            Dialect::Postgres => "SELECT pg_database_size(current_database()), CAST(0 AS BIGINT)",
        };
        let (bytes, free): (i64, i64) = conn
            .fetch_optional(sql, &[])
            .await?
            .ok_or_else(|| StoreError::Corrupt("no size".into()))?;
        Ok(StoreSize {
            database_bytes: count(bytes),
            free_bytes: count(free),
        })
    }
}
