//! The journaled embedded queue: ingest answers once events are in an append-only
//! journal on disk; a background task moves them into the store.
//!
//! Handlers encode their messages as checksummed frames and hand them to one writer
//! thread. The writer appends whatever has gathered in one `write` (and one
//! `fdatasync` with `--sqlite-synchronous full`), then answers every waiting handler:
//! a 2xx means the events are in the journal, so they survive the process being
//! killed at any moment. The store task follows the journal from disk, decodes up to
//! `commit_batch` frames, writes them in one transaction (idempotent on event id),
//! and deletes each segment once everything in it is stored. On start-up it begins
//! with whatever segments an earlier process left, so a crash loses nothing and
//! stores nothing twice.
//!
//! Memory stays bounded whatever the backlog: the backlog lives in the journal files
//! (at most `--max-journal-mib`), and the store task holds one batch.
//!
//! Compared with [`super::embedded`] (`--ack-after store`), ingest no longer waits
//! for SQLite's commit, which costs more than all the rest of a request; an event is
//! readable a few milliseconds after its 2xx instead of at it.
//!
//! # Layout
//!
//! - [`JournalQueue`], [`JournalConfig`]: the queue.
//! - `writer`: the thread that appends groups of frames.
//! - `store_loop`: the task that moves frames into the store.
//! - [`segment`]: the file format.

pub mod segment;

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Message, Queue, QueueError};
use crate::backoff::Backoff;
use crate::store::Store;
use segment::{Frame, FrameEnd};

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
    /// The writer could not write (disk full, I/O error): ingest fails fast.
    writer_failed: AtomicBool,
}

struct Job {
    frames: Vec<u8>,
    messages: u64,
    done: oneshot::Sender<Result<(), String>>,
}

enum Command {
    Append(Job),
    Close,
}

/// The group-commit thread and its channel (with `sync` only).
struct GroupWriter {
    tx: mpsc::Sender<Command>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
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
    store: Store,
    _lock: File,
}

impl JournalQueue {
    /// Opens the journal in `config.dir` (taking its lock, so two servers cannot
    /// share it), counts what an earlier process left unstored, and starts the writer
    /// thread and the store task on the current runtime.
    pub fn open(store: Store, config: JournalConfig) -> anyhow::Result<Self> {
        use anyhow::Context;
        fs::create_dir_all(&config.dir)
            .with_context(|| format!("creating the journal directory {}", config.dir.display()))?;
        let lock = File::create(config.dir.join("lock"))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "the journal {} is in use by another eye-server process",
                config.dir.display()
            )
        })?;
        let existing = segment::list(&config.dir)?;
        let (mut backlog, mut bytes) = (0, 0);
        for &seq in &existing {
            let (frames, size) = segment::count_frames(&segment::path(&config.dir, seq))?;
            backlog += frames;
            bytes += size;
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
            writer_failed: AtomicBool::new(false),
        });
        let appender = Arc::new(Mutex::new(Appender {
            file,
            seq,
            offset: 0,
            dir: config.dir.clone(),
            segment_bytes: config.segment_bytes,
            sync: config.sync,
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
            store,
            _lock: lock,
        })
    }

    /// Whether an append could be taken now: the queue is open and the journal
    /// writable.
    fn writable(&self) -> Result<(), QueueError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(QueueError::ShuttingDown);
        }
        if self.shared.writer_failed.load(Ordering::Acquire) {
            return Err(QueueError::Unavailable(
                "the journal cannot be written".into(),
            ));
        }
        Ok(())
    }

    /// The journal directory for a database URL: `<database file>.journal`, or
    /// `None` for an in-memory database.
    ///
    /// ```
    /// use eye_server::queue::journal::JournalQueue;
    /// let dir = JournalQueue::default_dir("sqlite://data/eye.db?mode=rwc").unwrap();
    /// assert_eq!(dir, std::path::Path::new("data/eye.db.journal"));
    /// assert_eq!(JournalQueue::default_dir("sqlite::memory:"), None);
    /// ```
    pub fn default_dir(database_url: &str) -> Option<PathBuf> {
        use std::str::FromStr;
        if crate::store::is_in_memory(database_url) {
            return None;
        }
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(database_url).ok()?;
        let mut name = options.get_filename().as_os_str().to_owned();
        name.push(".journal");
        Some(PathBuf::from(name))
    }
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
        if let Ok(task) = self.store_task.try_lock()
            && task.as_ref().is_none_or(JoinHandle::is_finished)
        {
            return Err(QueueError::Unavailable(
                "the journal's store task has stopped".into(),
            ));
        }
        self.store
            .ping()
            .await
            .map_err(|e| QueueError::Unavailable(e.to_string()))
    }

    fn kind(&self) -> &'static str {
        "embedded"
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

fn create_segment(dir: &Path, seq: u64, sync: bool) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(segment::path(dir, seq))?;
    if sync {
        // The new file's directory entry must be on disk before anything in it is
        // acknowledged.
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

/// The end of the journal: the segment being written.
struct Appender {
    file: File,
    seq: u64,
    offset: u64,
    dir: PathBuf,
    segment_bytes: u64,
    sync: bool,
}

impl Appender {
    /// Appends `bytes` (whole frames holding `messages` messages) and publishes the new
    /// end to the store task. On error nothing of it stays in the journal.
    fn append(&mut self, bytes: &[u8], messages: u64, shared: &Shared) -> std::io::Result<()> {
        let written = self.file.write_all(bytes).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            tracing::error!(error = %e, messages, "journal append failed");
            // Cut off whatever part reached the file: none of it was acknowledged, so
            // none of it may be stored. If even that fails, move to a new segment; the
            // store task treats the old one's tail as torn.
            if self.file.set_len(self.offset).is_err() {
                self.rotate(shared);
                publish(shared, self.seq, self.offset);
            }
            return Err(e);
        }
        self.offset += bytes.len() as u64;
        shared.backlog.fetch_add(messages, Ordering::AcqRel);
        shared
            .pending_bytes
            .fetch_add(bytes.len() as u64, Ordering::AcqRel);
        if self.offset >= self.segment_bytes {
            self.rotate(shared);
        }
        publish(shared, self.seq, self.offset);
        Ok(())
    }

    /// Starts the next segment. If it cannot be created, the journal is failed:
    /// ingest answers 503 until a restart.
    fn rotate(&mut self, shared: &Shared) {
        match create_segment(&self.dir, self.seq + 1, self.sync) {
            Ok(next) => {
                self.file = next;
                self.seq += 1;
                self.offset = 0;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start a new journal segment");
                shared.writer_failed.store(true, Ordering::Release);
            }
        }
    }
}

/// The group-commit thread (with `sync` only): appends whatever requests gathered
/// during the previous `fdatasync` in one write and one `fdatasync`, then answers
/// them. Ends after `Close` (or when every sender is gone), having written everything
/// sent before it.
fn group_writer(mut rx: mpsc::Receiver<Command>, appender: &Mutex<Appender>, shared: &Shared) {
    let mut buf = Vec::with_capacity(MAX_GROUP_BYTES);
    let mut jobs = Vec::new();
    let mut closing = false;
    while !closing {
        match rx.blocking_recv() {
            Some(Command::Append(job)) => jobs.push(job),
            Some(Command::Close) | None => break,
        }
        let mut bytes = jobs[0].frames.len();
        while bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(Command::Append(job)) => {
                    bytes += job.frames.len();
                    jobs.push(job);
                }
                Ok(Command::Close) => {
                    closing = true;
                    break;
                }
                Err(_) => break,
            }
        }
        append_group(&mut jobs, &mut buf, appender, shared);
    }
    // Closing: append whatever is still queued behind the `Close`.
    rx.close();
    while let Some(cmd) = rx.blocking_recv() {
        if let Command::Append(job) = cmd {
            jobs.push(job);
        }
    }
    if !jobs.is_empty() {
        append_group(&mut jobs, &mut buf, appender, shared);
    }
}

/// Appends one group and answers its requests.
fn append_group(
    jobs: &mut Vec<Job>,
    buf: &mut Vec<u8>,
    appender: &Mutex<Appender>,
    shared: &Shared,
) {
    buf.clear();
    let mut messages = 0;
    for job in jobs.iter() {
        buf.extend_from_slice(&job.frames);
        messages += job.messages;
    }
    let result = lock(appender)
        .append(buf, messages, shared)
        .map_err(|e| format!("journal append failed: {e}"));
    metrics::histogram!("eye_journal_group_messages").record(messages as f64);
    for job in jobs.drain(..) {
        let _ = job.done.send(result.clone());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn publish(shared: &Shared, seq: u64, offset: u64) {
    *lock(&shared.written) = Position { seq, offset };
    shared.appended.notify_one();
}

/// The store task's place in the journal.
struct Cursor {
    dir: PathBuf,
    seq: u64,
    offset: u64,
    reader: Option<BufReader<File>>,
}

/// One read of the journal.
struct Batch {
    messages: Vec<Message>,
    undecodable: Vec<Vec<u8>>,
    bytes: u64,
    /// The segment ended here for good (the writer has moved on): delete it once the
    /// batch is stored. Holds the bytes after the last good frame that were dropped.
    segment_done: Option<u64>,
}

impl Cursor {
    /// Reads up to `max` frames, not past `limit` in the current segment (`None`: the
    /// segment is finished, read to its end).
    fn read(&mut self, limit: Option<u64>, max: usize) -> std::io::Result<Batch> {
        if self.reader.is_none() {
            let mut file = match File::open(segment::path(&self.dir, self.seq)) {
                // A finished segment that is gone (deleted by hand): nothing to read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && limit.is_none() => {
                    return Ok(Batch {
                        messages: Vec::new(),
                        undecodable: Vec::new(),
                        bytes: 0,
                        segment_done: Some(0),
                    });
                }
                opened => opened?,
            };
            file.seek(SeekFrom::Start(self.offset))?;
            self.reader = Some(BufReader::with_capacity(256 * 1024, file));
        }
        let Some(reader) = self.reader.as_mut() else {
            unreachable!("opened above")
        };
        let mut frames = Vec::new();
        let budget = limit.map_or(u64::MAX, |l| l - self.offset);
        let end = segment::read_frames(reader, budget, max, &mut frames)?;
        let (bytes, segment_done) = match end {
            FrameEnd::Limit(n) => (n, None),
            FrameEnd::Eof(n) | FrameEnd::Corrupt(n) if limit.is_none() => {
                let size = reader.get_ref().metadata()?.len();
                let dropped = size.saturating_sub(self.offset + n);
                if matches!(end, FrameEnd::Corrupt(_)) {
                    tracing::error!(
                        segment = self.seq,
                        offset = self.offset + n,
                        bytes = dropped,
                        "journal segment is corrupt here; the rest of it is skipped"
                    );
                } else if dropped > 0 {
                    tracing::warn!(
                        segment = self.seq,
                        bytes = dropped,
                        "journal segment ends in a torn (never acknowledged) frame"
                    );
                }
                (n, Some(dropped))
            }
            // Before the writer's position everything is whole: a short or bad frame
            // there means the file changed under us.
            FrameEnd::Eof(n) | FrameEnd::Corrupt(n) => {
                return Err(std::io::Error::other(format!(
                    "journal segment {} unreadable at {} (written up to {limit:?})",
                    self.seq,
                    self.offset + n
                )));
            }
        };
        let mut batch = Batch {
            messages: Vec::with_capacity(frames.len()),
            undecodable: Vec::new(),
            bytes,
            segment_done,
        };
        for f in frames {
            match f {
                Frame::Message(m) => batch.messages.push(m),
                Frame::Undecodable(raw) => batch.undecodable.push(raw),
            }
        }
        Ok(batch)
    }

    /// Moves past a batch just read (it is stored later, by [`store_loop`]).
    fn advance(&mut self, batch: &Batch) {
        self.offset += batch.bytes;
        if batch.segment_done.is_some() {
            self.reader = None;
            self.seq += 1;
            self.offset = 0;
        }
    }
}

/// What the reader hands the store task.
enum Read {
    /// Frames of segment `seq` to store.
    Batch { seq: u64, batch: Batch },
    /// The queue is closed and everything up to the end of segment `seq` was read.
    Drained { seq: u64 },
}

/// Batches read ahead of the one being stored: reading and decoding the next batch
/// overlaps with the transaction of the current one, and memory stays at two batches.
const READ_AHEAD: usize = 1;

/// The reader task: follows the journal from segment `seq` and hands batches of up to
/// `max` frames to the store task. Ends once the queue is closed and it has read
/// everything, or when the store task is gone.
async fn read_loop(
    shared: Arc<Shared>,
    dir: PathBuf,
    seq: u64,
    max: usize,
    tx: mpsc::Sender<Read>,
) {
    let mut cursor = Some(Cursor {
        dir,
        seq,
        offset: 0,
        reader: None,
    });
    let mut backoff = Backoff::default();
    loop {
        let writer_done = shared.writer_done.load(Ordering::Acquire);
        let written = *lock(&shared.written);
        let Some(mut c) = cursor.take() else { return };
        let limit = if c.seq < written.seq {
            None
        } else if c.offset < written.offset {
            Some(written.offset)
        } else if writer_done {
            let _ = tx.send(Read::Drained { seq: c.seq }).await;
            return;
        } else {
            cursor = Some(c);
            // Woken by the next append; the timeout only guards against a lost wake.
            let _ = tokio::time::timeout(Duration::from_secs(1), shared.appended.notified()).await;
            continue;
        };
        let read = tokio::task::spawn_blocking(move || {
            let batch = c.read(limit, max);
            (c, batch)
        })
        .await;
        let (mut c, batch) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "journal reader panicked");
                return;
            }
        };
        match batch {
            Ok(batch) => {
                backoff.reset();
                let seq = c.seq;
                c.advance(&batch);
                cursor = Some(c);
                if tx.send(Read::Batch { seq, batch }).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, segment = c.seq, "cannot read the journal; retrying");
                c.reader = None;
                cursor = Some(c);
                backoff.wait().await;
            }
        }
    }
}

/// The store task: stores what the reader hands it, in order, and deletes each
/// segment once everything in it is stored. Ends once the queue is closed and
/// everything is stored (or, while closing, when the store keeps failing: the rest
/// stays in the journal for the next start).
async fn store_loop(store: Store, shared: Arc<Shared>, config: JournalConfig, seq: u64) {
    let (tx, mut rx) = mpsc::channel(READ_AHEAD);
    let max = config.batch.max(1);
    let reader = tokio::spawn(read_loop(
        Arc::clone(&shared),
        config.dir.clone(),
        seq,
        max,
        tx,
    ));
    while let Some(read) = rx.recv().await {
        let (seq, batch) = match read {
            Read::Batch { seq, batch } => (seq, batch),
            Read::Drained { seq } => {
                remove_segment(&config.dir, seq);
                tracing::info!("journal drained");
                break;
            }
        };
        if !store_batch(&store, &config.dir, &batch, &shared).await {
            tracing::error!(
                messages = shared.backlog.load(Ordering::Acquire),
                dir = %config.dir.display(),
                "the store keeps failing: the rest stays in the journal and is stored at the next start"
            );
            break;
        }
        shared.backlog.fetch_sub(
            batch.messages.len() as u64 + batch.undecodable.len() as u64,
            Ordering::AcqRel,
        );
        shared
            .pending_bytes
            .fetch_sub(batch.bytes, Ordering::AcqRel);
        if batch.segment_done.is_some() {
            remove_segment(&config.dir, seq);
        }
    }
    drop(rx);
    let _ = reader.await;
}

fn remove_segment(dir: &Path, seq: u64) {
    let path = segment::path(dir, seq);
    if let Err(e) = fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(error = %e, path = %path.display(), "cannot delete a stored journal segment");
    }
}

/// Stores a batch, however long the store takes to come back: a failure of the store
/// itself (busy, locked, I/O, full disk) is retried with backoff; a batch refused
/// because of its data is written message by message, and a message the store still
/// refuses goes to the dead-letter file, as does a frame this version cannot decode.
///
/// Returns `false` when it gave up because the store kept failing while the queue is
/// closing: the batch stays in the journal for the next start.
async fn store_batch(store: &Store, dir: &Path, batch: &Batch, shared: &Shared) -> bool {
    let mut retry = StoreRetry::default();
    while !batch.messages.is_empty() {
        match store.write_batch(&batch.messages).await {
            Ok(_) => {
                metrics::histogram!("eye_commit_group_messages")
                    .record(batch.messages.len() as f64);
                break;
            }
            Err(e) if e.is_transient() => {
                tracing::error!(error = %e, events = batch.messages.len(), "store unavailable; retrying");
                if !retry.wait(shared).await {
                    return false;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "batch refused by the store; storing one by one");
                if !store_one_by_one(store, dir, &batch.messages, shared).await {
                    return false;
                }
                break;
            }
        }
    }
    for raw in &batch.undecodable {
        dead_letter(dir, raw, "undecodable message");
    }
    true
}

async fn store_one_by_one(
    store: &Store,
    dir: &Path,
    messages: &[Message],
    shared: &Shared,
) -> bool {
    for m in messages {
        let mut retry = StoreRetry::default();
        loop {
            match store.write_batch(std::slice::from_ref(m)).await {
                Ok(_) => break,
                Err(e) if e.is_transient() => {
                    if !retry.wait(shared).await {
                        return false;
                    }
                }
                Err(e) => {
                    let raw = serde_json::to_vec(m).unwrap_or_default();
                    dead_letter(dir, &raw, &e.to_string());
                    break;
                }
            }
        }
    }
    true
}

/// Waiting out a failing store: forever while the queue runs, a few attempts once it
/// is closing (what is left stays in the journal for the next start).
#[derive(Default)]
struct StoreRetry {
    backoff: Backoff,
    failures_while_closing: u32,
}

impl StoreRetry {
    /// Waits before the next attempt; `false` when it is time to give up.
    async fn wait(&mut self, shared: &Shared) -> bool {
        self.backoff.wait().await;
        if shared.writer_done.load(Ordering::Acquire) {
            self.failures_while_closing += 1;
        }
        self.failures_while_closing <= 3
    }
}

/// Appends a message the store cannot take to `dead-letters.jsonl` in the journal
/// directory (one JSON object per line: the reason and the message).
fn dead_letter(dir: &Path, raw: &[u8], reason: &str) {
    metrics::counter!("eye_journal_dead_letters_total").increment(1);
    let line = serde_json::json!({
        "reason": reason,
        "message": String::from_utf8_lossy(raw),
    });
    let path = dir.join("dead-letters.jsonl");
    let written = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"));
    match written {
        Ok(()) => tracing::error!(reason, path = %path.display(), "message dead-lettered"),
        Err(e) => {
            tracing::error!(error = %e, reason, message = %line, "message lost: cannot write the dead-letter file")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::str::FromStr;

    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
    use uuid::Uuid;

    use super::*;
    use crate::queue::AcceptedEvent;

    fn message(id: Uuid) -> Message {
        let event = eye_core::Event::page_view("s", "www.example.com", "/").unwrap();
        Message::EventV1(AcceptedEvent {
            id,
            application: "test".into(),
            received_at: chrono::Utc::now(),
            event,
        })
    }

    struct Fixture {
        dir: tempfile::TempDir,
        url: String,
        store: Store,
    }

    impl Fixture {
        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("eye.db").display());
            let store = Store::open(&url).await.unwrap();
            Self { dir, url, store }
        }

        fn config(&self) -> JournalConfig {
            JournalConfig {
                dir: self.journal(),
                batch: 100,
                max_bytes: 1 << 30,
                segment_bytes: SEGMENT_BYTES,
                sync: false,
            }
        }

        fn journal(&self) -> PathBuf {
            self.dir.path().join("eye.db.journal")
        }

        fn segments(&self) -> Vec<u64> {
            segment::list(&self.journal()).unwrap()
        }

        async fn stored(&self) -> u64 {
            self.store.total_events().await.unwrap()
        }

        /// Polls until `n` events are stored (bounded: 10 s).
        async fn wait_stored(&self, n: u64) {
            for _ in 0..1000 {
                if self.stored().await >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("only {} of {n} events stored", self.stored().await);
        }

        async fn lock_store(&self) -> SqliteConnection {
            let mut locker =
                SqliteConnection::connect_with(&SqliteConnectOptions::from_str(&self.url).unwrap())
                    .await
                    .unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut locker)
                .await
                .unwrap();
            locker
        }
    }

    async fn send(queue: &Arc<JournalQueue>, requests: usize, per_request: usize) -> Vec<Uuid> {
        let tasks: Vec<_> = (0..requests)
            .map(|_| {
                let queue = Arc::clone(queue);
                tokio::spawn(async move {
                    let ids: Vec<Uuid> = (0..per_request).map(|_| Uuid::now_v7()).collect();
                    queue
                        .enqueue(ids.iter().map(|&id| message(id)).collect())
                        .await
                        .map(|()| ids)
                })
            })
            .collect();
        let mut acked = Vec::new();
        for t in tasks {
            acked.extend(t.await.unwrap().unwrap());
        }
        acked
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_events_are_stored_and_stored_segments_deleted() {
        stored_and_deleted(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_fsync_acknowledged_events_are_stored_and_stored_segments_deleted() {
        stored_and_deleted(true).await;
    }

    async fn stored_and_deleted(sync: bool) {
        let f = Fixture::new().await;
        let mut config = f.config();
        config.sync = sync;
        config.segment_bytes = 4 * 1024;
        let queue = Arc::new(JournalQueue::open(f.store.clone(), config).unwrap());

        let acked = send(&queue, 200, 5).await;
        f.wait_stored(1000).await;

        for id in [acked[0], acked[999]] {
            assert!(f.store.get_event(id).await.unwrap().is_some());
        }
        assert_eq!(queue.backlog().await.unwrap(), 0);
        queue
            .ready()
            .await
            .expect("ready while the store task runs");
        let live = f.segments();
        assert_eq!(
            live.len(),
            1,
            "only the segment being written is left: {live:?}"
        );
        assert!(live[0] >= 2, "4 KiB segments rotated: {live:?}");
        queue.close().await;
        assert!(f.segments().is_empty());
        assert_eq!(f.stored().await, 1000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_stores_everything_acknowledged_while_the_store_was_locked() {
        let f = Fixture::new().await;
        let queue = Arc::new(JournalQueue::open(f.store.clone(), f.config()).unwrap());
        let mut locker = f.lock_store().await;

        // Acknowledged while no transaction can commit: they are in the journal.
        let acked = send(&queue, 50, 2).await;
        assert_eq!(acked.len(), 100);
        assert!(queue.backlog().await.unwrap() > 0);
        sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
        queue.close().await;

        assert_eq!(f.stored().await, 100);
        assert!(f.segments().is_empty());
        assert!(matches!(
            queue.enqueue(vec![message(Uuid::now_v7())]).await,
            Err(QueueError::ShuttingDown)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_journal_answers_full_and_loses_nothing_it_acknowledged() {
        let f = Fixture::new().await;
        let mut config = f.config();
        config.max_bytes = 20 * 1024;
        let queue = Arc::new(JournalQueue::open(f.store.clone(), config).unwrap());
        let mut locker = f.lock_store().await;

        let mut acked = Vec::new();
        let mut full = None;
        for _ in 0..200 {
            let ids: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
            match queue
                .enqueue(ids.iter().map(|&id| message(id)).collect())
                .await
            {
                Ok(()) => acked.extend(ids),
                Err(e) => {
                    full = Some(e);
                    break;
                }
            }
        }

        assert!(matches!(full, Some(QueueError::Full { .. })), "{full:?}");
        assert!(acked.len() >= 50, "{}", acked.len());
        sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
        f.wait_stored(acked.len() as u64).await;
        for id in &acked {
            assert!(f.store.get_event(*id).await.unwrap().is_some());
        }
        queue
            .enqueue(vec![message(Uuid::now_v7())])
            .await
            .expect("room again once stored");
        queue.close().await;
        assert_eq!(f.stored().await, acked.len() as u64 + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_journal_left_by_a_crash_is_stored_once_at_the_next_start() {
        let f = Fixture::new().await;
        // What a killed process leaves: two segments, the last ending in a torn frame,
        // and one event that was stored before the crash (its segment not yet deleted).
        let ids: Vec<Uuid> = (0..30).map(|_| Uuid::now_v7()).collect();
        f.store.write_batch(&[message(ids[0])]).await.unwrap();
        fs::create_dir_all(f.journal()).unwrap();
        let mut first = Vec::new();
        for id in &ids[..20] {
            segment::encode(&message(*id), &mut first).unwrap();
        }
        let mut second = Vec::new();
        for id in &ids[20..] {
            segment::encode(&message(*id), &mut second).unwrap();
        }
        let mut torn = Vec::new();
        segment::encode(&message(Uuid::now_v7()), &mut torn).unwrap();
        second.extend_from_slice(&torn[..torn.len() / 2]);
        fs::write(segment::path(&f.journal(), 7), &first).unwrap();
        fs::write(segment::path(&f.journal(), 8), &second).unwrap();

        let queue = JournalQueue::open(f.store.clone(), f.config()).unwrap();
        assert_eq!(queue.backlog().await.unwrap(), 30, "torn frame not counted");
        let later = Uuid::now_v7();
        queue.enqueue(vec![message(later)]).await.unwrap();
        f.wait_stored(31).await;
        queue.close().await;

        assert_eq!(
            f.stored().await,
            31,
            "each stored exactly once, the torn one not at all"
        );
        for id in ids.iter().chain([&later]) {
            assert!(f.store.get_event(*id).await.unwrap().is_some());
        }
        assert!(f.segments().is_empty());
    }

    #[tokio::test]
    async fn a_journal_in_use_cannot_be_opened_a_second_time() {
        let f = Fixture::new().await;
        let queue = JournalQueue::open(f.store.clone(), f.config()).unwrap();
        let second = JournalQueue::open(f.store.clone(), f.config());
        let err = second.err().unwrap().to_string();
        assert!(err.contains("in use"), "{err}");
        queue.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_undecodable_frame_is_dead_lettered_and_the_rest_stored() {
        let f = Fixture::new().await;
        fs::create_dir_all(f.journal()).unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut buf = Vec::new();
        segment::encode(&message(a), &mut buf).unwrap();
        let junk = br#"{"type":"event.v9","id":"x"}"#;
        buf.extend_from_slice(&(junk.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(junk).to_le_bytes());
        buf.extend_from_slice(junk);
        segment::encode(&message(b), &mut buf).unwrap();
        fs::write(segment::path(&f.journal(), 1), &buf).unwrap();

        let queue = JournalQueue::open(f.store.clone(), f.config()).unwrap();
        queue.close().await;

        assert_eq!(f.stored().await, 2);
        let dead = fs::read_to_string(f.journal().join("dead-letters.jsonl")).unwrap();
        assert_eq!(dead.lines().count(), 1);
        let line: serde_json::Value = serde_json::from_str(dead.trim()).unwrap();
        assert_eq!(line["message"], String::from_utf8_lossy(junk).as_ref());
        assert_eq!(line["reason"], "undecodable message");
    }

    #[test]
    fn the_default_directory_sits_next_to_the_database() {
        let dir = JournalQueue::default_dir("sqlite:///var/lib/eye/eye.db").unwrap();
        assert_eq!(dir, Path::new("/var/lib/eye/eye.db.journal"));
        assert_eq!(JournalQueue::default_dir("sqlite::memory:"), None);
        assert_eq!(JournalQueue::default_dir("sqlite://x.db?mode=memory"), None);
    }
}
