//! The store: SQLite through sqlx. Events (idempotent on id), sessions (updated
//! race-free in the same transaction), the errors log, and applications.
//!
//! One type, [`Store`], owns the pool; handlers and workers never touch sqlx directly.
//! Timestamps are stored as integer microseconds since the Unix epoch, ids as 16-byte
//! blobs.

mod apps;
mod events;
mod stats;

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use apps::{AppRecord, NewApp, Scope, Scopes};
pub use events::WriteOutcome;
pub use stats::{DashboardStats, HourBucket};

/// Store failures. Callers log them and answer an opaque 500/503; they never reach a
/// client's body.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be read back (corrupt or foreign data).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// An application with this name already exists.
    #[error("an application named `{0}` already exists")]
    AppExists(String),
    /// No application has this name.
    #[error("no application named `{0}`")]
    AppNotFound(String),
}

/// The store handle: cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `url` (`sqlite://path.db` or
    /// `sqlite::memory:`), sets WAL and the pragmas, and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32000");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations (embedded in the binary).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }

    /// Checks the database answers, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The pool, for tests that inspect the database (e.g. `EXPLAIN QUERY PLAN`).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
