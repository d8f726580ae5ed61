//! The real `eye-server` binary: the CLI, first run, graceful shutdown on SIGTERM and
//! durability under SIGKILL.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use eye_server::store::Store;
use eye_server::store::testing::assert_stored_once;
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

use crate::helpers::page_view;

const BIN: &str = env!("CARGO_BIN_EXE_eye-server");

pub(crate) fn database_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("eye.db").display())
}

/// A command for the binary in `dir` (so no stray `.env` is read) with nothing of the
/// caller's environment but `PATH` and `HOME`: no `EYE_*` variable of the shell
/// running the tests leaks in.
fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
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

/// Runs the binary to completion in `dir`.
pub(crate) fn run(dir: &Path, args: &[&str]) -> Output {
    command(dir).args(args).output().expect("run eye-server")
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A running `eye-server serve` and its stderr lines.
pub(crate) struct Server {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut child = command(dir)
            .arg("serve")
            .args(["--bind", "127.0.0.1:0"])
            .args(extra)
            .env("EYE_LOG_FORMAT", "json")
            .env("EYE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn eye-server");
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let keep = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && let Some(addr) = v["fields"]["addr"].as_str()
                {
                    let _ = tx.send(addr.to_owned());
                }
                keep.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("server did not start: {:?}", lines.lock().unwrap()));
        Server {
            child,
            addr,
            stderr: lines,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code (None if killed).
    fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub(crate) fn stop(mut self) {
        self.signal("-TERM");
        assert_eq!(self.wait(), Some(0), "{}", self.stderr_text());
    }

    pub(crate) fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn create_key(dir: &Path, name: &str, scope: &str) -> String {
    let output = run(dir, &["apps", "create", name, "--scope", scope]);
    assert!(output.status.success(), "{output:?}");
    stdout(&output).trim().to_owned()
}

#[test]
fn apps_create_prints_only_the_key_on_stdout() {
    let dir = TempDir::new().unwrap();

    let output = run(dir.path(), &["apps", "create", "shop"]);

    assert!(output.status.success(), "{output:?}");
    let out = stdout(&output);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    let key = out.trim_end();
    assert!(key.starts_with("eye_") && key.len() == 47, "{key}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("shop"));
}

#[test]
fn apps_list_and_revoke() {
    let dir = TempDir::new().unwrap();
    create_key(dir.path(), "shop", "ingest");
    create_key(dir.path(), "analytics", "query");

    let duplicate = run(dir.path(), &["apps", "create", "shop"]);
    let revoke = run(dir.path(), &["apps", "revoke", "shop"]);
    let unknown = run(dir.path(), &["apps", "revoke", "nobody"]);
    let list = stdout(&run(dir.path(), &["apps", "list"]));

    assert!(!duplicate.status.success());
    assert!(revoke.status.success());
    assert!(!unknown.status.success());
    let shop = list.lines().find(|l| l.starts_with("shop")).expect(&list);
    assert!(
        shop.contains("ingest") && shop.contains("revoked"),
        "{shop}"
    );
    let analytics = list
        .lines()
        .find(|l| l.starts_with("analytics"))
        .expect(&list);
    assert!(
        analytics.contains("query") && analytics.contains("active"),
        "{analytics}"
    );
}

#[test]
fn schema_prints_the_event_json_schema() {
    let dir = TempDir::new().unwrap();
    let output = run(dir.path(), &["schema"]);
    assert!(output.status.success());
    let schema: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert!(schema.get("$schema").is_some() || schema.get("type").is_some());
}

#[tokio::test]
async fn first_run_creates_the_default_app_once_and_sigterm_or_sigint_exit_0() {
    let dir = TempDir::new().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let text = server.stderr_text();
    let key = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("eye_"))
        .unwrap_or_else(|| panic!("no key printed: {text}"))
        .to_owned();
    let http = reqwest::Client::new();
    let posted = http
        .post(server.url("/events"))
        .bearer_auth(&key)
        .json(&page_view("s", "2022-01-01T00:00:00Z"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 201);

    server.signal("-TERM");
    assert_eq!(server.wait(), Some(0), "{}", server.stderr_text());

    let mut again = Server::start(dir.path(), &[]);
    assert!(!again.stderr_text().contains("First run"));
    again.signal("-INT");
    assert_eq!(again.wait(), Some(0), "Ctrl-C stops cleanly too");
}

/// What a load sent and what was acknowledged with a 201.
#[derive(Default)]
struct Sent {
    acked: Mutex<Vec<Uuid>>,
    sent: Mutex<Vec<Uuid>>,
}

impl Sent {
    fn acked(&self) -> HashSet<Uuid> {
        self.acked.lock().unwrap().iter().copied().collect()
    }

    fn sent(&self) -> HashSet<Uuid> {
        self.sent.lock().unwrap().iter().copied().collect()
    }
}

/// Posts batches of 5 events with client ids from `workers` tasks until the server
/// stops answering, recording every id sent and every id acknowledged with a 201.
fn load(
    url: String,
    key: String,
    workers: usize,
    log: Arc<Sent>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|w| {
            let (url, key, log, stop) = (
                url.clone(),
                key.clone(),
                Arc::clone(&log),
                Arc::clone(&stop),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut failures = 0;
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) && failures < 3 {
                    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
                    let batch: Vec<Value> = ids
                        .iter()
                        .map(|id| {
                            // Sessions and seconds spread, so the counters have several
                            // rows each to get wrong.
                            n += 1;
                            let ts = format!("2022-01-01T00:{:02}:{:02}Z", n / 60 % 60, n % 60);
                            let mut e = page_view(&format!("load-{w}-{}", n % 7), &ts);
                            e["id"] = json!(id.to_string());
                            e
                        })
                        .collect();
                    log.sent.lock().unwrap().extend(&ids);
                    match http.post(&url).bearer_auth(&key).json(&batch).send().await {
                        Ok(r) if r.status().as_u16() == 201 => {
                            log.acked.lock().unwrap().extend(ids);
                        }
                        Ok(_) | Err(_) => {
                            failures += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

async fn wait_for_acks(log: &Sent, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while log.acked.lock().unwrap().len() < at_least {
        assert!(
            Instant::now() < deadline,
            "load never reached {at_least} acks"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Posts load from 8 tasks until `acks` events are acknowledged, runs `before` (while
/// the load goes on, given what was sent so far), sends the server `signal`, waits for it to exit and then stops
/// the load. Returns the exit code, what `before` returned, and what was sent and
/// acknowledged.
async fn signal_under_load<T, F: std::future::Future<Output = T>>(
    server: &mut Server,
    key: String,
    acks: usize,
    before: impl FnOnce(Arc<Sent>) -> F,
    signal: &str,
) -> (Option<i32>, T, Arc<Sent>) {
    let (log, stop): (Arc<Sent>, Arc<AtomicBool>) = Default::default();
    let tasks = load(
        server.url("/events"),
        key,
        8,
        Arc::clone(&log),
        Arc::clone(&stop),
    );
    wait_for_acks(&log, acks).await;
    let seen = before(Arc::clone(&log)).await;
    server.signal(signal);
    let code = server.wait();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    (code, seen, log)
}

/// Every acknowledged event is stored, nothing that was never sent is, and each is
/// stored once by every counter a double store would break (see
/// `eye_server::store::testing::assert_stored_once`). Returns the stored ids.
async fn assert_all_stored_once(dir: &Path, log: &Sent) -> HashSet<Uuid> {
    let store = Store::open(&database_url(dir)).await.unwrap();
    let stored = assert_stored_once(&store).await;
    store.close().await;
    let (acked, sent) = (log.acked(), log.sent());
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged events lost: {lost:?}");
    assert!(stored.is_subset(&sent), "an event never sent was stored");
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_posting_stores_every_acknowledged_event() {
    let dir = TempDir::new().unwrap();
    let key = create_key(dir.path(), "load", "ingest");
    let mut server = Server::start(dir.path(), &[]);

    let (code, (), log) = signal_under_load(&mut server, key, 200, |_| async {}, "-TERM").await;

    assert_eq!(code, Some(0), "{}", server.stderr_text());
    eprintln!(
        "SIGTERM: {} events acknowledged of {} sent",
        log.acked().len(),
        log.sent().len()
    );
    assert_all_stored_once(dir.path(), &log).await;
}

/// Holds SQLite's write lock on the database from the test process, as a long
/// transaction of another process would: the server's writes wait, fail as busy and
/// are retried, so what it acknowledges stays in its journal. Its reads (WAL) go on.
pub(crate) async fn lock_database(dir: &Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&database_url(dir))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// The ids of the events in the journal segments of `dir`.
fn journal_ids(dir: &Path) -> HashSet<Uuid> {
    use eye_server::message::Message;
    use eye_server::queue::journal::segment::{self, Frame, FrameEnd};
    let mut ids = HashSet::new();
    for seq in segment::list(dir).unwrap() {
        let bytes = std::fs::read(segment::path(dir, seq)).unwrap();
        let mut rest = bytes.as_slice();
        loop {
            let mut frames = Vec::new();
            let end = segment::read_frames(&mut rest, u64::MAX, usize::MAX, &mut frames).unwrap();
            ids.extend(frames.into_iter().filter_map(|f| match f {
                Frame::Message(Message::EventV1(e)) => Some(e.id),
                _ => None,
            }));
            // A read stops after about 16 MiB; `rest` has moved on by what it read.
            if !matches!(end, FrameEnd::Limit(n) if n > 0) || rest.is_empty() {
                break;
            }
        }
    }
    ids
}

/// The journal start line's `messages`: what the process found left by an earlier one.
fn recovered_messages(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|line| {
        let v: Value = serde_json::from_str(line).ok()?;
        (v["fields"]["message"] == "journal: storing what an earlier process acknowledged")
            .then(|| v["fields"]["messages"].as_u64())
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_acknowledged_events_only_in_the_journal_stores_them_at_the_next_start() {
    // Arrange: the store held back by a write lock, so nothing acknowledged can be
    // stored before the kill.
    let dir = TempDir::new().unwrap();
    let key = create_key(dir.path(), "load", "ingest");
    let mut server = Server::start(dir.path(), &[]);
    let mut lock = lock_database(dir.path()).await;
    let readyz = server.url("/readyz");

    // Act: SIGKILL under load, with at least 500 events acknowledged.
    let (code, (acked_then, backlog_then), log) = signal_under_load(
        &mut server,
        key.clone(),
        500,
        |log| async move {
            let acked_then = log.acked().len() as u64;
            let ready: Value = reqwest::get(&readyz).await.unwrap().json().await.unwrap();
            (acked_then, ready["backlog"].as_u64().unwrap())
        },
        "-KILL",
    )
    .await;
    let (stored_at_kill,): (i64,) = sqlx::query_as("SELECT count(*) FROM events")
        .fetch_one(&mut lock)
        .await
        .unwrap();
    let in_journal = journal_ids(&dir.path().join("eye.db.journal"));
    let acked = log.acked();
    drop(lock);
    let mut restarted = Server::start(dir.path(), &[]);
    restarted.signal("-TERM");
    let exit = restarted.wait();

    // Assert: at the kill every acknowledged event was in the journal and none was
    // stored; the next start found them, stored them, and each once.
    assert_eq!(code, None, "killed by a signal");
    assert!(acked.len() >= 500);
    assert!(
        backlog_then >= acked_then,
        "/readyz's backlog ({backlog_then}) holds every event acknowledged ({acked_then})"
    );
    assert_eq!(stored_at_kill, 0, "nothing could be stored before the kill");
    let missing: Vec<_> = acked.difference(&in_journal).collect();
    assert!(
        missing.is_empty(),
        "acknowledged, not in the journal: {missing:?}"
    );
    assert_eq!(exit, Some(0), "{}", restarted.stderr_text());
    assert_eq!(
        recovered_messages(&restarted.stderr_text()),
        Some(in_journal.len() as u64),
        "the next start found the journal: {}",
        restarted.stderr_text()
    );
    let stored = assert_all_stored_once(dir.path(), &log).await;
    assert_eq!(
        stored, in_journal,
        "recovery stored exactly what the journal held"
    );
    eprintln!(
        "SIGKILL with the store held: {} acknowledged of {} sent, {} in the journal, all stored at the next start",
        acked.len(),
        log.sent().len(),
        in_journal.len()
    );

    // The clients retry everything after the crash: still stored once.
    resend_and_assert_stored_once(dir.path(), &[], &key, &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_when_acknowledging_after_the_store() {
    let flags = ["--ack-after", "store"];
    let dir = TempDir::new().unwrap();
    let key = create_key(dir.path(), "load", "ingest");
    let mut server = Server::start(dir.path(), &flags);

    let (code, (), log) =
        signal_under_load(&mut server, key.clone(), 500, |_| async {}, "-KILL").await;

    assert_eq!(code, None, "killed by a signal");
    assert!(log.acked().len() >= 500);
    // Acknowledged only once committed: stored already, before any restart.
    assert_all_stored_once(dir.path(), &log).await;
    resend_and_assert_stored_once(dir.path(), &flags, &key, &log).await;
}

/// Starts the server on `dir` again, re-sends every acknowledged event (as clients
/// retry after a crash), stops it, and asserts each is still stored once.
async fn resend_and_assert_stored_once(dir: &Path, flags: &[&str], key: &str, log: &Sent) {
    let before = assert_all_stored_once(dir, log).await;
    let mut server = Server::start(dir, flags);
    let http = reqwest::Client::new();
    let acked: Vec<Uuid> = log.acked().into_iter().collect();
    for chunk in acked.chunks(1000) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|id| {
                let mut e = page_view("retry", "2022-01-01T00:00:00Z");
                e["id"] = json!(id.to_string());
                e
            })
            .collect();
        let r = http
            .post(server.url("/events"))
            .bearer_auth(key)
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    server.signal("-TERM");
    assert_eq!(server.wait(), Some(0));
    assert_eq!(assert_all_stored_once(dir, log).await, before);
}

#[test]
fn migrate_creates_the_database_and_is_idempotent() {
    let dir = TempDir::new().unwrap();
    let first = run(dir.path(), &["migrate"]);
    let second = run(dir.path(), &["migrate"]);
    assert!(first.status.success(), "{first:?}");
    assert!(second.status.success(), "{second:?}");
    assert!(dir.path().join("eye.db").exists());
}

#[test]
fn flags_before_another_subcommand_are_refused() {
    let dir = TempDir::new().unwrap();
    let output = run(dir.path(), &["--bind", "127.0.0.1:9", "migrate"]);
    assert!(!output.status.success());
}
