//! Shared checks for the fuzz targets: what must hold of every parse, not only "no
//! panic".
//!
//! # Layout
//!
//! - [`ctx`]: a fixed validation clock, so a finding replays identically.
//! - [`check_event_outcome`]: an accepted event round-trips through its own JSON; a
//!   rejected one carries errors whose paths are JSON pointers into the input.
//! - [`timestamp_pattern`], [`query_time_pattern`]: the schema's patterns compiled, to
//!   check that the parsers and the published documents agree.
//! - [`check_frames`]: a reference walk of a journal segment that every
//!   `read_frames` answer must match.

use std::sync::OnceLock;

use chrono::{DateTime, TimeZone, Utc};
use eye_core::{ErrorCode, Event, MAX_EVENT_BYTES, ValidationContext, ValidationErrors};
use eye_server::message::Message;
use eye_server::queue::journal::segment::{Frame, FrameEnd, HEADER_BYTES, MAX_READ_BYTES};
use regex::Regex;
use serde_json::Value;

/// Validation as of 2030-01-01: late enough that most fuzzed dates are in the past,
/// fixed so a crash replays the same way tomorrow.
pub fn ctx() -> ValidationContext {
    let now: DateTime<Utc> = Utc
        .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid instant");
    ValidationContext::at(now)
}

/// Checks the result of parsing one event. `input` is the input as a JSON value when
/// it is one (`None` for bytes that are not JSON).
///
/// - Accepted: the event serialises to JSON that parses back to the same event (under
///   the same clock), through `parse_json` when that JSON fits the size limit.
/// - Rejected: at least one error; every path is an RFC 6901 pointer; a missing
///   field's parent exists in the input (and the field does not); every other error
///   points at a value that exists in the input.
pub fn check_event_outcome(
    result: &Result<Event, ValidationErrors>,
    input: Option<&Value>,
    ctx: &ValidationContext,
) {
    match result {
        Ok(event) => {
            let json = serde_json::to_vec(event).expect("an event always serialises");
            let back = if json.len() <= MAX_EVENT_BYTES {
                Event::parse_json(&json, ctx)
            } else {
                // Re-serialising may grow the text (`1E2` becomes `100.0`); the size
                // limit is about what was sent, so compare values past it.
                Event::parse_value(&serde_json::from_slice(&json).expect("own JSON"), ctx)
            };
            match back {
                Ok(back) => assert_eq!(&back, event, "round trip changed the event"),
                Err(e) => panic!(
                    "the event's own JSON is refused: {e}\njson: {}",
                    String::from_utf8_lossy(&json)
                ),
            }
        }
        Err(errors) => {
            assert!(!errors.errors().is_empty(), "a rejection with no error");
            for e in errors.errors() {
                assert!(
                    is_pointer(&e.path),
                    "error path {:?} is not a JSON pointer",
                    e.path
                );
                let Some(input) = input else {
                    assert_eq!(e.path, "", "bytes that are not JSON have no fields");
                    continue;
                };
                if e.code == ErrorCode::MissingField {
                    let (parent, key) = split_last(&e.path);
                    let parent = input
                        .pointer(parent)
                        .and_then(Value::as_object)
                        .unwrap_or_else(|| panic!("missing {:?}: no parent object", e.path));
                    assert!(!parent.contains_key(&key), "{:?} is not missing", e.path);
                } else {
                    assert!(
                        input.pointer(&e.path).is_some(),
                        "error {:?} ({}) points at nothing in the input",
                        e.path,
                        e.code
                    );
                }
            }
        }
    }
}

/// True for `""` and `/token/token...` with `~` only as `~0` or `~1` (RFC 6901).
fn is_pointer(path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    if !path.starts_with('/') {
        return false;
    }
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return false;
        }
    }
    true
}

/// The parent pointer and the unescaped last token of a non-empty pointer.
fn split_last(path: &str) -> (&str, String) {
    let i = path.rfind('/').expect("a non-empty pointer has a slash");
    let token = path[i + 1..].replace("~1", "/").replace("~0", "~");
    (&path[..i], token)
}

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("pattern {pattern:?}: {e}"))
}

/// The event schema's `timestamp` pattern, compiled.
pub fn timestamp_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let schema = eye_core::event_schema();
        let pattern =
            find_pattern(schema.as_value()).expect("the event schema has a timestamp pattern");
        compile(&pattern)
    })
}

/// Finds the first `pattern` under a `Timestamp` definition of the schema.
fn find_pattern(schema: &Value) -> Option<String> {
    let defs = schema.get("$defs").or_else(|| schema.get("definitions"))?;
    let ts = defs.get("Timestamp")?;
    ts.get("pattern")?.as_str().map(str::to_owned)
}

/// The pattern the OpenAPI document gives `start_time` and `end_time`.
pub fn query_time_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| compile(eye_core::QUERY_TIME_PATTERN))
}

/// One frame as the segment format defines it, found by [`reference_walk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefFrame {
    /// Offset of the header.
    pub offset: usize,
    /// Payload length.
    pub len: usize,
}

/// Walks `bytes` as the format documents it, independently of `read_frames`: the
/// frames a reader with these limits must return, and where it must stop.
pub fn reference_walk(bytes: &[u8], limit: u64, max: usize) -> (Vec<RefFrame>, FrameEnd) {
    const MAX_FRAME_BYTES: u64 = 64 * 1024 * 1024;
    let mut frames = Vec::new();
    let mut offset = 0usize;
    loop {
        let o = offset as u64;
        if frames.len() >= max || o >= limit || o >= MAX_READ_BYTES {
            return (frames, FrameEnd::Limit(o));
        }
        let Some(header) = bytes.get(offset..offset + HEADER_BYTES as usize) else {
            return (frames, FrameEnd::Eof(o));
        };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let len64 = u64::from(len);
        if len == 0 || len64 > MAX_FRAME_BYTES || o + HEADER_BYTES + len64 > limit {
            return (frames, FrameEnd::Corrupt(o));
        }
        let start = offset + HEADER_BYTES as usize;
        let Some(payload) = bytes.get(start..start + len as usize) else {
            return (frames, FrameEnd::Eof(o));
        };
        if crc32fast::hash(payload) != crc {
            return (frames, FrameEnd::Corrupt(o));
        }
        frames.push(RefFrame {
            offset,
            len: len as usize,
        });
        offset = start + len as usize;
    }
}

/// Checks a `read_frames` answer against [`reference_walk`]: the same stop, the same
/// number of frames, each one's checksum matching its header, each payload decoded
/// as a message exactly when it is one (and kept raw otherwise).
pub fn check_frames(bytes: &[u8], limit: u64, max: usize, got: &[Frame], end: FrameEnd) {
    let (want, want_end) = reference_walk(bytes, limit, max);
    assert_eq!(
        end, want_end,
        "read_frames stopped elsewhere than the format says"
    );
    assert_eq!(
        got.len(),
        want.len(),
        "read_frames returned a different frame count"
    );
    for (frame, r) in got.iter().zip(&want) {
        let header = &bytes[r.offset..r.offset + HEADER_BYTES as usize];
        let payload = &bytes[r.offset + HEADER_BYTES as usize..][..r.len];
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        assert_eq!(crc32fast::hash(payload), crc, "a frame with a bad checksum");
        match (frame, serde_json::from_slice::<Message>(payload)) {
            (Frame::Message(m), Ok(decoded)) => assert_eq!(m, &decoded),
            (Frame::Undecodable(raw), Err(_)) => assert_eq!(raw.as_slice(), payload),
            (frame, decoded) => panic!("frame {frame:?} but the payload decodes to {decoded:?}"),
        }
    }
}

/// A reader that hands out at most `chunk` bytes per call, to exercise short reads.
pub struct Chunked<'a> {
    /// What is left to read.
    pub bytes: &'a [u8],
    /// Largest read.
    pub chunk: usize,
}

impl std::io::Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.chunk.max(1)).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}
