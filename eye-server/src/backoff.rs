//! Exponential backoff for loops that retry until something recovers (the Redis
//! worker, the journal's reader and store task): 100 ms, doubling, at most 5 s.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(5);

/// The delay before the next retry.
///
/// ```
/// use std::time::Duration;
/// let mut b = eye_server::backoff::Backoff::default();
/// assert_eq!(b.next_delay(), Duration::from_millis(100));
/// assert_eq!(b.next_delay(), Duration::from_millis(200));
/// for _ in 0..10 { b.next_delay(); }
/// assert_eq!(b.next_delay(), Duration::from_secs(5));
/// b.reset();
/// assert_eq!(b.next_delay(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(FIRST)
    }
}

impl Backoff {
    /// The delay to wait now; the next one is twice as long, up to 5 s.
    pub fn next_delay(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(MAX);
        now
    }

    /// Starts again from 100 ms (after a success).
    pub fn reset(&mut self) {
        self.0 = FIRST;
    }

    /// Sleeps for [`Self::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}
