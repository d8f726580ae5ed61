//! The store: SQLite through sqlx. Events (idempotent on id), sessions (updated
//! race-free in the same transaction), the errors log, and applications.
//!
//! One type, [`Store`], owns the connections; handlers and workers never touch sqlx
//! directly. Timestamps are stored as integer microseconds since the Unix epoch, ids as
//! 16-byte blobs.
//!
//! # Connections
//!
//! All writes go through one writer connection and start with `BEGIN IMMEDIATE`, so
//! SQLite never has two writers racing for the lock (no `SQLITE_BUSY` upgrades, and the
//! session counters are updated race-free). Reads use a small separate pool; in WAL
//! mode they never wait for the writer.
//!
//! # Layout
//!
//! - `write`: [`Store::write_batch`], the one write path for events and the errors log.
//! - `events`: the event, session and errors-log queries.
//! - `sql`: how an [`eye_core::EventQuery`] becomes SQL (index choice, count plan).
//! - `count`: totals from the counters, and the deep-page seek through them.
//! - `tree`: the counter tree (events per hour, minute, second, 10 ms) behind both.
//! - `rows`: stored rows and their conversion to the model.
//! - `apps`: applications and their keys.
//! - `stats`: dashboard figures (totals by type, events per hour, newest sessions).
//! - `idle`: releases the page caches once the store has been quiet for a while.

mod apps;
mod count;
mod events;
mod idle;
mod rows;
mod sql;
mod stats;
#[cfg(test)]
mod tests;
mod tree;
mod write;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use apps::{AppRecord, NewApp, Scope, Scopes};
pub use events::WriteOutcome;
pub use stats::{HourCount, StoreSize, TypeCount};

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

impl StoreError {
    /// Whether the failure is the store's, not the data's: busy or locked database,
    /// I/O error, full disk, unreadable file, pool timeout. Retrying the same data
    /// later can succeed, and splitting a batch to find a bad message is pointless
    /// (each part would fail the same way, each after the busy timeout). Anything else
    /// (a constraint, a value SQLite refuses, a row that cannot be read back) is taken
    /// as caused by the data.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => db
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    // The primary result code is the low byte of an extended one.
                    .is_some_and(|c| TRANSIENT_SQLITE_CODES.contains(&(c & 0xff))),
                _ => false,
            },
            Self::Migrate(_) => true,
            Self::Corrupt(_) | Self::AppExists(_) | Self::AppNotFound(_) => false,
        }
    }
}

/// SQLite primary result codes of a store that cannot write right now: BUSY, LOCKED,
/// NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
const TRANSIENT_SQLITE_CODES: [i32; 10] = [5, 6, 7, 8, 10, 11, 13, 14, 15, 26];

/// How SQLite syncs commits to disk (`PRAGMA synchronous`), in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Synchronous {
    /// fsync on every commit: a committed transaction survives a power loss. Needed
    /// when something is deleted on the strength of the commit (a Redis worker
    /// deletes the stream entries right after it).
    Full,
    /// fsync at checkpoints only: a power loss (not a crash of the process) can undo
    /// the last commits. Faster.
    #[default]
    Normal,
}

impl From<Synchronous> for SqliteSynchronous {
    fn from(s: Synchronous) -> Self {
        match s {
            Synchronous::Full => Self::Full,
            Synchronous::Normal => Self::Normal,
        }
    }
}

/// Whether a database URL names an in-memory database (`sqlite::memory:`,
/// `mode=memory`), which has no file (and so no journal) next to it.
///
/// ```
/// assert!(eye_server::store::is_in_memory("sqlite::memory:"));
/// assert!(!eye_server::store::is_in_memory("sqlite://eye.db"));
/// ```
pub fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// The store handle: cheap to clone (the pools are reference-counted).
#[derive(Debug, Clone)]
pub struct Store {
    /// Readers. For an in-memory database this is the writer pool itself.
    pool: SqlitePool,
    /// The single writer connection.
    writer: SqlitePool,
    /// Empties the page caches after a quiet spell (file stores only).
    _idle: Option<Arc<idle::IdleRelease>>,
}

/// Reader connections: enough for both cores plus one waiting on I/O.
const READERS: u32 = 4;

/// Each reader's page cache, in KiB (`PRAGMA cache_size` takes negative KiB). A query
/// reads a few index pages and one page of rows: the interior pages of the indexes
/// fit, and the operating system's file cache serves the rest.
const READER_CACHE_KIB: u32 = 2048;

impl Store {
    /// Opens (creating if needed) the SQLite database at `url` (`sqlite://path.db` or
    /// `sqlite::memory:`), sets WAL and the pragmas, and applies migrations.
    ///
    /// ```
    /// # tokio_test_block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let url = format!("sqlite://{}", dir.path().join("eye.db").display());
    /// let store = eye_server::store::Store::open(&url).await.unwrap();
    /// let (count, events) = store.query_events(&eye_core::EventQuery::new()).await.unwrap();
    /// assert_eq!((count, events.len()), (0, 0));
    /// # });
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, Synchronous::Normal).await
    }

    /// [`Store::open`] with a choice of `PRAGMA synchronous`.
    pub async fn open_with(url: &str, synchronous: Synchronous) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous.into())
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory");
        let in_memory = is_in_memory(url);
        let activity = Arc::new(idle::Activity::default());
        // Writers queue for the one connection; the embedded queue and the workers
        // each write from one task, so waiting long here means the disk is stuck.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .before_acquire(idle::Activity::hook(&activity))
            .connect_with(
                options
                    .clone()
                    // 32 MiB: the hot upper levels and right edges of every index,
                    // and much of the session index, whose inserts land at random
                    // (a 1M-event drain: 57 s at 32 MiB, 61 s at 16 MiB). Given back
                    // when idle, with the allocator's free memory (`crate::memory`).
                    .pragma("cache_size", "-32000")
                    // Checkpoint every ~128 MiB of WAL instead of 4 MiB: a leaf that
                    // several transactions dirtied is copied back once, and there are
                    // far fewer fsyncs. Measured: 2.6x the write rate at 300k rows for
                    // 32 MiB; 128 MiB drained a 300k-event journal in 11.3-11.6 s
                    // against 12.5-18.4 s (transactions of 10,000 events each write
                    // tens of MiB of WAL).
                    .pragma("wal_autocheckpoint", "32768")
                    // After a checkpoint, a WAL that grew past 128 MiB (a reader held
                    // an old snapshot) is truncated back instead of staying that big.
                    .pragma("journal_size_limit", "134217728")
                    // Bounds `PRAGMA optimize` at close to a sample, not a table scan.
                    .pragma("analysis_limit", "400"),
            )
            .await?;
        sqlx::migrate!("./migrations").run(&writer).await?;
        if in_memory {
            return Ok(Self {
                pool: writer.clone(),
                writer,
                _idle: None,
            });
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(READERS)
            .min_connections(1)
            .before_acquire(idle::Activity::hook(&activity))
            .connect_with(options.pragma("cache_size", format!("-{READER_CACHE_KIB}")))
            .await?;
        let idle = idle::IdleRelease::spawn(vec![pool.clone(), writer.clone()], activity);
        Ok(Self {
            pool,
            writer,
            _idle: Some(Arc::new(idle)),
        })
    }

    /// Applies pending migrations (embedded in the binary).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations").run(&self.writer).await?;
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

    /// Closes the pools, waiting for connections to finish. The writer closes last, so
    /// its final checkpoint sees no reader.
    pub async fn close(&self) {
        // Refreshes the planner's statistics where they changed; cheap, and a failure
        // only costs plan quality.
        if let Err(e) = sqlx::query("PRAGMA optimize").execute(&self.writer).await {
            tracing::debug!(error = %e, "PRAGMA optimize failed");
        }
        self.pool.close().await;
        self.writer.close().await;
    }
}
