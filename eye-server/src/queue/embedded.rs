//! The group-commit queue (`--ack-after store`): an in-process writer that answers
//! once events are committed. The default embedded queue is [`super::journal`].
//!
//! Handlers hand their messages to one writer task over a bounded channel and wait for
//! its answer. The writer gathers whatever arrives within `commit_interval` (or until
//! `commit_batch` messages) and writes it to the store in one transaction, then answers
//! every waiting handler. A handler answers 2xx only after its events are committed,
//! so killing the process at any moment loses nothing that was acknowledged, while one
//! transaction per group keeps throughput close to SQLite's batch-insert rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Queue, QueueError};
use crate::message::Message;
use crate::metrics::names;
use crate::sink::{Groups, Sink, write_with_fallback};
use crate::store::Store;

/// Most handler requests waiting for the writer at once; past it, ingest answers 503.
const CHANNEL_CAPACITY: usize = 8192;

/// Settings of the group-commit writer.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedConfig {
    /// Most messages per transaction (a single larger request is still written whole).
    pub commit_batch: usize,
    /// Longest a message waits for its group to fill.
    pub commit_interval: Duration,
    /// Most messages accepted but not yet committed.
    pub max_backlog: u64,
}

struct Job {
    messages: Vec<Message>,
    done: oneshot::Sender<Result<(), String>>,
}

enum Command {
    Write(Job),
    Close,
}

/// The embedded queue. Cheap to share behind an `Arc`.
pub struct EmbeddedQueue {
    tx: mpsc::Sender<Command>,
    backlog: Arc<AtomicU64>,
    closed: AtomicBool,
    writer: Mutex<Option<JoinHandle<()>>>,
    max_backlog: u64,
    store: Store,
}

impl EmbeddedQueue {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store, config: EmbeddedConfig) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let backlog = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(writer_loop(store.clone(), rx, Arc::clone(&backlog), config));
        Self {
            tx,
            backlog,
            closed: AtomicBool::new(false),
            writer: Mutex::new(Some(writer)),
            max_backlog: config.max_backlog,
            store,
        }
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn enqueue(&self, messages: Vec<Message>) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(QueueError::ShuttingDown);
        }
        let n = messages.len() as u64;
        let before = self.backlog.fetch_add(n, Ordering::AcqRel);
        if before + n > self.max_backlog && before > 0 {
            self.backlog.fetch_sub(n, Ordering::AcqRel);
            return Err(QueueError::Full {
                backlog: before,
                limit: self.max_backlog,
            });
        }
        let (done, answer) = oneshot::channel();
        let sent = self.tx.try_send(Command::Write(Job { messages, done }));
        if let Err(e) = sent {
            self.backlog.fetch_sub(n, Ordering::AcqRel);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => QueueError::Full {
                    backlog: before,
                    limit: self.max_backlog,
                },
                mpsc::error::TrySendError::Closed(_) => QueueError::ShuttingDown,
            });
        }
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(cause)) => Err(QueueError::Unavailable(cause)),
            Err(_) => Err(QueueError::ShuttingDown),
        }
    }

    async fn backlog(&self) -> Result<u64, QueueError> {
        Ok(self.backlog.load(Ordering::Acquire))
    }

    async fn ready(&self) -> Result<(), QueueError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(QueueError::ShuttingDown);
        }
        self.store
            .ping()
            .await
            .map_err(|e| QueueError::Unavailable(e.to_string()))
    }

    fn kind(&self) -> &'static str {
        "group_commit"
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Jobs already in the channel are ahead of `Close`, so they are written first.
        let _ = self.tx.send(Command::Close).await;
        if let Some(writer) = self.writer.lock().await.take()
            && let Err(e) = writer.await
        {
            tracing::error!(error = %e, "embedded queue writer panicked");
        }
    }
}

async fn writer_loop(
    store: Store,
    mut rx: mpsc::Receiver<Command>,
    backlog: Arc<AtomicU64>,
    config: EmbeddedConfig,
) {
    let mut closing = false;
    while !closing {
        let first = match rx.recv().await {
            Some(Command::Write(job)) => job,
            Some(Command::Close) | None => break,
        };
        let mut group = vec![first];
        let mut size = group[0].messages.len();
        let deadline = Instant::now() + config.commit_interval;
        while size < config.commit_batch {
            let next = match rx.try_recv() {
                Ok(cmd) => Some(cmd),
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(cmd) => cmd,
                        Err(_elapsed) => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            match next {
                Some(Command::Write(job)) => {
                    size += job.messages.len();
                    group.push(job);
                }
                Some(Command::Close) | None => {
                    closing = true;
                    break;
                }
            }
        }
        commit_group(&store, group, &backlog).await;
    }
    // Closing: write whatever is still queued behind the `Close`.
    rx.close();
    let mut rest = Vec::new();
    while let Some(cmd) = rx.recv().await {
        if let Command::Write(job) = cmd {
            rest.push(job);
        }
    }
    if !rest.is_empty() {
        commit_group(&store, rest, &backlog).await;
    }
    tracing::info!("embedded queue drained");
}

/// Writes a group in one transaction, following the fallback rule of [`crate::sink`]:
/// if the store refuses it because of the data, each job (one request) is written on
/// its own so one job's failure cannot fail the others, and each job is answered with
/// its own outcome; if the store itself fails (busy, locked, I/O), the jobs not yet
/// written are answered with the failure at once (503, nothing of theirs stored).
async fn commit_group<S: Sink + ?Sized>(store: &S, group: Vec<Job>, backlog: &AtomicU64) {
    let size: usize = group.iter().map(|j| j.messages.len()).sum();
    let mut messages = Vec::with_capacity(size);
    let mut waiters = Vec::with_capacity(group.len());
    let mut sizes = Vec::with_capacity(group.len());
    for job in group {
        waiters.push(job.done);
        sizes.push(job.messages.len());
        messages.extend(job.messages);
    }
    let written = write_with_fallback(store, &messages, Groups::Sizes(&sizes)).await;
    if written.all_stored() {
        tracing::debug!(requests = waiters.len(), messages = size, "group committed");
        metrics::histogram!(names::COMMIT_GROUP_MESSAGES).record(size as f64);
    }
    if let Some(e) = &written.unavailable {
        tracing::error!(error = %e, events = size, "group commit failed: store unavailable");
    }
    let mut refused = written.refused.iter().peekable();
    for (i, done) in waiters.into_iter().enumerate() {
        let answer = match refused.next_if(|(r, _)| *r == i) {
            Some((_, e)) => {
                tracing::error!(error = %e, "commit failed");
                Err(e.to_string())
            }
            None if i < written.settled => Ok(()),
            None => Err(written
                .unavailable
                .as_ref()
                .map_or_else(|| "not written".to_owned(), ToString::to_string)),
        };
        let _ = done.send(answer);
    }
    backlog.fetch_sub(size as u64, Ordering::AcqRel);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::str::FromStr;

    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

    use super::*;
    use crate::message::AcceptedEvent;

    fn message() -> Message {
        let event = eye_core::Event::page_view("s", "www.example.com", "/").unwrap();
        Message::EventV1(AcceptedEvent {
            client_timestamp: None,
            id: uuid::Uuid::now_v7(),
            application: "test".into(),
            received_at: chrono::Utc::now(),
            event,
        })
    }

    /// The real store, with every write it is asked for counted (an observer, not a
    /// fault: the faults come from the real store).
    struct Counted {
        store: Store,
        writes: AtomicU64,
    }

    #[async_trait]
    impl Sink for Counted {
        async fn write_batch(
            &self,
            messages: &[Message],
        ) -> Result<crate::store::WriteOutcome, crate::store::StoreError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.store.write_batch(messages).await
        }
    }

    fn job() -> (Job, oneshot::Receiver<Result<(), String>>) {
        let (done, answer) = oneshot::channel();
        let job = Job {
            messages: vec![message()],
            done,
        };
        (job, answer)
    }

    #[tokio::test]
    async fn a_locked_store_fails_the_whole_group_at_once_instead_of_job_by_job() {
        // Arrange: another connection holds the write lock, so a write waits the busy
        // timeout (10 s) and fails with SQLITE_BUSY. Three requests make one group.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("eye.db").display());
        let store = Store::open(&url).await.unwrap();
        let counted = Counted {
            store: store.clone(),
            writes: AtomicU64::new(0),
        };
        let mut locker =
            SqliteConnection::connect_with(&SqliteConnectOptions::from_str(&url).unwrap())
                .await
                .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut locker)
            .await
            .unwrap();
        let (jobs, answers): (Vec<_>, Vec<_>) = (0..3).map(|_| job()).unzip();
        let backlog = AtomicU64::new(3);

        // Act
        commit_group(&counted, jobs, &backlog).await;
        sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
        let (again, answer) = job();
        commit_group(&counted, vec![again], &AtomicU64::new(1)).await;

        // Assert: one write attempt for the group, not one more per job (which was
        // 10 s + 3 x 10 s); every job answered with the failure; nothing stored.
        assert_eq!(
            counted.writes.load(Ordering::SeqCst),
            2,
            "one for the group, one after"
        );
        for a in answers {
            let a = a.await.unwrap();
            assert!(
                a.as_ref()
                    .is_err_and(|e| e.contains("locked") || e.contains("busy")),
                "{a:?}"
            );
        }
        assert_eq!(backlog.load(Ordering::SeqCst), 0);
        assert_eq!(
            answer.await.unwrap(),
            Ok(()),
            "the store works once the lock is gone"
        );
        assert_eq!(store.total_events().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn requests_waiting_together_are_answered_after_one_commit() {
        // Arrange: the real store; three requests sent while the writer waits for its
        // group to fill (a commit interval far longer than sending them takes).
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("eye.db").display());
        let store = Store::open(&url).await.unwrap();
        let queue = Arc::new(EmbeddedQueue::start(
            store.clone(),
            EmbeddedConfig {
                commit_batch: 3,
                commit_interval: Duration::from_secs(3600),
                max_backlog: 1000,
            },
        ));

        // Act: the group is full at three messages, so it is written without waiting.
        let requests: Vec<_> = (0..3)
            .map(|_| {
                let queue = Arc::clone(&queue);
                tokio::spawn(async move { queue.enqueue(vec![message()]).await })
            })
            .collect();
        let mut results = Vec::new();
        for r in requests {
            results.push(r.await.unwrap());
        }

        // Assert
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(store.total_events().await.unwrap(), 3);
        assert_eq!(queue.backlog().await.unwrap(), 0);
        queue.close().await;
    }
}
