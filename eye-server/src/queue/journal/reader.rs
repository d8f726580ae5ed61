//! The journal's reader: follows the segments from disk behind the writer and hands
//! decoded batches to the store task, one batch ahead of the one being stored.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use super::appender::lock;
use super::segment::{self, Frame, FrameEnd};
use crate::backoff::Backoff;
use crate::message::Message;
use crate::metrics::names;

/// The store task's place in the journal.
pub(super) struct Cursor {
    dir: PathBuf,
    seq: u64,
    offset: u64,
    reader: Option<BufReader<File>>,
    /// The current segment had a corrupt stretch: keep it aside once read, don't
    /// delete it.
    corrupt_seen: bool,
}

/// One read of the journal.
pub(super) struct Batch {
    pub(super) messages: Vec<Message>,
    pub(super) undecodable: Vec<Vec<u8>>,
    pub(super) bytes: u64,
    /// The segment ended here for good (the writer has moved on): delete it once the
    /// batch is stored. Holds the bytes after the last good frame that were dropped.
    pub(super) segment_done: Option<u64>,
    /// With `segment_done`: the segment had corrupt stretches, so it is kept aside as
    /// `<segment>.corrupt` instead of deleted.
    pub(super) segment_corrupt: bool,
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
                        segment_corrupt: false,
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
            // A finished segment: a bad or short frame is either a torn tail (never
            // acknowledged) or corruption; whole frames after it are still read.
            FrameEnd::Eof(n) | FrameEnd::Corrupt(n) if limit.is_none() => {
                let at = self.offset + n;
                let file = reader.get_mut();
                let size = file.metadata()?.len();
                match segment::resync(file, at)? {
                    Some(next) => {
                        self.corrupt_seen = true;
                        metrics::counter!(names::JOURNAL_CORRUPT_FRAMES).increment(1);
                        tracing::error!(
                            segment = self.seq,
                            offset = at,
                            bytes = next - at,
                            "journal segment is corrupt here; skipped to the next good frame (at least one frame lost)"
                        );
                        // Continue from the next good frame with a fresh reader.
                        self.reader = None;
                        (next - self.offset, None)
                    }
                    None => {
                        let dropped = size.saturating_sub(at);
                        if matches!(end, FrameEnd::Corrupt(_)) {
                            self.corrupt_seen = true;
                            metrics::counter!(names::JOURNAL_CORRUPT_FRAMES).increment(1);
                            tracing::error!(
                                segment = self.seq,
                                offset = at,
                                bytes = dropped,
                                "journal segment is corrupt to its end (at least one frame lost)"
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
                }
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
        let segment_corrupt = segment_done.is_some() && self.corrupt_seen;
        let mut batch = Batch {
            messages: Vec::with_capacity(frames.len()),
            undecodable: Vec::new(),
            bytes,
            segment_done,
            segment_corrupt,
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
            self.corrupt_seen = false;
        }
    }
}

/// What the reader hands the store task.
pub(super) enum Read {
    /// Frames of segment `seq` to store.
    Batch { seq: u64, batch: Batch },
    /// The queue is closed and everything up to the end of segment `seq` was read.
    Drained { seq: u64 },
}

/// Batches read ahead of the one being stored: reading and decoding the next batch
/// overlaps with the transaction of the current one, and memory stays at two batches.
pub(super) const READ_AHEAD: usize = 1;

/// The reader task: follows the journal from segment `seq` and hands batches of up to
/// `max` frames to the store task. Ends once the queue is closed and it has read
/// everything, or when the store task is gone.
pub(super) async fn read_loop(
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
        corrupt_seen: false,
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
