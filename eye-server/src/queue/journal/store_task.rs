//! The store task: takes the reader's batches in order, writes them to the store, and
//! deletes each segment once everything in it is stored.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::dead_letters::dead_letter;
use super::reader::{Batch, READ_AHEAD, Read, read_loop};
use super::segment;
use super::{JournalConfig, Shared};
use crate::backoff::Backoff;
use crate::metrics::names;
use crate::sink::{Groups, write_with_fallback};
use crate::store::Store;

/// The store task: stores what the reader hands it, in order, and deletes each
/// segment once everything in it is stored. Ends once the queue is closed and
/// everything is stored (or, while closing, when the store keeps failing: the rest
/// stays in the journal for the next start).
pub(super) async fn store_loop(store: Store, shared: Arc<Shared>, config: JournalConfig, seq: u64) {
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
            if batch.segment_corrupt {
                keep_corrupt_segment(&config.dir, seq);
            } else {
                remove_segment(&config.dir, seq);
            }
            // Space was freed: the next append may succeed again.
            shared.append_failing.store(false, Ordering::Release);
        }
    }
    drop(rx);
    let _ = reader.await;
}

/// Moves a segment that had corrupt stretches aside as `<segment>.corrupt` (its good
/// frames are stored) for an operator to inspect; the journal no longer reads it.
fn keep_corrupt_segment(dir: &Path, seq: u64) {
    let path = segment::path(dir, seq);
    let aside = path.with_extension("seg.corrupt");
    match fs::rename(&path, &aside) {
        Ok(()) => tracing::error!(path = %aside.display(), "corrupt journal segment kept aside"),
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "cannot move a corrupt journal segment aside; deleting it");
            remove_segment(dir, seq);
        }
    }
}

pub(super) fn remove_segment(dir: &Path, seq: u64) {
    let path = segment::path(dir, seq);
    if let Err(e) = fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(error = %e, path = %path.display(), "cannot delete a stored journal segment");
    }
}

/// Stores a batch, however long the store takes to come back, following the fallback
/// rule of [`crate::sink`]: a failure of the store itself (busy, locked, I/O, full
/// disk) is retried with backoff, from the first message not yet settled; a batch
/// refused because of its data is written message by message, and a message the store
/// still refuses goes to the dead-letter file, as does a frame this version cannot
/// decode.
///
/// Returns `false` when it gave up because the store kept failing while the queue is
/// closing: the rest of the batch stays in the journal for the next start.
async fn store_batch(store: &Store, dir: &Path, batch: &Batch, shared: &Shared) -> bool {
    let mut retry = StoreRetry::default();
    let mut rest = batch.messages.as_slice();
    while !rest.is_empty() {
        let written = write_with_fallback(store, rest, Groups::EachMessage).await;
        for (i, e) in &written.refused {
            let raw = serde_json::to_vec(&rest[*i]).unwrap_or_default();
            dead_letter(dir, &raw, &e.to_string());
        }
        if written.all_stored() && written.settled == rest.len() {
            metrics::histogram!(names::COMMIT_GROUP_MESSAGES).record(rest.len() as f64);
        }
        rest = &rest[written.settled..];
        if let Some(e) = written.unavailable {
            tracing::error!(error = %e, events = rest.len(), "store unavailable; retrying");
            if !retry.wait(shared).await {
                return false;
            }
        }
    }
    for raw in &batch.undecodable {
        dead_letter(dir, raw, "undecodable message");
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
