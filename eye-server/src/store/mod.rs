//! The store: SQLite or PostgreSQL through sqlx, chosen at start by the URL's scheme.
//! Events (idempotent on id), sessions (updated race-free in the same transaction),
//! the errors log, and applications.
//!
//! One type, [`Store`], owns the connections; handlers, queues and workers never touch
//! sqlx directly and never learn which backend they write to. Inside, [`Store`] holds a
//! `Backend` enum (not a trait object: no boxed future per call on the hot path).
//! Timestamps are stored as integer microseconds since the Unix epoch on both
//! backends, so the counter tree's arithmetic and the API's output are identical.
//!
//! # Backends
//!
//! - SQLite (`sqlite://path.db`, `sqlite::memory:`; the default): all writes go through
//!   one writer connection with `BEGIN IMMEDIATE`, so SQLite never has two writers
//!   racing for the lock; reads use a small separate pool, which in WAL mode never
//!   waits for the writer.
//! - PostgreSQL (`postgres://`, `postgresql://`): one pool; any number of writers, in
//!   this process or on other machines, write concurrently. Uniqueness of event ids
//!   and exact counters come from `ON CONFLICT` with sorted keys (see `postgres`).
//!
//! Everything that reads (events, sessions, errors log, counts, the deep-page seek,
//! dashboard figures, applications) is written once, against `conn::Conn`, in SQLite's
//! `?` style; `conn` renumbers placeholders for Postgres. The write path is per
//! backend: bulk-insert SQL differs too much to share.
//!
//! # Layout
//!
//! - `conn`: one connection of either backend, and the few ways the read path uses it.
//! - `events`: the event, session and errors-log queries.
//! - `keyset`: pages read from a cursor's position (keyset pagination).
//! - `sql`: how an [`eye_core::EventQuery`] becomes SQL (index choice, count plan).
//! - `count`: totals from the counters, and the deep-page seek through them.
//! - `tree`: the counter tree (events per hour, minute, second, 10 ms) behind both.
//! - `rows`: stored rows and their conversion to the model.
//! - `apps`: applications and their keys.
//! - `lifecycle`: erasing a session, retention, the suppression list of erased
//!   sessions; `removal` holds what both backends' removal paths share.
//! - `stats`: dashboard figures (totals by type, events per hour, newest sessions).
//! - `sqlite`: opening SQLite, its write path, and releasing its page caches when idle.
//! - `postgres`: opening PostgreSQL and its bulk write path.
//! - [`testing`] (tests and the `test-util` feature): a throwaway Postgres database.

mod apps;
mod batch;
mod conn;
mod count;
mod events;
mod keyset;
mod lifecycle;
mod postgres;
mod removal;
mod rows;
mod sql;
mod sqlite;
mod stats;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod tree;

use sqlx::SqlitePool;
use sqlx::postgres::{PgDatabaseError, PgPool};

pub use apps::{AppRecord, NewApp, Retention, Scope, Scopes};
pub use events::WriteOutcome;
pub use keyset::{EventKey, KeysetPage};
pub use lifecycle::{ERASED_KEPT_DAYS, Erased};
pub use postgres::PgPoolSettings;
pub use sqlite::Synchronous;
pub use stats::{HourCount, StoreSize, TypeCount};

use crate::message::Message;
use conn::Held;

/// Store failures. Callers log them and answer an opaque 500/503; they never reach a
/// client's body.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database server could not be reached or refused the connection at start:
    /// names the server (never the password) and the cause.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// `host:port/database` (or the socket path).
        target: String,
        /// What failed.
        source: sqlx::Error,
    },
    /// The database URL is not one the store can open.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
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
    /// The application's key is a secret key, not a publishable one.
    #[error("application `{0}` has a secret key; only publishable keys have origins")]
    NotPublishable(String),
    /// Concurrent work kept a write from completing (sessions erased again and again
    /// while a batch of them was written); retrying later succeeds.
    #[error("contended: {0}")]
    Contended(String),
}

impl StoreError {
    /// Whether the failure is the store's, not the data's: busy or locked database,
    /// I/O error, full disk, unreadable file, pool timeout, a lost or refused
    /// connection, a Postgres server shutting down, a serialization failure or a
    /// deadlock. Retrying the same data later can succeed, and splitting a batch to
    /// find a bad message is pointless (each part would fail the same way, each after
    /// the busy timeout). Anything else (a constraint, a value the database refuses, a
    /// row that cannot be read back, a bad URL) is taken as caused by the data or the
    /// configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(e) | Self::Connect { source: e, .. } => is_transient(e),
            Self::Migrate(_) | Self::Contended(_) => true,
            Self::InvalidUrl(_)
            | Self::Corrupt(_)
            | Self::AppExists(_)
            | Self::AppNotFound(_)
            | Self::NotPublishable(_) => false,
        }
    }
}

fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
                let code = pg.code();
                TRANSIENT_PG_CLASSES.iter().any(|c| code.starts_with(c))
                    || TRANSIENT_PG_CODES.contains(&code)
            } else {
                db.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    // The primary result code is the low byte of an extended one.
                    .is_some_and(|c| TRANSIENT_SQLITE_CODES.contains(&(c & 0xff)))
            }
        }
        _ => false,
    }
}

/// SQLite primary result codes of a store that cannot write right now: BUSY, LOCKED,
/// NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
const TRANSIENT_SQLITE_CODES: [i32; 10] = [5, 6, 7, 8, 10, 11, 13, 14, 15, 26];

/// SQLSTATE classes of a Postgres that cannot serve right now: connection exception,
/// transaction rollback (serialization failure, deadlock), insufficient resources
/// (too many connections, disk full), operator intervention (admin or crash shutdown,
/// cannot connect now), system error.
const TRANSIENT_PG_CLASSES: [&str; 5] = ["08", "40", "53", "57", "58"];

/// Single SQLSTATEs that are transient: lock not available, read-only transaction (a
/// failover left us on a standby), and 55000, which a new connection gets while the
/// database does not accept connections (`ALTER DATABASE ... ALLOW_CONNECTIONS
/// false` during maintenance; no event's data can cause it on the write path).
const TRANSIENT_PG_CODES: [&str; 3] = ["55P03", "25006", "55000"];

/// Whether a database URL names an in-memory database (`sqlite::memory:`,
/// `mode=memory`), which has no file (and so no journal) next to it.
///
/// ```
/// assert!(eye_server::store::is_in_memory("sqlite::memory:"));
/// assert!(!eye_server::store::is_in_memory("sqlite://eye.db"));
/// assert!(!eye_server::store::is_in_memory("postgres://eye@db.internal/eye"));
/// ```
pub fn is_in_memory(url: &str) -> bool {
    !is_postgres(url) && (url.contains(":memory:") || url.contains("mode=memory"))
}

/// Whether a database URL names a PostgreSQL server (`postgres://`, `postgresql://`).
///
/// ```
/// assert!(eye_server::store::is_postgres("postgresql://eye@127.0.0.1/eye"));
/// assert!(!eye_server::store::is_postgres("sqlite://eye.db"));
/// ```
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The store handle: cheap to clone (the pools are reference-counted).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

/// The backend a [`Store`] was opened on.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens the database at `url` and applies migrations: PostgreSQL for
    /// `postgres://` and `postgresql://` URLs, SQLite (created if needed; WAL and the
    /// pragmas set) for anything else (`sqlite://path.db`, `sqlite::memory:`).
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

    /// [`Store::open`] with a choice of SQLite's `PRAGMA synchronous`. PostgreSQL
    /// ignores it: its commits are durable as its server is configured
    /// (`synchronous_commit`).
    pub async fn open_with(url: &str, synchronous: Synchronous) -> Result<Self, StoreError> {
        Self::open_configured(url, synchronous, PgPoolSettings::default()).await
    }

    /// [`Store::open_with`] with the PostgreSQL pool's settings (ignored by SQLite).
    pub async fn open_configured(
        url: &str,
        synchronous: Synchronous,
        pg: PgPoolSettings,
    ) -> Result<Self, StoreError> {
        let backend = if is_postgres(url) {
            Backend::Postgres(postgres::PgStore::open(url, pg).await?)
        } else {
            Backend::Sqlite(sqlite::SqliteStore::open(url, synchronous).await?)
        };
        Ok(Self { backend })
    }

    /// Writes a batch of queue messages in one transaction: events are inserted once
    /// per id, forever (a duplicate id, in the batch or already stored, is a no-op),
    /// the sessions and counters of newly inserted events are updated in the same
    /// transaction, rejected events go to the errors log (once per key). Either all of
    /// it commits or none of it does.
    ///
    /// Concurrent calls keep every counter exact: on SQLite they queue for the one
    /// writer connection (`BEGIN IMMEDIATE`); on PostgreSQL they run at once, from any
    /// number of processes, and conflicts resolve row by row (see `postgres`).
    pub async fn write_batch(&self, messages: &[Message]) -> Result<WriteOutcome, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.write_batch(messages).await,
            Backend::Postgres(p) => p.write_batch(messages).await,
        }
    }

    /// Applies pending migrations (embedded in the binary).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.migrate().await,
            Backend::Postgres(p) => p.migrate().await,
        }
    }

    /// Checks the database answers, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        // BIGINT: Postgres's plain `1` is an int4, which does not decode as i64.
        self.reader()
            .await?
            .conn()
            .scalar("SELECT CAST(1 AS BIGINT)", &[])
            .await?;
        Ok(())
    }

    /// The SQLite read pool, for tests and tools that inspect a SQLite database
    /// directly (e.g. `EXPLAIN QUERY PLAN`); `None` on PostgreSQL.
    pub fn pool(&self) -> Option<&SqlitePool> {
        match &self.backend {
            Backend::Sqlite(s) => Some(&s.pool),
            Backend::Postgres(_) => None,
        }
    }

    /// The PostgreSQL pool, for tests and tools that inspect the database directly;
    /// `None` on SQLite.
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(&p.pool),
        }
    }

    /// Bytes SQLite holds in this process (page caches, schemas, statements), for the
    /// gauge `eye_sqlite_memory_bytes`; `None` on PostgreSQL.
    pub fn sqlite_memory_bytes(&self) -> Option<u64> {
        match &self.backend {
            Backend::Sqlite(_) => Some(sqlite::memory_used()),
            Backend::Postgres(_) => None,
        }
    }

    /// Which backend this store writes to: `"sqlite"` or `"postgres"` (for logs and
    /// metrics labels).
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes the pools, waiting for connections to finish.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(p) => p.pool.close().await,
        }
    }

    /// A read connection.
    pub(crate) async fn reader(&self) -> Result<Held, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => Held::Sqlite(s.pool.acquire().await?),
            Backend::Postgres(p) => Held::Postgres(p.pool.acquire().await?),
        })
    }

    /// A read-only transaction: every statement in it sees the same snapshot, so a
    /// count and its page agree.
    pub(crate) async fn snapshot(&self) -> Result<Held, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => Held::SqliteTx(s.pool.begin().await?),
            Backend::Postgres(p) => Held::PostgresTx(
                p.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?,
            ),
        })
    }

    /// A connection for small writes outside the event path (applications).
    pub(crate) async fn small_writer(&self) -> Result<Held, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(s) => Held::Sqlite(s.writer.acquire().await?),
            Backend::Postgres(p) => Held::Postgres(p.pool.acquire().await?),
        })
    }
}
