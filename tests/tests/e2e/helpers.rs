//! The real `eye-server` binary as a child process: its own temporary working
//! directory and SQLite file, a clean environment, `127.0.0.1:0` on the first start and
//! the same port on a restart. Keys come from `eye-server apps create`, as a user
//! makes them.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use std::collections::{HashMap, HashSet};

use eye_client::{EyeClient, EyeClientBuilder, RetryPolicy};
use eye_core::{EventQuery, EventType, StoredEvent};
use futures_util::TryStreamExt;
use serde_json::Value;
use tempfile::TempDir;
use uuid::Uuid;

pub struct Server {
    pub addr: SocketAddr,
    /// A key with every scope, application `e2e`.
    pub key: String,
    flags: Vec<String>,
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<String>>>,
    dir: TempDir,
}

/// A command for the binary in `dir` with nothing of the caller's environment but
/// `PATH` and `HOME`: no `EYE_*` variable of the shell running the tests leaks in, and
/// no `.env` of the checkout is read (the working directory is `dir`).
fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(eye_tests::server_binary());
    cmd.env_clear()
        .current_dir(dir)
        .env("EYE_DATABASE_URL", database_url(dir))
        .env("EYE_LOG", "warn");
    for var in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd
}

fn database_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("eye.db").display())
}

/// Runs `eye-server args...` to completion in `dir`.
fn run(dir: &Path, args: &[&str]) -> Output {
    command(dir).args(args).output().expect("run eye-server")
}

/// `eye-server apps create NAME --scope SCOPE` in `dir`; the key it prints.
pub fn create_key_in(dir: &Path, name: &str, scope: &str) -> String {
    let output = run(dir, &["apps", "create", name, "--scope", scope]);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

impl Server {
    /// Starts the binary with its defaults (the journal).
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts the binary with extra `serve` flags (kept on restart).
    pub async fn start_with(flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        run_ok(dir.path(), &["migrate"]);
        let key = create_key_in(dir.path(), "e2e", "all");
        let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        let (child, addr, stderr) = spawn(dir.path(), "127.0.0.1:0", &flags);
        Self {
            addr,
            key,
            flags,
            child: Some(child),
            stderr,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's working directory (its database and journal live there).
    #[allow(dead_code)]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new application's key, made with `eye-server apps create`.
    pub fn create_key(&self, name: &str, scope: &str) -> String {
        create_key_in(self.dir.path(), name, scope)
    }

    /// A client with this server's all-scopes key and quick retries.
    pub fn client(&self) -> EyeClientBuilder {
        EyeClient::builder(self.url())
            .api_key(&self.key)
            .flush_interval(Duration::from_millis(20))
            .retry_policy(RetryPolicy {
                max_retries: 200,
                initial_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(200),
                max_retry_after: Duration::from_secs(2),
            })
    }

    /// Stops the server with SIGTERM (stops accepting, finishes in-flight requests,
    /// drains the queue into the store) and asserts it exits 0.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
            let deadline = Instant::now() + Duration::from_secs(60);
            let code = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status.code();
                }
                assert!(Instant::now() < deadline, "the server did not exit");
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            assert_eq!(code, Some(0), "{}", self.stderr.lock().unwrap().join("\n"));
        }
    }

    /// Starts the binary again on the same port and database.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (child, addr, stderr) = spawn(self.dir.path(), &self.addr.to_string(), &self.flags);
        assert_eq!(addr, self.addr);
        (self.child, self.stderr) = (Some(child), stderr);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run_ok(dir: &Path, args: &[&str]) {
    let output = run(dir, args);
    assert!(output.status.success(), "{output:?}");
}

/// Spawns `eye-server serve --bind BIND FLAGS` and waits (60 s at most) for the log
/// line that names the address it listens on.
fn spawn(dir: &Path, bind: &str, flags: &[String]) -> (Child, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let mut child = command(dir)
        .args(["serve", "--bind", bind])
        .args(flags)
        .env("EYE_LOG", "info")
        .env("EYE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn eye-server");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let keep = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && let Some(addr) = v["fields"]["addr"].as_str()
            {
                let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
            }
            keep.lock().unwrap().push(line);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the server did not start: {:?}", lines.lock().unwrap()));
    (child, addr, lines)
}

/// Polls `check` every 20 ms until it returns `Some`, for at most 10 s: events a
/// server acknowledged from its journal are readable shortly after the 2xx, not at it.
///
/// # Panics
///
/// After 10 s without `Some`, with `what` in the message.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every stored event, read row by row through the page stream.
pub async fn all_stored(server: &Server) -> Vec<StoredEvent> {
    let client = server.client().build().unwrap();
    client
        .events_stream(EventQuery::new().page_size(1000))
        .try_collect()
        .await
        .unwrap()
}

/// Waits (bounded) until the server's totals count `n` events: with the journal,
/// acknowledged events are stored shortly after the 2xx.
pub async fn wait_for_total(server: &Server, n: u64) {
    let client = server.client().build().unwrap();
    eventually(&format!("{n} events stored"), || {
        let client = client.clone();
        async move {
            let count = client
                .events(&EventQuery::new().page_size(1))
                .await
                .ok()?
                .count;
            (count >= n).then_some(())
        }
    })
    .await;
}

/// Asserts that exactly the `tracked` events are stored, each once, in the ways a
/// double store would show: the rows hold exactly the tracked ids, and every counter
/// the write path keeps beside the rows (the totals, the per-type counters, each
/// session's `event_count`, the time-bucket counts) agrees with those rows. Counting
/// rows alone could not fail: `events.id` is the primary key.
pub async fn assert_stored_exactly_once(server: &Server, tracked: &[Uuid]) {
    wait_for_total(server, tracked.len() as u64).await;
    let client = server.client().build().unwrap();
    let rows = all_stored(server).await;
    let ids: HashSet<Uuid> = rows.iter().map(|e| e.id).collect();
    let expected: HashSet<Uuid> = tracked.iter().copied().collect();
    assert_eq!(
        expected.len(),
        tracked.len(),
        "the test tracked an id twice"
    );
    assert_eq!(ids, expected, "the stored ids differ from the tracked ones");

    let count = |q: EventQuery| {
        let client = client.clone();
        async move { client.events(&q.page_size(1)).await.unwrap().count }
    };
    assert_eq!(count(EventQuery::new()).await, rows.len() as u64, "total");
    for t in [
        EventType::PageView,
        EventType::CtaClick,
        EventType::FormSubmit,
    ] {
        let in_rows = rows.iter().filter(|e| e.event_type() == t).count() as u64;
        assert_eq!(
            count(EventQuery::new().event_type(t)).await,
            in_rows,
            "{t:?}"
        );
    }
    let mut per_session: HashMap<&str, u64> = HashMap::new();
    for e in &rows {
        *per_session.entry(e.session_id.as_ref()).or_default() += 1;
    }
    for (session, n) in per_session {
        let counted = client.session(session).await.unwrap().event_count;
        assert_eq!(counted, n, "event_count of session {session}");
    }
    let mut times: Vec<_> = rows.iter().map(|e| e.timestamp).collect();
    times.sort();
    if let (Some(first), Some(last)) = (times.first(), times.last()) {
        let middle = times[times.len() / 2];
        let early = times.iter().filter(|t| **t <= middle).count() as u64;
        let range = |from, to| EventQuery::new().start_time(from).end_time(to);
        assert_eq!(count(range(*first, middle)).await, early, "first half");
        let after = middle + chrono::Duration::microseconds(1);
        if after <= *last {
            let late = rows.len() as u64 - early;
            assert_eq!(count(range(after, *last)).await, late, "second half");
        }
    }
}
