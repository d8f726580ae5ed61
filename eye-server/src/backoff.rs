//! Exponential backoff, the one type every retry loop in the server uses: the Redis
//! worker, the journal's reader and store task (100 ms doubling to 5 s, the default)
//! and the Redis enqueue loop (20 ms doubling to 250 ms, since a client is waiting).

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(5);

/// The delay before the next retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
    first: Duration,
    max: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling to 5 s: for loops that wait for a store or Redis to recover.
    fn default() -> Self {
        Self::new(FIRST, MAX)
    }
}

impl Backoff {
    /// A backoff from `first`, doubling, at most `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            next: first,
            first,
            max,
        }
    }

    /// The delay to wait now; the next one is twice as long, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    /// The delay [`Self::next_delay`] would return, without moving on.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Starts again from the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps for [`Self::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_doubles_from_100_ms_to_5_s_and_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        for _ in 0..10 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_secs(5));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn a_custom_backoff_stops_at_its_maximum_and_peek_does_not_advance() {
        let mut b = Backoff::new(Duration::from_millis(20), Duration::from_millis(50));
        assert_eq!(b.next_delay(), Duration::from_millis(20));
        assert_eq!(b.peek(), Duration::from_millis(40));
        assert_eq!(b.next_delay(), Duration::from_millis(40));
        assert_eq!(b.next_delay(), Duration::from_millis(50));
        assert_eq!(b.next_delay(), Duration::from_millis(50));
    }
}
