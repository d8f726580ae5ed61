//! The test harness: a real `redis-server` (the one at `EYE_TEST_REDIS_URL`, or a
//! private one on a free loopback port, killed on drop), unique key prefixes, messages
//! and the real SQLite store the workers write to.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use eye_core::Event;
use eye_server::message::{AcceptedEvent, Message};
use eye_server::queue::redis::{RedisQueue, RedisQueueConfig};
use eye_server::sink::Sink;
use eye_server::store::{Store, StoreError, WriteOutcome};
use eye_server::streams::Keys;
use eye_server::worker::{Worker, WorkerConfig};
use redis::AsyncCommands;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
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

/// The real SQLite store, in a file of its own, that the workers write to. The store
/// refuses data because of the triggers
/// [`Self::refuse`] installs in the database itself; only [`Self::down`] is injected.
pub struct TestStore {
    /// The store.
    pub store: Store,
    url: String,
    _dir: tempfile::TempDir,
    /// While set, every write fails at once as an unreachable store's does (a transient
    /// error, `StoreError::is_transient`). Injected: a real SQLite store can be made to
    /// fail transiently only by a lock, and then each write waits the 10 s busy timeout
    /// before failing, while these tests need many failed deliveries within seconds.
    pub down: AtomicBool,
}

/// One row of the store's errors log.
#[derive(Debug, Clone)]
pub struct LoggedError {
    /// The distinct error codes (a JSON array).
    pub codes: String,
    /// The raw message.
    pub payload: String,
}

impl TestStore {
    /// A fresh store in a temporary directory.
    pub async fn open() -> Arc<Self> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("eye.db").display());
        let store = Store::open(&url).await.expect("open the store");
        Arc::new(Self {
            store,
            url,
            _dir: dir,
            down: AtomicBool::new(false),
        })
    }

    /// A connection of the test's own to the database file.
    async fn raw(&self) -> SqliteConnection {
        let options = SqliteConnectOptions::from_str(&self.url)
            .expect("a valid URL")
            .busy_timeout(Duration::from_secs(30));
        SqliteConnection::connect_with(&options)
            .await
            .expect("open the database file")
    }

    /// Distinct event ids stored.
    pub async fn stored(&self) -> HashSet<Uuid> {
        let mut c = self.raw().await;
        let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT id FROM events")
            .fetch_all(&mut c)
            .await
            .expect("read events");
        rows.into_iter()
            .map(|(id,)| Uuid::from_slice(&id).expect("a 16-byte id"))
            .collect()
    }

    /// What a second store of an event would raise: the sum of the sessions'
    /// `event_count` and the sum of the per-type counters, in that order.
    pub async fn counters(&self) -> (i64, i64) {
        let mut c = self.raw().await;
        let sessions: (i64,) = sqlx::query_as("SELECT COALESCE(SUM(event_count), 0) FROM sessions")
            .fetch_one(&mut c)
            .await
            .expect("read sessions");
        let types: (i64,) = sqlx::query_as("SELECT COALESCE(SUM(events), 0) FROM event_counts")
            .fetch_one(&mut c)
            .await
            .expect("read event_counts");
        (sessions.0, types.0)
    }

    /// The errors log, oldest first.
    pub async fn errors(&self) -> Vec<LoggedError> {
        let mut c = self.raw().await;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT codes, payload FROM errors ORDER BY id")
                .fetch_all(&mut c)
                .await
                .expect("read errors");
        rows.into_iter()
            .map(|(codes, payload)| LoggedError { codes, payload })
            .collect()
    }

    /// Makes the database refuse, as bad data, the event `id`, or (`None`) every event
    /// and every errors-log entry: a trigger that raises an error (SQLITE_CONSTRAINT,
    /// not transient) on insert.
    pub async fn refuse(&self, id: Option<Uuid>) {
        let mut c = self.raw().await;
        let statements = match id {
            Some(id) => vec![format!(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON events WHEN NEW.id = X'{}' \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
                id.simple()
            )],
            None => ["events", "errors"]
                .iter()
                .map(|table| {
                    format!(
                        "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} \
                         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                    )
                })
                .collect(),
        };
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .expect("create trigger");
        }
    }

    /// Drops the triggers of [`Self::refuse`].
    pub async fn accept(&self) {
        let mut c = self.raw().await;
        for name in ["refuse_one", "refuse_events", "refuse_errors"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP TRIGGER IF EXISTS {name}"
            )))
            .execute(&mut c)
            .await
            .expect("drop trigger");
        }
    }
}

#[async_trait]
impl Sink for TestStore {
    async fn write_batch(&self, messages: &[Message]) -> Result<WriteOutcome, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        self.store.write_batch(messages).await
    }
}

/// How many times each pending entry of `prefix`'s stream was delivered (XPENDING);
/// none before the worker made its consumer group.
pub async fn deliveries(url: &str, prefix: &str) -> Vec<usize> {
    let keys = Keys::new(prefix);
    let reply: Result<redis::streams::StreamPendingCountReply, _> = conn(url)
        .await
        .xpending_count(&keys.stream, &keys.group, "-", "+", 10_000)
        .await;
    match reply {
        Ok(reply) => reply.ids.iter().map(|p| p.times_delivered).collect(),
        Err(e) if e.code() == Some("NOGROUP") => Vec::new(),
        Err(e) => panic!("XPENDING: {e}"),
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

/// A TCP proxy in front of Redis that swallows the next [`Self::drop_next`] replies:
/// each one is read from Redis (so the command was applied) and not forwarded, and the
/// client's connection is closed, so the client cannot tell whether its command was
/// applied. It counts down by itself, so no reply can slip through or be lost around a
/// switch being turned off. A fault a real Redis cannot be made to produce.
pub struct LossyProxy {
    /// The port clients connect to.
    pub port: u16,
    /// How many of the next replies to swallow (hanging up after each).
    pub drop_next: Arc<std::sync::atomic::AtomicU32>,
    /// How many replies were swallowed.
    pub dropped: Arc<std::sync::atomic::AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    /// Listens on a free loopback port, forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        use std::sync::atomic::AtomicU32;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let drop_next = Arc::new(AtomicU32::new(0));
        let dropped = Arc::new(AtomicU32::new(0));
        let (to_drop, counted) = (Arc::clone(&drop_next), Arc::clone(&dropped));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let (to_drop, counted) = (Arc::clone(&to_drop), Arc::clone(&counted));
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
                        let swallow = to_drop
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        if swallow {
                            counted.fetch_add(1, Ordering::SeqCst);
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
            drop_next,
            dropped,
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
    sink: Arc<TestStore>,
) -> eye_server::worker::WorkerHandle {
    let config = worker_config(prefix, consumer);
    let conn = eye_server::streams::connect(url, config.response_timeout()).expect("a valid URL");
    Worker::new(conn, sink, config).spawn()
}

/// The length of a stream.
pub async fn xlen(url: &str, key: &str) -> u64 {
    conn(url).await.xlen(key).await.expect("XLEN")
}
