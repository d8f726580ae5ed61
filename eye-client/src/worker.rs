//! The background sender: one task that owns the buffer's receiving end, batches
//! events by size or age, and keeps up to `max_in_flight` batches in flight. With an
//! outbox, its loop is the one in `spool`: events go to disk first and are delivered
//! from there.

mod spool;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use eye_core::Event;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;

use crate::outbox::Outbox;
use crate::report::{Counters, DeliveryReport};
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
    /// Events held in memory at most (with an outbox: not yet written, and read back
    /// for delivery).
    pub buffer_capacity: usize,
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
    /// How many events each task in flight carries, to count them if it fails.
    in_flight_events: HashMap<Id, u64>,
    /// Outcomes since the last report.
    report: DeliveryReport,
    /// The outbox, until `run` hands it to the spooled loop.
    spool: Option<spool::Spool>,
}

impl Worker {
    pub fn new(
        rx: mpsc::Receiver<Command>,
        transport: Arc<Transport>,
        shared: Arc<Shared>,
        settings: WorkerSettings,
        outbox: Option<Outbox>,
    ) -> Self {
        let spool = outbox.map(|o| spool::Spool::new(o, settings.buffer_capacity));
        Self {
            rx,
            transport,
            shared,
            batch: Vec::with_capacity(settings.batch_size),
            settings,
            batch_due: None,
            in_flight: JoinSet::new(),
            in_flight_events: HashMap::new(),
            report: DeliveryReport::default(),
            spool,
        }
    }

    /// Runs until a shutdown command arrives or every handle is gone.
    pub async fn run(mut self) {
        if let Some(sp) = self.spool.take() {
            return self.run_spooled(sp).await;
        }
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
                Some(done) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
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
        let events = batch.len() as u64;
        let delivery = self.transport.clone().deliver(batch);
        let _ = self.spawn_delivery(events, delivery);
    }

    fn spawn_delivery(
        &mut self,
        events: u64,
        delivery: impl Future<Output = Outcome> + Send + 'static,
    ) -> Id {
        let task = self.in_flight.spawn(delivery);
        self.in_flight_events.insert(task.id(), events);
        task.id()
    }

    /// Waits for a free slot, then dispatches the current batch.
    async fn dispatch_when_free(&mut self) {
        while !self.can_send() {
            match self.in_flight.join_next_with_id().await {
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
        while let Some(done) = self.in_flight.join_next_with_id().await {
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

    fn absorb(&mut self, done: Result<(Id, Outcome), JoinError>) {
        let outcome = match done {
            Ok((id, o)) => {
                self.in_flight_events.remove(&id);
                o
            }
            Err(e) => {
                // A panic in delivery: its events are given up on, counted without
                // details (the task owned them).
                let events = self.in_flight_events.remove(&e.id()).unwrap_or(0);
                tracing::error!(error = %e, events, "a delivery task failed; its events count as failed");
                Counters::add(&self.shared.counters.failed, events);
                self.report.failed += events;
                return;
            }
        };
        self.record(outcome);
    }

    /// Adds a delivery's outcome to the report.
    fn record(&mut self, outcome: Outcome) {
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
        let mut report = std::mem::take(&mut self.report);
        self.shared.seal(&mut report);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::RetryPolicy;

    #[tokio::test]
    async fn a_delivery_task_that_panics_counts_its_events_as_failed() {
        let shared = Arc::new(Shared::default());
        let transport = Arc::new(Transport {
            http: reqwest::Client::new(),
            events_url: "http://127.0.0.1:9/events"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            api_key: None,
            gzip: true,
            max_batch_bytes: 1 << 20,
            retry: RetryPolicy::none(),
            shared: shared.clone(),
            keep_on_outage: false,
        });
        let (_tx, rx) = mpsc::channel(1);
        let mut worker = Worker::new(
            rx,
            transport,
            shared.clone(),
            WorkerSettings {
                batch_size: 10,
                flush_interval: Duration::from_secs(1),
                max_in_flight: 2,
                detail_limit: 10,
                buffer_capacity: 10,
            },
            None,
        );
        Counters::add(&shared.counters.tracked, 5);

        let _ = worker.spawn_delivery(3, async { panic!("a bug in delivery") });
        let _ = worker.spawn_delivery(2, async {
            Outcome {
                delivered: 2,
                ..Outcome::default()
            }
        });
        worker.drain().await;
        let report = worker.take_report();

        assert_eq!((report.delivered, report.failed), (2, 3), "{report}");
        assert_eq!(shared.counters.snapshot().failed, 3);
        assert!(worker.in_flight_events.is_empty());
    }
}
