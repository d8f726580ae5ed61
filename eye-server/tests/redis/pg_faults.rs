//! PostgreSQL going away under load, and PostgreSQL URLs that cannot work, through the
//! real binary against the machine's real PostgreSQL.
//!
//! The outage is real but confined to the test's own database: every connection of
//! the node is terminated (`pg_terminate_backend`, what a server shutdown does to
//! them) and the database stops accepting new ones (`ALLOW_CONNECTIONS false`), then
//! accepts them again. Restarting the shared server itself would break every other
//! test running on it.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::harness::{RedisServer, unique_prefix};
use crate::multinode::PgDatabase;
use crate::process::Proc;

const BIN: &str = env!("CARGO_BIN_EXE_eye-server");

fn admin_url() -> String {
    std::env::var("EYE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Runs `sql` on `url` with psql; returns its unaligned output.
fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(url)
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The outage: the database refuses new connections and every open one is cut.
fn cut_off(db: &PgDatabase) {
    let name = db.name();
    psql(
        &admin_url(),
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
    );
    psql(
        &admin_url(),
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ),
    );
}

fn restore(db: &PgDatabase) {
    psql(
        &admin_url(),
        &format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", db.name()),
    );
}

/// Stored totals from the counters a second store of an event would raise:
/// (event counters, sum of session event counts).
fn counters(db: &PgDatabase) -> (u64, u64) {
    let out = psql(
        db.url(),
        "SELECT (SELECT coalesce(sum(events), 0) FROM event_counts) || ' ' || \
         (SELECT coalesce(sum(event_count), 0) FROM sessions)",
    );
    let mut parts = out.split(' ').map(|p| p.parse::<u64>().expect("a count"));
    (parts.next().unwrap(), parts.next().unwrap())
}

/// An `eye-server` command in a working directory of its own, with only the
/// environment given here.
fn command(dir: &tempfile::TempDir, database_url: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("EYE_DATABASE_URL", database_url)
        .env("EYE_PG_ACQUIRE_TIMEOUT_SECS", "2")
        .env("EYE_LOG_FORMAT", "json")
        .env("EYE_LOG", "info");
    cmd
}

fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().expect("run eye-server");
    assert!(
        out.status.success(),
        "eye-server: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Events acknowledged (2xx), per session.
    acked: HashMap<String, u64>,
    /// Answers by status.
    statuses: HashMap<u16, u64>,
    /// 503s without a `Retry-After`.
    unavailable_without_retry_after: u64,
    /// Batches acknowledged.
    batches: u64,
}

/// Sends `batches` batches of 10 events, each resent (same ids, as an SDK does) until
/// it is acknowledged; a 4xx fails the test.
async fn client(url: String, key: String, client_no: u64, batches: u64, seen: Arc<Mutex<Seen>>) {
    let http = reqwest::Client::new();
    for b in 0..batches {
        let session = format!("c{client_no}-s{}", b % 4);
        let body: Vec<Value> = (0..10)
            .map(|i| {
                json!({
                    "id": Uuid::now_v7(),
                    "session_id": session,
                    "category": "page_interaction",
                    "name": if i % 2 == 0 { "page_view" } else { "cta_click" },
                    "data": if i % 2 == 0 {
                        json!({"host": "shop.example", "path": format!("/p/{b}")})
                    } else {
                        json!({"host": "shop.example", "path": "/", "element": "buy"})
                    },
                    "timestamp": "2022-01-01T00:00:00Z",
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            assert!(Instant::now() < deadline, "batch {b} never acknowledged");
            let answer = http
                .post(format!("{url}/events"))
                .bearer_auth(&key)
                .json(&body)
                .timeout(Duration::from_secs(20))
                .send()
                .await;
            let Ok(r) = answer else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let status = r.status().as_u16();
            let mut s = seen.lock().await;
            *s.statuses.entry(status).or_default() += 1;
            if r.status().is_success() {
                *s.acked.entry(session.clone()).or_default() += 10;
                s.batches += 1;
                break;
            }
            assert!(
                !r.status().is_client_error(),
                "refused: {status} {:?}",
                r.text().await
            );
            if status == 503 && r.headers().get("retry-after").is_none() {
                s.unavailable_without_retry_after += 1;
            }
            drop(s);
            // Retry-After says 1 s; a shorter pause keeps the test short.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Paced, so the load lasts through the outage (about 2 s a client).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until `done()` holds.
async fn wait_until(what: &str, secs: u64, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs 3 clients of 40 batches against `url`; cuts the database off once 10 batches
/// are in, holds the outage until `during_outage` saw what it waits for, restores it,
/// and returns what the clients saw once every batch is acknowledged.
async fn load_through_an_outage(
    db: &PgDatabase,
    url: &str,
    key: &str,
    outage_seen: impl Fn(&Seen, u64) -> bool,
) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let clients: Vec<_> = (0..3)
        .map(|c| {
            tokio::spawn(client(
                url.to_owned(),
                key.to_owned(),
                c,
                40,
                Arc::clone(&seen),
            ))
        })
        .collect();
    wait_until("the first batches", 60, async || {
        seen.lock().await.batches >= 10
    })
    .await;
    let at_cut = seen.lock().await.batches;
    cut_off(db);
    let during = Instant::now();
    wait_until("the outage to show", 60, async || {
        let s = seen.lock().await;
        outage_seen(&s, at_cut) && during.elapsed() > Duration::from_secs(2)
    })
    .await;
    restore(db);
    for c in clients {
        c.await.expect("client");
    }
    Arc::try_unwrap(seen)
        .ok()
        .expect("clients done")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_postgres_answers_503_while_the_database_is_unreachable_and_recovers_by_itself() {
    // Arrange: `serve` in embedded mode on PostgreSQL (no journal: acknowledged once
    // committed).
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    run_ok({
        let mut c = command(&dir, db.url());
        c.arg("migrate");
        c
    });
    let key = run_ok({
        let mut c = command(&dir, db.url());
        c.args(["apps", "create", "shop", "--scope", "all"]);
        c
    });
    let mut cmd = command(&dir, db.url());
    cmd.args(["serve", "--bind", "127.0.0.1:0"]);
    let node = Proc::spawn_listening(cmd);
    let url = node.url("");
    let url = url.trim_end_matches('/');

    // Act: load, cut the database off until clients saw 503s and /readyz failed.
    let ready_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let (url, failed) = (url.to_owned(), Arc::clone(&ready_failed));
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for _ in 0..2000 {
                if let Ok(r) = http.get(format!("{url}/readyz")).send().await
                    && r.status().as_u16() == 503
                {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let seen = load_through_an_outage(&db, url, &key, |s, _| {
        s.statuses.get(&503).copied().unwrap_or(0) >= 5
    })
    .await;
    probe.abort();

    // Assert: 503 with Retry-After while unreachable, never a 500; then every batch
    // went in without a restart, each event stored once (the counters a double store
    // would raise equal what was acknowledged).
    assert!(seen.statuses.get(&503).copied().unwrap_or(0) >= 5);
    assert_eq!(seen.unavailable_without_retry_after, 0);
    assert!(
        seen.statuses
            .keys()
            .all(|s| *s == 503 || (200..300).contains(s)),
        "{:?}\n{}",
        seen.statuses,
        node.log()
    );
    assert!(ready_failed.load(std::sync::atomic::Ordering::Relaxed));
    let total: u64 = seen.acked.values().sum();
    assert_eq!(total, 3 * 40 * 10);
    assert_eq!(counters(&db), (total, total));
    let http = reqwest::Client::new();
    for (session, n) in &seen.acked {
        let body: Value = http
            .get(format!("{url}/sessions/{session}"))
            .bearer_auth(&key)
            .send()
            .await
            .expect("GET session")
            .json()
            .await
            .expect("JSON");
        assert_eq!(body["event_count"], *n, "{session}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_mode_keeps_queueing_while_postgres_is_unreachable_and_the_worker_catches_up() {
    // Arrange: an API node and a worker, each in its own directory, on Redis and
    // PostgreSQL.
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let redis = RedisServer::start();
    let prefix = unique_prefix("pg-outage");
    let redis_cmd = |dir: &tempfile::TempDir| {
        let mut c = command(dir, db.url());
        c.env("EYE_REDIS_URL", redis.url())
            .env("EYE_REDIS_PREFIX", &prefix)
            .env("EYE_CLAIM_IDLE_MS", "1000")
            .env("EYE_REDIS_BLOCK_MS", "200");
        c
    };
    let (api_dir, worker_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run_ok({
        let mut c = redis_cmd(&api_dir);
        c.arg("migrate");
        c
    });
    let key = run_ok({
        let mut c = redis_cmd(&api_dir);
        c.args(["apps", "create", "shop", "--scope", "all"]);
        c
    });
    let api = Proc::spawn_listening({
        let mut c = redis_cmd(&api_dir);
        c.args(["serve", "--no-worker", "--bind", "127.0.0.1:0"]);
        c
    });
    let _worker = Proc::spawn_worker({
        let mut c = redis_cmd(&worker_dir);
        c.args(["worker", "--consumer-name", "w1"]);
        c
    });
    let url = api.url("");
    let url = url.trim_end_matches('/');

    // Act: load, with the database cut off until the clients got 30 more batches in.
    let seen = load_through_an_outage(&db, url, &key, |s, at_cut| s.batches >= at_cut + 30).await;

    // Assert: every request was answered 2xx, outage or not; the worker stored all of
    // it once the database was back, each event once.
    assert!(
        seen.statuses.keys().all(|s| (200..300).contains(s)),
        "{:?}\n{}",
        seen.statuses,
        api.log()
    );
    let total: u64 = seen.acked.values().sum();
    assert_eq!(total, 3 * 40 * 10);
    wait_until("the worker to catch up", 120, async || {
        counters(&db).0 >= total
    })
    .await;
    assert_eq!(counters(&db), (total, total));
}

/// A free loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_bad_or_unreachable_postgres_url_is_a_clear_error_at_start_for_every_command() {
    // A real database, so that "wrong user" is the only thing wrong in its case.
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let admin = admin_url();
    let server = admin
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map_or("127.0.0.1:5432/postgres", |(_, s)| s)
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let port = closed_port();
    let missing_db = format!("eye_missing_{}", Uuid::new_v4().simple());
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "nothing listens on the port",
            format!("postgres://postgres:s3cret@127.0.0.1:{port}/eye"),
            vec![
                format!("cannot connect to PostgreSQL at 127.0.0.1:{port}/eye"),
                "refused".into(),
            ],
        ),
        (
            "the database does not exist",
            format!("postgres://postgres:s3cret@{server}/{missing_db}"),
            vec![
                format!("cannot connect to PostgreSQL at {server}/{missing_db}"),
                "does not exist".into(),
            ],
        ),
        (
            "the user does not exist",
            format!("postgres://eye_no_such_user:s3cret@{server}/{}", db.name()),
            vec![
                format!("cannot connect to PostgreSQL at {server}/{}", db.name()),
                "eye_no_such_user".into(),
            ],
        ),
        (
            "the URL is malformed",
            "postgres://postgres:s3cret@127.0.0.1:notaport/eye".into(),
            vec!["invalid database URL".into()],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, url, expected) in &cases {
        for args in [
            &["serve", "--bind", "127.0.0.1:0"][..],
            &[
                "serve",
                "--no-worker",
                "--bind",
                "127.0.0.1:0",
                "--redis-url",
                "redis://127.0.0.1:1",
            ],
            &["worker", "--redis-url", "redis://127.0.0.1:1"],
            &["migrate"],
            &["apps", "list"],
        ] {
            let mut cmd = command(&dir, url);
            cmd.args(args).env("EYE_PG_CONNECT_TIMEOUT_SECS", "5");
            let out = cmd.output().expect("run eye-server");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let context = format!("{what}, `eye-server {}`: {stderr}", args.join(" "));
            // Exit code 1 with `error: ...`: not a panic (101), not a hang.
            assert_eq!(out.status.code(), Some(1), "{context}");
            assert!(!stderr.contains("panicked"), "{context}");
            assert!(stderr.contains("error: "), "{context}");
            for e in expected {
                assert!(stderr.contains(e.as_str()), "missing `{e}`: {context}");
            }
            assert!(!stderr.contains("s3cret"), "password shown: {context}");
        }
    }
}
