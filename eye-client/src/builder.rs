//! [`EyeClientBuilder`]: every setting, checked once in `build`.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use crate::error::BuildError;
use crate::retry::RetryPolicy;
use crate::{EyeClient, client};

/// Settings of an [`EyeClient`]. Start from [`EyeClient::builder`]; every setting has
/// a default suited to a web application; [`EyeClientBuilder::build`] checks them all.
///
/// ```
/// use std::time::Duration;
/// let client = eye_client::EyeClient::builder("http://127.0.0.1:8000")
///     .api_key("eye_secret")
///     .batch_size(200)
///     .flush_interval(Duration::from_millis(250))
///     .build()
///     .unwrap();
/// assert_eq!(client.stats().tracked, 0);
///
/// let err = eye_client::EyeClient::builder("ftp://example.com").build().unwrap_err();
/// assert!(err.to_string().contains("http"));
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct EyeClientBuilder {
    pub(crate) base_url: String,
    pub(crate) api_key: Option<String>,
    pub(crate) batch_size: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) buffer_capacity: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) gzip: bool,
    pub(crate) max_batch_bytes: usize,
    pub(crate) http_client: Option<reqwest::Client>,
    pub(crate) drop_timeout: Duration,
    pub(crate) report_detail_limit: usize,
    pub(crate) outbox_dir: Option<PathBuf>,
    pub(crate) outbox_sync_interval: Duration,
    pub(crate) outbox_max_bytes: u64,
    pub(crate) outbox_max_age: Duration,
}

impl EyeClientBuilder {
    pub(crate) fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            batch_size: 500,
            flush_interval: Duration::from_secs(1),
            buffer_capacity: 10_000,
            max_in_flight: 4,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            gzip: true,
            max_batch_bytes: 512 * 1024,
            http_client: None,
            drop_timeout: Duration::from_secs(2),
            report_detail_limit: 256,
            outbox_dir: None,
            outbox_sync_interval: Duration::from_millis(100),
            outbox_max_bytes: 64 << 20,
            outbox_max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// The application's API key, sent as `Authorization: Bearer <key>`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Most events per request (1 to [`eye_core::MAX_BATCH_EVENTS`]; default 500).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Longest an event waits for its batch to fill before it is sent (default 1 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Events buffered before `track` starts dropping (at least the batch size;
    /// default 10,000).
    pub fn buffer_capacity(mut self, n: usize) -> Self {
        self.buffer_capacity = n;
        self
    }

    /// Requests in flight at once (at least 1; default 4).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Longest one request may take, answer included (default 10 s); a timeout is
    /// retried.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Longest a TCP connect may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How failed requests are retried.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Gzip request bodies (default on).
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// Largest batch body before compression (default 512 KiB, half the server's
    /// default limit): a larger batch is split in halves before it is sent, so large
    /// form events do not cost 413 round trips.
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// Use this HTTP client (proxies, TLS roots, ...) instead of building one; the
    /// request and connect timeouts set here are then not applied. It serves both the
    /// sender thread and the queries, so its pooled connections may move between the
    /// two runtimes; after `shutdown`, prefer a fresh client for queries.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// How long dropping the last clone may block to deliver what is buffered
    /// (default 2 s; zero does not wait). Prefer an explicit
    /// [`EyeClient::shutdown`].
    pub fn drop_timeout(mut self, timeout: Duration) -> Self {
        self.drop_timeout = timeout;
        self
    }

    /// Most rejections and failures a report lists in detail (default 256); the counts
    /// are always exact.
    pub fn report_detail_limit(mut self, n: usize) -> Self {
        self.report_detail_limit = n;
        self
    }

    /// Keep events on disk in `dir` until the server has them, so they survive the
    /// application's restarts and crashes and the server's outages (off by default).
    ///
    /// An event `track` accepted is on disk within the [sync
    /// interval](Self::outbox_sync_interval); the next client on the same directory
    /// delivers what a previous one left. While the server is unreachable events wait
    /// there, bounded by [bytes](Self::outbox_max_bytes) and
    /// [age](Self::outbox_max_age), instead of being dropped or given up on. One client
    /// owns a directory at a time: `build` fails with [`BuildError::OutboxLocked`] while
    /// another holds it. See the [crate documentation](crate#the-outbox).
    pub fn outbox(mut self, dir: impl Into<PathBuf>) -> Self {
        self.outbox_dir = Some(dir.into());
        self
    }

    /// How often the outbox writes and syncs what `track` accepted (default 100 ms):
    /// the most a crash of the application can lose. One write and one `fdatasync` per
    /// interval, whatever the number of events.
    pub fn outbox_sync_interval(mut self, interval: Duration) -> Self {
        self.outbox_sync_interval = interval;
        self
    }

    /// The outbox's size bound (default 64 MiB, at least 16 KiB): past it the oldest
    /// events are dropped and counted as `evicted`.
    pub fn outbox_max_bytes(mut self, bytes: u64) -> Self {
        self.outbox_max_bytes = bytes;
        self
    }

    /// The outbox's age bound (default 7 days): older events are dropped undelivered
    /// and counted as `evicted`.
    pub fn outbox_max_age(mut self, age: Duration) -> Self {
        self.outbox_max_age = age;
        self
    }

    /// Checks the settings, opens the outbox if there is one (taking its lock and
    /// counting what a previous client left there), builds the HTTP client and starts
    /// the background sender thread.
    pub fn build(self) -> Result<EyeClient, BuildError> {
        let base = parse_base_url(&self.base_url)?;
        let max = eye_core::MAX_BATCH_EVENTS;
        check(
            "batch_size",
            (1..=max).contains(&self.batch_size),
            format!("must be from 1 to {max}"),
        )?;
        check(
            "buffer_capacity",
            self.buffer_capacity >= self.batch_size,
            "must be at least the batch size".into(),
        )?;
        check(
            "flush_interval",
            !self.flush_interval.is_zero(),
            "must be positive".into(),
        )?;
        check(
            "max_batch_bytes",
            self.max_batch_bytes >= 1024,
            "must be at least 1 KiB".into(),
        )?;
        check(
            "max_in_flight",
            self.max_in_flight >= 1,
            "must be at least 1".into(),
        )?;
        check(
            "request_timeout",
            !self.request_timeout.is_zero(),
            "must be positive".into(),
        )?;
        if self.outbox_dir.is_some() {
            check(
                "outbox_sync_interval",
                !self.outbox_sync_interval.is_zero(),
                "must be positive".into(),
            )?;
            check(
                "outbox_max_bytes",
                self.outbox_max_bytes >= 16 << 10,
                "must be at least 16 KiB".into(),
            )?;
            check(
                "outbox_max_age",
                !self.outbox_max_age.is_zero(),
                "must be positive".into(),
            )?;
        }
        if let Some(key) = &self.api_key {
            check(
                "api_key",
                !key.is_empty()
                    && reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_ok(),
                "must be non-empty printable ASCII".into(),
            )?;
        }
        // Two pools when the client builds its own: connections made on the sender's
        // runtime must not be handed to queries on the caller's runtime (and vice
        // versa), or one runtime's shutdown would break the other's requests.
        let (send, query) = match &self.http_client {
            Some(c) => (c.clone(), c.clone()),
            None => (self.new_http()?, self.new_http()?),
        };
        client::start(self, base, send, query)
    }
}

impl EyeClientBuilder {
    fn new_http(&self) -> Result<reqwest::Client, BuildError> {
        reqwest::Client::builder()
            .timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .build()
            .map_err(BuildError::Http)
    }
}

fn check(setting: &'static str, ok: bool, reason: String) -> Result<(), BuildError> {
    if ok {
        Ok(())
    } else {
        Err(BuildError::InvalidSetting { setting, reason })
    }
}

/// Parses the base URL and makes its path end with `/`, so joining `events` keeps any
/// prefix (`https://example.com/eye/` + `events`).
pub(crate) fn parse_base_url(raw: &str) -> Result<Url, BuildError> {
    let invalid = |reason: String| BuildError::InvalidUrl {
        url: raw.to_owned(),
        reason,
    };
    let mut url = Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment".into()));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_keeps_its_prefix() {
        let url = parse_base_url("https://example.com/eye").unwrap();
        assert_eq!(
            url.join("events").unwrap().as_str(),
            "https://example.com/eye/events"
        );
        let url = parse_base_url("http://127.0.0.1:8000").unwrap();
        assert_eq!(
            url.join("events").unwrap().as_str(),
            "http://127.0.0.1:8000/events"
        );
    }

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        let cases = [
            (
                EyeClientBuilder::new("http://a").batch_size(0),
                "batch_size",
            ),
            (
                EyeClientBuilder::new("http://a").batch_size(1001),
                "batch_size",
            ),
            (
                EyeClientBuilder::new("http://a").buffer_capacity(10),
                "buffer_capacity",
            ),
            (
                EyeClientBuilder::new("http://a").flush_interval(Duration::ZERO),
                "flush_interval",
            ),
            (
                EyeClientBuilder::new("http://a").max_in_flight(0),
                "max_in_flight",
            ),
            (
                EyeClientBuilder::new("http://a").api_key("bad\nkey"),
                "api_key",
            ),
            (
                EyeClientBuilder::new("http://a")
                    .outbox("unused")
                    .outbox_max_bytes(1024),
                "outbox_max_bytes",
            ),
            (
                EyeClientBuilder::new("http://a")
                    .outbox("unused")
                    .outbox_sync_interval(Duration::ZERO),
                "outbox_sync_interval",
            ),
            (
                EyeClientBuilder::new("http://a")
                    .outbox("unused")
                    .outbox_max_age(Duration::ZERO),
                "outbox_max_age",
            ),
        ];
        for (builder, name) in cases {
            match builder.build() {
                Err(BuildError::InvalidSetting { setting, .. }) => assert_eq!(setting, name),
                other => panic!("{name}: expected InvalidSetting, got {other:?}"),
            }
        }
    }

    #[test]
    fn non_http_urls_are_refused() {
        for url in ["ftp://a", "not a url", "http://a/?x=1"] {
            assert!(
                matches!(parse_base_url(url), Err(BuildError::InvalidUrl { .. })),
                "{url}"
            );
        }
    }
}
