//! Removing data for good: erasing a session on request, and retention (events and
//! errors-log entries past their age). Every removal takes its rows off the sessions
//! and counters in the same transaction as the delete, so totals, sessions, the
//! dashboard and deep pages stay exact (see `sqlite::remove` and `postgres::remove`
//! for how each backend keeps that true next to concurrent writers).

use chrono::{DateTime, Duration, Utc};

pub use super::removal::Erased;
use super::rows::to_micros;
use super::{Backend, Store, StoreError};

/// How long an erased session stays on the suppression list: its events that reach
/// the store within this time after the erasure (a client's retry, the SDK's outbox,
/// which keeps events up to 7 days, a journal replay, a Redis redelivery, a replayed
/// dead letter) are dropped in the write transaction. Longer than any of those
/// windows; after it, the session id is forgotten.
pub const ERASED_KEPT_DAYS: i64 = 30;

impl Store {
    /// Erases a session for good, in one transaction: its events, its session row and
    /// applications, its share of every counter, and the errors-log entries whose
    /// payload carries its id ([`crate::message::carries_session`]). The session is
    /// recorded as erased at `now`: for [`ERASED_KEPT_DAYS`], its events that reach the
    /// store later are dropped ([`super::WriteOutcome::suppressed`]). Erasing again (or
    /// a session never seen) is harmless: it removes what is there, and extends the
    /// suppression.
    ///
    /// ```
    /// # tokio_test_block_on(async {
    /// let store = eye_server::store::Store::open("sqlite::memory:").await.unwrap();
    /// let erased = store.erase_session("abc", chrono::Utc::now()).await.unwrap();
    /// assert_eq!(erased.events, 0);
    /// assert!(store.is_erased("abc").await.unwrap());
    /// # });
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub async fn erase_session(
        &self,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Erased, StoreError> {
        let now = to_micros(now);
        let erased = match &self.backend {
            Backend::Sqlite(s) => s.erase_session(session_id, now).await?,
            Backend::Postgres(p) => p.erase_session(session_id, now).await?,
        };
        metrics::counter!(crate::metrics::names::SESSIONS_ERASED).increment(1);
        Ok(erased)
    }

    /// Whether `session_id` is on the suppression list.
    pub async fn is_erased(&self, session_id: &str) -> Result<bool, StoreError> {
        let n = self
            .reader()
            .await?
            .conn()
            .scalar(
                "SELECT count(*) FROM erased_sessions WHERE session_id = ?",
                &[super::sql::Arg::Text(session_id.to_owned())],
            )
            .await?;
        Ok(n > 0)
    }

    /// One retention batch: deletes up to `limit` events of `application` whose
    /// timestamp is before `before`, with their share of sessions (counts, first and
    /// last seen, applications; a session left without events is deleted) and
    /// counters, in one short transaction. Returns how many it deleted: fewer than
    /// `limit` means none is left.
    pub async fn expire_events(
        &self,
        application: &str,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let (before, limit) = (to_micros(before), i64::from(limit));
        match &self.backend {
            Backend::Sqlite(s) => s.expire_events(application, before, limit).await,
            Backend::Postgres(p) => p.expire_events(application, before, limit).await,
        }
    }

    /// One errors-log retention batch: deletes up to `limit` entries received before
    /// `before`, with their hourly counters. Returns how many.
    pub async fn expire_errors(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let (before, limit) = (to_micros(before), i64::from(limit));
        match &self.backend {
            Backend::Sqlite(s) => s.expire_errors(before, limit).await,
            Backend::Postgres(p) => p.expire_errors(before, limit).await,
        }
    }

    /// Takes sessions erased more than [`ERASED_KEPT_DAYS`] before `now` off the
    /// suppression list. Returns how many.
    pub async fn purge_erased(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = to_micros(now - Duration::days(ERASED_KEPT_DAYS));
        match &self.backend {
            Backend::Sqlite(s) => s.purge_erased(before).await,
            Backend::Postgres(p) => p.purge_erased(before).await,
        }
    }

    /// The cutoff retention applies for events before `before`: on PostgreSQL the start
    /// of its UTC day, since whole days are dropped ([`Store::drop_days_before`]) and
    /// rows of a day that is not wholly past are kept; on SQLite `before` itself.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let store = eye_server::store::Store::open("sqlite::memory:").await.unwrap();
    /// let at = chrono::Utc::now();
    /// assert_eq!(store.retention_cutoff(at), at);
    /// # });
    /// ```
    pub fn retention_cutoff(&self, before: DateTime<Utc>) -> DateTime<Utc> {
        match &self.backend {
            Backend::Sqlite(_) => before,
            Backend::Postgres(_) => {
                let day = super::postgres::partitions::day_of(to_micros(before));
                DateTime::from_timestamp_micros(day).unwrap_or(before)
            }
        }
    }

    /// PostgreSQL: removes every day partition of `events` that lies wholly before
    /// `before`, each as a whole (its events taken off sessions and counters, then the
    /// partition truncated and dropped: no row deletes). Returns how many events they
    /// held. SQLite has no partitions: 0.
    pub async fn drop_days_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let Backend::Postgres(p) = &self.backend else {
            return Ok(0);
        };
        let before = to_micros(before);
        let mut removed = 0;
        for day in p.day_partitions().await? {
            if day + super::postgres::partitions::DAY_MICROS > before {
                break;
            }
            removed += p.drop_day(day).await?;
        }
        Ok(removed)
    }

    /// PostgreSQL: creates the day partitions of `events` around `now` that do not
    /// exist yet (yesterday to two days ahead). SQLite: nothing to do.
    pub async fn prepare_partitions(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(p) => p.prepare_partitions(to_micros(now)).await,
        }
    }

    /// The applications that have stored events (from the counters: no scan).
    pub async fn event_applications(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = self
            .reader()
            .await?
            .conn()
            .fetch_all(
                "SELECT DISTINCT application FROM event_counts ORDER BY application",
                &[],
            )
            .await?;
        Ok(rows.into_iter().map(|(a,)| a).collect())
    }

    /// SQLite: gives up to `pages` free pages back to the file system
    /// (`PRAGMA incremental_vacuum`) and returns how many free pages are left; 0 for a
    /// database created before auto-vacuum was turned on (its free pages are reused
    /// for new rows instead) and on PostgreSQL (whose own autovacuum makes the space
    /// reusable).
    pub async fn reclaim_space(&self, pages: u32) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.reclaim_pages(pages).await,
            Backend::Postgres(_) => Ok(0),
        }
    }
}
