//! The journal's files: numbered segments of checksummed frames.
//!
//! A segment is `<20-digit sequence number>.seg`. Each frame is
//! `[payload length: u32 LE][CRC-32 of the payload: u32 LE][payload]`, the payload one
//! [`Message`] as JSON. A frame is appended whole or, when the process dies in the
//! middle of a write, torn: a torn frame can only be the last one of a segment (a
//! writer never appends to a segment it did not create), and it was never
//! acknowledged, so readers stop there.
//!
//! The checksum covers the payload, not the length. A corrupted length can therefore
//! pass when the shorter (or longer) payload happens to have the same CRC-32: the
//! `segment_mutated` fuzz target built one (`ff ff ff ff 00` read as 4 bytes; CRC-32
//! ignores zero bytes once its register is zero). For a queue message the result is
//! cut JSON, which is kept raw as undecodable (dead-lettered), never a wrong message.
//! Covering the header too would change the on-disk format.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::message::Message;

/// Bytes before each payload: length and checksum.
pub const HEADER_BYTES: u64 = 8;

/// Largest payload a reader accepts; anything bigger is a corrupt length. Events are
/// limited far below this by the body limit.
const MAX_FRAME_BYTES: u32 = 64 * 1024 * 1024;

/// Appends `message` as one frame to `buf`.
///
/// ```
/// # use eye_server::queue::journal::segment::{encode, read_frames, Frame, FrameEnd};
/// # use eye_server::message::{Message, AcceptedEvent};
/// let event = eye_core::Event::page_view("s1", "www.example.com", "/").unwrap();
/// let message = Message::EventV1(AcceptedEvent {
///     client_timestamp: None,
///     id: uuid::Uuid::now_v7(),
///     application: "shop".into(),
///     received_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
///     event,
/// });
/// let mut buf = Vec::new();
/// encode(&message, &mut buf).unwrap();
/// let mut frames = Vec::new();
/// let end = read_frames(&mut buf.as_slice(), buf.len() as u64, usize::MAX, &mut frames).unwrap();
/// assert_eq!(end, FrameEnd::Limit(buf.len() as u64));
/// assert_eq!(frames, vec![Frame::Message(message)]);
/// ```
pub fn encode(message: &Message, buf: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_BYTES as usize]);
    serde_json::to_writer(&mut *buf, message)?;
    let payload = &buf[start + HEADER_BYTES as usize..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Where [`read_frames`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameEnd {
    /// It reached the byte limit or the frame limit; the offset after the last frame.
    Limit(u64),
    /// The bytes ran out before the limit: end of the file, possibly a torn frame
    /// after the given offset.
    Eof(u64),
    /// A frame at this offset has a bad length or checksum.
    Corrupt(u64),
}

/// Decoded frames, or the ones that could not be decoded (kept raw for the
/// dead-letter file).
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A message.
    Message(Message),
    /// A frame with a good checksum whose JSON is not a message this version knows.
    Undecodable(Vec<u8>),
}

/// Most bytes of frames one read returns (it stops at the first frame boundary at or
/// past it), whatever the frame count allows: a batch of large events stays a few tens
/// of MiB in memory.
pub const MAX_READ_BYTES: u64 = 16 * 1024 * 1024;

/// Reads frames from `reader`, positioned at a frame start, up to `limit` bytes and
/// `max` frames (and about [`MAX_READ_BYTES`]), appending them to `out`, undecodable
/// ones too. Returns how far it got, relative to where `reader` started.
pub fn read_frames(
    reader: &mut impl Read,
    limit: u64,
    max: usize,
    out: &mut Vec<Frame>,
) -> io::Result<FrameEnd> {
    walk_frames(reader, limit, max, |payload| {
        out.push(match serde_json::from_slice::<Message>(payload) {
            Ok(m) => Frame::Message(m),
            Err(_) => Frame::Undecodable(payload.to_vec()),
        });
    })
}

/// [`read_frames`] without decoding: calls `each` with every good payload.
fn walk_frames(
    reader: &mut impl Read,
    limit: u64,
    max: usize,
    mut each: impl FnMut(&[u8]),
) -> io::Result<FrameEnd> {
    let mut offset = 0u64;
    let mut header = [0u8; HEADER_BYTES as usize];
    let mut payload = Vec::new();
    let mut read = 0;
    while read < max && offset < limit && offset < MAX_READ_BYTES {
        if !read_full(reader, &mut header)? {
            return Ok(FrameEnd::Eof(offset));
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || len > MAX_FRAME_BYTES || offset + HEADER_BYTES + u64::from(len) > limit {
            // Past the limit can only be a bad length: the limit is a frame boundary.
            return Ok(FrameEnd::Corrupt(offset));
        }
        // Read what is there rather than allocate the length first: a corrupt length
        // in a torn tail (up to 64 MiB) then costs only the bytes the file holds.
        payload.clear();
        let got = reader
            .by_ref()
            .take(u64::from(len))
            .read_to_end(&mut payload)?;
        if got < len as usize {
            return Ok(FrameEnd::Eof(offset));
        }
        if crc32fast::hash(&payload) != crc {
            return Ok(FrameEnd::Corrupt(offset));
        }
        each(&payload);
        offset += HEADER_BYTES + u64::from(len);
        read += 1;
    }
    Ok(FrameEnd::Limit(offset))
}

/// Fills `buf`; `false` when the bytes ran out first (a torn frame or the end).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The path of segment `seq` in `dir`.
pub fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.seg"))
}

/// The sequence numbers of the segments in `dir`, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name.strip_suffix(".seg").and_then(|s| s.parse().ok()) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Every payload the writer produces is one JSON message, an object tagged first.
const PAYLOAD_START: &[u8] = br#"{"type":""#;

/// Where the next whole frame starts in `bytes`: the first offset holding a sane
/// length, a payload that fits, starts like a message and matches its checksum. A
/// corrupt frame's bytes (a flipped bit, a bad length) are skipped this way without
/// losing the good frames after them.
pub fn find_frame(bytes: &[u8]) -> Option<usize> {
    let header = HEADER_BYTES as usize;
    let mut at = 0;
    while at + header + PAYLOAD_START.len() <= bytes.len() {
        // Candidates are rare: look for the payload's first bytes, then check the
        // header in front of them.
        let rest = &bytes[at + header..];
        let found = rest
            .windows(PAYLOAD_START.len())
            .position(|w| w == PAYLOAD_START)?;
        let start = at + found;
        let h = &bytes[start..start + header];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let end = start + header + len as usize;
        if len != 0
            && len <= MAX_FRAME_BYTES
            && end <= bytes.len()
            && crc32fast::hash(&bytes[start + header..end]) == crc
        {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

/// Reads `file` from `from` to its end and finds the next whole frame after a corrupt
/// or torn one at `from`: its absolute offset, or `None` when nothing good follows (a
/// torn tail, or corruption to the end).
pub fn resync(file: &mut File, from: u64) -> io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(from + 1))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest)?;
    Ok(find_frame(&rest).map(|at| from + 1 + at as u64))
}

/// What [`count_frames`] found in a segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Whole frames with good checksums: what a reader will hand on.
    pub frames: u64,
    /// Where a reader will stop: after the last good frame (a torn tail excluded).
    pub end: u64,
    /// Corrupt stretches skipped (each holds at least one lost frame).
    pub corrupt: u64,
}

/// Counts the good frames of a segment exactly as the journal's reader will read
/// them (checksums verified, corrupt stretches skipped), for the backlog at start-up.
pub fn count_frames(path: &Path) -> io::Result<Count> {
    let mut file = File::open(path)?;
    let mut count = Count::default();
    loop {
        file.seek(SeekFrom::Start(count.end))?;
        let mut reader = BufReader::new(&mut file);
        let end = walk_frames(&mut reader, u64::MAX, usize::MAX, |_| count.frames += 1)?;
        drop(reader);
        let (FrameEnd::Eof(n) | FrameEnd::Corrupt(n) | FrameEnd::Limit(n)) = end;
        count.end += n;
        if matches!(end, FrameEnd::Limit(_)) {
            // The per-read byte cap: carry on from here.
            continue;
        }
        match resync(&mut file, count.end)? {
            Some(next) => {
                count.corrupt += 1;
                count.end = next;
            }
            None => {
                if matches!(end, FrameEnd::Corrupt(_)) {
                    count.corrupt += 1;
                }
                return Ok(count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::message::AcceptedEvent;

    fn message(session: &str) -> Message {
        Message::EventV1(AcceptedEvent {
            client_timestamp: None,
            id: uuid::Uuid::now_v7(),
            application: "t".into(),
            // The wire format keeps microseconds.
            received_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            event: eye_core::Event::page_view(session, "www.example.com", "/").unwrap(),
        })
    }

    /// [`read_frames`], keeping only the messages.
    fn read_messages(
        reader: &mut impl Read,
        limit: u64,
        max: usize,
        out: &mut Vec<Message>,
    ) -> io::Result<FrameEnd> {
        let mut frames = Vec::new();
        let end = read_frames(reader, limit, max, &mut frames)?;
        out.extend(frames.into_iter().filter_map(|f| match f {
            Frame::Message(m) => Some(m),
            Frame::Undecodable(_) => None,
        }));
        Ok(end)
    }

    fn frames(messages: &[Message]) -> Vec<u8> {
        let mut buf = Vec::new();
        for m in messages {
            encode(m, &mut buf).unwrap();
        }
        buf
    }

    #[test]
    fn a_torn_last_frame_is_the_end_not_an_error() {
        let messages = [message("a"), message("b")];
        let buf = frames(&messages);
        let first_end = {
            let mut one = Vec::new();
            encode(&messages[0], &mut one).unwrap();
            one.len() as u64
        };
        for cut in [buf.len() - 1, buf.len() - 20, first_end as usize + 3] {
            let mut out = Vec::new();
            let end = read_messages(&mut &buf[..cut], u64::MAX, usize::MAX, &mut out).unwrap();
            assert_eq!(end, FrameEnd::Eof(first_end), "cut at {cut}");
            assert_eq!(out, messages[..1]);
        }
    }

    #[test]
    fn a_flipped_bit_is_corruption_at_that_frame() {
        let messages = [message("a"), message("b"), message("c")];
        let mut buf = frames(&messages);
        let second = {
            let mut one = Vec::new();
            encode(&messages[0], &mut one).unwrap();
            one.len()
        };
        buf[second + 20] ^= 0x40;
        let mut out = Vec::new();
        let end = read_messages(&mut buf.as_slice(), u64::MAX, usize::MAX, &mut out).unwrap();
        assert_eq!(end, FrameEnd::Corrupt(second as u64));
        assert_eq!(out, messages[..1]);
    }

    #[test]
    fn limits_stop_at_frame_boundaries() {
        let messages: Vec<_> = (0..5).map(|i| message(&i.to_string())).collect();
        let buf = frames(&messages);
        let mut out = Vec::new();
        let end = read_messages(&mut buf.as_slice(), u64::MAX, 2, &mut out).unwrap();
        let FrameEnd::Limit(two) = end else {
            panic!("{end:?}")
        };
        assert_eq!(out, messages[..2]);
        let mut rest = Vec::new();
        let end = read_messages(
            &mut &buf[two as usize..],
            buf.len() as u64 - two,
            usize::MAX,
            &mut rest,
        )
        .unwrap();
        assert_eq!(end, FrameEnd::Limit(buf.len() as u64 - two));
        assert_eq!(rest, messages[2..]);
    }

    #[test]
    fn one_read_stops_at_the_first_frame_boundary_past_the_byte_cap() {
        let one = frames(&[message("a")]);
        let n = MAX_READ_BYTES as usize / one.len() + 10;
        let buf = frames(&vec![message("a"); n]);
        let mut out = Vec::new();
        let end = read_messages(&mut buf.as_slice(), u64::MAX, usize::MAX, &mut out).unwrap();
        let want = MAX_READ_BYTES.div_ceil(one.len() as u64);
        assert_eq!(out.len() as u64, want);
        assert_eq!(end, FrameEnd::Limit(want * one.len() as u64));
    }

    #[test]
    fn undecodable_frames_are_kept_raw() {
        let mut buf = frames(&[message("a")]);
        let junk = br#"{"type":"event.v9"}"#;
        buf.extend_from_slice(&(junk.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(junk).to_le_bytes());
        buf.extend_from_slice(junk);
        let mut out = Vec::new();
        read_frames(&mut buf.as_slice(), u64::MAX, usize::MAX, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], Frame::Undecodable(junk.to_vec()));
    }

    /// Found by the `segment_bytes` fuzz target (it ran at 2,000 execs/s): a torn
    /// frame whose length field says 64 MiB made the reader allocate and zero 64 MiB
    /// before it saw the end of the file. It now reads only what is there.
    #[test]
    fn a_huge_torn_length_reads_only_the_bytes_present() {
        struct Recording<'a>(&'a [u8], usize);
        impl Read for Recording<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.1 = self.1.max(buf.len());
                self.0.read(buf)
            }
        }
        let mut buf = Vec::new();
        buf.extend_from_slice(&(MAX_FRAME_BYTES - 1).to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&[b'x'; 100]);
        let mut reader = Recording(&buf, 0);

        let mut out = Vec::new();
        let end = read_frames(&mut reader, u64::MAX, usize::MAX, &mut out).unwrap();

        assert_eq!(end, FrameEnd::Eof(0));
        assert!(out.is_empty());
        assert!(reader.1 < 1024 * 1024, "asked for a {} byte read", reader.1);
    }

    /// The known limit in the module docs, pinned: found by the `segment_mutated` fuzz
    /// target.
    #[test]
    fn a_corrupted_length_whose_checksum_still_matches_reads_as_a_shorter_frame() {
        let payload = [0xff, 0xff, 0xff, 0xff, 0x00];
        let mut buf = Vec::new();
        buf.extend_from_slice(&4u32.to_le_bytes()); // was 5
        buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        buf.extend_from_slice(&payload);

        let mut out = Vec::new();
        let end = read_frames(&mut buf.as_slice(), u64::MAX, 1, &mut out).unwrap();

        assert_eq!(crc32fast::hash(&payload[..4]), crc32fast::hash(&payload));
        assert_eq!(end, FrameEnd::Limit(12));
        assert_eq!(out, vec![Frame::Undecodable(payload[..4].to_vec())]);
    }

    #[test]
    fn count_frames_ignores_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = frames(&[message("a"), message("b"), message("c")]);
        let whole = buf.len() as u64;
        buf.extend_from_slice(&[7, 0, 0]);
        let p = path(dir.path(), 3);
        std::fs::write(&p, &buf).unwrap();
        let count = count_frames(&p).unwrap();
        assert_eq!((count.frames, count.end, count.corrupt), (3, whole, 0));
        assert_eq!(list(dir.path()).unwrap(), vec![3]);
    }

    #[test]
    fn count_frames_skips_a_corrupt_frame_and_counts_the_good_ones_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let messages: Vec<_> = (0..5).map(|i| message(&i.to_string())).collect();
        let mut buf = frames(&messages);
        let whole = buf.len() as u64;
        let one = frames(&messages[..1]).len();
        buf[one + 30] ^= 0x01; // in the second frame's payload
        let p = path(dir.path(), 1);
        std::fs::write(&p, &buf).unwrap();
        let count = count_frames(&p).unwrap();
        assert_eq!((count.frames, count.end, count.corrupt), (4, whole, 1));
    }

    #[test]
    fn count_frames_skips_a_corrupt_length_that_points_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let messages: Vec<_> = (0..3).map(|i| message(&i.to_string())).collect();
        let mut buf = frames(&messages);
        let whole = buf.len() as u64;
        let one = frames(&messages[..1]).len();
        buf[one + 3] = 0x7f; // the second frame's length, now far past the end
        let p = path(dir.path(), 1);
        std::fs::write(&p, &buf).unwrap();
        let count = count_frames(&p).unwrap();
        assert_eq!((count.frames, count.end, count.corrupt), (2, whole, 1));
    }

    #[test]
    fn find_frame_finds_the_next_whole_frame_and_nothing_in_garbage() {
        let buf = frames(&[message("a"), message("b")]);
        let one = frames(&[message("a")]).len();
        assert_eq!(find_frame(&buf), Some(0));
        assert_eq!(find_frame(&buf[1..]), Some(one - 1));
        assert_eq!(find_frame(&buf[one + 1..]), None);
        assert_eq!(find_frame(&[0u8; 4096]), None);
        let junk: Vec<u8> = br#"xx{"type":"junk"}"#.repeat(100);
        assert_eq!(find_frame(&junk), None);
    }
}
