//! The journal's dead-letter file, `dead-letters.jsonl` in the journal directory: what
//! the store refused for good, or what this version cannot decode, one JSON object per
//! line (the reason and the message), for an operator to inspect and replay.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use crate::metrics::names;

/// Appends a message the store cannot take to `dead-letters.jsonl` in the journal
/// directory (one JSON object per line: the reason and the message).
pub(super) fn dead_letter(dir: &Path, raw: &[u8], reason: &str) {
    metrics::counter!(names::JOURNAL_DEAD_LETTERS).increment(1);
    let line = serde_json::json!({
        "reason": reason,
        "message": String::from_utf8_lossy(raw),
    });
    let path = dir.join("dead-letters.jsonl");
    let written = super::private(OpenOptions::new().create(true).append(true))
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"));
    match written {
        Ok(()) => tracing::error!(reason, path = %path.display(), "message dead-lettered"),
        Err(e) => {
            tracing::error!(error = %e, reason, message = %line, "message lost: cannot write the dead-letter file")
        }
    }
}
