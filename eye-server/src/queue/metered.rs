//! [`MeteredQueue`]: counts what passes through whichever queue the server runs.

use std::sync::Arc;
use std::time::Instant;

use super::{Queue, QueueError};
use crate::message::Message;
use crate::metrics::{message_dropped, names, static_counter, static_histogram};
use async_trait::async_trait;

/// What an enqueue carries, by metric label: taken before the messages move into the
/// queue, counted once the queue took them.
enum Tally {
    Accepted(eye_core::EventType),
    Rejected(Vec<&'static str>),
}

fn tally(messages: &[Message]) -> Vec<Tally> {
    messages
        .iter()
        .map(|m| match m {
            Message::EventV1(accepted) => Tally::Accepted(accepted.event.event_type()),
            Message::RejectedV1(rejected) => {
                let mut codes: Vec<&'static str> =
                    rejected.errors.iter().map(|e| e.code.as_str()).collect();
                codes.sort_unstable();
                codes.dedup();
                Tally::Rejected(codes)
            }
        })
        .collect()
}

fn count(tallies: Vec<Tally>) {
    for t in tallies {
        match t {
            Tally::Accepted(t) => {
                static_counter(
                    names::EVENTS_ACCEPTED,
                    &[("category", t.category()), ("name", t.name())],
                )
                .increment(1);
            }
            Tally::Rejected(codes) => {
                for code in codes {
                    static_counter(names::EVENTS_REJECTED, &[("code", code)]).increment(1);
                }
            }
        }
    }
}

/// A [`Queue`] that records metrics about everything passing through the queue it
/// wraps; behaviour is unchanged.
///
/// ```
/// # use std::sync::Arc;
/// # fn wrap(queue: Arc<dyn eye_server::queue::Queue>) -> Arc<dyn eye_server::queue::Queue> {
/// eye_server::queue::metered::MeteredQueue::wrap(queue)
/// # }
/// ```
pub struct MeteredQueue {
    inner: Arc<dyn Queue>,
}

impl MeteredQueue {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn Queue>) -> Arc<dyn Queue> {
        Arc::new(Self { inner })
    }
}

#[async_trait]
impl Queue for MeteredQueue {
    async fn enqueue(&self, messages: Vec<Message>) -> Result<(), QueueError> {
        let n = messages.len();
        let tallies = tally(&messages);
        let start = Instant::now();
        let result = self.inner.enqueue(messages).await;
        let outcome = match &result {
            Ok(()) => {
                count(tallies);
                "ok"
            }
            Err(QueueError::Full { .. }) => "full",
            Err(QueueError::Unavailable(_)) => "unavailable",
            Err(QueueError::ShuttingDown) => "shutting_down",
        };
        if outcome != "ok" {
            message_dropped(outcome, n as u64);
        }
        static_histogram(names::ENQUEUE_BATCH_SIZE, &[]).record(n as f64);
        static_histogram(names::ENQUEUE_DURATION, &[("outcome", outcome)])
            .record(start.elapsed().as_secs_f64());
        result
    }

    async fn backlog(&self) -> Result<u64, QueueError> {
        self.inner.backlog().await
    }

    async fn ready(&self) -> Result<(), QueueError> {
        self.inner.ready().await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}
