//! PostgreSQL's removal path: erasing a session, retention batches and the
//! suppression list, with any number of writers (and other removers) at work.
//!
//! Lock order: a removal locks the session rows it changes (sorted) *before* it
//! deletes their events, then the counters in the write path's order (sorted keys,
//! the same tables in the same order). The write path only ever locks new event rows,
//! which a removal never waits for, so no cycle can form:
//! - a writer that upserted a session row first makes the removal wait for its commit;
//!   the removal's next statements (new snapshots under READ COMMITTED) then see its
//!   events, so first and last seen and the counts stay exact;
//! - a removal that locked the row first makes the writer wait at its session upsert,
//!   and the writer's upsert then merges into what the removal left (or, when the
//!   removal deleted the row, inserts it again).
//!
//! An erasure also records the session in `erased_sessions` before anything else, and
//! creates a placeholder session row to lock when there is none, so the write path's
//! check (`write::erased_among`) always sees either the erasure or its own events
//! being deleted by it.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use super::PgStore;
use super::write::upsert_counters;
use crate::store::StoreError;
use crate::store::batch::Deltas;
use crate::store::removal::{
    Erased, REMOVED_ERROR_COLUMNS, REMOVED_EVENT_COLUMNS, RemovedError, RemovedEvent, deltas_of,
    error_hour_deltas, payload_prefilter,
};

/// The `WITH` part that takes the ids of the events a `gone` part deleted off
/// `event_ids`, so that an id removed from the store could be stored again, as it could
/// before `events` was partitioned (its primary key went with the row).
const FORGET_IDS: &str = "forgotten AS (DELETE FROM event_ids WHERE id IN (SELECT id FROM gone))";

impl PgStore {
    /// Erases `session_id` (see [`crate::store::Store::erase_session`]).
    pub(crate) async fn erase_session(
        &self,
        session_id: &str,
        now: i64,
    ) -> Result<Erased, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO erased_sessions (session_id, erased_at) VALUES ($1, $2) \
             ON CONFLICT (session_id) DO UPDATE SET erased_at = excluded.erased_at",
        )
        .bind(session_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Locks the session's row, creating a placeholder (count 0) when there is none;
        // deleted below either way.
        let (count,): (i64,) = sqlx::query_as(
            "INSERT INTO sessions (session_id, first_seen, last_seen, event_count) \
             VALUES ($1, 0, 0, 0) ON CONFLICT (session_id) DO UPDATE \
             SET event_count = sessions.event_count RETURNING event_count",
        )
        .bind(session_id)
        .fetch_one(&mut *tx)
        .await?;
        let removed: Vec<RemovedEvent> = sqlx::query_as(AssertSqlSafe(format!(
            "WITH gone AS (DELETE FROM events WHERE session_id = $1 \
             RETURNING id, {REMOVED_EVENT_COLUMNS}), {FORGET_IDS} \
             SELECT {REMOVED_EVENT_COLUMNS} FROM gone"
        )))
        .bind(session_id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM sessions WHERE session_id = $1")
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM session_applications WHERE session_id = $1")
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
            sessions: u64::from(count > 0),
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
        // Candidates first, without locks: the session rows must be locked before
        // their events (see the module's docs).
        let candidates: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, session_id FROM events WHERE application = $1 AND timestamp < $2 \
             ORDER BY timestamp LIMIT $3",
        )
        .bind(application)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let sessions: BTreeSet<&str> = candidates.iter().map(|(_, s)| s.as_str()).collect();
        let ids: Vec<Uuid> = candidates.iter().map(|(id, _)| *id).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "SELECT 1 FROM sessions WHERE session_id = ANY($1) ORDER BY session_id FOR UPDATE",
        )
        .bind(sessions.into_iter().collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        // Another remover may have taken some meanwhile: only what this one deleted
        // comes back, and only that is counted.
        let removed: Vec<RemovedEvent> = sqlx::query_as(AssertSqlSafe(format!(
            "WITH gone AS (DELETE FROM events WHERE id = ANY($1) AND application = $2 \
             AND timestamp < $3 RETURNING id, {REMOVED_EVENT_COLUMNS}), {FORGET_IDS} \
             SELECT {REMOVED_EVENT_COLUMNS} FROM gone"
        )))
        .bind(ids)
        .bind(application)
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
        if removed.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let deltas = deltas_of(&removed)?;
        shrink_sessions(&mut tx, &deltas, None).await?;
        let deltas = deltas.negated();
        upsert_counters(&mut tx, &deltas).await?;
        delete_empty_counters(&mut tx, &deltas).await?;
        tx.commit().await?;
        Ok(removed.len() as u64)
    }

    /// Deletes up to `limit` errors-log entries received before `before`
    /// (microseconds), with their hourly counters. Returns how many. Concurrent
    /// removers skip each other's rows.
    pub(crate) async fn expire_errors(&self, before: i64, limit: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let removed: Vec<RemovedError> = sqlx::query_as(AssertSqlSafe(format!(
            "DELETE FROM errors WHERE id IN (SELECT id FROM errors WHERE received_at < $1 \
             ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING {REMOVED_ERROR_COLUMNS}"
        )))
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if removed.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        take_off_error_hours(&mut tx, &removed).await?;
        tx.commit().await?;
        Ok(removed.len() as u64)
    }

    /// Forgets sessions erased before `before` (microseconds). Returns how many.
    pub(crate) async fn purge_erased(&self, before: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM erased_sessions WHERE erased_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

/// Takes removed events off their (locked) session rows: count down, first and last
/// seen read again from the events left, rows left without events deleted, and so is
/// an application of a session that has no event of it left.
///
/// `excluding` names a partition whose events are being removed but are still there
/// (it is truncated last, see `partitions`): the events left are read without it.
pub(super) async fn shrink_sessions(
    conn: &mut PgConnection,
    removed: &Deltas<'_>,
    excluding: Option<&str>,
) -> Result<(), StoreError> {
    let sessions: Vec<&str> = removed.sessions.keys().copied().collect();
    let left = excluding
        .map(|p| format!(" AND e.tableoid <> '{p}'::regclass"))
        .unwrap_or_default();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE sessions AS s SET event_count = s.event_count - d.n, \
         first_seen = coalesce((SELECT min(e.timestamp) FROM events AS e \
         WHERE e.session_id = s.session_id{left}), s.first_seen), \
         last_seen = coalesce((SELECT max(e.timestamp) FROM events AS e \
         WHERE e.session_id = s.session_id{left}), s.last_seen) \
         FROM UNNEST($1::text[], $2::bigint[]) AS d (session_id, n) \
         WHERE s.session_id = d.session_id"
    )))
    .bind(&sessions)
    .bind(
        removed
            .sessions
            .values()
            .map(|d| d.count)
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM sessions WHERE session_id = ANY($1) AND event_count <= 0")
        .bind(&sessions)
        .execute(&mut *conn)
        .await?;
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM session_applications AS sa USING UNNEST($1::text[], $2::text[]) \
         AS d (session_id, application) \
         WHERE sa.session_id = d.session_id AND sa.application = d.application \
         AND NOT EXISTS (SELECT 1 FROM events AS e WHERE e.session_id = d.session_id \
         AND e.application = d.application{left})"
    )))
    .bind(
        removed
            .session_apps
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>(),
    )
    .bind(
        removed
            .session_apps
            .iter()
            .map(|(_, a)| *a)
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes the counter rows among `deltas`' keys that went down to zero. This
/// transaction holds their row locks already (it just updated them).
pub(super) async fn delete_empty_counters(
    conn: &mut PgConnection,
    deltas: &Deltas<'_>,
) -> Result<(), StoreError> {
    let Deltas {
        totals,
        hours,
        buckets,
        ..
    } = deltas;
    sqlx::query(
        "DELETE FROM event_counts AS c USING UNNEST($1::text[], $2::text[], $3::text[]) \
         AS d (application, category, name) \
         WHERE c.application = d.application AND c.category = d.category \
         AND c.name = d.name AND c.events <= 0",
    )
    .bind(totals.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind(totals.keys().map(|k| k.1).collect::<Vec<_>>())
    .bind(totals.keys().map(|k| k.2).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM event_hours AS c \
         USING UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[]) \
         AS d (hour, application, category, name) \
         WHERE c.hour = d.hour AND c.application = d.application \
         AND c.category = d.category AND c.name = d.name AND c.events <= 0",
    )
    .bind(hours.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind(hours.keys().map(|k| k.1.0).collect::<Vec<_>>())
    .bind(hours.keys().map(|k| k.1.1).collect::<Vec<_>>())
    .bind(hours.keys().map(|k| k.1.2).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM event_buckets AS c \
         USING UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[]) \
         AS d (width, bucket, application, category, name) \
         WHERE c.width = d.width AND c.bucket = d.bucket AND c.application = d.application \
         AND c.category = d.category AND c.name = d.name AND c.events <= 0",
    )
    .bind(buckets.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind(buckets.keys().map(|k| k.1).collect::<Vec<_>>())
    .bind(buckets.keys().map(|k| k.2.0).collect::<Vec<_>>())
    .bind(buckets.keys().map(|k| k.2.1).collect::<Vec<_>>())
    .bind(buckets.keys().map(|k| k.2.2).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes the errors-log entries whose payload carries `session_id`, with their
/// codes (cascade) and hourly counters. Returns how many.
async fn erase_errors(conn: &mut PgConnection, session_id: &str) -> Result<u64, StoreError> {
    let candidates: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, payload FROM errors WHERE strpos(payload, $1) > 0")
            .bind(payload_prefilter(session_id))
            .fetch_all(&mut *conn)
            .await?;
    let ids: Vec<i64> = candidates
        .into_iter()
        .filter(|(_, payload)| crate::message::carries_session(payload, session_id))
        .map(|(id, _)| id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let removed: Vec<RemovedError> = sqlx::query_as(AssertSqlSafe(format!(
        "DELETE FROM errors WHERE id = ANY($1) RETURNING {REMOVED_ERROR_COLUMNS}"
    )))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    take_off_error_hours(conn, &removed).await?;
    Ok(removed.len() as u64)
}

/// Takes deleted errors-log entries off `error_hours` (keys sorted, as the write path
/// adds to them), deleting rows left at zero.
async fn take_off_error_hours(
    conn: &mut PgConnection,
    removed: &[RemovedError],
) -> Result<(), StoreError> {
    let deltas: BTreeMap<(i64, String, String), i64> = error_hour_deltas(removed)?;
    if deltas.is_empty() {
        return Ok(());
    }
    let hours: Vec<i64> = deltas.keys().map(|k| k.0).collect();
    let apps: Vec<&str> = deltas.keys().map(|k| k.1.as_str()).collect();
    let codes: Vec<&str> = deltas.keys().map(|k| k.2.as_str()).collect();
    sqlx::query(
        "INSERT INTO error_hours (hour, application, code, errors) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) \
         ON CONFLICT (hour, application, code) DO UPDATE SET \
         errors = error_hours.errors + excluded.errors",
    )
    .bind(&hours)
    .bind(&apps)
    .bind(&codes)
    .bind(deltas.values().copied().collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM error_hours AS h USING UNNEST($1::bigint[], $2::text[], $3::text[]) \
         AS d (hour, application, code) \
         WHERE h.hour = d.hour AND h.application = d.application AND h.code = d.code \
         AND h.errors <= 0",
    )
    .bind(&hours)
    .bind(&apps)
    .bind(&codes)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
