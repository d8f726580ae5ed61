//! Writing to a store that may fail: the one fallback rule every path into the store
//! follows (the journal's store task, the group-commit writer of `--ack-after store`
//! and the Redis worker).
//!
//! 1. Write the whole batch in one transaction.
//! 2. If the store refuses it because of *itself* (busy, locked, I/O error, full disk:
//!    [`StoreError::is_transient`]), nothing is split: the caller backs off (or, with a
//!    client waiting, answers 503) and tries again later.
//! 3. If the store refuses it because of the *data*, each group (a message, or one
//!    request's messages) is written on its own, so one bad message cannot hold back
//!    the others. Groups the store still refuses are reported; what happens to them
//!    (a dead letter, a 4xx, left pending for a redelivery) is the caller's choice.
//!
//! Writes are idempotent on event id, so writing a group again after an outcome that
//! was not seen is harmless.
//!
//! # Layout
//!
//! - [`Sink`]: where messages go; [`Store`] in production, a failing wrapper in tests.
//! - [`write_with_fallback`] and its [`Written`] verdict.

use async_trait::async_trait;

use crate::message::Message;
use crate::store::{Store, StoreError, WriteOutcome};

/// Where messages are written. [`Store`] is the real one; tests may put a sink in front
/// of it that fails on purpose (a fault a real store cannot be made to produce).
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Writes a batch in one transaction, idempotent on event id (see
    /// [`Store::write_batch`]).
    async fn write_batch(&self, messages: &[Message]) -> Result<WriteOutcome, StoreError>;
}

#[async_trait]
impl Sink for Store {
    async fn write_batch(&self, messages: &[Message]) -> Result<WriteOutcome, StoreError> {
        Store::write_batch(self, messages).await
    }
}

/// How a batch is split when the store refuses it because of its data.
#[derive(Debug, Clone, Copy)]
pub enum Groups<'a> {
    /// Every message on its own (the journal, the worker).
    EachMessage,
    /// Consecutive groups of these sizes (one per request, so each request gets its own
    /// answer); the sizes add up to the batch's length.
    Sizes(&'a [usize]),
}

impl Groups<'_> {
    fn ranges(self, len: usize) -> Vec<std::ops::Range<usize>> {
        match self {
            Self::EachMessage => (0..len).map(|i| i..i + 1).collect(),
            Self::Sizes(sizes) => {
                let mut start = 0;
                sizes
                    .iter()
                    .map(|&n| {
                        let r = start..(start + n).min(len);
                        start += n;
                        r
                    })
                    .collect()
            }
        }
    }
}

/// The verdict on a batch written by [`write_with_fallback`].
///
/// Groups are settled in order: the first [`Self::settled`] groups were each either
/// stored or refused (listed in [`Self::refused`]); the rest were not written, because
/// the store became unavailable ([`Self::unavailable`] says why).
#[derive(Debug, Default)]
pub struct Written {
    /// What the groups that committed did.
    pub outcome: WriteOutcome,
    /// Groups the store refused because of their data, by index, with the reason.
    pub refused: Vec<(usize, StoreError)>,
    /// How many groups, from the first, were stored or refused.
    pub settled: usize,
    /// Set when the store itself failed: groups from [`Self::settled`] on were not
    /// written.
    pub unavailable: Option<StoreError>,
}

impl Written {
    /// Whether every group was stored.
    pub fn all_stored(&self) -> bool {
        self.unavailable.is_none() && self.refused.is_empty()
    }

    /// Whether group `i` was stored (committed, or already stored before).
    pub fn stored(&self, i: usize) -> bool {
        i < self.settled && !self.refused.iter().any(|(r, _)| *r == i)
    }
}

/// Writes `messages` following the module's rule: the whole batch in one transaction;
/// on a data error, each group of `groups` alone; on a store error, stop.
///
/// ```no_run
/// # async fn demo(store: eye_server::store::Store, messages: Vec<eye_server::message::Message>) {
/// use eye_server::sink::{Groups, write_with_fallback};
/// let written = write_with_fallback(&store, &messages, Groups::EachMessage).await;
/// for (i, error) in &written.refused {
///     eprintln!("message {i} refused: {error}");
/// }
/// if let Some(e) = &written.unavailable {
///     eprintln!("store unavailable ({e}); retry messages {}.. later", written.settled);
/// }
/// # }
/// ```
pub async fn write_with_fallback<S: Sink + ?Sized>(
    sink: &S,
    messages: &[Message],
    groups: Groups<'_>,
) -> Written {
    let ranges = groups.ranges(messages.len());
    let mut written = Written::default();
    if messages.is_empty() {
        written.settled = ranges.len();
        return written;
    }
    let error = match sink.write_batch(messages).await {
        Ok(outcome) => {
            written.outcome = outcome;
            written.settled = ranges.len();
            return written;
        }
        Err(e) if e.is_transient() => {
            written.unavailable = Some(e);
            return written;
        }
        Err(e) => e,
    };
    if ranges.len() == 1 {
        // Nothing to split: the one group is refused.
        written.refused.push((0, error));
        written.settled = 1;
        return written;
    }
    tracing::warn!(error = %error, groups = ranges.len(), "batch refused by the store; writing its parts one by one");
    for (i, range) in ranges.into_iter().enumerate() {
        match sink.write_batch(&messages[range]).await {
            Ok(outcome) => add(&mut written.outcome, outcome),
            Err(e) if e.is_transient() => {
                written.unavailable = Some(e);
                return written;
            }
            Err(e) => written.refused.push((i, e)),
        }
        written.settled = i + 1;
    }
    written
}

fn add(total: &mut WriteOutcome, part: WriteOutcome) {
    total.inserted += part.inserted;
    total.duplicates += part.duplicates;
    total.errors_logged += part.errors_logged;
    total.suppressed += part.suppressed;
}
