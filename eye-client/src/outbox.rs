//! The outbox: events on disk until the server has them, so they survive the
//! application's restarts and the server's outages.
//!
//! A directory holds a `lock` file (held with [`File::try_lock`] for the client's
//! life, so one client owns it at a time) and numbered segment files
//! (`00000000000000000001.seg`, ...; the format is in [`format`]). The worker appends
//! each batch it collected as records in one write and one `fdatasync`, to the newest
//! segment; a segment is never appended to after a restart.
//!
//! # Crash consistency
//!
//! Delivery state lives in memory only: per segment, how many records were loaded and
//! how many settled (delivered, rejected, refused with a 4xx, or evicted). A segment is
//! deleted once every record in it settled. After a crash the segments still there are
//! delivered again in full, so an event delivered just before the crash may be sent a
//! second time; the server stores each event id once, so that costs a request, never a
//! duplicate. No marker file is written, so nothing but appends is ever synced, and
//! there is no marker that could disagree with the segments.
//!
//! # Layout
//!
//! - this file: [`Outbox`], the segments' bookkeeping, the bounds and the lock.
//! - `format`: the record framing, scanning and reading segments.
//! - `job`: [`Job`], the disk work (removals, one append, one read) done off the
//!   worker's thread.

pub(crate) mod format;
mod job;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub(crate) use job::{Appended, Job, JobDone, ReadRequest, Writer};

use crate::error::BuildError;

/// The outbox settings of the builder.
#[derive(Debug, Clone)]
pub(crate) struct OutboxConfig {
    pub dir: PathBuf,
    pub sync_interval: Duration,
    pub max_bytes: u64,
    pub max_age: Duration,
}

impl OutboxConfig {
    /// Segments small enough that evicting the oldest drops at most an eighth of the
    /// bound, large enough that a busy client does not create files all the time.
    pub fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(4 << 10, 4 << 20)
    }
}

/// One segment file and what became of its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub seq: u64,
    pub path: PathBuf,
    /// Intact records in the file.
    pub records: u64,
    /// Bytes up to the end of the last intact record.
    pub bytes: u64,
    /// Records read into memory (or evicted as they were read), from the start.
    pub loaded: u64,
    /// Records whose fate is settled.
    pub settled: u64,
    /// Where the next unloaded record starts.
    pub read_offset: u64,
    /// The newest record's write time, Unix milliseconds.
    pub newest_ms: u64,
    /// Left by a previous client.
    pub recovered: bool,
}

/// Events the bounds dropped, and how many of them a previous client left.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Evicted {
    pub events: u64,
    pub recovered: u64,
}

impl Evicted {
    pub fn add(&mut self, other: Evicted) {
        self.events += other.events;
        self.recovered += other.recovered;
    }
}

/// The worker's view of the outbox directory.
#[derive(Debug)]
pub(crate) struct Outbox {
    pub config: OutboxConfig,
    /// Held (locked) for as long as this value lives.
    _lock: File,
    /// Oldest first; the last one may be the writer's.
    pub segments: VecDeque<Segment>,
    /// `None` while a [`Job`] has it.
    pub writer: Option<Writer>,
    /// Segment files to delete in the next job.
    pub removals: Vec<PathBuf>,
}

impl Outbox {
    /// Creates the directory if needed, takes its lock and reads what a previous client
    /// left. Fails with [`BuildError::OutboxLocked`] when another client holds it.
    pub fn open(config: OutboxConfig) -> Result<Self, BuildError> {
        let dir = config.dir.clone();
        let io_err = |source| BuildError::Outbox {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(io_err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(BuildError::OutboxLocked { dir: dir.clone() });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
        }
        let (segments, removals) = recover(&dir).map_err(io_err)?;
        let next_seq = segments.back().map_or(1, |s: &Segment| s.seq + 1);
        let writer = Writer::new(dir.clone(), next_seq, config.segment_bytes());
        Ok(Self {
            config,
            _lock: lock,
            segments,
            writer: Some(writer),
            removals,
        })
    }

    /// Records a previous client left, not settled yet.
    pub fn recovered(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.recovered)
            .map(|s| s.records - s.settled)
            .sum()
    }

    /// Records on disk whose fate is not settled.
    pub fn backlog(&self) -> u64 {
        self.segments.iter().map(|s| s.records - s.settled).sum()
    }

    /// Records on disk not read into memory yet.
    pub fn unread(&self) -> u64 {
        self.segments.iter().map(|s| s.records - s.loaded).sum()
    }

    fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// What to read next: the oldest segment with unread records.
    pub fn next_read(&self, max_records: usize) -> Option<ReadRequest> {
        let s = self.segments.iter().find(|s| s.loaded < s.records)?;
        Some(ReadRequest {
            seq: s.seq,
            path: s.path.clone(),
            offset: s.read_offset,
            end: s.bytes,
            max_records,
        })
    }

    /// Books an append: a new segment, or more records in the newest one.
    pub fn appended(&mut self, a: &Appended) {
        match self.segments.back_mut() {
            Some(s) if s.seq == a.seq => {
                s.records += a.records;
                s.bytes = a.end;
                s.newest_ms = s.newest_ms.max(a.written_ms);
            }
            _ => self.segments.push_back(Segment {
                seq: a.seq,
                path: a.path.clone(),
                records: a.records,
                bytes: a.end,
                loaded: 0,
                settled: 0,
                read_offset: a.end - a.bytes,
                newest_ms: a.written_ms,
                recovered: false,
            }),
        }
    }

    /// Books records read (or skipped) from segment `seq`, up to `next_offset`.
    pub fn loaded(&mut self, seq: u64, records: u64, next_offset: u64) {
        if let Some(s) = self.segment_mut(seq) {
            s.loaded = (s.loaded + records).min(s.records);
            s.read_offset = next_offset;
        }
    }

    /// Gives up on the unread rest of a segment that turned out unreadable; returns
    /// what that evicts.
    pub fn unreadable(&mut self, seq: u64) -> Evicted {
        let Some(s) = self.segment_mut(seq) else {
            return Evicted::default();
        };
        let rest = s.records - s.loaded;
        s.loaded = s.records;
        s.settled += rest;
        Evicted {
            events: rest,
            recovered: if s.recovered { rest } else { 0 },
        }
    }

    /// Settles `n` records of segment `seq`; `Some(true)` when a previous client left
    /// them, `None` when the segment is gone (evicted while they were in memory).
    pub fn settle(&mut self, seq: u64, n: u64) -> Option<bool> {
        let s = self.segment_mut(seq)?;
        s.settled = (s.settled + n).min(s.records);
        Some(s.recovered)
    }

    fn segment_mut(&mut self, seq: u64) -> Option<&mut Segment> {
        self.segments.iter_mut().find(|s| s.seq == seq)
    }

    /// Whether a record written at `written_ms` is past the age bound at `now_ms`.
    pub fn expired(&self, written_ms: u64, now_ms: u64) -> bool {
        written_ms.saturating_add(millis(self.config.max_age)) < now_ms
    }

    /// Drops the oldest segments past the bounds: every segment whose newest record is
    /// older than the age bound, then the oldest while the total is over the byte
    /// bound. Their unread records are evicted here; returns them and the segments
    /// removed (and whether a previous client left them), whose records already in memory the caller evicts too.
    pub fn enforce_bounds(&mut self, now_ms: u64) -> (Evicted, Vec<(u64, bool)>) {
        let mut evicted = Evicted::default();
        let mut removed = Vec::new();
        while let Some(oldest) = self.segments.front() {
            let old = self.expired(oldest.newest_ms, now_ms);
            if !(old || self.bytes() > self.config.max_bytes) || !self.can_remove(oldest.seq) {
                break;
            }
            let s = self.remove_front();
            removed.push((s.seq, s.recovered));
            let rest = s.records - s.loaded;
            if rest > 0 {
                tracing::warn!(
                    events = rest,
                    segment = %s.path.display(),
                    reason = if old { "age" } else { "size" },
                    "eye-client outbox past its bound: dropping its oldest events"
                );
            }
            evicted.add(Evicted {
                events: rest,
                recovered: if s.recovered { rest } else { 0 },
            });
        }
        (evicted, removed)
    }

    /// Queues the deletion of every segment whose records are all settled.
    pub fn collect_settled(&mut self) {
        let mut i = 0;
        while i < self.segments.len() {
            let s = &self.segments[i];
            if s.settled == s.records && self.can_remove(s.seq) {
                let s = self.segments.remove(i).unwrap_or_else(|| unreachable!());
                self.forget(s);
            } else {
                i += 1;
            }
        }
    }

    /// The writer's segment can go only while no job is appending to it.
    fn can_remove(&self, seq: u64) -> bool {
        // With the writer here, removing its segment seals it first (`forget`); while a
        // job has it, the newest segment may be growing.
        self.writer.is_some() || self.segments.back().is_none_or(|s| s.seq != seq)
    }

    fn remove_front(&mut self) -> Segment {
        let s = self.segments.pop_front().unwrap_or_else(|| unreachable!());
        self.forget(s.clone());
        s
    }

    fn forget(&mut self, s: Segment) {
        if let Some(w) = &mut self.writer
            && w.active() == Some(s.seq)
        {
            w.seal();
        }
        self.removals.push(s.path);
    }
}

/// Lists and scans the segments a previous client left; returns them oldest first,
/// and the files to delete (unreadable from their first byte, or wholly settled).
fn recover(dir: &Path) -> std::io::Result<(VecDeque<Segment>, Vec<PathBuf>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            found.push((seq, path));
        }
    }
    found.sort();
    let mut segments = VecDeque::new();
    let mut removals = Vec::new();
    for (seq, path) in found {
        match format::scan(&path)? {
            Some(scan) if scan.records > 0 => {
                if scan.skipped > 0 {
                    tracing::warn!(
                        segment = %path.display(),
                        kept = scan.records,
                        skipped_bytes = scan.skipped,
                        "eye-client outbox: skipping a torn or corrupt tail"
                    );
                }
                segments.push_back(Segment {
                    seq,
                    path,
                    records: scan.records,
                    bytes: scan.valid_len,
                    loaded: 0,
                    settled: 0,
                    read_offset: format::MAGIC.len() as u64,
                    newest_ms: scan.newest_ms,
                    recovered: true,
                });
            }
            _ => removals.push(path),
        }
    }
    Ok((segments, removals))
}

/// Unix milliseconds.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, millis)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 24 * 3600 * 1000;

    fn open(dir: &Path, max_bytes: u64) -> Outbox {
        Outbox::open(OutboxConfig {
            dir: dir.to_owned(),
            sync_interval: Duration::from_millis(100),
            max_bytes,
            max_age: Duration::from_secs(7 * 24 * 3600),
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Appends `n` events written at `now_ms`, as the worker would.
    fn append(outbox: &mut Outbox, n: usize, now_ms: u64) {
        let events: Vec<_> = (0..n)
            .map(|i| {
                eye_core::Event::page_view("s", "x.example", &format!("/{i}"))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        let writer = outbox.writer.as_mut().unwrap_or_else(|| unreachable!());
        let a = writer
            .append(&events, now_ms)
            .unwrap_or_else(|e| panic!("{e}"));
        outbox.appended(&a);
    }

    #[test]
    fn the_age_bound_evicts_whole_segments_by_their_newest_record_at_the_given_now() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut outbox = open(dir.path(), 64 << 20);
        let t0 = 1_000 * DAY_MS;
        append(&mut outbox, 5, t0);
        outbox
            .writer
            .as_mut()
            .unwrap_or_else(|| unreachable!())
            .seal();
        append(&mut outbox, 3, t0 + DAY_MS);

        let (at_7_days, _) = outbox.enforce_bounds(t0 + 7 * DAY_MS);
        let (past_7_days, removed) = outbox.enforce_bounds(t0 + 7 * DAY_MS + 1);
        let (past_8_days, _) = outbox.enforce_bounds(t0 + 8 * DAY_MS + 1);

        assert_eq!(at_7_days.events, 0);
        assert_eq!(past_7_days.events, 5);
        assert_eq!(removed.len(), 1);
        assert_eq!(past_8_days.events, 3);
        assert_eq!(outbox.backlog(), 0);
        assert_eq!(outbox.removals.len(), 2);
    }

    #[test]
    fn the_byte_bound_evicts_the_oldest_segments_and_counts_only_unread_records() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut outbox = open(dir.path(), 16 << 10);
        let now = 1_000 * DAY_MS;
        for _ in 0..10 {
            append(&mut outbox, 20, now);
        }
        let before: Vec<Segment> = outbox.segments.iter().cloned().collect();
        let first = before[0].seq;
        outbox.loaded(first, 20, before[0].bytes); // 20 of them are in memory

        let (evicted, removed) = outbox.enforce_bounds(now);

        assert!(outbox.bytes() <= 16 << 10, "{} bytes", outbox.bytes());
        assert!(
            before.len() > removed.len() && removed.len() >= 2,
            "{removed:?}"
        );
        let expected: Vec<_> = before[..removed.len()]
            .iter()
            .map(|s| (s.seq, false))
            .collect();
        assert_eq!(removed, expected, "the oldest go first");
        let records: u64 = before[..removed.len()].iter().map(|s| s.records).sum();
        assert_eq!(evicted.events, records - 20);
        assert_eq!(outbox.backlog() + records, 200);
    }

    #[test]
    fn settled_segments_are_deleted_and_a_reopened_outbox_finds_only_the_rest() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut outbox = open(dir.path(), 64 << 20);
        append(&mut outbox, 4, 1);
        outbox
            .writer
            .as_mut()
            .unwrap_or_else(|| unreachable!())
            .seal();
        append(&mut outbox, 6, 2);
        let first = outbox.segments[0].seq;

        outbox.loaded(first, 4, outbox.segments[0].bytes);
        assert_eq!(outbox.settle(first, 4), Some(false));
        outbox.collect_settled();
        for path in std::mem::take(&mut outbox.removals) {
            std::fs::remove_file(path).unwrap_or_else(|e| panic!("{e}"));
        }
        drop(outbox);
        let reopened = open(dir.path(), 64 << 20);

        assert_eq!(reopened.recovered(), 6);
        assert_eq!(reopened.segments.len(), 1);
        assert!(reopened.segments[0].recovered);
    }
}
