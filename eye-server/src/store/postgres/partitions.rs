//! `events` by UTC day (migration 0006): one partition per day, created ahead, and
//! retention that drops whole days instead of deleting rows.
//!
//! - **Created ahead.** Every `serve` and `worker` process creates the partitions of
//!   yesterday, today and the next [`AHEAD_DAYS`] days when it opens the store and at
//!   each retention pass; the write path creates a missing one for an event of that
//!   window before it inserts. A partition is made with `CREATE TABLE (LIKE events)`
//!   then `ATTACH PARTITION`, which takes `SHARE UPDATE EXCLUSIVE` on `events` (reads
//!   and writes go on) where `CREATE TABLE ... PARTITION OF` would take `ACCESS
//!   EXCLUSIVE`. Any other day (an event older than that window, or of a day
//!   retention dropped) goes to `events_default`, so no insert ever fails for want of
//!   a partition; rows before the migration stay in `events_legacy`.
//! - **Dropped whole.** [`PgStore::drop_day`] takes a day off in two short
//!   transactions. The first locks the day's partition against writes (`EXCLUSIVE`:
//!   reads go on), takes its events off sessions and counters (the per-day counter
//!   tree rows are deleted outright: every event of those hours is in this partition),
//!   forgets their ids in `event_ids`, and `TRUNCATE`s it: no row deletes, no dead
//!   tuples, the files go at commit. The second detaches and drops the partition, only
//!   if it is still empty (an event of that day written between the two is counted by
//!   its writer and taken off by the next pass).
//!
//! Lock order, the write path's (see `write` and `remove`): a writer inserts into the
//! partition before it locks any session or counter row, so a writer waiting for the
//! partition lock holds nothing this needs; the session rows are then locked sorted,
//! then the counters in the write path's order. DDL of every process is serialized by
//! one transaction-level advisory lock ([`DDL_LOCK`]) and bounded by `lock_timeout`:
//! a drop that cannot get its locks in time (a long export reading the day) fails and
//! is retried at the next pass.

use std::collections::HashMap;

use eye_core::EventType;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{AssertSqlSafe, PgConnection};

use super::PgStore;
use super::remove::{delete_empty_counters, shrink_sessions};
use super::write::upsert_counters;
use crate::store::StoreError;
use crate::store::batch::Deltas;
use crate::store::rows::HOUR_MICROS;
use crate::store::tree::fine_widths;

/// A UTC day in microseconds.
pub(crate) const DAY_MICROS: i64 = 86_400_000_000;

/// Days after today whose partitions exist before their first event.
pub(crate) const AHEAD_DAYS: i64 = 2;

/// The advisory lock that serializes partition DDL between processes.
const DDL_LOCK: i64 = 0x0065_7965_7061_7274; // "eyepart"

/// How long a partition's DDL waits for a lock before it gives up until the next try.
const LOCK_TIMEOUT: &str = "2s";

/// How long the write path waits before it tries again to create a day's partition
/// that it could not create.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// The start of the UTC day of `micros`.
pub(crate) fn day_of(micros: i64) -> i64 {
    micros.div_euclid(DAY_MICROS) * DAY_MICROS
}

/// The partition of the day starting at `day` (microseconds): `events_p20261205`.
pub(crate) fn partition_name(day: i64) -> String {
    let date = DateTime::<Utc>::from_timestamp_micros(day)
        .map(|t| t.date_naive())
        .unwrap_or_default();
    format!("events_p{}", date.format("%Y%m%d"))
}

/// The day (microseconds) of a partition named by [`partition_name`].
pub(crate) fn day_of_name(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("events_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = NaiveDate::parse_from_str(digits, "%Y%m%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// What this process knows of the day partitions: those it saw exist, and when it
/// last failed to create one.
#[derive(Debug, Default)]
pub(crate) struct PartitionCache {
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    known: std::collections::BTreeSet<i64>,
    failed: HashMap<i64, Instant>,
    /// Where the day partitions may begin: the end of `events_legacy`'s range.
    first_day: Option<i64>,
}

impl PgStore {
    /// The days (microseconds, sorted) that have a partition, read from the catalog.
    pub(crate) async fn day_partitions(&self) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let days = list_days(&mut conn).await?;
        let mut cache = self.partitions.inner.lock().expect("partition cache");
        cache.known = days.iter().copied().collect();
        Ok(days)
    }

    /// Creates the partitions of yesterday, today and the next [`AHEAD_DAYS`] days
    /// (as of `now`, microseconds) that do not exist yet.
    pub(crate) async fn prepare_partitions(&self, now: i64) -> Result<(), StoreError> {
        let today = day_of(now);
        let days: Vec<i64> = (-1..=AHEAD_DAYS).map(|d| today + d * DAY_MICROS).collect();
        self.create_days(&days).await
    }

    /// Creates the partitions of `days` (starts of UTC days) that do not exist, each
    /// in its own short transaction. A day that cannot have one (inside the legacy
    /// range) is skipped; a failure (a lock not granted in time, rows of that day
    /// already in `events_default`) is returned after the other days were tried.
    pub(crate) async fn create_days(&self, days: &[i64]) -> Result<(), StoreError> {
        let mut first_error = None;
        for &day in days {
            if let Err(e) = self.create_day(day).await {
                self.partitions
                    .inner
                    .lock()
                    .expect("partition cache")
                    .failed
                    .insert(day, Instant::now());
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn create_day(&self, day: i64) -> Result<(), StoreError> {
        if self.knows(day) {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        ddl_guard(&mut tx).await?;
        let first_day = match self.first_day() {
            Some(d) => d,
            None => {
                let d = legacy_end(&mut tx).await?;
                self.partitions
                    .inner
                    .lock()
                    .expect("partition cache")
                    .first_day = Some(d);
                d
            }
        };
        let existing = list_days(&mut tx).await?;
        if day < first_day || existing.contains(&day) {
            tx.commit().await?;
            let mut cache = self.partitions.inner.lock().expect("partition cache");
            cache.known.extend(existing);
            if day < first_day {
                // Inside the legacy range: its events go there; never asked again.
                cache.known.insert(day);
            }
            return Ok(());
        }
        let name = partition_name(day);
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS) WITH (\
             autovacuum_vacuum_insert_scale_factor = 0.01, \
             autovacuum_vacuum_insert_threshold = 10000)"
        )))
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ({day}) TO ({})",
            day + DAY_MICROS
        )))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(partition = %name, "events partition created");
        let mut cache = self.partitions.inner.lock().expect("partition cache");
        cache.known.extend(existing);
        cache.known.insert(day);
        Ok(())
    }

    fn knows(&self, day: i64) -> bool {
        let cache = self.partitions.inner.lock().expect("partition cache");
        cache.known.contains(&day) || cache.first_day.is_some_and(|f| day < f)
    }

    fn first_day(&self) -> Option<i64> {
        self.partitions
            .inner
            .lock()
            .expect("partition cache")
            .first_day
    }

    /// The write path's check: creates the missing partitions among the days of
    /// `timestamps` that lie in the window [`PgStore::prepare_partitions`] keeps (as of
    /// `now`). A day it failed to create less than a minute ago is left to
    /// `events_default`. Never fails: an event without its day's partition is stored in
    /// `events_default`.
    pub(crate) async fn ensure_days(&self, timestamps: impl Iterator<Item = i64>, now: i64) {
        let today = day_of(now);
        let window = (today - DAY_MICROS)..=(today + (AHEAD_DAYS + 5) * DAY_MICROS);
        let mut missing: Vec<i64> = {
            let cache = self.partitions.inner.lock().expect("partition cache");
            timestamps
                .map(day_of)
                .filter(|d| window.contains(d))
                .filter(|d| {
                    !cache.known.contains(d)
                        && cache.first_day.is_none_or(|f| *d >= f)
                        && cache
                            .failed
                            .get(d)
                            .is_none_or(|at| at.elapsed() >= RETRY_AFTER)
                })
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        missing.sort_unstable();
        missing.dedup();
        if let Err(e) = self.create_days(&missing).await {
            tracing::warn!(error = %e, "events partition not created; its events go to events_default");
        }
    }

    /// Drops the partition of the day starting at `day` (microseconds): its events
    /// taken off sessions and counters, their ids forgotten, the partition truncated,
    /// then detached and dropped (see the module's docs). Returns how many events it
    /// held; 0 when there is no such partition.
    pub(crate) async fn drop_day(&self, day: i64) -> Result<u64, StoreError> {
        let name = partition_name(day);
        let mut tx = self.pool.begin().await?;
        ddl_guard(&mut tx).await?;
        if !list_days(&mut tx).await?.contains(&day) {
            tx.commit().await?;
            return Ok(0);
        }
        sqlx::query(AssertSqlSafe(format!(
            "LOCK TABLE {name} IN EXCLUSIVE MODE"
        )))
        .execute(&mut *tx)
        .await?;
        let totals: Vec<(String, String, String, i64)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT application, category, name, count(*) FROM {name} GROUP BY 1, 2, 3 \
             ORDER BY 1, 2, 3"
        )))
        .fetch_all(&mut *tx)
        .await?;
        let removed: i64 = totals.iter().map(|t| t.3).sum();
        if removed > 0 {
            take_off(&mut tx, &name, day, &totals).await?;
            sqlx::query(AssertSqlSafe(format!("TRUNCATE {name}")))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;

        // Detach and drop, only if nothing was written to the day meanwhile.
        let mut tx = self.pool.begin().await?;
        ddl_guard(&mut tx).await?;
        if !list_days(&mut tx).await?.contains(&day) {
            // Another process dropped it meanwhile.
            tx.commit().await?;
            return Ok(removed as u64);
        }
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE events DETACH PARTITION {name}"
        )))
        .execute(&mut *tx)
        .await?;
        let (left,): (bool,) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {name})"
        )))
        .fetch_one(&mut *tx)
        .await?;
        if left {
            tx.rollback().await?;
        } else {
            sqlx::query(AssertSqlSafe(format!("DROP TABLE {name}")))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            let mut cache = self.partitions.inner.lock().expect("partition cache");
            cache.known.remove(&day);
        }
        tracing::info!(partition = %name, events = removed, dropped = !left, "events partition removed");
        Ok(removed as u64)
    }
}

/// Takes the events of partition `name` (the day starting at `day`, locked against
/// writes by this transaction) off sessions, counters and `event_ids`.
async fn take_off(
    conn: &mut PgConnection,
    name: &str,
    day: i64,
    totals: &[(String, String, String, i64)],
) -> Result<(), StoreError> {
    // Session rows first, locked in key order (the write path's order).
    let sessions: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT session_id, count(*) FROM {name} GROUP BY session_id ORDER BY session_id"
    )))
    .fetch_all(&mut *conn)
    .await?;
    let apps: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT DISTINCT session_id, application FROM {name}"
    )))
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query("SELECT 1 FROM sessions WHERE session_id = ANY($1) ORDER BY session_id FOR UPDATE")
        .bind(sessions.iter().map(|s| s.0.as_str()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    let mut deltas = Deltas::default();
    for (session, n) in &sessions {
        deltas.sessions.insert(
            session,
            crate::store::batch::SessionDelta {
                first: day,
                last: day,
                count: *n,
            },
        );
    }
    deltas.session_apps = apps.iter().map(|(s, a)| (s.as_str(), a.as_str())).collect();
    shrink_sessions(conn, &deltas, Some(name)).await?;

    // The all-time totals by what the day held; the day's own counter tree rows go
    // whole (no other partition has events of those hours).
    let mut counts = Deltas::default();
    for (application, category, name, n) in totals {
        let t = EventType::from_pair(category, name)
            .ok_or_else(|| StoreError::Corrupt(format!("stored event type {category}/{name}")))?;
        counts
            .totals
            .insert((application.as_str(), t.category(), t.name()), -*n);
    }
    upsert_counters(conn, &counts).await?;
    delete_empty_counters(conn, &counts).await?;
    sqlx::query("DELETE FROM event_hours WHERE hour >= $1 AND hour < $2")
        .bind(day / HOUR_MICROS)
        .bind((day + DAY_MICROS) / HOUR_MICROS)
        .execute(&mut *conn)
        .await?;
    for &width in fine_widths() {
        sqlx::query("DELETE FROM event_buckets WHERE width = $1 AND bucket >= $2 AND bucket < $3")
            .bind(width)
            .bind(day / width)
            .bind((day + DAY_MICROS) / width)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM event_ids WHERE id IN (SELECT id FROM {name})"
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Serializes this transaction's partition DDL with every other process's, and bounds
/// how long its statements wait for locks.
async fn ddl_guard(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query(AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
    )))
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(DDL_LOCK)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The days that have a partition, sorted.
async fn list_days(conn: &mut PgConnection) -> Result<Vec<i64>, StoreError> {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT c.relname::text FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'events'::regclass",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut days: Vec<i64> = names.iter().filter_map(|(n,)| day_of_name(n)).collect();
    days.sort_unstable();
    Ok(days)
}

/// Where `events_legacy`'s range ends (microseconds): day partitions start there.
async fn legacy_end(conn: &mut PgConnection) -> Result<i64, StoreError> {
    let (bound,): (Option<String>,) = sqlx::query_as(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class AS c \
         WHERE c.oid = to_regclass('events_legacy')",
    )
    .fetch_optional(&mut *conn)
    .await?
    .unwrap_or((None,));
    // `FOR VALUES FROM (MINVALUE) TO ('1796515200000000')`
    Ok(bound
        .as_deref()
        .and_then(|b| b.rsplit_once("TO ("))
        .and_then(|(_, v)| v.trim_end_matches(')').trim_matches('\'').parse().ok())
        .unwrap_or(i64::MIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_and_days_round_trip() {
        let day = day_of(1_796_515_200_000_000 + 5);
        assert_eq!(day, 1_796_515_200_000_000);
        assert_eq!(partition_name(day), "events_p20261206");
        assert_eq!(day_of_name("events_p20261206"), Some(day));
        assert_eq!(day_of_name("events_legacy"), None);
        assert_eq!(day_of_name("events_p2026120"), None);
        assert_eq!(day_of_name("events_p2026120x"), None);
        assert_eq!(day_of(-1), -DAY_MICROS);
    }
}
