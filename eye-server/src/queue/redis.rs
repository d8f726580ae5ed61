//! The Redis Streams queue: many API nodes append to one stream, many workers drain it
//! into the store as one consumer group (see [`crate::worker`]).
//!
//! # Keys
//!
//! Every key starts with the configured prefix (`--redis-prefix`, default `eye`), so
//! several deployments, and parallel tests, can share one Redis:
//!
//! | key | what |
//! |---|---|
//! | `<prefix>:events` | the stream; one entry per [`Message`], field `m` = its JSON |
//! | `<prefix>:dead` | the dead-letter stream (undecodable or poison messages) |
//!
//! The consumer group is called `workers`.
//!
//! # Guarantees
//!
//! [`RedisQueue::enqueue`] answers `Ok` only after Redis replied to the append. The
//! backlog check and the appends run in one Lua script, so a batch is appended whole
//! or not at all and the limit cannot be overshot by racing API nodes. The stream is
//! never trimmed with `MAXLEN` (that would silently drop events that are not stored
//! yet): workers delete entries once they are acknowledged, so the stream length *is*
//! the backlog, and a full backlog answers [`QueueError::Full`] instead.
//!
//! When the connection drops after a command was sent, its outcome is unknown. The
//! queue then retries the same batch until Redis answers or the enqueue timeout
//! passes: a retry may append a batch twice, which the store's idempotency on event
//! id absorbs, but an event is never answered 503 while it might still be stored,
//! unless Redis stays unreachable for the whole timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Message, Queue, QueueError};
use crate::config::QueueConfig;
use crate::store::Store;
use crate::worker::{Worker, WorkerConfig, WorkerHandle};

/// The names of the Redis keys and the consumer group of one deployment.
///
/// ```
/// let keys = eye_server::queue::redis::Keys::new("eye-test-1");
/// assert_eq!(keys.stream, "eye-test-1:events");
/// assert_eq!(keys.dead, "eye-test-1:dead");
/// assert_eq!(keys.group, "workers");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The stream of queued messages.
    pub stream: String,
    /// The dead-letter stream.
    pub dead: String,
    /// The consumer group the workers share.
    pub group: String,
}

impl Keys {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            stream: format!("{prefix}:events"),
            dead: format!("{prefix}:dead"),
            group: "workers".to_owned(),
        }
    }
}

/// The entry field that holds a message's JSON.
pub const MESSAGE_FIELD: &str = "m";

/// Appends a batch unless the backlog is full. `ARGV[1]` is the limit (0: none), the
/// rest are the messages. Returns `{1, length}` when appended, `{0, length}` when full.
/// Like the embedded queue, an empty stream always takes a batch, however large.
const ENQUEUE_SCRIPT: &str = r"
local len = redis.call('XLEN', KEYS[1])
local limit = tonumber(ARGV[1])
local n = #ARGV - 1
if limit > 0 and len > 0 and len + n > limit then
  return {0, len}
end
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[i])
end
return {1, len + n}
";

/// Moves up to `ARGV[1]` entries from the dead-letter stream (`KEYS[1]`) back onto the
/// event stream (`KEYS[2]`), atomically. Returns how many it moved.
const REPLAY_SCRIPT: &str = r"
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])
for _, e in ipairs(entries) do
  local fields = e[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'm' then redis.call('XADD', KEYS[2], '*', 'm', fields[i + 1]) end
  end
  redis.call('XDEL', KEYS[1], e[1])
end
return #entries
";

/// Moves every dead-lettered message back onto the stream, for workers to try again
/// (after a fix, or after upgrading workers that did not know a message type). Returns
/// how many were moved. Safe to run while workers run; a message that fails again is
/// dead-lettered again.
///
/// ```no_run
/// # async fn demo() -> Result<(), redis::RedisError> {
/// use eye_server::queue::redis::{Keys, replay_dead_letters};
/// let moved = replay_dead_letters("redis://127.0.0.1:6379/", &Keys::new("eye")).await?;
/// println!("{moved} messages back on the stream");
/// # Ok(()) }
/// ```
pub async fn replay_dead_letters(url: &str, keys: &Keys) -> Result<u64, RedisError> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let script = Script::new(REPLAY_SCRIPT);
    let mut total = 0;
    loop {
        let moved: u64 = script
            .key(&keys.dead)
            .key(&keys.stream)
            .arg(500)
            .invoke_async(&mut conn)
            .await?;
        total += moved;
        if moved == 0 {
            return Ok(total);
        }
    }
}

/// Settings of the Redis queue, built from [`QueueConfig`].
#[derive(Debug, Clone)]
pub struct RedisQueueConfig {
    /// The Redis URL (may hold a password: never logged).
    pub url: String,
    /// Key names.
    pub keys: Keys,
    /// Largest backlog (stream length) before `enqueue` answers [`QueueError::Full`].
    pub max_backlog: u64,
    /// How long `enqueue` retries an append whose outcome is unknown.
    pub enqueue_timeout: Duration,
}

impl From<&QueueConfig> for RedisQueueConfig {
    fn from(c: &QueueConfig) -> Self {
        Self {
            url: c.redis_url.clone().unwrap_or_default(),
            keys: Keys::new(&c.redis_prefix),
            max_backlog: c.max_backlog,
            enqueue_timeout: Duration::from_millis(c.redis_enqueue_timeout_ms),
        }
    }
}

/// Opens a connection manager: one multiplexed connection that reconnects by itself.
/// It is created lazily, so a service starts (and reports not ready) while Redis is
/// down. Connection attempts fail fast (few retries) so ingest can answer 503 quickly;
/// the next command triggers the next attempt.
pub fn connect(url: &str, response_timeout: Duration) -> Result<ConnectionManager, RedisError> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(response_timeout));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// How an append attempt failed.
enum Failure {
    /// Redis certainly did not apply the command (refused connection, error reply).
    NotApplied(RedisError),
    /// The command may or may not have been applied (dropped connection, timeout).
    Unknown(String),
}

fn classify(e: RedisError) -> Failure {
    if e.is_connection_refusal() {
        return Failure::NotApplied(e);
    }
    match e.kind() {
        // An error reply: a script that fails before its first write (OOM, LOADING,
        // a read-only replica) has appended nothing, and ours cannot fail later.
        ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::AuthenticationFailed => {
            Failure::NotApplied(e)
        }
        _ => Failure::Unknown(e.to_string()),
    }
}

/// The Redis Streams queue. Cheap to share behind an `Arc`; optionally owns an
/// embedded worker (`serve` without `--no-worker`) that [`Queue::close`] stops.
pub struct RedisQueue {
    conn: ConnectionManager,
    config: RedisQueueConfig,
    script: Script,
    closed: AtomicBool,
    worker: Mutex<Option<WorkerHandle>>,
    store: Option<Store>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("keys", &self.config.keys)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// Creates the queue. Fails only on a malformed URL; an unreachable Redis is
    /// reported by [`Queue::ready`] and by 503s until it comes back.
    ///
    /// ```no_run
    /// # async fn demo() -> anyhow::Result<()> {
    /// use eye_server::queue::Queue;
    /// use eye_server::queue::redis::{Keys, RedisQueue, RedisQueueConfig};
    /// let queue = RedisQueue::connect(RedisQueueConfig {
    ///     url: "redis://127.0.0.1:6379".into(),
    ///     keys: Keys::new("eye"),
    ///     max_backlog: 100_000,
    ///     enqueue_timeout: std::time::Duration::from_secs(5),
    /// })?;
    /// queue.ready().await?;
    /// # Ok(()) }
    /// ```
    pub fn connect(config: RedisQueueConfig) -> Result<Self, RedisError> {
        let conn = connect(&config.url, Duration::from_secs(2))?;
        Ok(Self {
            conn,
            config,
            script: Script::new(ENQUEUE_SCRIPT),
            closed: AtomicBool::new(false),
            worker: Mutex::new(None),
            store: None,
        })
    }

    /// Makes [`Queue::ready`] check `store` too, so `/readyz` of an API node reports
    /// both Redis and the store its queries read.
    #[must_use]
    pub fn with_store_check(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Starts a worker in this process that drains the stream into `store`; it stops
    /// when the queue is closed.
    pub async fn start_worker(&self, store: Store, config: WorkerConfig) -> Result<(), RedisError> {
        let conn = connect(&self.config.url, config.response_timeout())?;
        let handle = Worker::new(conn, std::sync::Arc::new(store), config).spawn();
        *self.worker.lock().await = Some(handle);
        Ok(())
    }

    /// The key names this queue uses.
    pub fn keys(&self) -> &Keys {
        &self.config.keys
    }

    async fn append_once(
        &self,
        payloads: &[String],
        limit: u64,
    ) -> Result<(bool, u64), RedisError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.script.key(&self.config.keys.stream);
        invocation.arg(limit);
        for p in payloads {
            invocation.arg(p);
        }
        let (appended, len): (i64, u64) = invocation.invoke_async(&mut conn).await?;
        Ok((appended == 1, len))
    }
}

#[async_trait]
impl Queue for RedisQueue {
    async fn enqueue(&self, messages: Vec<Message>) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(QueueError::ShuttingDown);
        }
        let payloads = messages
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueueError::Unavailable(format!("cannot encode a message: {e}")))?;
        let n = payloads.len() as u64;
        let deadline = Instant::now() + self.config.enqueue_timeout;
        let mut pause = Duration::from_millis(20);
        // Set once an attempt may have appended the batch: from then on only a reply
        // from Redis ends the loop, and the backlog limit no longer applies (the batch
        // may already count towards it).
        let mut maybe_appended = false;
        loop {
            let limit = if maybe_appended {
                0
            } else {
                self.config.max_backlog
            };
            let attempt = tokio::time::timeout_at(deadline, self.append_once(&payloads, limit));
            let failure = match attempt.await {
                Ok(Ok((true, _))) => {
                    metrics::counter!("eye_queue_enqueued_total", "queue" => "redis").increment(n);
                    return Ok(());
                }
                Ok(Ok((false, backlog))) => {
                    metrics::counter!("eye_queue_rejected_total", "queue" => "redis", "reason" => "full")
                        .increment(n);
                    return Err(QueueError::Full {
                        backlog,
                        limit: self.config.max_backlog,
                    });
                }
                Ok(Err(e)) => classify(e),
                Err(_elapsed) => Failure::Unknown("timed out".into()),
            };
            match failure {
                Failure::NotApplied(e) if !maybe_appended => {
                    metrics::counter!("eye_queue_rejected_total", "queue" => "redis", "reason" => "unavailable")
                        .increment(n);
                    return Err(QueueError::Unavailable(e.to_string()));
                }
                Failure::NotApplied(e) => {
                    tracing::debug!(error = %e, "retrying an append of unknown outcome");
                }
                Failure::Unknown(why) => {
                    maybe_appended = true;
                    tracing::debug!(error = %why, "append outcome unknown; retrying");
                }
            }
            if Instant::now() + pause >= deadline {
                metrics::counter!("eye_queue_rejected_total", "queue" => "redis", "reason" => "unknown_outcome")
                    .increment(n);
                tracing::warn!(
                    events = n,
                    "Redis did not answer within the enqueue timeout; answering 503 for a batch that may have been appended"
                );
                return Err(QueueError::Unavailable(
                    "Redis did not confirm the append in time".into(),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    async fn backlog(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let len: u64 = redis::cmd("XLEN")
            .arg(&self.config.keys.stream)
            .query_async(&mut conn)
            .await
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        Ok(len)
    }

    async fn ready(&self) -> Result<(), QueueError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(QueueError::ShuttingDown);
        }
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(Duration::from_secs(2), ping).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(QueueError::Unavailable(format!("redis: {e}"))),
            Err(_) => return Err(QueueError::Unavailable("redis: ping timed out".into())),
        }
        if let Some(store) = &self.store {
            store
                .ping()
                .await
                .map_err(|e| QueueError::Unavailable(format!("store: {e}")))?;
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn close(&self) {
        // Every accepted message is already in Redis; only an embedded worker needs
        // to finish its batch.
        self.closed.store(true, Ordering::Release);
        if let Some(worker) = self.worker.lock().await.take() {
            worker.stop().await;
        }
    }
}
