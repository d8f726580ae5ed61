//! What became of tracked events: the report [`crate::EyeClient::flush`] and
//! [`crate::EyeClient::shutdown`] return, and the live counters of [`crate::Stats`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use eye_core::{Event, ValidationErrors};
use uuid::Uuid;

use crate::error::FailureReason;

/// An event the server refused, with every reason. Final: the same event would be
/// refused again, so it is never retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The event as sent (its id is set).
    pub event: Event,
    /// The server's reasons.
    pub errors: ValidationErrors,
}

impl Rejection {
    /// The event's id.
    pub fn id(&self) -> Uuid {
        self.event.id().unwrap_or_default()
    }
}

/// An event the client gave up on. The server did not store it, except perhaps after
/// an answer the client could not read ([`FailureReason::UnexpectedResponse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The event as sent (its id is set).
    pub event: Event,
    /// Why the client gave up.
    pub reason: FailureReason,
}

/// The fate of every event whose fate was settled since the previous report.
///
/// Each event tracked (or found in the outbox when the client started) is counted in
/// exactly one report, in exactly one of `delivered`, `rejected`, `failed`, `evicted`
/// or `pending`; `dropped` counts the events [`crate::EyeClient::track`] refused. `rejections` and `failures` hold the details of
/// the first few (up to the builder's `report_detail_limit`); the counts are always
/// exact.
///
/// ```
/// let report = eye_client::DeliveryReport::default();
/// assert!(report.is_complete());
/// assert_eq!(report.to_string(), "delivered 0, rejected 0, failed 0, dropped 0, pending 0");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "the report says which events were not delivered"]
pub struct DeliveryReport {
    /// Accepted by the server (answered 2xx): durable there, and stored once (with the
    /// server's default journal, shortly after the answer).
    pub delivered: u64,
    /// Refused by the server's validation: see `rejections`.
    pub rejected: u64,
    /// Given up on (retries exhausted, auth refused, too large, an answer that is not
    /// the Eye's): see `failures`. Events of a delivery task that panicked count here
    /// without details.
    pub failed: u64,
    /// Refused by `track` because the buffer was full or the client closed.
    pub dropped: u64,
    /// Neither delivered nor given up on when the report was made: a shutdown ran out
    /// of time. Such an event may or may not have been stored. With an outbox it stays
    /// there, and the next client on the directory delivers it.
    pub pending: u64,
    /// Dropped by the outbox's bounds (older than its age bound, or the oldest when it
    /// was over its byte bound), or unreadable in it. Always 0 without an outbox.
    pub evicted: u64,
    /// Of the events above, how many a previous client left in the outbox (they were
    /// not tracked by this one). Always 0 without an outbox.
    pub from_outbox: u64,
    /// Events waiting in the outbox when the report was made: after `flush` while the
    /// server is unreachable, or left for the next client after `shutdown`. Not a fate:
    /// a later report (or the next client's) counts each of them once settled.
    pub in_outbox: u64,
    /// The first rejections, with reasons.
    pub rejections: Vec<Rejection>,
    /// The first failures, with reasons.
    pub failures: Vec<Failure>,
}

impl DeliveryReport {
    /// True when nothing was rejected, failed, dropped, evicted or left pending, and
    /// nothing waits in the outbox.
    pub fn is_complete(&self) -> bool {
        self.undelivered() == 0 && self.in_outbox == 0
    }

    /// How many events were not (or not known to be) delivered.
    pub fn undelivered(&self) -> u64 {
        self.rejected + self.failed + self.dropped + self.pending + self.evicted
    }

    /// Adds another report's outcomes to this one.
    pub fn merge(&mut self, other: DeliveryReport) {
        self.delivered += other.delivered;
        self.rejected += other.rejected;
        self.failed += other.failed;
        self.dropped += other.dropped;
        self.pending += other.pending;
        self.evicted += other.evicted;
        self.from_outbox += other.from_outbox;
        // A snapshot, not a count: the later report's holds.
        self.in_outbox = other.in_outbox;
        self.rejections.extend(other.rejections);
        self.failures.extend(other.failures);
    }
}

impl fmt::Display for DeliveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "delivered {}, rejected {}, failed {}, dropped {}, pending {}",
            self.delivered, self.rejected, self.failed, self.dropped, self.pending
        )?;
        // Only with an outbox, so reports without one read as they always did.
        if self.evicted + self.from_outbox + self.in_outbox > 0 {
            write!(
                f,
                ", evicted {}, from outbox {}, in outbox {}",
                self.evicted, self.from_outbox, self.in_outbox
            )?;
        }
        Ok(())
    }
}

/// Cumulative counters since the client was built; read them with
/// [`crate::EyeClient::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events `track` accepted into the buffer.
    pub tracked: u64,
    /// Events the server accepted (answered 2xx): durable there, stored once.
    pub delivered: u64,
    /// Events the server refused.
    pub rejected: u64,
    /// Events given up on.
    pub failed: u64,
    /// Events `track` refused (buffer full or client closed).
    pub dropped: u64,
    /// Requests repeated after a retryable failure.
    pub retried: u64,
    /// HTTP requests made to `POST /events`.
    pub requests: u64,
    /// Events a previous client left in the outbox, found when this one started.
    pub recovered: u64,
    /// Events the outbox's bounds dropped (see [`DeliveryReport::evicted`]).
    pub evicted: u64,
}

impl Stats {
    /// Events tracked (or recovered from the outbox) whose fate is not settled:
    /// buffered, in the outbox, in flight, or given up on at a shutdown deadline
    /// (reported once as `pending`).
    pub fn pending(&self) -> u64 {
        (self.tracked + self.recovered)
            .saturating_sub(self.delivered + self.rejected + self.failed + self.evicted)
    }
}

/// The shared atomic counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub tracked: AtomicU64,
    pub delivered: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub retried: AtomicU64,
    pub requests: AtomicU64,
    pub recovered: AtomicU64,
    pub evicted: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            tracked: get(&self.tracked),
            delivered: get(&self.delivered),
            rejected: get(&self.rejected),
            failed: get(&self.failed),
            dropped: get(&self.dropped),
            retried: get(&self.retried),
            requests: get(&self.requests),
            recovered: get(&self.recovered),
            evicted: get(&self.evicted),
        }
    }
}
