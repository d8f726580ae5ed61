//! The test harness: a real `redis-server` (the one at `EYE_TEST_REDIS_URL`, or a
//! private one on a free loopback port, killed on drop), unique key prefixes, messages
//! and an in-memory sink.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use eye_core::Event;
use eye_server::message::{AcceptedEvent, Message};
use eye_server::queue::redis::{RedisQueue, RedisQueueConfig};
use eye_server::sink::Sink;
use eye_server::store::{StoreError, WriteOutcome};
use eye_server::streams::Keys;
use eye_server::worker::{Worker, WorkerConfig};
use redis::AsyncCommands;
use uuid::Uuid;

/// A key prefix no other test (or test run) uses.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "eye-test-{name}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        Uuid::new_v4().simple()
    )
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A private `redis-server` process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    persistent: bool,
}

impl RedisServer {
    /// Without persistence: `--save '' --appendonly no`.
    pub fn start() -> Self {
        Self::spawn(false)
    }

    /// With an append-only file fsynced on every write, so it can be killed and
    /// restarted (same port, same data) in the middle of a test.
    pub fn start_persistent() -> Self {
        Self::spawn(true)
    }

    fn spawn(persistent: bool) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut server = Self {
            child: None,
            port: free_port(),
            dir,
            persistent,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--dir")
            .arg(self.dir.path());
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        wait_for_pong(self.port);
    }

    /// The URL of this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Where its files live.
    #[allow(dead_code)]
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for_pong(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 64];
            if s.write_all(b"PING\r\n").is_ok()
                && let Ok(n) = s.read(&mut buf)
                && buf[..n].starts_with(b"+PONG")
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} did not answer PING within 10 s");
}

/// The Redis a test uses: `EYE_TEST_REDIS_URL` when set, else a private server.
pub enum TestRedis {
    /// Someone else's server.
    External(String),
    /// Ours.
    Private(RedisServer),
}

impl TestRedis {
    /// Picks per `EYE_TEST_REDIS_URL`.
    pub fn get() -> Self {
        match std::env::var("EYE_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => Self::External(url),
            _ => Self::Private(RedisServer::start()),
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        match self {
            Self::External(url) => url.clone(),
            Self::Private(s) => s.url(),
        }
    }
}

/// A raw connection for assertions.
pub async fn conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("a valid URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers")
}

/// An accepted page view with a fresh id.
pub fn accepted(session: &str) -> AcceptedEvent {
    let event = Event::page_view(session, "www.example.com", "/").expect("a valid event");
    AcceptedEvent {
        client_timestamp: None,
        id: Uuid::now_v7(),
        application: "test".into(),
        received_at: Utc::now(),
        event,
    }
}

/// Worker settings for tests: small batches, short block and claim times.
pub fn worker_config(prefix: &str, consumer: &str) -> WorkerConfig {
    WorkerConfig {
        keys: Keys::new(prefix),
        consumer: consumer.into(),
        batch: 100,
        max_commit: 1000,
        block: Duration::from_millis(100),
        claim_idle: Duration::from_millis(300),
        max_deliveries: 3,
        dead_letter_maxlen: 1000,
        forget_consumers_after: Duration::from_secs(3600),
    }
}

/// An in-memory store: counts how often each event id was inserted, keeps the errors
/// log, and fails every batch holding one of `poison`.
#[derive(Default)]
pub struct MemorySink {
    inner: Mutex<MemoryInner>,
    poison: HashSet<Uuid>,
    /// While set, every write fails as a busy or unreachable store does (a transient
    /// error: `StoreError::is_transient`).
    pub down: std::sync::atomic::AtomicBool,
    /// While set, every write fails with an error that does not say the store is to
    /// blame (as a poison message's does).
    pub broken: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct MemoryInner {
    events: HashMap<Uuid, u64>,
    errors: Vec<eye_server::message::RejectedEvent>,
}

impl MemorySink {
    /// A sink that refuses every batch holding one of `poison`.
    pub fn failing_on(poison: impl IntoIterator<Item = Uuid>) -> Arc<Self> {
        Arc::new(Self {
            poison: poison.into_iter().collect(),
            ..Self::default()
        })
    }

    /// Distinct event ids stored.
    pub fn stored(&self) -> HashSet<Uuid> {
        self.lock().events.keys().copied().collect()
    }

    /// The errors log.
    pub fn errors(&self) -> Vec<eye_server::message::RejectedEvent> {
        self.lock().errors.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Sink for MemorySink {
    async fn write_batch(&self, messages: &[Message]) -> Result<WriteOutcome, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Corrupt("the store is broken".into()));
        }
        let poisoned = messages
            .iter()
            .any(|m| matches!(m, Message::EventV1(e) if self.poison.contains(&e.id)));
        if poisoned {
            return Err(StoreError::Corrupt("poison".into()));
        }
        let mut inner = self.lock();
        let mut outcome = WriteOutcome::default();
        for m in messages {
            match m {
                Message::EventV1(e) => {
                    let n = inner.events.entry(e.id).or_default();
                    if *n == 0 {
                        outcome.inserted += 1;
                    } else {
                        outcome.duplicates += 1;
                    }
                    *n += 1;
                }
                Message::RejectedV1(r) => {
                    if !inner.errors.iter().any(|x| x.key == r.key) {
                        inner.errors.push(r.clone());
                        outcome.errors_logged += 1;
                    }
                }
            }
        }
        Ok(outcome)
    }
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy in front of Redis that, while `drop_replies` is on, forwards commands
/// but swallows Redis's replies and closes the client's connection: the client cannot
/// tell whether its command was applied (it was).
pub struct LossyProxy {
    /// The port clients connect to.
    pub port: u16,
    /// Swallow replies and hang up.
    pub drop_replies: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    /// Listens on a free loopback port, forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let drop_replies = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&drop_replies);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let flag = Arc::clone(&flag);
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if flag.load(Ordering::SeqCst) {
                            break; // the reply is lost; dropping `cw` hangs up
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self {
            port,
            drop_replies,
            task,
        }
    }

    /// The Redis URL through the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Redis queue under `prefix`, with a 5 s enqueue timeout.
pub fn queue(url: &str, prefix: &str, max_backlog: u64) -> RedisQueue {
    RedisQueue::connect(RedisQueueConfig {
        url: url.into(),
        keys: Keys::new(prefix),
        max_backlog,
        enqueue_timeout: Duration::from_secs(5),
    })
    .expect("a valid URL")
}

/// A worker on its own connection, writing to `sink`.
pub fn start_worker(
    url: &str,
    prefix: &str,
    consumer: &str,
    sink: Arc<MemorySink>,
) -> eye_server::worker::WorkerHandle {
    let config = worker_config(prefix, consumer);
    let conn = eye_server::streams::connect(url, config.response_timeout()).expect("a valid URL");
    Worker::new(conn, sink, config).spawn()
}

/// The length of a stream.
pub async fn xlen(url: &str, key: &str) -> u64 {
    conn(url).await.xlen(key).await.expect("XLEN")
}
