//! State shared by the handles and the background sender: counters and the stop
//! deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use crate::report::{Counters, DeliveryReport};

#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub counters: Counters,
    /// Set once shutdown starts: `track` refuses new events.
    pub closed: AtomicBool,
    /// Set when the sender has stopped: it will report nothing more.
    pub sender_done: AtomicBool,
    /// What the reports said so far, so that each event and each drop is in one.
    reported: Mutex<Reported>,
    /// When set, the sender abandons whatever is not delivered by this instant.
    stop_at: Mutex<Option<Instant>>,
    stop_changed: Notify,
}

/// Totals over every report made.
#[derive(Debug, Default)]
struct Reported {
    dropped: u64,
    /// Events reported as pending: never settled, and never to be reported again.
    pending: u64,
}

impl Shared {
    /// Completes a report: adds the drops no report has counted yet, and records its
    /// pending events as reported, so that no later report counts them again.
    pub fn seal(&self, report: &mut DeliveryReport) {
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        report.dropped = dropped.saturating_sub(reported.dropped);
        reported.dropped = dropped;
        reported.pending += report.pending;
    }

    /// The report a handle makes once it can no longer ask the sender: the drops not
    /// reported yet and, once the sender has stopped, the events it never reported
    /// (if it stopped abnormally). While it still runs, the sender reports its events
    /// itself.
    pub fn closed_report(&self) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        if self.sender_done.load(Ordering::Acquire) {
            report.pending = self.unsettled_unreported();
        }
        self.seal(&mut report);
        report
    }

    /// Events not settled and not yet reported as pending.
    pub fn unsettled_unreported(&self) -> u64 {
        let reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        let unsettled = self.counters.snapshot().pending();
        unsettled.saturating_sub(reported.pending)
    }

    /// Asks the sender to give up on anything not delivered by `at` (the earliest of
    /// all such requests wins).
    pub fn stop_by(&self, at: Instant) {
        {
            let mut slot = self.stop_at.lock().unwrap_or_else(PoisonError::into_inner);
            *slot = Some(slot.map_or(at, |old| old.min(at)));
        }
        self.stop_changed.notify_waiters();
    }

    fn deadline(&self) -> Option<Instant> {
        *self.stop_at.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn past_deadline(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Completes when the stop deadline passes (never, if none is ever set).
    pub async fn deadline_reached(&self) {
        loop {
            let changed = self.stop_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.deadline() {
                Some(at) => {
                    tokio::time::sleep_until(at.into()).await;
                    return;
                }
                None => changed.await,
            }
        }
    }
}
