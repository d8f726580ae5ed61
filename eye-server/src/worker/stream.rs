//! The Redis commands a worker sends, as one consumer of the group.

use std::collections::HashMap;
use std::time::Duration;

use redis::RedisError;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};

use crate::streams::{Keys, MESSAGE_FIELD};

/// Removes consumers with nothing pending that have been idle at least `ARGV[2]` ms,
/// except `ARGV[3]` (the caller). Atomic, so a consumer cannot receive entries between
/// the check and the removal (which would orphan them). Returns how many it removed.
const FORGET_CONSUMERS_SCRIPT: &str = r"
local removed = 0
local min_idle = tonumber(ARGV[2])
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['pending'] == 0 and f['idle'] >= min_idle and f['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    removed = removed + 1
  end
end
return removed
";

/// What a dead letter carries besides the raw message.
pub(super) struct DeadLetter<'a> {
    pub entry_id: &'a str,
    pub raw: &'a [u8],
    pub reason: &'a str,
    pub deliveries: u64,
    pub maxlen: u64,
}

/// One consumer of the group, on a connection of its own (its reads block).
pub(super) struct Consumer {
    conn: ConnectionManager,
    keys: Keys,
    name: String,
}

impl Consumer {
    pub(super) fn new(conn: ConnectionManager, keys: Keys, name: String) -> Self {
        Self { conn, keys, name }
    }

    pub(super) fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Creates the group (and the stream) unless it exists. From `0`: acknowledged
    /// entries are deleted, so everything still in the stream is unstored, including
    /// what the API appended before any worker existed.
    pub(super) async fn ensure_group(&mut self) -> Result<(), RedisError> {
        let created: Result<(), _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn)
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Up to `count` entries never delivered before, waiting at most `block` (`None`:
    /// answers at once, possibly with nothing).
    pub(super) async fn read_new(
        &mut self,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<StreamId>, RedisError> {
        self.read_group(count, block, ">").await
    }

    /// Up to `count` of the entries this consumer holds (read but not acknowledged)
    /// with ids after `after` (`0-0`: from the oldest), oldest first: its history in
    /// the group, not new entries.
    pub(super) async fn read_own_pending(
        &mut self,
        count: usize,
        after: &str,
    ) -> Result<Vec<StreamId>, RedisError> {
        self.read_group(count, None, after).await
    }

    /// XREADGROUP from `from` (`>`: never delivered; `0`: this consumer's pending).
    async fn read_group(
        &mut self,
        count: usize,
        block: Option<Duration>,
        from: &str,
    ) -> Result<Vec<StreamId>, RedisError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.keys.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        let reply: Option<StreamReadReply> = cmd
            .arg("STREAMS")
            .arg(&self.keys.stream)
            .arg(from)
            .query_async(&mut self.conn)
            .await?;
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    /// Claims up to `count` entries idle at least `min_idle`, scanning from `cursor`;
    /// returns the next cursor (`0-0` when the scan wrapped) and the entries.
    pub(super) async fn claim(
        &mut self,
        cursor: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<(String, Vec<StreamId>), RedisError> {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .arg(&self.name)
            .arg(min_idle.as_millis() as u64)
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn)
            .await?;
        Ok((reply.next_stream_id, reply.claimed))
    }

    /// How often each of `entries` was delivered (XPENDING per entry, pipelined).
    pub(super) async fn delivery_counts(
        &mut self,
        entries: &[StreamId],
    ) -> Result<HashMap<String, u64>, RedisError> {
        if entries.is_empty() {
            return Ok(HashMap::new());
        }
        let mut pipe = redis::pipe();
        for entry in entries {
            pipe.cmd("XPENDING")
                .arg(&self.keys.stream)
                .arg(&self.keys.group)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let replies: Vec<StreamPendingCountReply> = pipe.query_async(&mut self.conn).await?;
        Ok(replies
            .into_iter()
            .flat_map(|r| r.ids)
            .map(|p| (p.id, p.times_delivered as u64))
            .collect())
    }

    /// Acknowledges and deletes entries in one MULTI: the stream keeps only what is not
    /// stored yet.
    pub(super) async fn ack(&mut self, ids: &[&str]) -> Result<(), RedisError> {
        let _: (u64, u64) = redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .arg(ids)
            .cmd("XDEL")
            .arg(&self.keys.stream)
            .arg(ids)
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Appends to the dead-letter stream and acknowledges + deletes the entry, in one
    /// MULTI (so a crash cannot dead-letter it twice or lose it).
    pub(super) async fn move_to_dead(&mut self, d: DeadLetter<'_>) -> Result<(), RedisError> {
        let _: (String, u64, u64) = redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(&self.keys.dead)
            .arg("MAXLEN")
            .arg("~")
            .arg(d.maxlen)
            .arg("*")
            .arg(MESSAGE_FIELD)
            .arg(d.raw)
            .arg("source_id")
            .arg(d.entry_id)
            .arg("reason")
            .arg(d.reason)
            .arg("deliveries")
            .arg(d.deliveries)
            .arg("consumer")
            .arg(&self.name)
            .cmd("XACK")
            .arg(&self.keys.stream)
            .arg(&self.keys.group)
            .arg(d.entry_id)
            .cmd("XDEL")
            .arg(&self.keys.stream)
            .arg(d.entry_id)
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Entries not yet stored (acknowledged entries are deleted).
    pub(super) async fn backlog(&mut self) -> Result<u64, RedisError> {
        redis::cmd("XLEN")
            .arg(&self.keys.stream)
            .query_async(&mut self.conn)
            .await
    }

    /// Removes consumers idle at least `after` with nothing pending; returns how many.
    pub(super) async fn forget_idle(&mut self, after: Duration) -> Result<u64, RedisError> {
        redis::Script::new(FORGET_CONSUMERS_SCRIPT)
            .key(&self.keys.stream)
            .arg(&self.keys.group)
            .arg(after.as_millis() as u64)
            .arg(&self.name)
            .invoke_async(&mut self.conn)
            .await
    }
}
