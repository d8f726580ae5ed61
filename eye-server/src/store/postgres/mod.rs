//! The PostgreSQL backend: one pool, shared by readers and writers; any number of
//! writers (tasks here, worker processes on other machines) write at once.
//!
//! What keeps the guarantees with concurrent writers (see `write`):
//! - `event_ids`' primary key on `id` with `ON CONFLICT (id) DO NOTHING RETURNING id`,
//!   and only the returned ids inserted into `events` (partitioned by day, so its own
//!   key is `(timestamp, id)`):
//!   a racing duplicate waits for the first insert's transaction and is skipped if
//!   it commits, so each id is stored once and only the writer that stored it
//!   counts it;
//! - every counter and session row is upserted with
//!   `ON CONFLICT DO UPDATE SET n = t.n + excluded.n` (exact under READ COMMITTED:
//!   the update applies to the newest committed row), with the keys of every
//!   statement sorted and the tables written in one fixed order, so two writers
//!   always take their row locks in the same order and cannot deadlock.
//!
//! Reads of a page and its count share one `REPEATABLE READ, READ ONLY` transaction,
//! which never fails with a serialization error.
//!
//! # Layout
//!
//! - `write`: the bulk write path (`UNNEST` inserts, one statement per table).
//! - `remove`: erasure and retention batches, and their lock order.
//! - `partitions`: `events` by UTC day: partitions created ahead, whole days dropped.

pub(crate) mod partitions;
mod remove;
mod write;

use std::sync::Arc;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

use super::StoreError;

/// The PostgreSQL connection pool of one process (`--pg-pool-size`,
/// `--pg-acquire-timeout-secs`, `--pg-connect-timeout-secs`).
///
/// ```
/// let pool = eye_server::store::PgPoolSettings::default();
/// assert_eq!(pool.max_connections, 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgPoolSettings {
    /// Most connections this process opens. A worker writes from one task, an API
    /// node serves a few queries at once: 8 is plenty for either; more would only
    /// queue inside PostgreSQL. Size the server's `max_connections` for the sum over
    /// every process (plus PgBouncer in front when that grows past a few hundred).
    pub max_connections: u32,
    /// How long a caller waits for a free connection, or for a new one to open: past
    /// this the database is taken as unavailable (a transient error: ingest answers
    /// 503, a worker backs off and retries).
    pub acquire_timeout: Duration,
    /// How long opening the first connection at start may take before the process
    /// exits with a clear error (an unreachable host otherwise waits for TCP's own
    /// timeout, minutes).
    pub connect_timeout: Duration,
}

impl Default for PgPoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A PostgreSQL store's pool.
#[derive(Debug, Clone)]
pub(crate) struct PgStore {
    pub pool: PgPool,
    /// The day partitions of `events` this process knows of.
    partitions: Arc<partitions::PartitionCache>,
}

impl PgStore {
    /// Connects to the PostgreSQL server `url` names and applies migrations. An
    /// unreachable server, refused login or missing database is a
    /// [`StoreError::Connect`] naming the server and the cause.
    pub async fn open(url: &str, settings: PgPoolSettings) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(format!("not a PostgreSQL URL: {e}")))?
            .application_name("the-eye");
        let target = target_of(&options);
        let connect_error = |source: sqlx::Error| StoreError::Connect {
            target: target.clone(),
            source,
        };
        // One connection first, to report why it fails: the pool would retry until
        // its timeout and report only that it timed out.
        let probe = tokio::time::timeout(
            settings.connect_timeout,
            PgConnection::connect_with(&options),
        )
        .await
        .map_err(|_| {
            connect_error(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", settings.connect_timeout.as_secs()),
            )))
        })?
        .map_err(connect_error)?;
        // A failed goodbye is harmless.
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        let store = Self {
            pool,
            partitions: Arc::default(),
        };
        store.migrate().await?;
        // Not fatal: the write path and each retention pass try again, and an event
        // whose day has no partition yet is stored in `events_default`.
        if let Err(e) = store
            .prepare_partitions(chrono::Utc::now().timestamp_micros())
            .await
        {
            tracing::warn!(error = %e, "events partitions not created ahead at start");
        }
        Ok(store)
    }

    /// Applies pending migrations (sqlx holds an advisory lock meanwhile, so workers
    /// starting together apply them once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }
}

/// `host:port/database` (or `socket/database`), without user or password.
fn target_of(options: &PgConnectOptions) -> String {
    let database = options
        .get_database()
        .unwrap_or_else(|| options.get_username());
    match options.get_socket() {
        Some(socket) => format!("PostgreSQL at {}/{database}", socket.display()),
        None => format!(
            "PostgreSQL at {}:{}/{database}",
            options.get_host(),
            options.get_port()
        ),
    }
}
