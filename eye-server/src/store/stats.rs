//! Dashboard figures, all read from the counters or an index: none scans `events`.

use chrono::{DateTime, Utc};
use eye_core::{ErrorRecord, EventType, Session};
use serde::Serialize;
use sqlx::AssertSqlSafe;

use super::rows::{
    ERROR_COLUMNS, ErrorRow, HOUR_MICROS, SESSION_SELECT, SessionRow, from_micros, hour_of,
    to_micros,
};
use super::{Store, StoreError};

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
    /// Bytes of the main database file (pages in use and free).
    pub database_bytes: u64,
    /// Bytes of free pages inside it.
    pub free_bytes: u64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
    /// Stored events by type, every type included (zero when none), in
    /// [`EventType::ALL`] order. Read from the counters: constant time.
    pub async fn totals_by_type(&self) -> Result<Vec<TypeCount>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT category, name, sum(events) FROM event_counts GROUP BY category, name",
        )
        .fetch_all(&self.pool)
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
        let n: i64 = sqlx::query_scalar("SELECT coalesce(sum(events), 0) FROM event_counts")
            .fetch_one(&self.pool)
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
        let app_filter = if application.is_some() {
            " AND application = ?"
        } else {
            ""
        };
        let sql = format!(
            "SELECT hour, sum(events) FROM event_hours WHERE hour >= ? AND hour < ?{app_filter} \
             GROUP BY hour ORDER BY hour"
        );
        let mut q = sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(sql))
            .bind(first)
            .bind(last);
        if let Some(app) = application {
            q = q.bind(app.to_owned());
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
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
        let sql = format!("{SESSION_SELECT} ORDER BY s.last_seen DESC, s.session_id DESC LIMIT ?");
        sqlx::query_as::<_, SessionRow>(AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(Session::try_from)
            .collect()
    }

    /// The `limit` newest entries of the errors log.
    pub async fn newest_errors(&self, limit: u32) -> Result<Vec<ErrorRecord>, StoreError> {
        let sql = format!(
            "SELECT {ERROR_COLUMNS} FROM errors AS e ORDER BY e.received_at DESC, e.id DESC \
             LIMIT ?"
        );
        sqlx::query_as::<_, ErrorRow>(AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(ErrorRecord::try_from)
            .collect()
    }

    /// How many sessions are stored.
    pub async fn total_sessions(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
            .fetch_one(&self.pool)
            .await?;
        Ok(count(n))
    }

    /// The database's size on disk (the WAL file not included).
    pub async fn store_size(&self) -> Result<StoreSize, StoreError> {
        let (pages, free, page_size): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT page_count FROM pragma_page_count()), \
             (SELECT freelist_count FROM pragma_freelist_count()), \
             (SELECT page_size FROM pragma_page_size())",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(StoreSize {
            database_bytes: count(pages.saturating_mul(page_size)),
            free_bytes: count(free.saturating_mul(page_size)),
        })
    }
}
