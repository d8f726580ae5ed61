//! The Redis Streams plumbing that both sides share: the key names of a deployment,
//! the entry field that holds a message, and the connection every Redis user opens.
//! The producer ([`crate::queue::redis`]) and the consumer ([`crate::worker`]) import
//! this module; it imports neither.
//!
//! # Keys
//!
//! Every key starts with the configured prefix (`--redis-prefix`, default `eye`), so
//! several deployments, and parallel tests, can share one Redis:
//!
//! | key | what |
//! |---|---|
//! | `<prefix>:events` | the stream; one entry per [`crate::message::Message`], field `m` = its JSON |
//! | `<prefix>:dead` | the dead-letter stream (undecodable or poison messages) |
//!
//! The consumer group is called `workers`.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};

/// The names of the Redis keys and the consumer group of one deployment.
///
/// ```
/// let keys = eye_server::streams::Keys::new("eye-test-1");
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
/// use eye_server::streams::{Keys, replay_dead_letters};
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

/// Deletes from the dead-letter stream every entry whose message carries `session_id`
/// ([`crate::message::carries_session`]), reading it 500 entries at a time. Returns how
/// many it deleted. Safe while workers run: a new dead letter is appended after the
/// point read, and a replay (which moves entries back to the stream) leaves nothing
/// to delete here; the store drops a replayed event of an erased session.
///
/// ```no_run
/// # async fn demo() -> Result<(), redis::RedisError> {
/// use eye_server::streams::{Keys, erase_dead_letters};
/// let n = erase_dead_letters("redis://127.0.0.1:6379/", &Keys::new("eye"), "abc").await?;
/// println!("{n} dead letters of session abc deleted");
/// # Ok(()) }
/// ```
pub async fn erase_dead_letters(
    url: &str,
    keys: &Keys,
    session_id: &str,
) -> Result<u64, RedisError> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut start = "-".to_owned();
    let mut deleted = 0;
    loop {
        let page: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&keys.dead)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await?;
        let Some(last) = page.ids.last() else {
            return Ok(deleted);
        };
        // Exclusive start for the next page.
        start = format!("({}", last.id);
        let doomed: Vec<&str> = page
            .ids
            .iter()
            .filter(|entry| match entry.map.get(MESSAGE_FIELD) {
                Some(redis::Value::BulkString(bytes)) => {
                    crate::message::carries_session(&String::from_utf8_lossy(bytes), session_id)
                }
                _ => false,
            })
            .map(|entry| entry.id.as_str())
            .collect();
        if !doomed.is_empty() {
            let n: u64 = redis::cmd("XDEL")
                .arg(&keys.dead)
                .arg(&doomed)
                .query_async(&mut conn)
                .await?;
            deleted += n;
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
