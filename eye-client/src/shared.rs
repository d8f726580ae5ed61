//! State shared by the handles and the background sender: counters and the stop
//! deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use crate::report::Counters;

#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub counters: Counters,
    /// Set once shutdown starts: `track` refuses new events.
    pub closed: AtomicBool,
    /// When set, the sender abandons whatever is not delivered by this instant.
    stop_at: Mutex<Option<Instant>>,
    stop_changed: Notify,
}

impl Shared {
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
