//! Settings of one worker.

use std::time::Duration;

use crate::config::QueueConfig;
use crate::streams::Keys;

/// How many reads of `batch` entries one transaction may hold under a backlog: larger
/// transactions cost the store far less CPU per event, up to about 10,000 entries
/// (docs/bench/redis-perf.md has the measurements).
const READ_AHEAD_BATCHES: usize = 10;

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Key names (shared with the API).
    pub keys: Keys,
    /// This worker's consumer name, unique in the group.
    pub consumer: String,
    /// Most entries one read (XREADGROUP) returns; a transaction holds this many
    /// unless a backlog makes the worker read ahead.
    pub batch: usize,
    /// Most entries written in one transaction: while a batch commits and the stream
    /// has a backlog, the worker reads ahead up to this many for the next one (fewer,
    /// larger commits cost SQLite far less per event). At least `batch`.
    pub max_commit: usize,
    /// Longest one XREADGROUP waits for new entries.
    pub block: Duration,
    /// Pending entries idle this long are claimed from their consumer.
    pub claim_idle: Duration,
    /// An entry delivered more often than this is dead-lettered.
    pub max_deliveries: u64,
    /// Most entries kept in the dead-letter stream.
    pub dead_letter_maxlen: u64,
    /// Consumers idle this long with nothing pending (workers that exited) are removed
    /// from the group, so restarts with fresh names do not pile up.
    pub forget_consumers_after: Duration,
}

impl WorkerConfig {
    /// The worker settings of a queue configuration; the consumer name defaults to
    /// `<host>-<pid>`.
    ///
    /// ```
    /// let config = eye_server::config::ServeConfig::for_tests("sqlite::memory:");
    /// let worker = eye_server::worker::WorkerConfig::from_queue_config(&config.queue);
    /// assert_eq!(worker.keys.stream, "eye:events");
    /// assert_eq!(worker.max_commit, 10 * worker.batch);
    /// assert!(worker.consumer.ends_with(&std::process::id().to_string()));
    /// ```
    pub fn from_queue_config(c: &QueueConfig) -> Self {
        let batch = c.commit.batch.max(1);
        Self {
            keys: Keys::new(&c.redis.prefix),
            consumer: c
                .redis
                .consumer_name
                .clone()
                .unwrap_or_else(default_consumer_name),
            batch,
            max_commit: batch.saturating_mul(READ_AHEAD_BATCHES),
            block: Duration::from_millis(c.redis.block_ms),
            claim_idle: Duration::from_millis(c.redis.claim_idle_ms),
            max_deliveries: c.redis.max_deliveries.max(1),
            dead_letter_maxlen: c.redis.dead_letter_maxlen,
            forget_consumers_after: Duration::from_secs(3600),
        }
    }

    /// The response timeout the worker's connection needs: longer than a blocking
    /// read.
    pub fn response_timeout(&self) -> Duration {
        self.block + Duration::from_secs(5)
    }

    pub(super) fn claim_interval(&self) -> Duration {
        (self.claim_idle / 4).clamp(Duration::from_millis(20), Duration::from_secs(5))
    }

    pub(super) fn forget_interval(&self) -> Duration {
        (self.forget_consumers_after / 4).clamp(Duration::from_millis(20), Duration::from_secs(300))
    }
}

fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!("{host}-{}", std::process::id())
}
