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
    /// Run the HTTP API only, without a worker moving Redis messages to the store
    /// (Redis mode only; scale workers separately with `eye-server worker`).
    #[arg(long, env = "EYE_NO_WORKER")]
    pub no_worker: bool,
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
    /// Retention of events and of the errors log.
    #[command(flatten)]
    pub retention: RetentionConfig,
}

/// Retention: how long events and errors-log entries are kept (docs/lifecycle.md).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Retention")]
pub struct RetentionConfig {
    /// Delete events whose timestamp is more than this many days old, at start and
    /// then every `--retention-interval-secs`, in small batches (PostgreSQL: whole UTC
    /// days, each dropped as a partition once all of it is that old). Default: keep
    /// events forever. Per application: `eye-server apps set-retention NAME
    /// DAYS|forever|default`.
    #[arg(long, env = "EYE_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_days: Option<u32>,
    /// Delete errors-log entries received more than this many days ago (`none`: keep
    /// them forever).
    #[arg(long, env = "EYE_ERRORS_RETENTION_DAYS", default_value = "30")]
    pub errors_retention_days: DaysArg,
    /// Seconds between two retention passes (the first runs at start).
    #[arg(long, env = "EYE_RETENTION_INTERVAL_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_interval_secs: u64,
    /// Most rows deleted in one transaction. Between two, retention waits as long as
    /// the last one took, so ingest and queries keep going.
    #[arg(long, env = "EYE_RETENTION_BATCH", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_batch: u32,
}

impl RetentionConfig {
    /// The interval between passes as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.retention_interval_secs)
    }
}

/// A number of days on the command line, or `none`.
///
/// ```
/// use eye_server::config::DaysArg;
/// assert_eq!("30".parse::<DaysArg>().unwrap(), DaysArg(Some(30)));
/// assert_eq!("none".parse::<DaysArg>().unwrap(), DaysArg(None));
/// assert!("0".parse::<DaysArg>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaysArg(pub Option<u32>);

impl std::str::FromStr for DaysArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("none") {
            return Ok(Self(None));
        }
        match s.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Self(Some(n))),
            _ => Err(format!("`{s}` is not a positive number of days or `none`")),
        }
    }
}

/// HTTP settings.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP")]
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
    /// Most connections served at once; one more is closed as soon as it is accepted
    /// (after a `503` when it can be written at once).
    #[arg(long, env = "EYE_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Most connections one client address (an IPv6 /64) may hold at once, so a
    /// single client cannot take every slot. Behind a reverse proxy every connection
    /// comes from the proxy: raise it to `--max-connections`.
    #[arg(long, env = "EYE_MAX_CONNECTIONS_PER_IP", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,
    /// Path the browser tracker (eye.js) is served at. Ad-blockers block well-known
    /// script names, so a site may pick its own, e.g. `/a1b2.js`.
    #[arg(long, env = "EYE_TRACKER_PATH", default_value = crate::routes::tracker::DEFAULT_TRACKER_PATH)]
    pub tracker_path: String,
    /// On shutdown (SIGTERM, Ctrl-C), how long requests still being answered may run
    /// before their connections are closed: a long export, or a client that stopped
    /// reading. Nothing acknowledged depends on them (an ingest answered 2xx is
    /// already queued); an ingest cut off before its answer is retried by its client.
    #[arg(long, env = "EYE_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
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

    /// The shutdown grace period as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// Where events are stored.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Store")]
pub struct StoreConfig {
    /// Database URL: `sqlite://path.db` (the default; the file is created when
    /// missing) or `postgres://user@host:5432/db` (the database must exist; several
    /// machines may share it). May hold a password: never shown or logged.
    #[arg(
        long,
        env = "EYE_DATABASE_URL",
        default_value = "sqlite://eye.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// SQLite `PRAGMA synchronous`: `full` fsyncs every commit, `normal` only at
    /// checkpoints (a power loss can undo the last commits). Default: `full` with a
    /// Redis queue, whose workers delete stream entries right after the commit;
    /// `normal` with the embedded queue. With the journal, `full` also fdatasyncs each
    /// group of appends before answering.
    #[arg(long, env = "EYE_SQLITE_SYNCHRONOUS", value_enum)]
    pub sqlite_synchronous: Option<crate::store::Synchronous>,
    /// PostgreSQL: most connections this process opens (every API node and worker
    /// has its own pool; size the server's `max_connections` for their sum).
    #[arg(long, env = "EYE_PG_POOL_SIZE", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub pg_pool_size: u32,
    /// PostgreSQL: seconds a request or a worker waits for a connection before the
    /// store is taken as unavailable (ingest answers 503, a worker backs off).
    #[arg(long, env = "EYE_PG_ACQUIRE_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub pg_acquire_timeout_secs: u64,
    /// PostgreSQL: seconds the first connection at start may take before the process
    /// exits with an error naming the server.
    #[arg(long, env = "EYE_PG_CONNECT_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub pg_connect_timeout_secs: u64,
}

impl StoreConfig {
    /// The PostgreSQL pool's settings (SQLite ignores them).
    pub fn pg_pool(&self) -> crate::store::PgPoolSettings {
        crate::store::PgPoolSettings {
            max_connections: self.pg_pool_size,
            acquire_timeout: Duration::from_secs(self.pg_acquire_timeout_secs),
            connect_timeout: Duration::from_secs(self.pg_connect_timeout_secs),
        }
    }
}

/// The queue between ingest and the store.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Queue")]
pub struct QueueConfig {
    /// Embedded mode (no Redis URL): when ingest answers 2xx. `journal`: once the
    /// events are appended to the journal on disk; a background task stores them a
    /// few milliseconds later, and after a crash at the next start. `store`: once they
    /// are committed to the store, so they can be read at the 2xx; each request then
    /// waits for a transaction, which costs most of the ingest rate (BENCHMARKS.md).
    #[arg(long, env = "EYE_ACK_AFTER", value_enum, default_value_t = AckAfter::Journal)]
    pub ack_after: AckAfter,
    /// Largest backlog (messages accepted but not stored) before ingest answers 503,
    /// in Redis mode and with `--ack-after store` (the journal is bounded by
    /// `--max-journal-mib`).
    #[arg(long, env = "EYE_MAX_BACKLOG", default_value_t = 100_000)]
    pub max_backlog: u64,
    /// Store transactions.
    #[command(flatten)]
    pub commit: CommitConfig,
    /// The journal (embedded mode, `--ack-after journal`).
    #[command(flatten)]
    pub journal: JournalSettings,
    /// The Redis queue and its workers.
    #[command(flatten)]
    pub redis: RedisConfig,
}

/// How the queues write to the store.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Store transactions")]
pub struct CommitConfig {
    /// Most events written to the store in one transaction by `--ack-after store`, and
    /// read from Redis in one go by a worker (which may hold several reads in one
    /// transaction under a backlog).
    #[arg(
        id = "commit_batch",
        long = "commit-batch",
        env = "EYE_COMMIT_BATCH",
        default_value_t = 1000
    )]
    pub batch: usize,
    /// `--ack-after store`: longest a queued event waits for its batch to fill before
    /// it is committed.
    #[arg(
        id = "commit_interval_ms",
        long = "commit-interval-ms",
        env = "EYE_COMMIT_INTERVAL_MS",
        default_value_t = 2
    )]
    pub interval_ms: u64,
}

impl CommitConfig {
    /// The commit interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

/// The journal of embedded mode.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Journal (embedded mode)")]
pub struct JournalSettings {
    /// The journal's directory (default: `<database file>.journal`; with a PostgreSQL
    /// or in-memory store there is no default and `--ack-after store` applies unless
    /// this is set).
    #[arg(id = "journal_dir", long = "journal-dir", env = "EYE_JOURNAL_DIR")]
    pub dir: Option<PathBuf>,
    /// Most journal not yet stored, in MiB, before ingest answers 503. It bounds disk,
    /// not memory: the backlog stays on disk.
    #[arg(
        id = "max_journal_mib",
        long = "max-journal-mib",
        env = "EYE_MAX_JOURNAL_MIB",
        default_value_t = 1024
    )]
    pub max_mib: u64,
    /// Most events moved from the journal to the store in one transaction. Larger
    /// transactions cost the store less per event, and a batch is inserted in
    /// event-time order, so indexes take its rows at neighbouring leaves
    /// (BENCHMARKS.md has the drain rate and memory at several sizes). Memory holds
    /// two batches of at most 16 MiB of journal each.
    #[arg(
        id = "journal_batch",
        long = "journal-batch",
        env = "EYE_JOURNAL_BATCH",
        default_value_t = 30_000
    )]
    pub batch: usize,
}

/// The Redis queue and its workers.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Redis queue")]
pub struct RedisConfig {
    /// Redis URL. When set, ingest appends events to a Redis Stream (a 2xx once Redis
    /// confirmed the append) and workers move them into the store; otherwise the
    /// embedded queue (see `--ack-after`) is used. May hold a password, so `--help`
    /// does not show the variable's value.
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "EYE_REDIS_URL",
        hide_env_values = true
    )]
    pub url: Option<String>,
    /// Prefix of every Redis key, so deployments (and tests) can share one Redis.
    #[arg(
        id = "redis_prefix",
        long = "redis-prefix",
        env = "EYE_REDIS_PREFIX",
        default_value = "eye"
    )]
    pub prefix: String,
    /// Pending messages idle this long are claimed from a dead worker.
    #[arg(
        id = "claim_idle_ms",
        long = "claim-idle-ms",
        env = "EYE_CLAIM_IDLE_MS",
        default_value_t = 30_000
    )]
    pub claim_idle_ms: u64,
    /// A message delivered this many times without success is dead-lettered.
    #[arg(
        id = "max_deliveries",
        long = "max-deliveries",
        env = "EYE_MAX_DELIVERIES",
        default_value_t = 5
    )]
    pub max_deliveries: u64,
    /// This worker's consumer name (default: host name and process id).
    #[arg(
        id = "consumer_name",
        long = "consumer-name",
        env = "EYE_CONSUMER_NAME"
    )]
    pub consumer_name: Option<String>,
    /// Longest a worker's XREADGROUP waits for new messages before it looks for
    /// abandoned ones and checks for shutdown.
    #[arg(
        id = "redis_block_ms",
        long = "redis-block-ms",
        env = "EYE_REDIS_BLOCK_MS",
        default_value_t = 1000
    )]
    pub block_ms: u64,
    /// How long ingest keeps retrying an append whose outcome is unknown (the
    /// connection dropped after the command was sent) before it answers 503.
    #[arg(
        id = "redis_enqueue_timeout_ms",
        long = "redis-enqueue-timeout-ms",
        env = "EYE_REDIS_ENQUEUE_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub enqueue_timeout_ms: u64,
    /// Most entries kept in the dead-letter stream (oldest trimmed first; each one is
    /// also recorded in the errors log).
    #[arg(
        id = "redis_dead_letter_maxlen",
        long = "redis-dead-letter-maxlen",
        env = "EYE_REDIS_DEAD_LETTER_MAXLEN",
        default_value_t = 100_000
    )]
    pub dead_letter_maxlen: u64,
}

/// When the embedded queue acknowledges events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AckAfter {
    /// Once appended to the journal on disk (stored a few milliseconds later).
    Journal,
    /// Once committed to the store (readable at the 2xx).
    Store,
}

/// A configuration that clap accepted but that does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The default page size is 0 or above the maximum.
    #[error("the default page size must be between 1 and the maximum page size")]
    PageSize,
    /// A batch size of 0.
    #[error("--{0} must be at least 1")]
    ZeroBatch(&'static str),
    /// A negative clock skew.
    #[error("--max-clock-skew-secs must not be negative")]
    NegativeClockSkew,
    /// The event size limit exceeds the body limit.
    #[error("--max-event-bytes must not exceed --max-body-bytes")]
    EventLargerThanBody,
    /// An empty Redis key prefix.
    #[error("--redis-prefix must not be empty")]
    EmptyRedisPrefix,
    /// A Redis duration or count that must be positive is 0.
    #[error("--{0} must be positive")]
    NotPositive(&'static str),
    /// A tracker path that is not a plain path or that an API route already uses.
    #[error(
        "--tracker-path `{0}` must be a path such as `/eye.js` or `/t/a1b2.js` (letters, \
         digits, `.`, `-`, `_`) outside the API's own routes"
    )]
    TrackerPath(String),
}

/// First path segments the API's own routes use: a tracker path may not start with
/// one of them.
const RESERVED_SEGMENTS: [&str; 10] = [
    "events",
    "sessions",
    "errors",
    "healthz",
    "readyz",
    "openapi.json",
    "docs",
    "schema",
    "metrics",
    "assets",
];

/// Checks a `--tracker-path`: `/` and segments of `[A-Za-z0-9._-]`, none empty or
/// dot-only, the first not one of the API's.
fn valid_tracker_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let mut segments = rest.split('/');
    let first_ok = segments
        .clone()
        .next()
        .is_some_and(|s| !RESERVED_SEGMENTS.iter().any(|r| r.eq_ignore_ascii_case(s)));
    first_ok
        && segments.all(|s| {
            !s.is_empty()
                && s.chars().any(|c| c != '.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        })
}

impl RedisConfig {
    /// Checks the Redis settings (only when a Redis URL is set).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.prefix.is_empty() {
            return Err(ConfigError::EmptyRedisPrefix);
        }
        for (value, flag) in [
            (self.max_deliveries, "max-deliveries"),
            (self.claim_idle_ms, "claim-idle-ms"),
            (self.block_ms, "redis-block-ms"),
            (self.enqueue_timeout_ms, "redis-enqueue-timeout-ms"),
        ] {
            if value == 0 {
                return Err(ConfigError::NotPositive(flag));
            }
        }
        Ok(())
    }
}

/// Ingest validation.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Ingest")]
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
#[command(next_help_heading = "Queries")]
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
            .unwrap_or(if self.queue.redis.url.is_some() {
                Synchronous::Full
            } else {
                Synchronous::Normal
            })
    }

    /// Checks what clap cannot: relations between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.query.default_page_size == 0
            || self.query.default_page_size > self.query.max_page_size
        {
            return Err(ConfigError::PageSize);
        }
        if self.queue.commit.batch == 0 {
            return Err(ConfigError::ZeroBatch("commit-batch"));
        }
        if self.queue.journal.batch == 0 {
            return Err(ConfigError::ZeroBatch("journal-batch"));
        }
        if self.ingest.max_clock_skew_secs < 0 {
            return Err(ConfigError::NegativeClockSkew);
        }
        if self.ingest.max_event_bytes > self.http.max_body_bytes {
            return Err(ConfigError::EventLargerThanBody);
        }
        if self.queue.redis.url.is_some() {
            self.queue.redis.validate()?;
        }
        if !valid_tracker_path(&self.http.tracker_path) {
            return Err(ConfigError::TrackerPath(self.http.tracker_path.clone()));
        }
        Ok(())
    }

    /// A configuration for tests: every default (the journal, as in production), the
    /// given database, port 0, auth on. Only with the `test-util` feature.
    #[cfg(any(test, feature = "test-util"))]
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
        // Tests write errors-log entries received years ago; a test that wants the
        // errors log's retention turns it on.
        c.retention.errors_retention_days = DaysArg(None);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_path_is_a_plain_path_outside_the_api() {
        for ok in ["/eye.js", "/a1b2.js", "/t/x-y_z.js", "/static/eye.min.js"] {
            assert!(valid_tracker_path(ok), "{ok}");
        }
        for bad in [
            "eye.js",
            "/",
            "/events",
            "/events/eye.js",
            "/docs/eye.js",
            "/a//b.js",
            "/../x.js",
            "/a b.js",
            "/x.js?v=1",
            "/{id}",
            "/*x",
        ] {
            assert!(!valid_tracker_path(bad), "{bad}");
        }
    }

    #[test]
    fn a_bad_tracker_path_fails_validation() {
        let mut c = ServeConfig::for_tests("sqlite::memory:");
        assert!(c.validate().is_ok());
        c.http.tracker_path = "/metrics".into();
        assert_eq!(
            c.validate(),
            Err(ConfigError::TrackerPath("/metrics".into()))
        );
    }
}
