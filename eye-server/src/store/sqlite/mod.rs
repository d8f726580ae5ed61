//! The SQLite backend: one writer connection (every write starts with
//! `BEGIN IMMEDIATE`, so SQLite never has two writers racing for the lock and the
//! session counters are updated race-free) and a small read pool, which in WAL mode
//! never waits for the writer.
//!
//! # Layout
//!
//! - `write`: the write path for events and the errors log.
//! - `remove`: erasure, retention batches, giving free pages back.
//! - `idle`: releases the page caches once the store has been quiet for a while.

pub(crate) mod idle;
mod remove;
mod write;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

use super::{StoreError, is_in_memory};

/// How SQLite syncs commits to disk (`PRAGMA synchronous`), in WAL mode. PostgreSQL
/// ignores it.
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

/// Reader connections: enough for both cores plus one waiting on I/O.
const READERS: u32 = 4;

/// Each reader's page cache, in KiB (`PRAGMA cache_size` takes negative KiB). A query
/// reads a few index pages and one page of rows: the interior pages of the indexes
/// fit, and the operating system's file cache serves the rest.
const READER_CACHE_KIB: u32 = 2048;

/// Bytes SQLite holds in this process right now, over every connection: page caches,
/// schemas, prepared statements. The page caches are bounded (`cache_size`: 32 MiB for
/// the writer, [`READER_CACHE_KIB`] for each of [`READERS`] readers), so this rises as
/// they fill and stays under that sum plus a few MiB; the soak run subtracts it from
/// the process's RSS to see what else grows.
pub(crate) fn memory_used() -> u64 {
    #[allow(unsafe_code)]
    // SAFETY: `sqlite3_memory_used` takes no arguments and reads a counter under
    // SQLite's own mutex; it is safe from any thread, before or after any open.
    let used = unsafe { libsqlite3_sys::sqlite3_memory_used() };
    u64::try_from(used).unwrap_or(0)
}

/// A SQLite store's connections.
#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    /// Readers. For an in-memory database this is the writer pool itself.
    pub pool: SqlitePool,
    /// The single writer connection.
    pub writer: SqlitePool,
    /// Empties the page caches after a quiet spell (file stores only).
    _idle: Option<Arc<idle::IdleRelease>>,
}

/// Events carry form contents: a new database file is created readable by its owner
/// only (0600) before SQLite opens it, and SQLite gives its `-wal` and `-shm` files the
/// database file's mode. An existing file keeps its mode.
fn create_private(path: &std::path::Path) {
    if path.as_os_str().is_empty() || path.exists() {
        return;
    }
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        file.mode(0o600);
    }
    // A file created meanwhile, a missing directory and the like: SQLite opens it or
    // reports the problem in its own words.
    let _ = file.open(path);
}

impl SqliteStore {
    /// Opens (creating if needed) the SQLite database at `url` (`sqlite://path.db` or
    /// `sqlite::memory:`), sets WAL and the pragmas, and applies migrations.
    pub async fn open(url: &str, synchronous: Synchronous) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // Takes effect only on a new database (set before its first table), which
            // then gives the pages retention frees back to the file system
            // (`PRAGMA incremental_vacuum`, see `remove`). A database created before
            // keeps `NONE`: its free pages are reused for new rows, and a `VACUUM`
            // with the server stopped converts it (docs/lifecycle.md).
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous.into())
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory");
        let in_memory = is_in_memory(url);
        if !in_memory {
            create_private(options.get_filename());
        }
        let activity = Arc::new(idle::Activity::default());
        // Writers queue for the one connection; the embedded queue and the workers
        // each write from one task, so waiting long here means the disk is stuck.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            // sqlx recycles a connection every 30 minutes by default, which suits a
            // server that may drop idle sessions; a SQLite connection only loses its
            // page cache and prepared statements by it (the soak run's memory stepped
            // down and refilled at every 1,800 s).
            .max_lifetime(None)
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
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
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
            .max_lifetime(None)
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
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await?;
        Ok(())
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
