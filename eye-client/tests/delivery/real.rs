//! The real eye-server, in-process on a fresh SQLite file, for every case it can
//! produce itself: 201, per-event rejections (400 or 201 with some rejected), 413 for
//! a body over its limit, 401 for an unknown key, 403 for a key without the ingest
//! scope, connections refused while it is not listening.

use std::time::Duration;

use chrono::Utc;
use eye_client::EyeClientBuilder;
use eye_core::Event;
use eye_server::auth::create_app_with_key;
use eye_server::config::ServeConfig;
use eye_server::store::{Scopes, Store};
use eye_server::wiring::Node;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::scripted::fast_retries;

/// Nothing listens there (the discard port): connections are refused at once. A real
/// outage, not a stub.
pub const DOWN: &str = "http://127.0.0.1:9";

/// A running eye-server.
pub struct Server {
    pub base: String,
    /// A key with every scope.
    pub key: String,
    /// A key that may query but not ingest.
    pub query_only_key: String,
    pub store: Store,
    stop: Option<oneshot::Sender<()>>,
    _dir: TempDir,
}

/// Settings for [`Server::start_with`].
#[derive(Default)]
pub struct Limits {
    /// `--max-body-bytes` (and `--max-event-bytes`, which may not exceed it).
    pub max_body_bytes: Option<usize>,
    /// `--insecure-no-auth`: any key is taken (for a client built before the server
    /// made its key).
    pub insecure_no_auth: bool,
}

impl Server {
    /// The real server with every default, on a free port.
    pub async fn start() -> Self {
        Self::start_with(Limits::default()).await
    }

    /// The real server with `limits`, on a free port.
    pub async fn start_with(limits: Limits) -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), limits).await
    }

    /// The real server on `listener`.
    pub async fn start_on(listener: TcpListener, limits: Limits) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("eye.db").display());
        let mut config = ServeConfig::for_tests(&url);
        if let Some(max) = limits.max_body_bytes {
            config.http.max_body_bytes = max;
            config.ingest.max_event_bytes = max;
        }
        config.http.insecure_no_auth = limits.insecure_no_auth;
        let node = Node::start(config).await.unwrap();
        let store = node.state.store.clone();
        let key = create_app_with_key(&store, "delivery-tests", Scopes::ALL)
            .await
            .unwrap();
        let query_only_key = create_app_with_key(&store, "reader", Scopes::QUERY_ONLY)
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(node.serve(listener, async {
            let _ = stopped.await;
        }));
        Self {
            base,
            key,
            query_only_key,
            store,
            stop: Some(stop),
            _dir: dir,
        }
    }

    /// A client of this server with the all-scopes key, quick retries and a short
    /// flush interval.
    pub fn client(&self) -> EyeClientBuilder {
        eye_client::EyeClient::builder(&self.base)
            .api_key(&self.key)
            .retry_policy(fast_retries(5))
            .flush_interval(Duration::from_millis(20))
    }

    /// Events stored, from the store's counters (a second store of an event would
    /// raise them), once `n` are there or 30 s have passed: the server answers 2xx
    /// once events are durable, and they are readable shortly after.
    pub async fn stored_eventually(&self, n: u64) -> u64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let stored = self.store.total_events().await.unwrap();
            if stored >= n || tokio::time::Instant::now() >= deadline {
                return stored;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A page view the server refuses: its timestamp is an hour ahead of the server's
/// clock (past the default 300 s skew), so it answers `timestamp_in_future`.
pub fn from_the_future(session: &str) -> Event {
    crate::scripted::page_view(session).with_timestamp(Utc::now() + chrono::Duration::hours(1))
}
