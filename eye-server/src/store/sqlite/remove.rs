//! SQLite's removal path: erasing a session, retention batches, the suppression list
//! and giving free pages back. Every removal runs on the one writer connection with
//! `BEGIN IMMEDIATE`, like the write path, so it never races a write: the counters it
//! takes off are exactly those of the rows it deleted.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use sqlx::sqlite::{Sqlite, SqliteArguments};
use sqlx::{AssertSqlSafe, SqliteConnection};

use super::SqliteStore;
use super::write::{ROWS_PER_INSERT, multi_row, upsert_counters};
use crate::store::StoreError;
use crate::store::batch::Deltas;
use crate::store::removal::{
    Erased, REMOVED_ERROR_COLUMNS, REMOVED_EVENT_COLUMNS, RemovedError, RemovedEvent, deltas_of,
    error_hour_deltas, payload_prefilter,
};

type SqlQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

impl SqliteStore {
    /// Erases `session_id`: its events, session row, applications, counters and the
    /// errors-log entries that carry it, and records it as erased at `now`
    /// (microseconds), all in one transaction.
    pub(crate) async fn erase_session(
        &self,
        session_id: &str,
        now: i64,
    ) -> Result<Erased, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO erased_sessions (session_id, erased_at) VALUES (?, ?) \
             ON CONFLICT (session_id) DO UPDATE SET erased_at = excluded.erased_at",
        )
        .bind(session_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let removed: Vec<RemovedEvent> = sqlx::query_as(AssertSqlSafe(format!(
            "DELETE FROM events WHERE session_id = ? RETURNING {REMOVED_EVENT_COLUMNS}"
        )))
        .bind(session_id)
        .fetch_all(&mut *tx)
        .await?;
        let sessions = sqlx::query("DELETE FROM sessions WHERE session_id = ?")
            .bind(session_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM session_applications WHERE session_id = ?")
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        let deltas = deltas_of(&removed)?.negated();
        upsert_counters(&mut tx, &deltas).await?;
        delete_empty_counters(&mut tx, &deltas).await?;
        let errors = erase_errors(&mut tx, session_id).await?;
        tx.commit().await?;
        Ok(Erased {
            events: removed.len() as u64,
            sessions,
            errors,
        })
    }

    /// Deletes up to `limit` events of `application` older than `before`
    /// (microseconds), with their share of sessions and counters. Returns how many.
    pub(crate) async fn expire_events(
        &self,
        application: &str,
        before: i64,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let removed: Vec<RemovedEvent> = sqlx::query_as(AssertSqlSafe(format!(
            "DELETE FROM events WHERE id IN (SELECT id FROM events INDEXED BY \
             events_application WHERE application = ? AND timestamp < ? LIMIT ?) \
             RETURNING {REMOVED_EVENT_COLUMNS}"
        )))
        .bind(application)
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if removed.is_empty() {
            return Ok(0);
        }
        let deltas = deltas_of(&removed)?;
        shrink_sessions(&mut tx, &deltas).await?;
        let deltas = deltas.negated();
        upsert_counters(&mut tx, &deltas).await?;
        delete_empty_counters(&mut tx, &deltas).await?;
        tx.commit().await?;
        Ok(removed.len() as u64)
    }

    /// Deletes up to `limit` errors-log entries received before `before`
    /// (microseconds), with their hourly counters. Returns how many.
    pub(crate) async fn expire_errors(&self, before: i64, limit: i64) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let removed: Vec<RemovedError> = sqlx::query_as(AssertSqlSafe(format!(
            "DELETE FROM errors WHERE id IN (SELECT id FROM errors INDEXED BY errors_time \
             WHERE received_at < ? ORDER BY received_at LIMIT ?) \
             RETURNING {REMOVED_ERROR_COLUMNS}"
        )))
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if removed.is_empty() {
            return Ok(0);
        }
        take_off_error_hours(&mut tx, &removed).await?;
        tx.commit().await?;
        Ok(removed.len() as u64)
    }

    /// Forgets sessions erased before `before` (microseconds): their later events are
    /// stored again. Returns how many.
    pub(crate) async fn purge_erased(&self, before: i64) -> Result<u64, StoreError> {
        let mut conn = self.writer.acquire().await?;
        Ok(
            sqlx::query("DELETE FROM erased_sessions WHERE erased_at < ?")
                .bind(before)
                .execute(&mut *conn)
                .await?
                .rows_affected(),
        )
    }

    /// Gives up to `pages` free pages back to the file system
    /// (`PRAGMA incremental_vacuum`, a database created with `auto_vacuum =
    /// INCREMENTAL`); returns how many free pages are left. A database created before
    /// (auto_vacuum `NONE`) keeps its free pages for new rows: returns 0.
    pub(crate) async fn reclaim_pages(&self, pages: u32) -> Result<u64, StoreError> {
        let mut conn = self.writer.acquire().await?;
        let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
            .fetch_one(&mut *conn)
            .await?;
        // 2: INCREMENTAL.
        if mode != 2 {
            return Ok(0);
        }
        sqlx::query(AssertSqlSafe(format!("PRAGMA incremental_vacuum({pages})")))
            .execute(&mut *conn)
            .await?;
        let (free,): (i64,) = sqlx::query_as("PRAGMA freelist_count")
            .fetch_one(&mut *conn)
            .await?;
        Ok(u64::try_from(free).unwrap_or(0))
    }
}

/// Takes removed events off their sessions: the count goes down, first and last seen
/// are read again from the events left (through the session index), a session left
/// without events is deleted, and so is an application of a session that has no event
/// of it left.
async fn shrink_sessions(
    conn: &mut SqliteConnection,
    removed: &Deltas<'_>,
) -> Result<(), StoreError> {
    for (sid, d) in &removed.sessions {
        sqlx::query(
            "UPDATE sessions SET event_count = event_count - ?1, \
             first_seen = coalesce((SELECT min(timestamp) FROM events INDEXED BY \
             events_session WHERE session_id = ?2), first_seen), \
             last_seen = coalesce((SELECT max(timestamp) FROM events INDEXED BY \
             events_session WHERE session_id = ?2), last_seen) \
             WHERE session_id = ?2",
        )
        .bind(d.count)
        .bind(*sid)
        .execute(&mut *conn)
        .await?;
        sqlx::query("DELETE FROM sessions WHERE session_id = ? AND event_count <= 0")
            .bind(*sid)
            .execute(&mut *conn)
            .await?;
    }
    for (sid, app) in &removed.session_apps {
        sqlx::query(
            "DELETE FROM session_applications WHERE session_id = ?1 AND application = ?2 \
             AND NOT EXISTS (SELECT 1 FROM events INDEXED BY events_session \
             WHERE session_id = ?1 AND application = ?2)",
        )
        .bind(*sid)
        .bind(*app)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Deletes the counter rows among `deltas`' keys that went down to zero, so tables
/// do not keep a row for every hour and bucket that ever held an event.
async fn delete_empty_counters(
    conn: &mut SqliteConnection,
    deltas: &Deltas<'_>,
) -> Result<(), StoreError> {
    let totals: Vec<_> = deltas.totals.keys().collect();
    for chunk in totals.chunks(ROWS_PER_INSERT) {
        let sql = multi_row(
            "DELETE FROM event_counts WHERE events <= 0 AND (application, category, name) \
             IN (VALUES ",
            "(?,?,?)",
            chunk.len(),
            ")",
        );
        let mut q: SqlQuery<'_> = sqlx::query(AssertSqlSafe(sql));
        for (app, cat, name) in chunk {
            q = q.bind(*app).bind(*cat).bind(*name);
        }
        q.execute(&mut *conn).await?;
    }
    let hours: Vec<_> = deltas.hours.keys().collect();
    for chunk in hours.chunks(ROWS_PER_INSERT) {
        let sql = multi_row(
            "DELETE FROM event_hours WHERE events <= 0 AND \
             (hour, application, category, name) IN (VALUES ",
            "(?,?,?,?)",
            chunk.len(),
            ")",
        );
        let mut q: SqlQuery<'_> = sqlx::query(AssertSqlSafe(sql));
        for (hour, (app, cat, name)) in chunk {
            q = q.bind(*hour).bind(*app).bind(*cat).bind(*name);
        }
        q.execute(&mut *conn).await?;
    }
    let buckets: Vec<_> = deltas.buckets.keys().collect();
    for chunk in buckets.chunks(ROWS_PER_INSERT) {
        let sql = multi_row(
            "DELETE FROM event_buckets WHERE events <= 0 AND \
             (width, bucket, application, category, name) IN (VALUES ",
            "(?,?,?,?,?)",
            chunk.len(),
            ")",
        );
        let mut q: SqlQuery<'_> = sqlx::query(AssertSqlSafe(sql));
        for (width, bucket, (app, cat, name)) in chunk {
            q = q
                .bind(*width)
                .bind(*bucket)
                .bind(*app)
                .bind(*cat)
                .bind(*name);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes the errors-log entries whose payload carries `session_id`, with their
/// codes and hourly counters. Returns how many.
async fn erase_errors(conn: &mut SqliteConnection, session_id: &str) -> Result<u64, StoreError> {
    let candidates: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, payload FROM errors WHERE instr(payload, ?) > 0")
            .bind(payload_prefilter(session_id))
            .fetch_all(&mut *conn)
            .await?;
    let ids: BTreeSet<i64> = candidates
        .into_iter()
        .filter(|(_, payload)| crate::message::carries_session(payload, session_id))
        .map(|(id, _)| id)
        .collect();
    let mut removed = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<RemovedError> = sqlx::query_as(AssertSqlSafe(format!(
            "DELETE FROM errors WHERE id = ? RETURNING {REMOVED_ERROR_COLUMNS}"
        )))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        removed.extend(row);
    }
    take_off_error_hours(conn, &removed).await?;
    Ok(removed.len() as u64)
}

/// Takes deleted errors-log entries off `error_hours`, deleting rows left at zero.
/// (`error_codes` rows go with their entry: `ON DELETE CASCADE`.)
async fn take_off_error_hours(
    conn: &mut SqliteConnection,
    removed: &[RemovedError],
) -> Result<(), StoreError> {
    let deltas: BTreeMap<(i64, String, String), i64> = error_hour_deltas(removed)?;
    let mut touched = HashSet::new();
    for ((hour, app, code), n) in &deltas {
        sqlx::query(
            "UPDATE error_hours SET errors = errors + ? \
             WHERE hour = ? AND application = ? AND code = ?",
        )
        .bind(*n)
        .bind(*hour)
        .bind(app.as_str())
        .bind(code.as_str())
        .execute(&mut *conn)
        .await?;
        touched.insert((*hour, app.as_str(), code.as_str()));
    }
    for (hour, app, code) in touched {
        sqlx::query(
            "DELETE FROM error_hours WHERE errors <= 0 AND hour = ? AND application = ? \
             AND code = ?",
        )
        .bind(hour)
        .bind(app)
        .bind(code)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
