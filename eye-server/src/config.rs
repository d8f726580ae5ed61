//! Typed, nested configuration. Every setting is a flag and an `EYE_*` environment
//! variable (a `.env` file is read first); defaults make `eye-server` run with no
//! configuration at all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use eye_core::PageLimits;

/// Everything `serve` needs.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// HTTP settings.
    #[command(flatten)]
    pub http: HttpConfig,
    /// Where events are stored.
    #[command(flatten)]
    pub store: StoreConfig,
    /// The queue between ingest and the store.
    #[command(flatten)]
    pub queue: QueueConfig,
    /// Ingest validation.
    #[command(flatten)]
    pub ingest: IngestConfig,
    /// Query pagination.
    #[command(flatten)]
    pub query: QueryConfig,
    /// Run the HTTP API only, without a worker moving Redis messages to the store
    /// (Redis mode only; scale workers separately with `eye-server worker`).
    #[arg(long, env = "EYE_NO_WORKER")]
    pub no_worker: bool,
}

/// HTTP settings.
#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Address to listen on.
    #[arg(long, env = "EYE_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// Public base URL used in pagination links (`next`/`previous`); by default
    /// derived from the request's `Host` header.
    #[arg(long, env = "EYE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest request body, after gzip decompression.
    #[arg(long, env = "EYE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Requests taking longer are answered 408.
    #[arg(long, env = "EYE_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// DANGER: accept requests without an API key (local demos only). Logs a warning at
    /// every start; events are recorded as application `anonymous`.
    #[arg(long, env = "EYE_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
}

impl HttpConfig {
    /// The request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// Where events are stored.
#[derive(Debug, Clone, Args)]
pub struct StoreConfig {
    /// SQLite database URL; the file is created when missing.
    #[arg(long, env = "EYE_DATABASE_URL", default_value = "sqlite://eye.db")]
    pub database_url: String,
    /// SQLite `PRAGMA synchronous`: `full` fsyncs every commit, `normal` only at
    /// checkpoints (a power loss can undo the last commits). Default: `full` with a
    /// Redis queue, whose workers delete stream entries right after the commit;
    /// `normal` with the embedded queue.
    #[arg(long, env = "EYE_SQLITE_SYNCHRONOUS", value_enum)]
    pub sqlite_synchronous: Option<crate::store::Synchronous>,
}

/// The queue between ingest and the store.
#[derive(Debug, Clone, Args)]
pub struct QueueConfig {
    /// Redis URL. When set, events go through a Redis Stream; otherwise the embedded
    /// in-process queue commits them to the store before answering. May hold a
    /// password, so `--help` does not show the variable's value.
    #[arg(long, env = "EYE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so deployments (and tests) can share one Redis.
    #[arg(long, env = "EYE_REDIS_PREFIX", default_value = "eye")]
    pub redis_prefix: String,
    /// Embedded mode: when ingest answers 2xx. `journal`: once the events are
    /// appended to the journal on disk; a background task stores them a few
    /// milliseconds later, and after a crash at the next start. `store`: once they are
    /// committed to SQLite, so they can be read at the 2xx; each request then waits for
    /// a transaction, which costs most of the ingest rate.
    #[arg(long, env = "EYE_ACK_AFTER", value_enum, default_value_t = AckAfter::Journal)]
    pub ack_after: AckAfter,
    /// Embedded mode: the journal's directory (default: `<database file>.journal`).
    #[arg(long, env = "EYE_JOURNAL_DIR")]
    pub journal_dir: Option<PathBuf>,
    /// Embedded mode with `--ack-after journal`: most journal not yet stored, in MiB,
    /// before ingest answers 503. It bounds disk, not memory: the backlog stays on
    /// disk.
    #[arg(long, env = "EYE_MAX_JOURNAL_MIB", default_value_t = 1024)]
    pub max_journal_mib: u64,
    /// Embedded mode with `--ack-after journal`: most events moved from the journal
    /// to the store in one transaction. Larger transactions cost SQLite less per
    /// event, and a batch is inserted in event-time order, so indexes take its rows at
    /// neighbouring leaves (a 1M-event drain: 43 s at 10,000, 30 s at 30,000, 26 s at
    /// 50,000; peak RSS 90, 137, 195 MiB). Memory holds two batches of at most 16 MiB
    /// of journal each.
    #[arg(long, env = "EYE_JOURNAL_BATCH", default_value_t = 30_000)]
    pub journal_batch: usize,
    /// Largest backlog (messages accepted but not stored) before ingest answers 503,
    /// in Redis mode and with `--ack-after store` (the journal is bounded by
    /// `--max-journal-mib`).
    #[arg(long, env = "EYE_MAX_BACKLOG", default_value_t = 100_000)]
    pub max_backlog: u64,
    /// Most events written to the store in one transaction.
    #[arg(long, env = "EYE_COMMIT_BATCH", default_value_t = 1000)]
    pub commit_batch: usize,
    /// Longest a queued event waits for its batch to fill before it is committed.
    #[arg(long, env = "EYE_COMMIT_INTERVAL_MS", default_value_t = 2)]
    pub commit_interval_ms: u64,
    /// Redis: pending messages idle this long are claimed from a dead worker.
    #[arg(long, env = "EYE_CLAIM_IDLE_MS", default_value_t = 30_000)]
    pub claim_idle_ms: u64,
    /// Redis: a message delivered this many times without success is dead-lettered.
    #[arg(long, env = "EYE_MAX_DELIVERIES", default_value_t = 5)]
    pub max_deliveries: u64,
    /// Redis: this worker's consumer name (default: host name and process id).
    #[arg(long, env = "EYE_CONSUMER_NAME")]
    pub consumer_name: Option<String>,
    /// Redis: longest a worker's XREADGROUP waits for new messages before it looks for
    /// abandoned ones and checks for shutdown.
    #[arg(long, env = "EYE_REDIS_BLOCK_MS", default_value_t = 1000)]
    pub redis_block_ms: u64,
    /// Redis: how long ingest keeps retrying an append whose outcome is unknown (the
    /// connection dropped after the command was sent) before it answers 503.
    #[arg(long, env = "EYE_REDIS_ENQUEUE_TIMEOUT_MS", default_value_t = 5000)]
    pub redis_enqueue_timeout_ms: u64,
    /// Redis: most entries kept in the dead-letter stream (oldest trimmed first; each
    /// one is also recorded in the errors log).
    #[arg(long, env = "EYE_REDIS_DEAD_LETTER_MAXLEN", default_value_t = 100_000)]
    pub redis_dead_letter_maxlen: u64,
}

/// When the embedded queue acknowledges events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AckAfter {
    /// Once appended to the journal on disk (stored a few milliseconds later).
    Journal,
    /// Once committed to the store (readable at the 2xx).
    Store,
}

impl QueueConfig {
    /// The commit interval as a duration.
    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }

    /// Checks the Redis settings (only when a Redis URL is set).
    pub fn validate_redis(&self) -> Result<(), String> {
        if self.redis_prefix.is_empty() {
            return Err("the Redis key prefix must not be empty".into());
        }
        if self.max_deliveries == 0 {
            return Err("max deliveries must be at least 1".into());
        }
        if self.claim_idle_ms == 0 || self.redis_block_ms == 0 {
            return Err("the claim idle time and the Redis block time must be positive".into());
        }
        if self.redis_enqueue_timeout_ms == 0 {
            return Err("the Redis enqueue timeout must be positive".into());
        }
        Ok(())
    }
}

/// Ingest validation.
#[derive(Debug, Clone, Args)]
pub struct IngestConfig {
    /// How far in the future an event's timestamp may be, in seconds.
    #[arg(long, env = "EYE_MAX_CLOCK_SKEW_SECS", default_value_t = 300)]
    pub max_clock_skew_secs: i64,
    /// Largest single event, in bytes of JSON.
    #[arg(long, env = "EYE_MAX_EVENT_BYTES", default_value_t = eye_core::MAX_EVENT_BYTES)]
    pub max_event_bytes: usize,
}

impl IngestConfig {
    /// The allowed clock skew as a duration.
    pub fn max_clock_skew(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.max_clock_skew_secs)
    }
}

/// Query pagination.
#[derive(Debug, Clone, Args)]
pub struct QueryConfig {
    /// Page size when a request names none.
    #[arg(long, env = "EYE_PAGE_SIZE", default_value_t = 10)]
    pub default_page_size: u32,
    /// Largest page size a request may ask for.
    #[arg(long, env = "EYE_MAX_PAGE_SIZE", default_value_t = 1000)]
    pub max_page_size: u32,
}

impl QueryConfig {
    /// The limits in eye-core's terms.
    pub fn limits(&self) -> PageLimits {
        PageLimits {
            default_page_size: self.default_page_size,
            max_page_size: self.max_page_size,
        }
    }
}

impl ServeConfig {
    /// The store's `PRAGMA synchronous`: as set, else `full` with a Redis queue (a
    /// worker deletes entries from Redis right after the commit, so the commit must
    /// be on disk) and `normal` with the embedded queue.
    pub fn sqlite_synchronous(&self) -> crate::store::Synchronous {
        use crate::store::Synchronous;
        self.store
            .sqlite_synchronous
            .unwrap_or(if self.queue.redis_url.is_some() {
                Synchronous::Full
            } else {
                Synchronous::Normal
            })
    }

    /// Checks what clap cannot: relations between settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.query.default_page_size == 0
            || self.query.default_page_size > self.query.max_page_size
        {
            return Err("page size default must be between 1 and the maximum".into());
        }
        if self.queue.commit_batch == 0 {
            return Err("commit batch must be at least 1".into());
        }
        if self.ingest.max_clock_skew_secs < 0 {
            return Err("clock skew must not be negative".into());
        }
        if self.ingest.max_event_bytes > self.http.max_body_bytes {
            return Err("the event size limit must not exceed the body limit".into());
        }
        if self.queue.redis_url.is_some() {
            self.queue.validate_redis()?;
        }
        Ok(())
    }

    /// A configuration for tests: every default, the given database, auth on.
    pub fn for_tests(database_url: &str) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: ServeConfig,
        }
        let mut c = Wrapper::parse_from(["eye-server"]).config;
        c.store.database_url = database_url.to_owned();
        c.http.bind = ([127, 0, 0, 1], 0).into();
        // Tests read what they just sent; the journal has tests of its own.
        c.queue.ack_after = AckAfter::Store;
        c
    }
}
