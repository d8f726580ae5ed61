//! The journal's dead-letter file, `dead-letters.jsonl` in the journal directory: what
//! the store refused for good, or what this version cannot decode, one JSON object per
//! line (the reason and the message), for an operator to inspect and replay.
//!
//! Appends and erasures (which rewrite the file without a session's lines, possibly
//! from another process: `eye-server erase`) hold an exclusive lock on the file
//! (`flock`), and an append that finds the file replaced while it waited for the lock
//! opens the new one, so neither loses the other's work.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::metrics::names;

/// The dead-letter file's name in the journal directory.
pub const DEAD_LETTER_FILE: &str = "dead-letters.jsonl";

/// Appends a message the store cannot take to `dead-letters.jsonl` in the journal
/// directory (one JSON object per line: the reason and the message).
pub(super) fn dead_letter(dir: &Path, raw: &[u8], reason: &str) {
    metrics::counter!(names::JOURNAL_DEAD_LETTERS).increment(1);
    let line = serde_json::json!({
        "reason": reason,
        "message": String::from_utf8_lossy(raw),
    });
    let path = dir.join(DEAD_LETTER_FILE);
    let written = open_locked_for_append(&path).and_then(|mut f| writeln!(f, "{line}"));
    match written {
        Ok(()) => tracing::error!(reason, path = %path.display(), "message dead-lettered"),
        Err(e) => {
            tracing::error!(error = %e, reason, message = %line, "message lost: cannot write the dead-letter file")
        }
    }
}

/// The dead-letter file opened for appending and locked: the file at `path` now, not
/// one an erasure replaced while this waited for the lock. Unlocked when dropped.
fn open_locked_for_append(path: &Path) -> std::io::Result<File> {
    loop {
        let file = super::private(OpenOptions::new().create(true).append(true)).open(path)?;
        file.lock()?;
        if same_file(&file, path)? {
            return Ok(file);
        }
    }
}

/// Whether `file` is still the file at `path` (not replaced by a rename).
fn same_file(file: &File, path: &Path) -> std::io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let open = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) => Ok(open.ino() == now.ino() && open.dev() == now.dev()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        Ok(true)
    }
}

/// Removes from the dead-letter file in `dir` every line whose message carries
/// `session_id` ([`crate::message::carries_session`]); returns how many. The file is
/// rewritten to a temporary file, synced and renamed over the old one, under the
/// lock appends take. A missing file holds none.
///
/// ```
/// use eye_server::queue::journal::{DEAD_LETTER_FILE, erase_dead_letters};
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(
///     dir.path().join(DEAD_LETTER_FILE),
///     concat!(
///         r#"{"reason":"r","message":"{\"type\":\"event.v1\",\"event\":{\"session_id\":\"abc\"}}"}"#, "\n",
///         r#"{"reason":"r","message":"{\"type\":\"event.v1\",\"event\":{\"session_id\":\"xyz\"}}"}"#, "\n",
///     ),
/// ).unwrap();
/// assert_eq!(erase_dead_letters(dir.path(), "abc").unwrap(), 1);
/// let left = std::fs::read_to_string(dir.path().join(DEAD_LETTER_FILE)).unwrap();
/// assert!(left.contains("xyz") && !left.contains("abc"));
/// ```
pub fn erase_dead_letters(dir: &Path, session_id: &str) -> std::io::Result<u64> {
    let path = dir.join(DEAD_LETTER_FILE);
    let file = loop {
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        file.lock()?;
        if same_file(&file, &path)? {
            break file;
        }
    };
    let mut kept = Vec::new();
    let mut removed = 0;
    for line in BufReader::new(&file).split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        if carries(&line, session_id) {
            removed += 1;
        } else {
            kept.extend_from_slice(&line);
            kept.push(b'\n');
        }
    }
    if removed == 0 {
        return Ok(0);
    }
    let tmp = dir.join(format!("{DEAD_LETTER_FILE}.tmp"));
    let mut out =
        super::private(OpenOptions::new().create(true).write(true).truncate(true)).open(&tmp)?;
    out.write_all(&kept)?;
    out.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    // The lock on the old file is released with `file`, after the rename: an append
    // waiting for it finds the file replaced and opens the new one.
    drop(file);
    Ok(removed)
}

/// Whether one line of the file (`{"reason", "message"}`) carries `session_id`.
fn carries(line: &[u8], session_id: &str) -> bool {
    crate::message::carries_session(&String::from_utf8_lossy(line), session_id)
}
