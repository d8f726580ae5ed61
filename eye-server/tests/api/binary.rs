//! The real `eye-server` binary: the CLI, first run, graceful shutdown on SIGTERM and
//! durability under SIGKILL.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use eye_server::store::Store;
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

use crate::helpers::page_view;

const BIN: &str = env!("CARGO_BIN_EXE_eye-server");

pub(crate) fn database_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("eye.db").display())
}

/// Runs the binary to completion in `dir` (so no stray `.env` is read).
pub(crate) fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("EYE_DATABASE_URL", database_url(dir))
        .env("EYE_LOG", "warn")
        .output()
        .expect("run eye-server")
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
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(["--bind", "127.0.0.1:0"])
            .args(extra)
            .current_dir(dir)
            .env("EYE_DATABASE_URL", database_url(dir))
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

/// Posts batches of 5 events with client ids from `workers` tasks until the server
/// stops answering; returns every id acknowledged with a 201.
fn load(
    url: String,
    key: String,
    workers: usize,
    acked: Arc<Mutex<Vec<Uuid>>>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|w| {
            let (url, key, acked, stop, sent) = (
                url.clone(),
                key.clone(),
                Arc::clone(&acked),
                Arc::clone(&stop),
                Arc::clone(&sent),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut failures = 0;
                while !stop.load(Ordering::Relaxed) && failures < 3 {
                    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
                    let batch: Vec<Value> = ids
                        .iter()
                        .map(|id| {
                            let mut e = page_view(&format!("load-{w}"), "2022-01-01T00:00:00Z");
                            e["id"] = json!(id.to_string());
                            e
                        })
                        .collect();
                    sent.fetch_add(ids.len(), Ordering::Relaxed);
                    match http.post(&url).bearer_auth(&key).json(&batch).send().await {
                        Ok(r) if r.status().as_u16() == 201 => {
                            acked.lock().unwrap().extend(ids);
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

async fn wait_for_acks(acked: &Mutex<Vec<Uuid>>, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < at_least {
        assert!(
            Instant::now() < deadline,
            "load never reached {at_least} acks"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Posts load from 8 tasks until `acks` events are acknowledged, sends the server
/// `signal`, waits for it to exit and then stops the load. Returns the exit code, the
/// acknowledged ids and how many events were sent.
async fn signal_under_load(
    server: &mut Server,
    key: String,
    acks: usize,
    signal: &str,
) -> (Option<i32>, Vec<Uuid>, usize) {
    let (acked, stop, sent): (Arc<Mutex<Vec<Uuid>>>, Arc<AtomicBool>, Arc<AtomicUsize>) =
        Default::default();
    let tasks = load(
        server.url("/events"),
        key,
        8,
        Arc::clone(&acked),
        Arc::clone(&stop),
        Arc::clone(&sent),
    );
    wait_for_acks(&acked, acks).await;
    server.signal(signal);
    let code = server.wait();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    (code, acked, sent.load(Ordering::Relaxed))
}

/// Every acknowledged id is stored, and the store holds no id twice.
async fn assert_all_stored_once(dir: &Path, acked: &[Uuid], sent: usize) {
    let store = Store::open(&database_url(dir)).await.unwrap();
    for id in acked {
        assert!(
            store.get_event(*id).await.unwrap().is_some(),
            "acknowledged event {id} was lost"
        );
    }
    let mut seen = HashSet::new();
    let mut page = 1;
    loop {
        let query = eye_core::EventQuery::new().page(page).page_size(1000);
        let (count, events) = store.query_events(&query).await.unwrap();
        assert!(count as usize <= sent, "more events stored than sent");
        for e in &events {
            assert!(seen.insert(e.id), "event {} stored twice", e.id);
        }
        if events.is_empty() || seen.len() as u64 >= count {
            break;
        }
        page += 1;
    }
    assert!(seen.len() >= acked.len());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_posting_stores_every_acknowledged_event() {
    let dir = TempDir::new().unwrap();
    let key = create_key(dir.path(), "load", "ingest");
    let mut server = Server::start(dir.path(), &[]);

    let (code, acked, sent) = signal_under_load(&mut server, key, 200, "-TERM").await;

    assert_eq!(code, Some(0), "{}", server.stderr_text());
    eprintln!(
        "SIGTERM: {} events acknowledged of {sent} sent",
        acked.len()
    );
    assert_all_stored_once(dir.path(), &acked, sent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_event() {
    sigkill_under_load(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_when_acknowledging_after_the_store() {
    sigkill_under_load(&["--ack-after", "store"]).await;
}

/// SIGKILLs a server under load, restarts it (which stores whatever the journal still
/// holds) and stops it cleanly: every acknowledged event is stored, none twice, also
/// when the clients then re-send everything.
async fn sigkill_under_load(flags: &[&str]) {
    let dir = TempDir::new().unwrap();
    let key = create_key(dir.path(), "load", "ingest");
    let mut server = Server::start(dir.path(), flags);

    let (code, acked, sent) = signal_under_load(&mut server, key.clone(), 500, "-KILL").await;

    assert_eq!(code, None, "killed by a signal");
    let journal = dir.path().join("eye.db.journal");
    eprintln!(
        "SIGKILL {flags:?}: {} events acknowledged of {sent} sent, {} stored at the kill, journal left: {}",
        acked.len(),
        stored_count(dir.path()).await,
        journal.exists()
    );
    assert!(acked.len() >= 500);
    restart_and_stop(dir.path(), flags);
    assert_all_stored_once(dir.path(), &acked, sent).await;

    // The clients retry everything after the crash: still stored once.
    let before = stored_count(dir.path()).await;
    let mut server = Server::start(dir.path(), flags);
    let http = reqwest::Client::new();
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
            .bearer_auth(&key)
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    server.signal("-TERM");
    assert_eq!(server.wait(), Some(0));
    assert_eq!(stored_count(dir.path()).await, before);
}

/// Starts the server on `dir` and stops it with SIGTERM, which returns once the
/// journal an earlier process left is stored.
fn restart_and_stop(dir: &Path, flags: &[&str]) {
    let mut server = Server::start(dir, flags);
    server.signal("-TERM");
    assert_eq!(server.wait(), Some(0), "{}", server.stderr_text());
}

async fn stored_count(dir: &Path) -> u64 {
    let store = Store::open(&database_url(dir)).await.unwrap();
    let (count, _) = store
        .query_events(&eye_core::EventQuery::new())
        .await
        .unwrap();
    store.close().await;
    count
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
