//! The worker's pipeline against a real Redis and a real SQLite file: it reads the next
//! entries while a batch commits, grows the next transaction from a backlog up to
//! `max_commit`, and still acknowledges nothing before its commit.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use eye_server::message::Message;
use eye_server::queue::Queue;
use eye_server::sink::Sink;
use eye_server::store::testing::assert_stored_once;
use eye_server::store::{Store, StoreError, Synchronous, WriteOutcome};
use eye_server::streams::{Keys, connect};
use eye_server::worker::{Worker, WorkerConfig, WorkerHandle};
use redis::AsyncCommands;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::harness::{TestRedis, accepted, conn, eventually, queue, unique_prefix, worker_config};

/// A real store behind a gate: the first write waits until the test opens the gate;
/// every write's size is recorded; while `down` is set, writes fail as a locked
/// database does (a transient error).
struct GatedStore {
    store: Store,
    gate: Semaphore,
    first: AtomicBool,
    down: AtomicBool,
    sizes: Mutex<Vec<usize>>,
}

impl GatedStore {
    async fn open(dir: &tempfile::TempDir) -> Arc<Self> {
        let url = format!("sqlite://{}", dir.path().join("eye.db").display());
        let store = Store::open_with(&url, Synchronous::Full)
            .await
            .expect("the store opens");
        Arc::new(Self {
            store,
            gate: Semaphore::new(0),
            first: AtomicBool::new(true),
            down: AtomicBool::new(false),
            sizes: Mutex::new(Vec::new()),
        })
    }

    fn open_gate(&self) {
        self.gate.add_permits(1);
    }

    fn sizes(&self) -> Vec<usize> {
        self.sizes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The ids stored, each checked to be stored once by every counter a double
    /// store would break.
    async fn stored_once(&self) -> HashSet<Uuid> {
        assert_stored_once(&self.store).await
    }

    /// How many events the store counts.
    async fn counted(&self) -> u64 {
        self.store.total_events().await.expect("total")
    }
}

#[async_trait]
impl Sink for GatedStore {
    async fn write_batch(&self, messages: &[Message]) -> Result<WriteOutcome, StoreError> {
        if self.first.swap(false, Ordering::SeqCst) {
            self.gate.acquire().await.expect("gate").forget();
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        let result = self.store.write_batch(messages).await;
        if result.is_ok() {
            self.sizes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(messages.len());
        }
        result
    }
}

/// Batches of 100, transactions of at most 1,000, no claims during the test (so
/// every entry stored comes through the pipeline or the retry of held entries).
fn config(prefix: &str) -> WorkerConfig {
    let mut c = worker_config(prefix, "w");
    c.claim_idle = Duration::from_secs(3600);
    c
}

fn start(url: &str, config: WorkerConfig, sink: Arc<GatedStore>) -> WorkerHandle {
    let conn = connect(url, config.response_timeout()).expect("a valid URL");
    Worker::new(conn, sink, config).spawn()
}

/// Entries delivered to the group and not acknowledged (0 before the worker created
/// the group).
async fn pending(url: &str, keys: &Keys) -> usize {
    let reply: Result<redis::streams::StreamPendingReply, _> =
        conn(url).await.xpending(&keys.stream, &keys.group).await;
    match reply {
        Ok(reply) => reply.count(),
        Err(e) if e.code() == Some("NOGROUP") => 0,
        Err(e) => panic!("XPENDING: {e}"),
    }
}

/// Enqueues `n` events in batches of 100; returns their ids.
async fn fill(q: &eye_server::queue::redis::RedisQueue, n: usize) -> HashSet<Uuid> {
    let mut ids = HashSet::new();
    for _ in 0..n / 100 {
        let batch: Vec<_> = (0..100)
            .map(|i| accepted(&format!("s{i}")))
            .inspect(|e| {
                ids.insert(e.id);
            })
            .map(Message::EventV1)
            .collect();
        q.enqueue(batch).await.expect("enqueue");
    }
    ids
}

#[tokio::test]
async fn a_backlog_is_read_ahead_while_a_batch_commits_into_transactions_up_to_max_commit() {
    // Arrange: 3,000 events waiting; the first write is held at the gate.
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("read-ahead");
    let keys = Keys::new(&prefix);
    let q = queue(&url, &prefix, 0);
    let enqueued = fill(&q, 3000).await;
    let total = enqueued.len();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sink = GatedStore::open(&dir).await;
    let w = start(&url, config(&prefix), Arc::clone(&sink));

    // Act: while the first batch (100) cannot commit, the worker reads ahead.
    let read_ahead = eventually(Duration::from_secs(20), || async {
        pending(&url, &keys).await == 100 + 1000
    })
    .await;
    let stream_while_held = q.backlog().await.expect("backlog");
    sink.open_gate();
    let drained = eventually(Duration::from_secs(30), || async {
        q.backlog().await.expect("backlog") == 0
    })
    .await;
    let stats = w.stop().await;

    // Assert
    assert!(
        read_ahead,
        "the worker read 1,000 entries ahead (max_commit) while the first batch was held; pending {}",
        pending(&url, &keys).await
    );
    assert_eq!(
        stream_while_held, total as u64,
        "nothing is acknowledged (deleted) before its commit"
    );
    assert!(drained, "the stream empties");
    let sizes = sink.sizes();
    assert_eq!(sizes.first(), Some(&100), "the first batch is one read");
    assert_eq!(
        sizes.get(1),
        Some(&1000),
        "the next transaction holds what was read ahead: {sizes:?}"
    );
    assert!(sizes.iter().all(|&n| n <= 1000), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), total);
    assert_eq!(sink.stored_once().await, enqueued);
    assert_eq!(stats.stored, total as u64);
    assert_eq!(pending(&url, &keys).await, 0);
}

#[tokio::test]
async fn entries_read_ahead_when_the_store_fails_are_retried_with_the_held_ones_and_all_stored() {
    // Arrange: 1,500 events; the first write is held, then fails as a locked store.
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("read-ahead-outage");
    let keys = Keys::new(&prefix);
    let q = queue(&url, &prefix, 0);
    let enqueued = fill(&q, 1500).await;
    let total = enqueued.len();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sink = GatedStore::open(&dir).await;
    let w = start(&url, config(&prefix), Arc::clone(&sink));
    let read_ahead = eventually(Duration::from_secs(20), || async {
        pending(&url, &keys).await == 1100
    })
    .await;

    // Act: the store fails with 1,100 entries held, then recovers.
    sink.down.store(true, Ordering::SeqCst);
    sink.open_gate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held_during_outage = pending(&url, &keys).await;
    sink.down.store(false, Ordering::SeqCst);
    let drained = eventually(Duration::from_secs(30), || async {
        q.backlog().await.expect("backlog") == 0
    })
    .await;
    let stats = w.stop().await;

    // Assert: claims are off (claim_idle 1 h), so the entries read ahead were stored
    // by the retry of held entries, not by XAUTOCLAIM.
    assert!(read_ahead);
    assert_eq!(
        held_during_outage, 1100,
        "no new entries are read while the store is failing"
    );
    assert!(
        drained,
        "stored {} of {total}; backlog {}",
        sink.counted().await,
        q.backlog().await.expect("backlog")
    );
    assert_eq!(sink.stored_once().await, enqueued);
    assert_eq!(stats.stored, total as u64);
    assert_eq!(stats.dead_lettered, 0, "an outage is not poison");
    assert_eq!(pending(&url, &keys).await, 0);
}

#[tokio::test]
async fn stopping_while_a_batch_commits_commits_and_acknowledges_it() {
    // Arrange: the first batch (100 of 150 events) is held at the gate.
    let redis = TestRedis::get();
    let url = redis.url();
    let prefix = unique_prefix("stop-in-flight");
    let keys = Keys::new(&prefix);
    let q = queue(&url, &prefix, 0);
    let enqueued = fill(&q, 100).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sink = GatedStore::open(&dir).await;
    let w = start(&url, config(&prefix), Arc::clone(&sink));
    let held = eventually(Duration::from_secs(20), || async {
        pending(&url, &keys).await == 100
    })
    .await;

    // Act: stop while it cannot commit, then let it commit.
    let stopping = tokio::spawn(w.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    sink.open_gate();
    let stats = stopping.await.expect("the worker stops");

    // Assert
    assert!(held);
    assert_eq!(stats.stored, 100, "the batch in flight was committed");
    assert_eq!(sink.stored_once().await, enqueued);
    assert_eq!(pending(&url, &keys).await, 0, "and acknowledged");
    assert_eq!(q.backlog().await.expect("backlog"), 0);
}
