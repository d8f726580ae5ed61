//! The retry policy: exponential backoff with jitter, honouring `Retry-After`.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// How a batch is retried after a retryable failure (connection error, timeout, 408,
/// 429, 5xx). Every event carries an id, so a retry never stores an event twice.
///
/// The delay before retry `n` (1-based) is drawn uniformly from
/// `[b/2, b]` where `b = min(initial_backoff * 2^(n-1), max_backoff)`; when the server
/// sent `Retry-After`, the delay is at least that (capped at `max_retry_after`).
///
/// ```
/// use std::time::Duration;
/// let policy = eye_client::RetryPolicy::default();
/// let d = policy.delay(3, None);
/// assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
/// assert!(policy.delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt before giving up; 0 disables retries.
    pub max_retries: u32,
    /// The backoff before the first retry.
    pub initial_backoff: Duration,
    /// The largest backoff between two attempts.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; longer values are cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The delay before retry number `retry` (1-based), given the server's
    /// `Retry-After` if any.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1).min(30)))
            .min(self.max_backoff);
        let half = exp / 2;
        let jittered = if exp.is_zero() {
            exp
        } else {
            let extra = rand::rng().random_range(0..=(exp - half).as_micros() as u64);
            half + Duration::from_micros(extra)
        };
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.max_retry_after)),
            None => jittered,
        }
    }
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        for retry in 1..=12 {
            let d = p.delay(retry, None);
            let b = (p.initial_backoff * 2u32.pow(retry - 1)).min(p.max_backoff);
            assert!(
                d >= b / 2 && d <= b,
                "retry {retry}: {d:?} not in [{:?}, {b:?}]",
                b / 2
            );
        }
    }

    #[test]
    fn retry_after_raises_the_delay_but_is_capped() {
        let p = RetryPolicy::default();
        assert!(p.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600))),
            p.max_retry_after
        );
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        let p = RetryPolicy::default();
        assert!(p.delay(u32::MAX, None) <= p.max_backoff);
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        // 1994-11-06T08:49:37Z is 784111777 seconds after the epoch.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
