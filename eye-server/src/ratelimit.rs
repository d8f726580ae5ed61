//! Per-application rate limits: a bug in one application must not starve the others.
//!
//! Each application may have a limit in events per second, with a burst of one
//! second's worth. The algorithm is GCRA (the generic cell rate algorithm, a leaky
//! bucket kept as one timestamp, the theoretical arrival time `tat`): taking `n` events
//! moves `tat` forward by `n / rate` seconds from `max(tat, now)`; a take that would put
//! `tat` more than the burst (one second) ahead of `now` is refused, and the client is
//! told how long until it would fit (`Retry-After`). A request larger than the whole
//! burst is allowed only when the bucket is full, and leaves it in debt, so the rate
//! holds over time whatever the request sizes.
//!
//! - Embedded mode: one process, one bucket per application in memory ([`Limiter::local`]).
//! - Redis mode: the bucket lives in Redis (`<prefix>:rate:<application>`), so the limit
//!   holds across all API nodes together ([`Limiter::redis`]). A node does not ask Redis
//!   for every request: it leases a slice of the budget (a tenth of a second's worth, or
//!   the request's size if larger) and serves requests from its lease until the lease is
//!   spent or 250 ms old. The common case costs no round trip; several nodes together
//!   can overshoot by at most the unused leases, which expire quickly.
//!
//! If Redis cannot be reached, requests are let through (and counted in the log): the
//! queue itself then answers 503, and a limiter must not turn an outage into refusals.
//!
//! # Layout
//!
//! - [`Limiter`]: the check ingest calls, [`Refused`] its answer.
//! - `Gcra`: the arithmetic, shared by both modes (the Redis script does the same).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::Script;
use redis::aio::ConnectionManager;

use crate::metrics::names;

/// A take the limit refused: wait this long before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// How long until the same request would fit.
    pub retry_after: Duration,
}

/// The GCRA state of one bucket, in microseconds on some clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Gcra {
    tat: i64,
}

impl Gcra {
    /// How many events fit now, at most `want`, with `rate` per second and a burst of
    /// one second; `Err(wait)` when not even `need` fit. Taking moves `tat`.
    fn take(&mut self, now: i64, rate: u32, need: u64, want: u64) -> Result<u64, i64> {
        let interval = 1_000_000 / i64::from(rate.max(1));
        let burst = 1_000_000i64;
        let start = self.tat.max(now);
        let room = burst - (start - now);
        let fit = u64::try_from(room / interval.max(1)).unwrap_or(0);
        let take = if fit >= need {
            want.min(fit).max(need)
        } else if start == now && need > fit {
            // Larger than the whole burst: only into a full bucket, leaving a debt.
            need
        } else {
            // Until `need` events fit: `start + need * interval <= later + burst`.
            let need = i64::try_from(need).unwrap_or(i64::MAX);
            let wait = (start - now)
                .saturating_add(need.saturating_mul(interval))
                .saturating_sub(burst);
            return Err(wait.max(1));
        };
        self.tat = start + i64::try_from(take).unwrap_or(i64::MAX) * interval;
        Ok(take)
    }
}

/// GCRA in Redis, the same arithmetic as [`Gcra::take`], on Redis's clock so every node
/// agrees. `KEYS[1]`: the bucket; `ARGV`: rate, need, want. Returns `{granted, wait}`.
const TAKE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local need = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local interval = math.floor(1000000 / math.max(rate, 1))
local burst = 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(tat, now)
local fit = math.floor((burst - (start - now)) / math.max(interval, 1))
if fit < 0 then fit = 0 end
local take
if fit >= need then
  take = math.max(math.min(want, fit), need)
elseif start == now then
  take = need
else
  return {0, math.max((start - now) + need * interval - burst, 1)}
end
local new = start + take * interval
redis.call('SET', KEYS[1], tostring(new), 'PX', math.floor((new - now) / 1000) + 1000)
return {take, 0}
";

/// A node's slice of an application's budget in Redis mode.
#[derive(Debug, Clone, Copy)]
struct Lease {
    remaining: u64,
    until: Instant,
}

/// How long a lease may be used: past it, what is left of it is given up.
const LEASE_TTL: Duration = Duration::from_millis(250);

enum Backend {
    Local(Mutex<HashMap<String, Gcra>>),
    Redis {
        conn: ConnectionManager,
        prefix: String,
        script: Script,
        leases: Mutex<HashMap<String, Lease>>,
    },
}

/// The rate limiter ingest consults once per request.
pub struct Limiter {
    backend: Backend,
    epoch: Instant,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.backend {
            Backend::Local(_) => "local",
            Backend::Redis { .. } => "redis",
        };
        f.debug_struct("Limiter").field("mode", &mode).finish()
    }
}

impl Limiter {
    /// A limiter for one process (embedded mode).
    ///
    /// ```
    /// # tokio_test_block(async {
    /// let limiter = eye_server::ratelimit::Limiter::local();
    /// // 10 events per second: a burst of 10 fits, the 11th does not.
    /// assert!(limiter.check("shop", 10, 10).await.is_ok());
    /// assert!(limiter.check("shop", 10, 1).await.is_err());
    /// // Other applications have buckets of their own.
    /// assert!(limiter.check("blog", 10, 1).await.is_ok());
    /// # });
    /// # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
    /// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub fn local() -> Self {
        Self {
            backend: Backend::Local(Mutex::new(HashMap::new())),
            epoch: Instant::now(),
        }
    }

    /// A limiter whose buckets live in Redis under `prefix`, shared by every API node.
    pub fn redis(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            backend: Backend::Redis {
                conn,
                prefix: prefix.to_owned(),
                script: Script::new(TAKE_SCRIPT),
                leases: Mutex::new(HashMap::new()),
            },
            epoch: Instant::now(),
        }
    }

    /// Takes `events` from `application`'s budget of `rate` events per second, or says
    /// how long to wait. Refusals are counted per application.
    pub async fn check(&self, application: &str, rate: u32, events: u64) -> Result<(), Refused> {
        let result = match &self.backend {
            Backend::Local(buckets) => {
                let now = i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX);
                let mut buckets = buckets.lock().unwrap_or_else(|p| p.into_inner());
                let bucket = buckets.entry(application.to_owned()).or_default();
                bucket.take(now, rate, events, events).map(|_| ())
            }
            Backend::Redis {
                conn,
                prefix,
                script,
                leases,
            } => {
                if take_leased(leases, application, events) {
                    return Ok(());
                }
                let want = events.max(u64::from(rate / 10).max(1));
                let key = format!("{prefix}:rate:{application}");
                let mut conn = conn.clone();
                let reply: Result<(u64, i64), _> = script
                    .key(&key)
                    .arg(rate)
                    .arg(events)
                    .arg(want)
                    .invoke_async(&mut conn)
                    .await;
                match reply {
                    Ok((granted, _)) if granted > 0 => {
                        let mut leases = leases.lock().unwrap_or_else(|p| p.into_inner());
                        leases.insert(
                            application.to_owned(),
                            Lease {
                                remaining: granted.saturating_sub(events),
                                until: Instant::now() + LEASE_TTL,
                            },
                        );
                        Ok(())
                    }
                    Ok((_, wait)) => Err(wait),
                    Err(e) => {
                        tracing::warn!(error = %e, "rate limit unavailable (Redis); letting the request through");
                        Ok(())
                    }
                }
            }
        };
        result.map_err(|wait_micros| {
            metrics::counter!(names::RATE_LIMITED_REQUESTS, "application" => application.to_owned())
                .increment(1);
            metrics::counter!(names::RATE_LIMITED_EVENTS, "application" => application.to_owned())
                .increment(events);
            Refused {
                retry_after: Duration::from_micros(u64::try_from(wait_micros).unwrap_or(1)),
            }
        })
    }
}

/// Serves `events` from the node's lease when it holds enough and is fresh.
fn take_leased(leases: &Mutex<HashMap<String, Lease>>, application: &str, events: u64) -> bool {
    let mut leases = leases.lock().unwrap_or_else(|p| p.into_inner());
    match leases.get_mut(application) {
        Some(lease) if lease.until > Instant::now() && lease.remaining >= events => {
            lease.remaining -= events;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000;

    #[test]
    fn a_burst_of_one_seconds_worth_fits_then_the_rate_holds() {
        let mut g = Gcra::default();
        let now = 10 * SEC;
        assert_eq!(g.take(now, 100, 100, 100), Ok(100));
        // Full: one more event waits one interval (10 ms).
        assert_eq!(g.take(now, 100, 1, 1), Err(10_000));
        // 50 ms later, 5 events fit again.
        assert_eq!(g.take(now + 50_000, 100, 5, 5), Ok(5));
        assert_eq!(g.take(now + 50_000, 100, 1, 1), Err(10_000));
    }

    #[test]
    fn a_request_larger_than_the_burst_needs_a_full_bucket_and_leaves_a_debt() {
        let mut g = Gcra::default();
        let now = 10 * SEC;
        assert_eq!(g.take(now, 10, 50, 50), Ok(50));
        // The debt: 5 s of budget were used, so the next event waits about 4 s.
        let wait = g.take(now, 10, 1, 1).unwrap_err();
        assert_eq!(wait, 4 * SEC + 100_000);
    }

    #[test]
    fn a_lease_takes_what_fits_up_to_what_it_wants() {
        let mut g = Gcra::default();
        let now = 10 * SEC;
        assert_eq!(g.take(now, 100, 1, 10), Ok(10));
        assert_eq!(g.take(now, 100, 1, 1_000), Ok(90));
        assert!(g.take(now, 100, 1, 10).is_err());
    }

    #[tokio::test]
    async fn local_buckets_are_per_application() {
        let limiter = Limiter::local();
        assert!(limiter.check("a", 5, 5).await.is_ok());
        let refused = limiter.check("a", 5, 1).await.unwrap_err();
        assert!(refused.retry_after > Duration::ZERO);
        assert!(refused.retry_after <= Duration::from_millis(200));
        assert!(limiter.check("b", 5, 5).await.is_ok());
    }
}
