//! The segment file format, and reading it back.
//!
//! A segment starts with the 8-byte magic `EYEOBX01`, then holds records back to
//! back:
//!
//! ```text
//! len: u32 LE | crc: u32 LE (CRC-32 of the payload) | payload (len bytes)
//! payload = written_ms: u64 LE (Unix time the record was written) | the event as JSON
//! ```
//!
//! A record whose length runs past the end of the file, or whose CRC does not match,
//! ends the readable part of the segment: the records before it are kept, it and
//! whatever follows are skipped. A crash in the middle of a write leaves exactly such
//! a torn last record; a segment is never appended to after it was reopened, so a torn
//! record is always the last one.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// The first bytes of every segment (the format's version is its last digit).
pub(crate) const MAGIC: &[u8; 8] = b"EYEOBX01";
/// Length and CRC before each payload.
pub(crate) const FRAME: usize = 8;
/// The largest payload a reader believes; a larger length is corruption (events are
/// limited to far less by the server).
const MAX_PAYLOAD: usize = 16 << 20;

/// Appends one record to `buf`.
pub(crate) fn encode(buf: &mut Vec<u8>, written_ms: u64, json: &[u8]) {
    let len = u32::try_from(8 + json.len()).unwrap_or(u32::MAX);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&written_ms.to_le_bytes());
    hasher.update(json);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&hasher.finalize().to_le_bytes());
    buf.extend_from_slice(&written_ms.to_le_bytes());
    buf.extend_from_slice(json);
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<'a> {
    /// A whole, intact record of `size` bytes (frame included).
    Record {
        written_ms: u64,
        json: &'a [u8],
        size: usize,
    },
    /// The buffer ends inside a record that needs `size` bytes in all.
    Incomplete { size: usize },
    /// Not a record: a bad length or CRC.
    Corrupt,
}

/// Decodes the record at the start of `buf`.
pub(crate) fn decode(buf: &[u8]) -> Next<'_> {
    let Some((frame, rest)) = buf.split_first_chunk::<FRAME>() else {
        return Next::Incomplete { size: FRAME };
    };
    let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
    if !(8..=MAX_PAYLOAD).contains(&len) {
        return Next::Corrupt;
    }
    let Some(payload) = rest.get(..len) else {
        return Next::Incomplete { size: FRAME + len };
    };
    if crc32fast::hash(payload) != crc {
        return Next::Corrupt;
    }
    let (ms, json) = payload.split_at(8);
    let mut ms_bytes = [0u8; 8];
    ms_bytes.copy_from_slice(ms);
    Next::Record {
        written_ms: u64::from_le_bytes(ms_bytes),
        json,
        size: FRAME + len,
    }
}

/// What a segment holds, as far as it is readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Intact records before the first bad one (or the end).
    pub records: u64,
    /// Bytes up to the end of the last intact record (header included).
    pub valid_len: u64,
    /// Bytes after it: a torn or corrupt tail that is skipped.
    pub skipped: u64,
    /// The newest record's write time (0 when there is none).
    pub newest_ms: u64,
}

/// Reads a whole segment and counts its intact records. `None` when the file does not
/// start with the magic (an empty file from a crash right after its creation, or not
/// a segment at all).
pub(crate) fn scan(path: &Path) -> io::Result<Option<Scan>> {
    let bytes = std::fs::read(path)?;
    Ok(scan_bytes(&bytes))
}

pub(crate) fn scan_bytes(bytes: &[u8]) -> Option<Scan> {
    let body = bytes.strip_prefix(MAGIC.as_slice())?;
    let mut scan = Scan {
        records: 0,
        valid_len: MAGIC.len() as u64,
        skipped: 0,
        newest_ms: 0,
    };
    let mut at = 0;
    while at < body.len() {
        match decode(&body[at..]) {
            Next::Record {
                written_ms, size, ..
            } => {
                scan.records += 1;
                scan.newest_ms = scan.newest_ms.max(written_ms);
                at += size;
            }
            Next::Incomplete { .. } | Next::Corrupt => break,
        }
    }
    scan.valid_len += at as u64;
    scan.skipped = (body.len() - at) as u64;
    Some(scan)
}

/// Records read from one segment.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// Each record's write time and JSON.
    pub records: Vec<(u64, Vec<u8>)>,
    /// Where the next read starts.
    pub next_offset: u64,
    /// A bad record was met before `end`: the rest of the segment is unreadable.
    pub corrupt: bool,
}

/// Reads up to `max_records` records (and about `max_bytes`, but always at least one)
/// from `offset`, never past `end` (the end of the part known to be intact).
pub(crate) fn read_chunk(
    path: &Path,
    offset: u64,
    end: u64,
    max_records: usize,
    max_bytes: usize,
) -> io::Result<Chunk> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let available = usize::try_from(end.saturating_sub(offset)).unwrap_or(usize::MAX);
    let mut buf = vec![0u8; available.min(max_bytes.max(FRAME))];
    file.read_exact(&mut buf)?;
    let mut chunk = Chunk {
        next_offset: offset,
        ..Chunk::default()
    };
    let mut at = 0;
    while chunk.records.len() < max_records && (chunk.next_offset - offset) < available as u64 {
        match decode(&buf[at..]) {
            Next::Record {
                written_ms,
                json,
                size,
            } => {
                chunk.records.push((written_ms, json.to_vec()));
                at += size;
                chunk.next_offset += size as u64;
            }
            Next::Incomplete { size } if chunk.records.is_empty() && size <= available => {
                // One record larger than `max_bytes`: read exactly it.
                buf.resize(size, 0);
                file.seek(SeekFrom::Start(offset))?;
                file.read_exact(&mut buf)?;
            }
            Next::Incomplete { .. } if !chunk.records.is_empty() => break,
            Next::Incomplete { .. } | Next::Corrupt => {
                chunk.corrupt = true;
                break;
            }
        }
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[(u64, &str)]) -> Vec<u8> {
        let mut buf = MAGIC.to_vec();
        for (ms, json) in records {
            encode(&mut buf, *ms, json.as_bytes());
        }
        buf
    }

    #[test]
    fn a_torn_last_record_is_skipped_and_the_ones_before_it_kept() {
        let whole = segment(&[(1, "{\"a\":1}"), (2, "{\"b\":2}"), (3, "{\"c\":3}")]);
        for cut in 1..20 {
            let torn = &whole[..whole.len() - cut];
            let scan = scan_bytes(torn).unwrap_or_else(|| panic!("magic kept at cut {cut}"));
            assert_eq!(scan.records, 2, "cut {cut}");
            assert_eq!(scan.newest_ms, 2);
            assert_eq!(scan.valid_len + scan.skipped, torn.len() as u64);
        }
    }

    #[test]
    fn a_flipped_bit_ends_the_readable_part_at_that_record() {
        let mut bytes = segment(&[(1, "{\"a\":1}"), (2, "{\"b\":2}"), (3, "{\"c\":3}")]);
        let second = MAGIC.len() + FRAME + 8 + 7 + FRAME + 9;
        bytes[second] ^= 0x40;
        let scan = scan_bytes(&bytes).unwrap_or_else(|| unreachable!());
        assert_eq!(scan.records, 1);
        assert!(scan.skipped > 0);
    }

    #[test]
    fn a_file_without_the_magic_is_not_a_segment() {
        assert_eq!(scan_bytes(b""), None);
        assert_eq!(scan_bytes(b"EYEOB"), None);
        assert_eq!(scan_bytes(b"something else entirely"), None);
    }

    #[test]
    fn chunks_stop_at_the_record_limit_and_resume_where_they_stopped() {
        let dir = std::env::temp_dir().join(format!("eye-outbox-format-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("chunk.seg");
        let bytes = segment(&[(1, "[1]"), (2, "[22]"), (3, "[333]")]);
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
        let end = bytes.len() as u64;

        let first = read_chunk(&path, 8, end, 2, 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        let rest =
            read_chunk(&path, first.next_offset, end, 10, 1).unwrap_or_else(|e| panic!("{e}"));

        assert_eq!(
            first.records,
            vec![(1, b"[1]".to_vec()), (2, b"[22]".to_vec())]
        );
        assert_eq!(rest.records, vec![(3, b"[333]".to_vec())]);
        assert_eq!(rest.next_offset, end);
        assert!(!first.corrupt && !rest.corrupt);
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    }
}
