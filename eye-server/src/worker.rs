//! The Redis worker: moves messages from the stream into the store.
//!
//! Any number of workers, in any number of processes, share one consumer group. Each
//! loop of a worker:
//!
//! 1. claims entries that another (dead or stuck) consumer left pending for longer
//!    than `claim_idle` (XAUTOCLAIM), at most every `claim_idle / 4`;
//! 2. reads up to `batch` new entries, waiting at most `block` (XREADGROUP);
//! 3. writes the decoded messages to the store in one transaction (idempotent on event
//!    id), and only after the commit acknowledges *and deletes* the entries (XACK +
//!    XDEL in one MULTI), so the stream holds exactly the messages not yet stored.
//!
//! Steps 2 and 3 overlap: the write of a batch runs in a task of its own while the
//! loop reads the next one, and while that write is still running and the stream
//! still has entries, the loop keeps reading (without blocking), so under a backlog
//! the next transaction grows up to `max_commit` entries. One transaction of 10,000
//! costs SQLite far less per event than ten of 1,000 (each commit writes every page
//! it dirtied, and fsyncs). The loop waits for the write to commit, acknowledges it,
//! then starts the next: at most one batch is in flight, and nothing is acknowledged
//! before its commit. Claims, retries and dead letters take the serial path.
//!
//! Writes follow the one fallback rule of [`crate::sink`]: a batch the store refuses
//! because of its data is retried message by message, so one bad message cannot hold
//! back the others; the ones that still fail stay pending and come back through the
//! first step. A batch the store refuses because of itself (busy, locked, I/O error,
//! full disk: [`crate::store::StoreError::is_transient`]) is not split: the worker
//! backs off.
//!
//! A message delivered more than `max_deliveries` times gets a last attempt on its
//! own (acknowledged if it commits, also when it was stored before and only its
//! acknowledgement was lost); only if that attempt fails because of the message, and
//! recording it in the errors log then succeeds (the store is up), is it moved to the
//! dead-letter stream, as is a message that cannot be decoded (an unknown `type` tag
//! from a newer API, corrupt JSON). Deliveries that ended because Redis failed or the
//! store was unavailable (a transient error, or not even the errors log could be
//! written) do not count towards `max_deliveries`: the worker keeps its own tally of
//! them and subtracts it from Redis's delivery count. So a store outage, however long,
//! dead-letters nothing.
//!
//! Redis or store failures never end the loop: the worker backs off (100 ms doubling
//! to 5 s) and carries on where it was once they recover. While the store is failing
//! it reads no new entries (they would only pile up as pending): it retries the ones
//! it holds until a write succeeds (every one of them, a page at a time, including
//! entries it had read ahead when the failure came).
//!
//! # Layout
//!
//! - [`Worker`], [`WorkerConfig`], [`WorkerHandle`]: the loop and its control.
//! - [`crate::sink::Sink`]: where messages go (the store in production); the
//!   fallback rule for a refused batch is [`crate::sink::write_with_fallback`].
//! - `worker/config.rs`: [`WorkerConfig`].
//! - `worker/stream.rs`: the Redis commands of one consumer.
//! - `worker/entry.rs`: decoding stream entries and building dead-letter records.

mod config;
mod entry;
mod stream;

use std::collections::HashMap;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::streams::StreamId;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::message::Message;
use crate::metrics::names;
use crate::sink::{Groups, Sink, Written, write_with_fallback};
use crate::store::WriteOutcome;
pub use config::WorkerConfig;
use entry::{Decoded, dead_letter_record, decode};
use stream::{Consumer, DeadLetter};

/// What a worker has done so far (also exported as metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Events newly stored.
    pub stored: u64,
    /// Redelivered events that were already stored.
    pub duplicates: u64,
    /// Rejected events recorded in the errors log.
    pub errors_logged: u64,
    /// Entries claimed from other consumers.
    pub claimed: u64,
    /// Entries moved to the dead-letter stream.
    pub dead_lettered: u64,
}

/// A running worker task.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<WorkerStats>,
}

impl WorkerHandle {
    /// Asks the worker to stop after its current batch (a read in progress ends
    /// within `block`) and waits for it.
    pub async fn stop(self) -> WorkerStats {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(stats) => stats,
            Err(e) => {
                tracing::error!(error = %e, "worker task failed");
                WorkerStats::default()
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Nothing was stored, with errors that do not say whose fault it is (every
    /// message bad, or the store broken in a way it does not report as such).
    #[error("store: {0}")]
    Store(String),
    /// The store cannot write (busy, locked, I/O, full), or cannot even record a dead
    /// letter: not the messages' fault.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Most entries whose failed deliveries a worker remembers; past it, it forgets them
/// all (they then count in full again, which at worst gives them their last attempt
/// earlier).
const MAX_REMEMBERED_FAILURES: usize = 100_000;

/// One worker: a consumer in the group.
pub struct Worker {
    stream: Consumer,
    sink: Arc<dyn Sink>,
    config: WorkerConfig,
    stats: WorkerStats,
    claim_cursor: String,
    next_claim: Instant,
    next_forget: Instant,
    group_ready: bool,
    /// The last step failed in the store: retry the entries held, read no new ones.
    store_failing: bool,
    /// While `store_failing`: the last held entry retried (`0-0`: from the oldest).
    held_cursor: String,
    /// Per entry, deliveries that ended in a store or Redis failure rather than in a
    /// verdict on the message; they do not count towards `max_deliveries`.
    failed_deliveries: HashMap<String, u64>,
    /// The batch being written while the next one is read.
    in_flight: Option<InFlight>,
}

/// A write task: the batch written by the fallback rule, its verdict per message.
type WriteTask = JoinHandle<Written>;

/// A batch whose write runs in the background; its entries are acknowledged once it
/// committed.
struct InFlight {
    ids: Vec<String>,
    started: Instant,
    task: WriteTask,
}

impl InFlight {
    fn running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Worker {
    /// A worker reading through `conn` (a connection of its own: it blocks) and writing
    /// to `sink`.
    pub fn new(conn: ConnectionManager, sink: Arc<dyn Sink>, config: WorkerConfig) -> Self {
        Self {
            stream: Consumer::new(conn, config.keys.clone(), config.consumer.clone()),
            sink,
            config,
            stats: WorkerStats::default(),
            claim_cursor: "0-0".into(),
            next_claim: Instant::now(),
            next_forget: Instant::now(),
            group_ready: false,
            store_failing: false,
            held_cursor: "0-0".into(),
            failed_deliveries: HashMap::new(),
            in_flight: None,
        }
    }

    /// Runs the worker on the current runtime until [`WorkerHandle::stop`].
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run(stopped));
        WorkerHandle { stop, task }
    }

    /// Runs until `stop` turns true (or its sender is dropped); returns the totals.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> WorkerStats {
        tracing::info!(
            consumer = %self.config.consumer,
            stream = %self.config.keys.stream,
            "worker started"
        );
        let mut backoff = Backoff::default();
        let mut failing = false;
        // A dropped sender (the handle was dropped) also means stop.
        while !*stop.borrow() && stop.has_changed().is_ok() {
            match self.step().await {
                Ok(()) => {
                    if failing {
                        tracing::info!(consumer = %self.config.consumer, "worker recovered");
                        failing = false;
                    }
                    backoff.reset();
                }
                Err(e) => {
                    if let StepError::Redis(r) = &e
                        && r.code() == Some("NOGROUP")
                    {
                        self.group_ready = false;
                    }
                    if let StepError::Store(_) | StepError::Unavailable(_) = &e {
                        // Retry every held entry, from the oldest.
                        self.store_failing = true;
                        self.held_cursor = "0-0".into();
                    }
                    if failing {
                        tracing::debug!(error = %e, "worker still failing");
                    } else {
                        tracing::warn!(error = %e, "worker step failed; backing off until it succeeds");
                    }
                    failing = true;
                    metrics::counter!(names::WORKER_FAILURES).increment(1);
                    tokio::select! {
                        () = backoff.wait() => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
        // Graceful stop: the batch being written is committed and acknowledged.
        if let Err(e) = self.finish_in_flight().await {
            tracing::warn!(error = %e, "the last batch was not stored; its entries stay pending");
        }
        tracing::info!(consumer = %self.config.consumer, stats = ?self.stats, "worker stopped");
        self.stats
    }

    async fn step(&mut self) -> Result<(), StepError> {
        if !self.group_ready {
            self.stream.ensure_group().await?;
            self.group_ready = true;
        }
        if self.store_failing {
            // New entries would only pile up as pending, and claiming other
            // consumers' entries would only raise their delivery counts: retry what
            // this consumer holds, a page at a time, until the store took it all.
            self.finish_in_flight().await?;
            let held = self
                .stream
                .read_own_pending(self.config.batch, &self.held_cursor)
                .await?;
            match held.last() {
                None => {
                    self.store_failing = false;
                    self.held_cursor = "0-0".into();
                }
                Some(last) => {
                    self.held_cursor = last.id.clone();
                    self.handle(held, true).await?;
                }
            }
            return Ok(());
        }
        if Instant::now() >= self.next_claim {
            self.finish_in_flight().await?;
            let claimed = self.claim().await?;
            if !claimed.is_empty() {
                self.handle(claimed, true).await?;
            }
        }
        if Instant::now() >= self.next_forget {
            self.forget_idle_consumers().await?;
        }
        self.read_while_writing().await
    }

    /// Reads new entries while the batch in flight commits, then acknowledges that
    /// batch and starts writing the new one.
    async fn read_while_writing(&mut self) -> Result<(), StepError> {
        let batch = self.config.batch;
        // A blocking read would hold up the acknowledgement of the batch in flight.
        let block = match &self.in_flight {
            Some(_) => None,
            None => Some(self.config.block),
        };
        let mut fresh = self.stream.read_new(batch, block).await?;
        let mut last_read = fresh.len();
        // A backlog, and the store still busy: read ahead, so the next transaction
        // is larger (up to `max_commit`).
        while last_read == batch
            && fresh.len() + batch <= self.config.max_commit
            && self.in_flight.as_ref().is_some_and(InFlight::running)
        {
            match self.stream.read_new(batch, None).await {
                Ok(more) => {
                    last_read = more.len();
                    fresh.extend(more);
                }
                Err(e) => {
                    self.remember_failed(fresh.iter().map(|e| e.id.as_str()));
                    return Err(e.into());
                }
            }
        }
        if let Err(e) = self.finish_in_flight().await {
            // What was read ahead stays pending: retried with the held entries (the
            // store failed) or claimed later (Redis failed).
            self.remember_failed(fresh.iter().map(|e| e.id.as_str()));
            return Err(e);
        }
        if fresh.is_empty() {
            return Ok(());
        }
        self.start(fresh, false).await
    }

    /// Claims entries idle longer than `claim_idle`, a page at a time; when the scan
    /// wraps around, waits `claim_interval` before the next one.
    async fn claim(&mut self) -> Result<Vec<StreamId>, redis::RedisError> {
        let (cursor, claimed) = self
            .stream
            .claim(
                &self.claim_cursor,
                self.config.claim_idle,
                self.config.batch,
            )
            .await?;
        self.claim_cursor = cursor;
        if self.claim_cursor == "0-0" {
            self.next_claim = Instant::now() + self.config.claim_interval();
            // Once per scan: the number to scale workers on.
            let backlog = self.stream.backlog().await?;
            metrics::gauge!(names::QUEUE_BACKLOG, "queue" => "redis").set(backlog as f64);
        }
        if !claimed.is_empty() {
            let n = claimed.len() as u64;
            self.stats.claimed += n;
            metrics::counter!(names::WORKER_CLAIMED).increment(n);
            tracing::info!(consumer = %self.config.consumer, entries = n, "claimed idle pending entries");
        }
        Ok(claimed)
    }

    async fn forget_idle_consumers(&mut self) -> Result<(), redis::RedisError> {
        let removed = self
            .stream
            .forget_idle(self.config.forget_consumers_after)
            .await?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed idle consumers with nothing pending from the group"
            );
        }
        self.next_forget = Instant::now() + self.config.forget_interval();
        Ok(())
    }

    /// Stores, acknowledges or dead-letters a batch of entries, and waits for it (the
    /// serial path: claimed and held entries).
    async fn handle(&mut self, entries: Vec<StreamId>, redelivered: bool) -> Result<(), StepError> {
        self.start(entries, redelivered).await?;
        self.finish_in_flight().await
    }

    /// Decodes a batch, dead-letters or gives a last chance to what needs it, and
    /// starts writing the rest in the background (see [`Self::finish_in_flight`]).
    /// Only called with nothing in flight. If the store is unavailable or Redis
    /// fails, the delivery is remembered as not the messages' fault.
    async fn start(&mut self, entries: Vec<StreamId>, redelivered: bool) -> Result<(), StepError> {
        debug_assert!(self.in_flight.is_none());
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        let result = self.start_entries(entries, redelivered).await;
        if let Err(StepError::Redis(_) | StepError::Unavailable(_)) = &result {
            self.remember_failed(ids.iter().map(String::as_str));
        }
        result
    }

    /// Counts one delivery of each entry that ended in a store or Redis failure.
    fn remember_failed<'a>(&mut self, ids: impl ExactSizeIterator<Item = &'a str>) {
        if self.failed_deliveries.len() + ids.len() > MAX_REMEMBERED_FAILURES {
            self.failed_deliveries.clear();
        }
        for id in ids {
            *self.failed_deliveries.entry(id.to_owned()).or_default() += 1;
        }
    }

    async fn start_entries(
        &mut self,
        entries: Vec<StreamId>,
        redelivered: bool,
    ) -> Result<(), StepError> {
        let started = Instant::now();
        let counts = if redelivered {
            self.stream.delivery_counts(&entries).await?
        } else {
            HashMap::new()
        };
        let mut ids = Vec::with_capacity(entries.len());
        let mut messages = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            if i > 0 && i % 1024 == 0 {
                // Decoding a large batch takes milliseconds: let the API's tasks run.
                tokio::task::yield_now().await;
            }
            let delivered = counts.get(&entry.id).copied().unwrap_or(1);
            let failed = self.failed_deliveries.get(&entry.id).copied().unwrap_or(0);
            let deliveries = delivered.saturating_sub(failed).max(1);
            match decode(&entry) {
                Decoded::Message(m) if deliveries <= self.config.max_deliveries => {
                    ids.push(entry.id);
                    messages.push(*m);
                }
                Decoded::Message(m) => {
                    self.last_chance(entry, *m, deliveries).await?;
                }
                Decoded::Undecodable(reason) => {
                    self.dead_letter(&entry, None, &reason, deliveries).await?;
                }
            }
        }
        if !messages.is_empty() {
            self.in_flight = Some(InFlight {
                ids,
                started,
                task: self.spawn_write(messages),
            });
        }
        Ok(())
    }

    /// Waits for the batch in flight to commit, then acknowledges what it stored; what
    /// it did not store stays pending. Nothing to do when no batch is in flight.
    async fn finish_in_flight(&mut self) -> Result<(), StepError> {
        let Some(InFlight { ids, started, task }) = self.in_flight.take() else {
            return Ok(());
        };
        let written = Self::join_write(task, ids.len()).await;
        let result = self.settle(&ids, written).await;
        if let Err(StepError::Redis(_) | StepError::Unavailable(_)) = &result {
            self.remember_failed(ids.iter().map(String::as_str));
        }
        metrics::histogram!(names::WORKER_BATCH_SECONDS).record(started.elapsed().as_secs_f64());
        result
    }

    /// Acknowledges what a write stored; what the store refused stays pending (it
    /// comes back through a claim, and after `max_deliveries` is dead-lettered). Fails
    /// when the store was unavailable, or when it stored none of the batch (the store,
    /// not every message, is then the likely problem), so the loop backs off.
    async fn settle(&mut self, ids: &[String], written: Written) -> Result<(), StepError> {
        let stored: Vec<String> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| written.stored(*i))
            .map(|(_, id)| id.clone())
            .collect();
        for (i, e) in &written.refused {
            tracing::warn!(error = %e, entry = %ids[*i], "message not stored; it stays pending and will be retried");
        }
        let not_stored = ids.len() - stored.len();
        if not_stored > 0 {
            metrics::counter!(names::WORKER_STORE_FAILURES).increment(not_stored as u64);
        }
        if !stored.is_empty() {
            self.ack(&stored).await?;
        }
        self.count(written.outcome);
        if let Some(e) = written.unavailable {
            tracing::warn!(error = %e, entries = not_stored, "store unavailable; the entries stay pending");
            return Err(StepError::Unavailable(e.to_string()));
        }
        match written.refused.last() {
            Some((_, e)) if stored.is_empty() => Err(StepError::Store(e.to_string())),
            _ => Ok(()),
        }
    }

    /// An entry delivered more than `max_deliveries` times gets one more attempt on its
    /// own before it is dead-lettered: its earlier failures may all have been a store
    /// outage (then this attempt, after recovery, succeeds), not the message's fault.
    async fn last_chance(
        &mut self,
        entry: StreamId,
        message: Message,
        deliveries: u64,
    ) -> Result<(), StepError> {
        let mut written = self.write(vec![message.clone()]).await;
        if let Some(e) = written.unavailable {
            // The store, not the message: keep it pending and back off.
            return Err(StepError::Unavailable(e.to_string()));
        }
        match written.refused.pop() {
            None => {
                self.ack(std::slice::from_ref(&entry.id)).await?;
                self.count(written.outcome);
                Ok(())
            }
            Some((_, e)) => {
                let reason = format!("not stored after {deliveries} deliveries; last error: {e}");
                self.dead_letter(&entry, Some(message), &reason, deliveries)
                    .await
            }
        }
    }

    /// Acknowledges and deletes stored entries; forgets their failed deliveries.
    async fn ack(&mut self, ids: &[String]) -> Result<(), StepError> {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.stream.ack(&refs).await?;
        for id in ids {
            self.failed_deliveries.remove(id);
        }
        Ok(())
    }

    /// Writes and waits (the serial path).
    async fn write(&self, messages: Vec<Message>) -> Written {
        let n = messages.len();
        Self::join_write(self.spawn_write(messages), n).await
    }

    /// Writes in a task of its own, so that a panic in the store (a poison message that
    /// trips a bug) fails this write instead of killing the worker.
    fn spawn_write(&self, messages: Vec<Message>) -> WriteTask {
        let sink = Arc::clone(&self.sink);
        tokio::spawn(async move {
            write_with_fallback(sink.as_ref(), &messages, Groups::EachMessage).await
        })
    }

    /// The write's verdict; a panic is taken as the data's fault (a message that trips
    /// a bug): every message refused, so the entries stay pending.
    async fn join_write(task: WriteTask, messages: usize) -> Written {
        match task.await {
            Ok(written) => written,
            Err(e) => Written {
                refused: (0..messages)
                    .map(|i| {
                        let error =
                            crate::store::StoreError::Corrupt(format!("store write panicked: {e}"));
                        (i, error)
                    })
                    .collect(),
                settled: messages,
                ..Written::default()
            },
        }
    }

    fn count(&mut self, outcome: WriteOutcome) {
        self.stats.stored += outcome.inserted;
        self.stats.duplicates += outcome.duplicates;
        self.stats.errors_logged += outcome.errors_logged;
        metrics::counter!(names::WORKER_STORED).increment(outcome.inserted);
        metrics::counter!(names::WORKER_DUPLICATES).increment(outcome.duplicates);
        metrics::counter!(names::WORKER_ERRORS_LOGGED).increment(outcome.errors_logged);
    }

    /// Records the entry in the errors log, then moves it to the dead-letter stream
    /// (XADD dead + XACK + XDEL in one MULTI). If the errors log cannot be written the
    /// store is down: nothing moves and the step fails.
    async fn dead_letter(
        &mut self,
        entry: &StreamId,
        message: Option<Message>,
        reason: &str,
        deliveries: u64,
    ) -> Result<(), StepError> {
        let (record, raw) = dead_letter_record(&self.config.keys.stream, entry, message, reason);
        let written = self.write(vec![record]).await;
        if let Some(e) = written
            .unavailable
            .or(written.refused.into_iter().next().map(|(_, e)| e))
        {
            return Err(StepError::Unavailable(format!(
                "cannot record a dead letter: {e}"
            )));
        }
        self.stream
            .move_to_dead(DeadLetter {
                entry_id: &entry.id,
                raw: &raw,
                reason,
                deliveries,
                maxlen: self.config.dead_letter_maxlen,
            })
            .await?;
        self.failed_deliveries.remove(&entry.id);
        self.stats.dead_lettered += 1;
        metrics::counter!(names::WORKER_DEAD_LETTERED).increment(1);
        tracing::error!(entry = %entry.id, %reason, deliveries, dead_letter_stream = %self.stream.keys().dead, "message dead-lettered");
        Ok(())
    }
}
