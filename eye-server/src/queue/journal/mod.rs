//! The journaled embedded queue: ingest answers once events are in an append-only
//! journal on disk; a background task moves them into the store.
//!
//! Handlers encode their messages as checksummed frames and append them themselves
//! (a write to the page cache), or, with `--sqlite-synchronous full`, hand them to one
//! group-commit thread that appends whatever has gathered in one `write` and one
//! `fdatasync`, then answers every waiting handler. A 2xx means the events are in the
//! journal, so they survive the process being killed at any moment (and, with `full`,
//! a power loss). The store task follows the journal from disk, decodes up to
//! `--journal-batch` frames, writes them in one transaction (idempotent on event id),
//! and deletes each segment once everything in it is stored. On start-up it begins
//! with whatever segments an earlier process left, so a crash loses nothing and
//! stores nothing twice.
//!
//! Memory stays bounded whatever the backlog: the backlog lives in the journal files
//! (at most `--max-journal-mib`), and the store task holds two batches (one being
//! stored, one read ahead).
//!
//! Compared with [`super::embedded`] (`--ack-after store`), ingest no longer waits
//! for SQLite's commit, which costs more than all the rest of a request; an event is
//! readable a few milliseconds after its 2xx instead of at it.
//!
//! # Layout
//!
//! - this file: [`JournalQueue`] and [`JournalConfig`], the queue's API (open, enqueue,
//!   backlog, readiness, close) and the state the parts share.
//! - `appender`: the end of the journal; the group-commit thread (with `sync`).
//! - `reader`: follows the journal from disk and decodes batches.
//! - `store_task`: writes the batches to the store (the fallback rule of
//!   [`crate::sink`]) and deletes stored segments.
//! - `dead_letters`: the dead-letter file, and erasing a session's lines from it.
//! - [`segment`]: the file format.

mod appender;
mod dead_letters;
mod reader;
pub mod segment;
mod store_task;
#[cfg(test)]
mod tests;

pub use dead_letters::{DEAD_LETTER_FILE, erase_dead_letters};

use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Queue, QueueError};
use crate::message::Message;
use crate::store::Store;
use appender::{Appender, Command, GroupWriter, Job, create_segment, group_writer, lock};
use store_task::store_loop;

/// A new segment is started once the current one is this big (by default).
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Most requests waiting for the writer at once; past it, ingest answers 503.
const CHANNEL_CAPACITY: usize = 16_384;

/// Most bytes the writer appends in one write.
const MAX_GROUP_BYTES: usize = 4 * 1024 * 1024;

/// Settings of the journaled queue.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// The journal's directory (created when missing).
    pub dir: PathBuf,
    /// Most messages written to the store in one transaction. Larger transactions
    /// cost SQLite less per event (each session and counter row is updated once per
    /// transaction); a batch is whatever is waiting, up to this.
    pub batch: usize,
    /// Most bytes of journal not yet stored; past it, ingest answers 503.
    pub max_bytes: u64,
    /// A new segment is started once the current one is this big; a segment is
    /// deleted once everything in it is stored.
    pub segment_bytes: u64,
    /// `fdatasync` every append before answering (a power loss then loses nothing
    /// acknowledged); otherwise an append survives a crash of the process, not of
    /// the machine.
    pub sync: bool,
}

/// Where the writer has got to: every frame before `(seq, offset)` is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    seq: u64,
    offset: u64,
}

struct Shared {
    written: Mutex<Position>,
    /// Woken after every append.
    appended: Notify,
    /// Messages appended, not yet stored.
    backlog: AtomicU64,
    /// Journal bytes appended, not yet stored.
    pending_bytes: AtomicU64,
    /// The queue is closed and nothing more will be appended.
    writer_done: AtomicBool,
    /// The last append failed (disk full, I/O error): `/readyz` fails until an
    /// append succeeds or the store task frees space by deleting a stored segment.
    append_failing: AtomicBool,
}

/// The journaled queue. Cheap to share behind an `Arc`.
pub struct JournalQueue {
    appender: Arc<Mutex<Appender>>,
    /// Without `sync`, handlers append themselves: a write to the page cache is
    /// cheaper than handing the frames to a thread and being woken by it.
    group: Option<GroupWriter>,
    shared: Arc<Shared>,
    /// Set under the appender's lock, so no append can follow it.
    closed: AtomicBool,
    store_task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    max_bytes: u64,
    _lock: File,
}

impl JournalQueue {
    /// Opens the journal in `config.dir` (taking its lock, so two servers cannot
    /// share it), counts what an earlier process left unstored, and starts the writer
    /// thread and the store task on the current runtime.
    pub fn open(store: Store, config: JournalConfig) -> anyhow::Result<Self> {
        use anyhow::Context;
        private_dir(&config.dir)
            .with_context(|| format!("creating the journal directory {}", config.dir.display()))?;
        let lock = private(OpenOptions::new().create(true).truncate(true).write(true))
            .open(config.dir.join("lock"))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "the journal {} is in use by another eye-server process",
                config.dir.display()
            )
        })?;
        let existing = segment::list(&config.dir)?;
        let (mut backlog, mut bytes) = (0, 0);
        for &seq in &existing {
            let count = segment::count_frames(&segment::path(&config.dir, seq))?;
            backlog += count.frames;
            bytes += count.end;
            if count.corrupt > 0 {
                tracing::error!(
                    segment = seq,
                    stretches = count.corrupt,
                    "journal segment has corrupt stretches; its good frames will be stored"
                );
            }
        }
        if backlog > 0 {
            tracing::info!(
                messages = backlog,
                segments = existing.len(),
                "journal: storing what an earlier process acknowledged"
            );
        }
        let first = existing.first().copied();
        let seq = existing.last().map_or(1, |s| s + 1);
        let file = create_segment(&config.dir, seq, config.sync)?;
        let shared = Arc::new(Shared {
            written: Mutex::new(Position { seq, offset: 0 }),
            appended: Notify::new(),
            backlog: AtomicU64::new(backlog),
            pending_bytes: AtomicU64::new(bytes),
            writer_done: AtomicBool::new(false),
            append_failing: AtomicBool::new(false),
        });
        let appender = Arc::new(Mutex::new(Appender {
            file,
            seq,
            offset: 0,
            dir: config.dir.clone(),
            segment_bytes: config.segment_bytes,
            sync: config.sync,
            needs_rotation: false,
        }));
        let group = if config.sync {
            let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
            let shared = Arc::clone(&shared);
            let appender = Arc::clone(&appender);
            let thread = std::thread::Builder::new()
                .name("eye-journal".into())
                .spawn(move || group_writer(rx, &appender, &shared))?;
            Some(GroupWriter {
                tx,
                thread: std::sync::Mutex::new(Some(thread)),
            })
        } else {
            None
        };
        let stored = tokio::spawn(store_loop(
            store.clone(),
            Arc::clone(&shared),
            config.clone(),
            first.unwrap_or(seq),
        ));
        Ok(Self {
            appender,
            group,
            shared,
            closed: AtomicBool::new(false),
            store_task: tokio::sync::Mutex::new(Some(stored)),
            max_bytes: config.max_bytes,
            _lock: lock,
        })
    }

    /// Whether an append could be taken now: the queue is open. (A journal whose
    /// last append failed still tries each new one: that is how it notices the disk
    /// has room again.)
    fn writable(&self) -> Result<(), QueueError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(QueueError::ShuttingDown);
        }
        Ok(())
    }

    /// The journal directory for a database URL: `<database file>.journal`, or
    /// `None` for an in-memory or PostgreSQL database (set `--journal-dir` to use a
    /// journal with PostgreSQL; without one, events are acknowledged once stored).
    ///
    /// ```
    /// use eye_server::queue::journal::JournalQueue;
    /// let dir = JournalQueue::default_dir("sqlite://data/eye.db?mode=rwc").unwrap();
    /// assert_eq!(dir, std::path::Path::new("data/eye.db.journal"));
    /// assert_eq!(JournalQueue::default_dir("sqlite::memory:"), None);
    /// ```
    pub fn default_dir(database_url: &str) -> Option<PathBuf> {
        use std::str::FromStr;
        if crate::store::is_in_memory(database_url) || crate::store::is_postgres(database_url) {
            return None;
        }
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(database_url).ok()?;
        let mut name = options.get_filename().as_os_str().to_owned();
        name.push(".journal");
        Some(PathBuf::from(name))
    }
}

/// Events carry form contents: the journal's files are readable by their owner only
/// (0600). The mode applies when a file is created; existing files keep theirs.
fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Creates the journal directory (and missing parents) private to its owner (0700).
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[async_trait]
impl Queue for JournalQueue {
    async fn enqueue(&self, messages: Vec<Message>) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.writable()?;
        let pending = self.shared.pending_bytes.load(Ordering::Acquire);
        if pending > self.max_bytes {
            return Err(QueueError::Full {
                backlog: self.shared.backlog.load(Ordering::Acquire),
                limit: self.max_bytes,
            });
        }
        let mut frames = Vec::with_capacity(512 * messages.len());
        for m in &messages {
            segment::encode(m, &mut frames)
                .map_err(|e| QueueError::Unavailable(format!("encoding a message: {e}")))?;
        }
        let count = messages.len() as u64;
        let Some(group) = &self.group else {
            let mut appender = lock(&self.appender);
            if self.closed.load(Ordering::Acquire) {
                return Err(QueueError::ShuttingDown);
            }
            return appender
                .append(&frames, count, &self.shared)
                .map_err(|e| QueueError::Unavailable(format!("journal append failed: {e}")));
        };
        let (done, answer) = oneshot::channel();
        let job = Job {
            frames,
            messages: count,
            done,
        };
        group
            .tx
            .try_send(Command::Append(job))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => QueueError::Full {
                    backlog: self.shared.backlog.load(Ordering::Acquire),
                    limit: self.max_bytes,
                },
                mpsc::error::TrySendError::Closed(_) => QueueError::ShuttingDown,
            })?;
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(cause)) => Err(QueueError::Unavailable(cause)),
            Err(_) => Err(QueueError::ShuttingDown),
        }
    }

    async fn backlog(&self) -> Result<u64, QueueError> {
        Ok(self.shared.backlog.load(Ordering::Acquire))
    }

    async fn ready(&self) -> Result<(), QueueError> {
        self.writable()?;
        if self.shared.append_failing.load(Ordering::Acquire) {
            return Err(QueueError::Unavailable(
                "the journal cannot be written (disk full or I/O error)".into(),
            ));
        }
        if let Ok(task) = self.store_task.try_lock()
            && task.as_ref().is_none_or(JoinHandle::is_finished)
        {
            return Err(QueueError::Unavailable(
                "the journal's store task has stopped".into(),
            ));
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "journal"
    }

    async fn close(&self) {
        {
            let _appender = lock(&self.appender);
            self.closed.store(true, Ordering::Release);
        }
        if let Some(group) = &self.group {
            // Appends already in the channel are ahead of `Close`, so they are written.
            let _ = group.tx.send(Command::Close).await;
            let thread = lock(&group.thread).take();
            if let Some(thread) = thread {
                let joined = tokio::task::spawn_blocking(move || thread.join()).await;
                if !matches!(joined, Ok(Ok(()))) {
                    tracing::error!("journal writer panicked");
                }
            }
        }
        // No append can follow: the store task may finish once it has stored all.
        self.shared.writer_done.store(true, Ordering::Release);
        self.shared.appended.notify_one();
        let Some(stored) = self.store_task.lock().await.take() else {
            return;
        };
        let backlog = self.shared.backlog.load(Ordering::Acquire);
        if backlog > 0 {
            tracing::info!(
                messages = backlog,
                "storing the journal's backlog before exit"
            );
        }
        if let Err(e) = stored.await {
            tracing::error!(error = %e, "journal store task panicked");
        }
    }
}
