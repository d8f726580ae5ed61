//! The end of the journal: appending frames to the active segment, by the handlers
//! themselves (without `sync`) or by one group-commit thread that gathers the requests
//! waiting during an `fdatasync` into one write (with `sync`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};

use super::{MAX_GROUP_BYTES, Position, Shared, segment};
use crate::metrics::names;

pub(super) struct Job {
    pub(super) frames: Vec<u8>,
    pub(super) messages: u64,
    pub(super) done: oneshot::Sender<Result<(), String>>,
}

pub(super) enum Command {
    Append(Job),
    Close,
}

/// The group-commit thread and its channel (with `sync` only).
pub(super) struct GroupWriter {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

pub(super) fn create_segment(dir: &Path, seq: u64, sync: bool) -> std::io::Result<File> {
    let file = super::private(OpenOptions::new().create_new(true).append(true))
        .open(segment::path(dir, seq))?;
    if sync {
        // The new file's directory entry must be on disk before anything in it is
        // acknowledged.
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

/// The end of the journal: the segment being written.
pub(super) struct Appender {
    pub(super) file: File,
    pub(super) seq: u64,
    pub(super) offset: u64,
    pub(super) dir: PathBuf,
    pub(super) segment_bytes: u64,
    pub(super) sync: bool,
    /// The last rotation failed (or a failed append could not be cut off): start a
    /// new segment before the next append.
    pub(super) needs_rotation: bool,
}

impl Appender {
    /// Appends `bytes` (whole frames holding `messages` messages) and publishes the new
    /// end to the store task. On error nothing of it stays in the journal.
    ///
    /// A failed append (a full disk, an I/O error) moves the journal to a new segment,
    /// so the frames already in this one are deleted, and their space freed, once the
    /// store task has stored them: after a full disk, ingest recovers by itself as
    /// soon as the store catches up, without a restart.
    pub(super) fn append(
        &mut self,
        bytes: &[u8],
        messages: u64,
        shared: &Shared,
    ) -> std::io::Result<()> {
        if self.needs_rotation && !self.rotate(shared) {
            shared.append_failing.store(true, Ordering::Release);
            return Err(std::io::Error::other("cannot start a new journal segment"));
        }
        let written = self.file.write_all(bytes).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            tracing::error!(error = %e, messages, "journal append failed");
            shared.append_failing.store(true, Ordering::Release);
            // Cut off whatever part reached the file: none of it was acknowledged, so
            // none of it may be stored. If even that fails, this segment takes no more
            // appends; the store task treats its tail as torn.
            let cut = self.file.set_len(self.offset).is_ok();
            if !cut {
                self.needs_rotation = true;
            }
            if (!cut || self.offset > 0) && self.rotate(shared) {
                publish(shared, self.seq, self.offset);
            }
            return Err(e);
        }
        shared.append_failing.store(false, Ordering::Release);
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

    /// Starts the next segment; `false` when it cannot be created (the next append
    /// tries again first).
    fn rotate(&mut self, shared: &Shared) -> bool {
        match create_segment(&self.dir, self.seq + 1, self.sync) {
            Ok(next) => {
                self.file = next;
                self.seq += 1;
                self.offset = 0;
                self.needs_rotation = false;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start a new journal segment");
                shared.append_failing.store(true, Ordering::Release);
                self.needs_rotation = true;
                false
            }
        }
    }
}

/// The group-commit thread (with `sync` only): appends whatever requests gathered
/// during the previous `fdatasync` in one write and one `fdatasync`, then answers
/// them. Ends after `Close` (or when every sender is gone), having written everything
/// sent before it.
pub(super) fn group_writer(
    mut rx: mpsc::Receiver<Command>,
    appender: &Mutex<Appender>,
    shared: &Shared,
) {
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
    metrics::histogram!(names::JOURNAL_GROUP_MESSAGES).record(messages as f64);
    for job in jobs.drain(..) {
        let _ = job.done.send(result.clone());
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(super) fn publish(shared: &Shared, seq: u64, offset: u64) {
    *lock(&shared.written) = Position { seq, offset };
    shared.appended.notify_one();
}
