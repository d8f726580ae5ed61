//! [`EyeClient`]: the cheap-to-clone handle, `track`, `flush` and `shutdown`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use eye_core::Event;
use reqwest::Url;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::builder::EyeClientBuilder;
use crate::error::{BuildError, TrackError};
use crate::outbox::{Outbox, OutboxConfig};
use crate::report::{Counters, DeliveryReport, Stats};
use crate::shared::Shared;
use crate::transport::Transport;
use crate::worker::{Command, Worker, WorkerSettings};

/// The Eye's client: tracks events in the background and queries them.
///
/// Cheap to clone (an [`Arc`] inside); every clone shares one buffer and one background
/// sender thread. See the [crate documentation](crate) for the delivery guarantees.
#[derive(Clone)]
pub struct EyeClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    tx: Option<mpsc::Sender<Command>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) http: reqwest::Client,
    pub(crate) base: Url,
    pub(crate) api_key: Option<String>,
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    drop_timeout: Duration,
}

impl std::fmt::Debug for EyeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EyeClient")
            .field("base_url", &self.inner.base.as_str())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Starts the sender thread and returns the first handle.
pub(crate) fn start(
    b: EyeClientBuilder,
    base: Url,
    send_http: reqwest::Client,
    query_http: reqwest::Client,
) -> Result<EyeClient, BuildError> {
    let events_url = base.join("events").map_err(|e| BuildError::InvalidUrl {
        url: b.base_url.clone(),
        reason: e.to_string(),
    })?;
    let outbox = match &b.outbox_dir {
        Some(dir) => Some(Outbox::open(OutboxConfig {
            dir: dir.clone(),
            sync_interval: b.outbox_sync_interval,
            max_bytes: b.outbox_max_bytes,
            max_age: b.outbox_max_age,
        })?),
        None => None,
    };
    let shared = Arc::new(Shared::default());
    if let Some(outbox) = &outbox {
        Counters::add(&shared.counters.recovered, outbox.recovered());
    }
    let (tx, rx) = mpsc::channel(b.buffer_capacity);
    let transport = Arc::new(Transport {
        http: send_http,
        events_url,
        api_key: b.api_key.clone(),
        gzip: b.gzip,
        max_batch_bytes: b.max_batch_bytes,
        retry: b.retry,
        shared: shared.clone(),
        keep_on_outage: outbox.is_some(),
    });
    let worker = Worker::new(
        rx,
        transport,
        shared.clone(),
        WorkerSettings {
            batch_size: b.batch_size,
            flush_interval: b.flush_interval,
            max_in_flight: b.max_in_flight,
            detail_limit: b.report_detail_limit,
            buffer_capacity: b.buffer_capacity,
        },
        outbox,
    );
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let thread_shared = shared.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("eye-client".into())
        .spawn(move || {
            // Set however the sender stops, even by a panic.
            let done_guard = SenderDone(thread_shared);
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            rt.block_on(worker.run());
            drop(done_guard);
            rt.shutdown_timeout(Duration::from_millis(100));
            let _ = done_tx.send(());
        })
        .map_err(BuildError::Worker)?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the sender thread exited")))
        .map_err(BuildError::Worker)?;
    Ok(EyeClient {
        inner: Arc::new(Inner {
            tx: Some(tx),
            shared,
            http: query_http,
            base,
            api_key: b.api_key,
            done: Mutex::new(Some(done_rx)),
            drop_timeout: b.drop_timeout,
        }),
    })
}

impl EyeClient {
    /// A builder for a client of the server at `base_url` (for example
    /// `http://127.0.0.1:8000`).
    pub fn builder(base_url: impl Into<String>) -> EyeClientBuilder {
        EyeClientBuilder::new(base_url)
    }

    /// Queues an event for delivery and returns its id at once: it never blocks and
    /// never touches the network, and needs no async runtime.
    ///
    /// The id is the event's own when it has one, otherwise a new UUIDv7; the server
    /// stores each id once, so retries never duplicate. When the buffer is full (the
    /// server is slow or down) or the client is shut down, the event is dropped, counted
    /// in [`Stats::dropped`], and an error says why. With an outbox the buffer empties
    /// to disk whether or not the server answers, so it is full only when the disk
    /// cannot keep up.
    ///
    /// ```
    /// let client = eye_client::EyeClient::builder("http://127.0.0.1:9").build().unwrap();
    /// let event = eye_core::Event::page_view("session-1", "shop.example", "/").unwrap();
    /// let id = client.track(event).unwrap();
    /// assert_eq!(id.get_version_num(), 7);
    /// assert_eq!(client.stats().tracked, 1);
    /// ```
    pub fn track(&self, event: Event) -> Result<Uuid, TrackError> {
        let (event, id) = with_id(event);
        let c = &self.inner.shared.counters;
        let Some(tx) = self.sender() else {
            return Err(self.drop_one(TrackError::Closed));
        };
        // Counted before sending, so `delivered` can never overtake `tracked`.
        c.tracked.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(Command::Event(event)) {
            Ok(()) => Ok(id),
            Err(e) => {
                c.tracked.fetch_sub(1, Ordering::Relaxed);
                Err(self.drop_one(match e {
                    mpsc::error::TrySendError::Full(_) => TrackError::BufferFull,
                    mpsc::error::TrySendError::Closed(_) => TrackError::Closed,
                }))
            }
        }
    }

    /// Like [`EyeClient::track`], but when the buffer is full it waits for room
    /// instead of dropping the event: back-pressure for importers and load generators.
    /// It still never waits for the network itself. Works under any async executor.
    pub async fn track_wait(&self, event: Event) -> Result<Uuid, TrackError> {
        let (event, id) = with_id(event);
        let Some(tx) = self.sender() else {
            return Err(self.drop_one(TrackError::Closed));
        };
        let c = &self.inner.shared.counters;
        c.tracked.fetch_add(1, Ordering::Relaxed);
        match tx.send(Command::Event(event)).await {
            Ok(()) => Ok(id),
            Err(_) => {
                c.tracked.fetch_sub(1, Ordering::Relaxed);
                Err(self.drop_one(TrackError::Closed))
            }
        }
    }

    /// Sends everything tracked before this call and waits until each event was
    /// delivered, rejected or given up on (after the retry policy's last retry).
    /// Returns the fate of every event settled since the previous report. Works under
    /// any async executor.
    pub async fn flush(&self) -> DeliveryReport {
        let (reply, answer) = oneshot::channel();
        match self.sender() {
            Some(tx) if tx.send(Command::Flush(reply)).await.is_ok() => {
                answer.await.unwrap_or_else(|_| self.closed_report())
            }
            _ => self.closed_report(),
        }
    }

    /// Stops taking events, delivers what is buffered within `timeout`, stops the
    /// background thread and reports. Events not settled by then are counted as
    /// `pending` (an event in flight at the deadline may still have been stored).
    /// Later calls, and `track` after it, do nothing but report. Works under any async
    /// executor.
    pub async fn shutdown(&self, timeout: Duration) -> DeliveryReport {
        let shared = &self.inner.shared;
        if shared.closed.swap(true, Ordering::AcqRel) {
            return self.closed_report();
        }
        shared.stop_by(Instant::now() + timeout);
        let (reply, answer) = oneshot::channel();
        let Some(tx) = self.inner.tx.as_ref() else {
            return self.closed_report();
        };
        if tx.send(Command::Shutdown(reply)).await.is_err() {
            return self.closed_report();
        }
        answer.await.unwrap_or_else(|_| self.closed_report())
    }

    /// The cumulative counters.
    pub fn stats(&self) -> Stats {
        self.inner.shared.counters.snapshot()
    }

    fn sender(&self) -> Option<&mpsc::Sender<Command>> {
        if self.inner.shared.is_closed() {
            return None;
        }
        self.inner.tx.as_ref()
    }

    fn drop_one(&self, e: TrackError) -> TrackError {
        Counters::add(&self.inner.shared.counters.dropped, 1);
        e
    }

    /// What can be said once the sender cannot be asked: see [`Shared::closed_report`].
    fn closed_report(&self) -> DeliveryReport {
        self.inner.shared.closed_report()
    }
}

/// Marks the sender as stopped when dropped.
struct SenderDone(Arc<Shared>);

impl Drop for SenderDone {
    fn drop(&mut self) {
        self.0.sender_done.store(true, Ordering::Release);
    }
}

fn with_id(event: Event) -> (Event, Uuid) {
    match event.id() {
        Some(id) => (event, id),
        None => {
            let id = new_event_id();
            (event.with_id(id), id)
        }
    }
}

/// A UUIDv7: the Unix time in milliseconds, then 74 random bits from the thread-local
/// generator. `Uuid::now_v7` would take a process-wide lock and a `getrandom` system
/// call per id; ids need to be unique and roughly time-ordered (for the store's index
/// locality), not strictly monotonic within a millisecond.
pub(crate) fn new_event_id() -> Uuid {
    use rand::Rng;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut random = [0u8; 10];
    rand::rng().fill(&mut random);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// Dropping the last handle without [`EyeClient::shutdown`]: best effort. The sender
/// is told to deliver what is buffered within the builder's `drop_timeout`, and the
/// drop blocks the current thread up to that long (briefly, never on the network
/// itself). If the process exits right after, undelivered events are lost, so call
/// `shutdown` and read its report.
impl Drop for Inner {
    fn drop(&mut self) {
        let already_closed = self.shared.is_closed();
        if !already_closed {
            self.shared.stop_by(Instant::now() + self.drop_timeout);
        }
        // Closing the channel is the worker's signal to finish.
        drop(self.tx.take());
        let done = self
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(done) = done
            && !self.drop_timeout.is_zero()
        {
            let _ = done.recv_timeout(self.drop_timeout + Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_version_7_and_time_ordered_across_milliseconds() {
        let first = new_event_id();
        std::thread::sleep(Duration::from_millis(2));
        let second = new_event_id();
        assert_eq!(first.get_version_num(), 7);
        assert_eq!(first.get_variant(), uuid::Variant::RFC4122);
        assert!(first < second);
    }
}
