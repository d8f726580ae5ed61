//! The Redis Streams queue: many API nodes append to one stream, many workers drain it
//! into the store as one consumer group (see [`crate::worker`]).
//!
//! Key names and the connection come from [`crate::streams`].
//!
//! # Guarantees
//!
//! [`RedisQueue::enqueue`] answers `Ok` only after Redis replied to the append. The
//! backlog check and the appends run in one Lua script, so a batch is appended whole
//! or not at all and the limit cannot be overshot by racing API nodes. Concurrent
//! requests share that script call: one task (`appender`) sends whatever appends are
//! waiting in one round trip and answers each request with its own outcome. The stream is
//! never trimmed with `MAXLEN` (that would silently drop events that are not stored
//! yet): workers delete entries once they are acknowledged, so the stream length *is*
//! the backlog, and a full backlog answers [`QueueError::Full`] instead.
//!
//! When the connection drops after a command was sent, its outcome is unknown. The
//! queue then retries the same batch until Redis answers or the enqueue timeout
//! passes: a retry may append a batch twice, which the store's idempotency on event
//! id absorbs, but an event is never answered 503 while it might still be stored,
//! unless Redis stays unreachable for the whole timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod appender;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisError};
use tokio::sync::{mpsc, oneshot};

use crate::backoff::Backoff;
use crate::streams::{Keys, connect};
use tokio::time::Instant;

use super::{Queue, QueueError};
use crate::config::QueueConfig;
use crate::message::Message;
use appender::Append;

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
            url: c.redis.url.clone().unwrap_or_default(),
            keys: Keys::new(&c.redis.prefix),
            max_backlog: c.max_backlog,
            enqueue_timeout: Duration::from_millis(c.redis.enqueue_timeout_ms),
        }
    }
}

/// How an append attempt failed.
enum Failure {
    /// Redis certainly did not apply the command (refused connection, error reply).
    NotApplied(String),
    /// The command may or may not have been applied (dropped connection, timeout).
    Unknown(String),
}

fn classify(e: RedisError) -> Failure {
    if e.is_connection_refusal() {
        return Failure::NotApplied(e.to_string());
    }
    match e.kind() {
        // An error reply: a script that fails before its first write (OOM, LOADING,
        // a read-only replica) has appended nothing, and ours cannot fail later.
        ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::AuthenticationFailed => {
            Failure::NotApplied(e.to_string())
        }
        _ => Failure::Unknown(e.to_string()),
    }
}

/// The Redis Streams queue, the producer side. Cheap to share behind an `Arc`. It
/// never starts a worker: the process wiring ([`crate::wiring`]) owns the workers it
/// starts and stops them after the queue is closed.
pub struct RedisQueue {
    conn: ConnectionManager,
    config: RedisQueueConfig,
    /// The batching appender task's channel; the task ends when the queue is dropped.
    appends: mpsc::Sender<Append>,
    closed: AtomicBool,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("keys", &self.config.keys)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// Creates the queue and starts its appender task on the current Tokio runtime
    /// (so it must be called within one). Fails only on a malformed URL; an
    /// unreachable Redis is reported by [`Queue::ready`] and by 503s until it comes
    /// back.
    ///
    /// ```no_run
    /// # async fn demo() -> anyhow::Result<()> {
    /// use eye_server::queue::Queue;
    /// use eye_server::queue::redis::{RedisQueue, RedisQueueConfig};
    /// use eye_server::streams::Keys;
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
        let (appends, rx) = mpsc::channel(appender::CHANNEL_CAPACITY);
        tokio::spawn(appender::run(rx, conn.clone(), config.keys.stream.clone()));
        Ok(Self {
            conn,
            config,
            appends,
            closed: AtomicBool::new(false),
        })
    }

    /// The key names this queue uses.
    pub fn keys(&self) -> &Keys {
        &self.config.keys
    }

    /// One attempt: hands the batch to the appender task and waits for its outcome.
    async fn append_once(
        &self,
        payloads: &Arc<[String]>,
        limit: u64,
    ) -> Result<(bool, u64), Failure> {
        let (reply, outcome) = oneshot::channel();
        let append = Append {
            payloads: Arc::clone(payloads),
            limit,
            reply,
        };
        if self.appends.send(append).await.is_err() {
            // Never reached the task: certainly not appended.
            return Err(Failure::NotApplied(
                "the Redis appender task has stopped".into(),
            ));
        }
        match outcome.await {
            Ok(Ok(appended)) => Ok(appended),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(Failure::Unknown(
                "the Redis appender task stopped during an append".into(),
            )),
        }
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
        let payloads: Arc<[String]> = messages
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()
            .map_err(|e| QueueError::Unavailable(format!("cannot encode a message: {e}")))?;
        let n = payloads.len() as u64;
        let deadline = Instant::now() + self.config.enqueue_timeout;
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(250));
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
                    crate::metrics::static_counter(
                        crate::metrics::names::QUEUE_ENQUEUED,
                        &[("queue", "redis")],
                    )
                    .increment(n);
                    return Ok(());
                }
                Ok(Ok((false, backlog))) => {
                    metrics::counter!(crate::metrics::names::QUEUE_REJECTED, "queue" => "redis", "reason" => "full")
                        .increment(n);
                    return Err(QueueError::Full {
                        backlog,
                        limit: self.config.max_backlog,
                    });
                }
                Ok(Err(failure)) => failure,
                Err(_elapsed) => Failure::Unknown("timed out".into()),
            };
            match failure {
                Failure::NotApplied(e) if !maybe_appended => {
                    metrics::counter!(crate::metrics::names::QUEUE_REJECTED, "queue" => "redis", "reason" => "unavailable")
                        .increment(n);
                    return Err(QueueError::Unavailable(e));
                }
                Failure::NotApplied(e) => {
                    tracing::debug!(error = %e, "retrying an append of unknown outcome");
                }
                Failure::Unknown(why) => {
                    maybe_appended = true;
                    tracing::debug!(error = %why, "append outcome unknown; retrying");
                }
            }
            if Instant::now() + backoff.peek() >= deadline {
                metrics::counter!(crate::metrics::names::QUEUE_REJECTED, "queue" => "redis", "reason" => "unknown_outcome")
                    .increment(n);
                tracing::warn!(
                    events = n,
                    "Redis did not answer within the enqueue timeout; answering 503 for a batch that may have been appended"
                );
                return Err(QueueError::Unavailable(
                    "Redis did not confirm the append in time".into(),
                ));
            }
            backoff.wait().await;
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
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn close(&self) {
        // Every accepted message is already in Redis: nothing to drain.
        self.closed.store(true, Ordering::Release);
    }
}
