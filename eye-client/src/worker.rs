//! The background sender: one task that owns the buffer's receiving end, batches
//! events by size or age, and keeps up to `max_in_flight` batches in flight.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use eye_core::Event;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use crate::report::DeliveryReport;
use crate::shared::Shared;
use crate::transport::{Outcome, Transport};

/// What the handles send to the worker, in order: a flush covers every event sent
/// before it.
pub(crate) enum Command {
    Event(Event),
    Flush(oneshot::Sender<DeliveryReport>),
    Shutdown(oneshot::Sender<DeliveryReport>),
}

pub(crate) struct WorkerSettings {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub max_in_flight: usize,
    pub detail_limit: usize,
}

pub(crate) struct Worker {
    rx: mpsc::Receiver<Command>,
    transport: Arc<Transport>,
    shared: Arc<Shared>,
    settings: WorkerSettings,
    batch: Vec<Event>,
    /// When the current batch must go, full or not.
    batch_due: Option<Instant>,
    in_flight: JoinSet<Outcome>,
    /// Outcomes since the last report.
    report: DeliveryReport,
    dropped_reported: u64,
}

impl Worker {
    pub fn new(
        rx: mpsc::Receiver<Command>,
        transport: Arc<Transport>,
        shared: Arc<Shared>,
        settings: WorkerSettings,
    ) -> Self {
        Self {
            rx,
            transport,
            shared,
            batch: Vec::with_capacity(settings.batch_size),
            settings,
            batch_due: None,
            in_flight: JoinSet::new(),
            report: DeliveryReport::default(),
            dropped_reported: 0,
        }
    }

    /// Runs until a shutdown command arrives or every handle is gone.
    pub async fn run(mut self) {
        loop {
            if self.batch.len() >= self.settings.batch_size && self.can_send() {
                self.dispatch();
            }
            // A full batch with every slot busy: stop reading, so the buffer (and not
            // this task) absorbs the backlog and `track` starts dropping.
            let accepting = self.batch.len() < self.settings.batch_size;
            let can_send = self.can_send();
            let due = self.batch_due;
            tokio::select! {
                biased;
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    self.absorb(done);
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)),
                    if due.is_some() && can_send => self.dispatch(),
                cmd = self.rx.recv(), if accepting => match cmd {
                    Some(Command::Event(e)) => self.push(e),
                    Some(Command::Flush(reply)) => {
                        self.drain().await;
                        let _ = reply.send(self.take_report());
                    }
                    Some(Command::Shutdown(reply)) => {
                        self.finish().await;
                        let _ = reply.send(self.take_report());
                        return;
                    }
                    None => {
                        self.finish().await;
                        let report = self.take_report();
                        if !report.is_complete() {
                            tracing::warn!(%report, "eye-client dropped without shutdown");
                        }
                        return;
                    }
                },
            }
        }
    }

    fn can_send(&self) -> bool {
        self.in_flight.len() < self.settings.max_in_flight
    }

    fn push(&mut self, event: Event) {
        if self.batch.is_empty() {
            self.batch_due = Some(Instant::now() + self.settings.flush_interval);
        }
        self.batch.push(event);
    }

    fn dispatch(&mut self) {
        self.batch_due = None;
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(self.settings.batch_size),
        );
        self.in_flight.spawn(self.transport.clone().deliver(batch));
    }

    /// Waits for a free slot, then dispatches the current batch.
    async fn dispatch_when_free(&mut self) {
        while !self.can_send() {
            match self.in_flight.join_next().await {
                Some(done) => self.absorb(done),
                None => break,
            }
        }
        self.dispatch();
    }

    /// Sends the current batch and waits for every batch in flight.
    async fn drain(&mut self) {
        if !self.batch.is_empty() {
            self.dispatch_when_free().await;
        }
        while let Some(done) = self.in_flight.join_next().await {
            self.absorb(done);
        }
    }

    /// Takes every event still buffered, sends them all and waits, within the stop
    /// deadline if one is set.
    async fn finish(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.rx.close();
        let mut late_waiters = Vec::new();
        while let Some(cmd) = self.rx.recv().await {
            match cmd {
                Command::Event(e) => {
                    if self.batch.len() >= self.settings.batch_size {
                        self.dispatch_when_free().await;
                    }
                    self.push(e);
                }
                Command::Flush(reply) | Command::Shutdown(reply) => late_waiters.push(reply),
            }
        }
        self.drain().await;
        for reply in late_waiters {
            let _ = reply.send(DeliveryReport::default());
        }
    }

    fn absorb(&mut self, done: Result<Outcome, JoinError>) {
        let outcome = match done {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "a delivery task failed; its events stay pending");
                return;
            }
        };
        let limit = self.settings.detail_limit;
        let r = &mut self.report;
        r.delivered += outcome.delivered;
        r.rejected += outcome.rejections.len() as u64;
        r.failed += outcome.failures.len() as u64;
        r.pending += outcome.abandoned;
        let room = limit.saturating_sub(r.rejections.len());
        r.rejections
            .extend(outcome.rejections.into_iter().take(room));
        let room = limit.saturating_sub(r.failures.len());
        r.failures.extend(outcome.failures.into_iter().take(room));
    }

    fn take_report(&mut self) -> DeliveryReport {
        let dropped = self.shared.counters.dropped.load(Ordering::Relaxed);
        self.report.dropped = dropped - self.dropped_reported;
        self.dropped_reported = dropped;
        std::mem::take(&mut self.report)
    }
}
