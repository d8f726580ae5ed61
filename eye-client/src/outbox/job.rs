//! The disk work, done in `spawn_blocking` so the worker's thread never waits on a
//! disk: delete settled segments, append one batch (one write, one `fdatasync`), read
//! the next chunk of unread records.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use eye_core::{Event, ValidationContext};

use super::format;

/// The most bytes one read takes from a segment.
const READ_BYTES: usize = 4 << 20;

/// Appends to the newest segment, and starts a new one when it is full or sealed.
#[derive(Debug)]
pub(crate) struct Writer {
    dir: PathBuf,
    next_seq: u64,
    segment_bytes: u64,
    active: Option<Active>,
    /// Reused for every append.
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Active {
    seq: u64,
    path: PathBuf,
    file: File,
    len: u64,
}

/// Records one append added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Appended {
    pub seq: u64,
    pub path: PathBuf,
    pub records: u64,
    /// Bytes this append wrote.
    pub bytes: u64,
    /// The segment's length after it.
    pub end: u64,
    pub written_ms: u64,
}

impl Writer {
    pub fn new(dir: PathBuf, next_seq: u64, segment_bytes: u64) -> Self {
        Self {
            dir,
            next_seq,
            segment_bytes,
            active: None,
            buf: Vec::new(),
        }
    }

    /// The segment appends go to, if one is open.
    pub fn active(&self) -> Option<u64> {
        self.active.as_ref().map(|a| a.seq)
    }

    /// The next append starts a new segment.
    pub fn seal(&mut self) {
        self.active = None;
    }

    /// Writes `events` as records in one write, then `fdatasync`s. After a failure the
    /// segment is cut back to its last whole record and sealed, so a later append never
    /// follows a partial one.
    pub fn append(&mut self, events: &[Event], now_ms: u64) -> io::Result<Appended> {
        self.buf.clear();
        let mut json = Vec::with_capacity(512);
        for event in events {
            json.clear();
            serde_json::to_writer(&mut json, event).map_err(io::Error::other)?;
            format::encode(&mut self.buf, now_ms, &json);
        }
        if self
            .active
            .as_ref()
            .is_none_or(|a| a.len >= self.segment_bytes)
        {
            self.rotate()?;
        }
        let Some(a) = self.active.as_mut() else {
            return Err(io::Error::other("no open segment"));
        };
        if let Err(e) = a
            .file
            .write_all(&self.buf)
            .and_then(|()| a.file.sync_data())
        {
            let _ = a.file.set_len(a.len);
            self.active = None;
            return Err(e);
        }
        a.len += self.buf.len() as u64;
        Ok(Appended {
            seq: a.seq,
            path: a.path.clone(),
            records: events.len() as u64,
            bytes: self.buf.len() as u64,
            end: a.len,
            written_ms: now_ms,
        })
    }

    /// Creates the next segment with its magic, synced, and syncs the directory so the
    /// new name survives a power loss too.
    fn rotate(&mut self) -> io::Result<()> {
        self.active = None;
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.dir.join(format!("{seq:020}.seg"));
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        file.write_all(format::MAGIC)?;
        file.sync_data()?;
        File::open(&self.dir)?.sync_all()?;
        self.active = Some(Active {
            seq,
            path,
            file,
            len: format::MAGIC.len() as u64,
        });
        Ok(())
    }
}

/// Where to read unread records.
#[derive(Debug, Clone)]
pub(crate) struct ReadRequest {
    pub seq: u64,
    pub path: PathBuf,
    pub offset: u64,
    /// The end of the part known to be intact.
    pub end: u64,
    pub max_records: usize,
}

/// Records read from one segment, parsed.
#[derive(Debug)]
pub(crate) struct ReadDone {
    pub seq: u64,
    /// Each record's write time and event (or why it does not parse).
    pub records: Vec<(u64, Result<Event, String>)>,
    pub next_offset: u64,
    /// The rest of the segment cannot be read.
    pub corrupt: bool,
}

/// One round of disk work.
#[derive(Debug)]
pub(crate) struct Job {
    pub writer: Writer,
    pub removals: Vec<PathBuf>,
    pub append: Vec<Event>,
    pub now_ms: u64,
    pub read: Option<ReadRequest>,
}

/// What a [`Job`] did; the writer and the appended events come back.
#[derive(Debug)]
pub(crate) struct JobDone {
    pub writer: Writer,
    pub events: Vec<Event>,
    pub appended: Option<io::Result<Appended>>,
    pub read: Option<ReadDone>,
}

impl Job {
    /// Runs on a blocking thread: removals first, then the append, then the read.
    pub fn run(self) -> JobDone {
        let Job {
            mut writer,
            removals,
            append,
            now_ms,
            read,
        } = self;
        for path in removals {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, segment = %path.display(), "eye-client outbox: cannot delete a settled segment");
            }
        }
        let appended = (!append.is_empty()).then(|| writer.append(&append, now_ms));
        let read = read.map(read_records);
        JobDone {
            writer,
            events: append,
            appended,
            read,
        }
    }
}

fn read_records(r: ReadRequest) -> ReadDone {
    match format::read_chunk(&r.path, r.offset, r.end, r.max_records, READ_BYTES) {
        Ok(chunk) => {
            // Each record was an `Event` when it was tracked: read back, it is checked
            // by every rule but the clock's, so a clock stepped back since does not
            // drop it here (the server judges the timestamp on delivery).
            let ctx = ValidationContext::any_time();
            ReadDone {
                seq: r.seq,
                records: chunk
                    .records
                    .into_iter()
                    .map(|(ms, json)| {
                        (
                            ms,
                            Event::parse_json(&json, &ctx).map_err(|e| e.to_string()),
                        )
                    })
                    .collect(),
                next_offset: chunk.next_offset,
                corrupt: chunk.corrupt,
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, segment = %r.path.display(), "eye-client outbox: cannot read a segment");
            ReadDone {
                seq: r.seq,
                records: Vec::new(),
                next_offset: r.offset,
                corrupt: true,
            }
        }
    }
}
