//! A real server in-process, clients on an outbox, and reading an outbox's records
//! from the test's side.

use std::path::{Path, PathBuf};
use std::time::Duration;

use eye_client::{EyeClient, EyeClientBuilder, RetryPolicy};
use eye_core::{Event, EventQuery};
use eye_server::auth::create_app_with_key;
use eye_server::config::ServeConfig;
use eye_server::store::Scopes;
use eye_server::wiring::Node;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Nothing listens there (the discard port): connections are refused at once.
pub const DOWN: &str = "http://127.0.0.1:9";

/// A running eye-server.
pub struct Server {
    pub base: String,
    pub key: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _dir: TempDir,
}

/// Starts the real server (every default, events acknowledged once stored) on a
/// fresh database, on `listener`; `auth` off lets a client built before the server
/// (without its key) deliver.
pub async fn start_server_on(listener: TcpListener, auth: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("eye.db").display());
    let mut config = ServeConfig::for_tests(&url);
    // These tests read what a client delivered as soon as it reports it delivered.
    config.queue.ack_after = eye_server::config::AckAfter::Store;
    config.http.insecure_no_auth = !auth;
    let node = Node::start(config).await.unwrap();
    let key = create_app_with_key(&node.state.store, "outbox-tests", Scopes::ALL)
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(node.serve(listener, async {
        let _ = stopped.await;
    }));
    Server {
        base,
        key,
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

pub async fn start_server() -> Server {
    start_server_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), true).await
}

impl Server {
    /// A client of this server with an outbox in `dir`.
    pub fn client(&self, dir: &Path) -> EyeClientBuilder {
        EyeClient::builder(&self.base)
            .api_key(&self.key)
            .outbox(dir)
            .flush_interval(Duration::from_millis(20))
    }

    /// A client for queries only.
    pub fn query_client(&self) -> EyeClient {
        EyeClient::builder(&self.base)
            .api_key(&self.key)
            .build()
            .unwrap()
    }

    /// How many events the server stored in all.
    pub async fn stored(&self) -> u64 {
        let q = self.query_client();
        q.events(&EventQuery::new()).await.unwrap().count
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// A client of a server that is down, with an outbox in `dir`: retries are quick and
/// few, so a batch is kept in the outbox soon.
pub fn down_client(dir: &Path) -> EyeClientBuilder {
    EyeClient::builder(DOWN)
        .outbox(dir)
        .outbox_sync_interval(Duration::from_millis(10))
        .flush_interval(Duration::from_millis(10))
        .retry_policy(quick_retries())
        .drop_timeout(Duration::ZERO)
}

pub fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 1,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_retry_after: Duration::from_millis(20),
    }
}

/// A page view of `session`, path `/n`.
pub fn page_view(session: &str, n: usize) -> Event {
    Event::page_view(session, "outbox.example", &format!("/{n}")).unwrap()
}

/// The segment files in an outbox, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "seg"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Intact records in an outbox, read independently of the SDK: an 8-byte magic, then
/// `len u32 LE | crc u32 LE | payload` per record.
pub fn records_on_disk(dir: &Path) -> u64 {
    segments(dir)
        .iter()
        .map(|p| record_ends(p).len() as u64)
        .sum()
}

/// Where each intact record of a segment ends.
pub fn record_ends(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut ends = Vec::new();
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast_hash(payload) != crc {
            break;
        }
        at += 8 + len;
        ends.push(at);
    }
    ends
}

/// CRC-32 (IEEE), bit by bit: the test's own, so it checks the SDK's framing rather
/// than sharing its code.
fn crc32fast_hash(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Polls `check` every 10 ms until it holds; panics after `limit`.
pub async fn until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
