//! The batching appender: one task owns the producer's Redis connection and appends
//! the batches of concurrent requests in one script call, so under load a request
//! costs a share of a round trip instead of a whole one (issue 18).
//!
//! Each request hands its batch (already encoded) to the task over a bounded channel
//! with a `oneshot` for its answer. The task takes the first waiting append, then every
//! other one already waiting (up to [`MAX_GROUP_MESSAGES`]), runs [`GROUP_SCRIPT`]
//! once for all of them, and answers each request with its own outcome (appended, or
//! refused because the backlog is full). One call is in flight at a time: whatever
//! arrives meanwhile forms the next group, so the groups grow with the load, and a
//! lone request is sent at once, as before.
//!
//! The script is atomic, so each request's batch is still appended whole or not at
//! all, and each request's backlog check sees the appends of the requests before it in
//! the group, exactly as if their scripts had run one after the other. What the
//! caller does with a failure (503, or retrying an append of unknown outcome) stays
//! per request, in [`super::RedisQueue`].

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::{RedisError, Script};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{names, static_histogram};

/// Appends the batches of several requests, in order. `ARGV[1]` is the number of
/// requests; then, per request, its backlog limit (0: none), its message count `n`,
/// and its `n` messages. Returns, per request, `1` or `0` (appended, or refused
/// because the backlog was full) and the stream length after it.
///
/// Like the single-request script before it, every check comes before the first
/// write of its request and nothing after a write can fail: Redis refuses a script
/// for lack of memory only at its first write, never halfway, so a group too is
/// appended per request whole or not at all.
pub(super) const GROUP_SCRIPT: &str = r"
local len = redis.call('XLEN', KEYS[1])
local out = {}
local i = 2
for r = 1, tonumber(ARGV[1]) do
  local limit = tonumber(ARGV[i])
  local n = tonumber(ARGV[i + 1])
  i = i + 2
  if limit > 0 and len > 0 and len + n > limit then
    out[#out + 1] = 0
  else
    for j = i, i + n - 1 do
      redis.call('XADD', KEYS[1], '*', 'm', ARGV[j])
    end
    len = len + n
    out[#out + 1] = 1
  end
  out[#out + 1] = len
  i = i + n
end
return out
";

/// Most messages in one script call (a single request larger than this is sent alone):
/// a script blocks Redis while it runs, so a group stays short.
pub(super) const MAX_GROUP_MESSAGES: usize = 1000;

/// Most appends waiting for the task; past it, requests wait for room (within their
/// enqueue timeout).
pub(super) const CHANNEL_CAPACITY: usize = 4096;

/// What Redis answered for one request's batch: appended or not (backlog full), and
/// the stream length after it.
pub(super) type Outcome = Result<(bool, u64), RedisError>;

/// One request's batch, waiting for the task.
pub(super) struct Append {
    /// The encoded messages (shared with the request, which may retry them).
    pub(super) payloads: Arc<[String]>,
    /// The backlog limit for this attempt (0: none).
    pub(super) limit: u64,
    /// Where the outcome goes.
    pub(super) reply: oneshot::Sender<Outcome>,
}

/// The task: runs until every sender is gone (the queue was dropped), answering all
/// it took.
pub(super) async fn run(mut rx: mpsc::Receiver<Append>, conn: ConnectionManager, stream: String) {
    let script = Script::new(GROUP_SCRIPT);
    let mut group: Vec<Append> = Vec::new();
    // An append taken from the channel that did not fit the previous group.
    let mut held: Option<Append> = None;
    loop {
        let first = match held.take() {
            Some(a) => a,
            None => match rx.recv().await {
                Some(a) => a,
                None => return,
            },
        };
        let mut messages = first.payloads.len();
        push_live(&mut group, first);
        while messages < MAX_GROUP_MESSAGES {
            let Ok(next) = rx.try_recv() else { break };
            if messages + next.payloads.len() > MAX_GROUP_MESSAGES {
                held = Some(next);
                break;
            }
            messages += next.payloads.len();
            push_live(&mut group, next);
        }
        if group.is_empty() {
            continue;
        }
        let outcomes = append_group(&script, &conn, &stream, &group).await;
        static_histogram(names::REDIS_APPEND_GROUP_REQUESTS, &[]).record(group.len() as f64);
        for (append, outcome) in group.drain(..).zip(outcomes) {
            // A request that stopped waiting (its enqueue timed out) learns nothing.
            let _ = append.reply.send(outcome);
        }
    }
}

/// Adds `append` to the group unless its request stopped waiting: a request that
/// already answered (503 after its enqueue timeout) must not be appended afterwards.
fn push_live(group: &mut Vec<Append>, append: Append) {
    if !append.reply.is_closed() {
        group.push(append);
    }
}

/// Runs the script once for `group`; one outcome per request, in order.
async fn append_group(
    script: &Script,
    conn: &ConnectionManager,
    stream: &str,
    group: &[Append],
) -> Vec<Outcome> {
    let mut invocation = script.key(stream);
    invocation.arg(group.len());
    for a in group {
        invocation.arg(a.limit).arg(a.payloads.len());
        for p in a.payloads.iter() {
            invocation.arg(p);
        }
    }
    let mut conn = conn.clone();
    match invocation.invoke_async::<Vec<u64>>(&mut conn).await {
        Ok(reply) if reply.len() == 2 * group.len() => reply
            .chunks_exact(2)
            .map(|pair| Ok((pair[0] == 1, pair[1])))
            .collect(),
        Ok(reply) => {
            // Cannot happen with this script; if it did, the outcome is unknown: the
            // requests retry (a retry may append twice; the store is idempotent).
            let e = RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "append script reply",
                format!("{} values for {} requests", reply.len(), group.len()),
            ));
            vec![Err(e); group.len()]
        }
        Err(e) => vec![Err(e); group.len()],
    }
}
