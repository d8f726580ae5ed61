//! A real multi-node deployment: Redis, PostgreSQL, two API nodes (`serve
//! --no-worker`) and two workers, every process in a working directory of its own so
//! nothing can lean on a shared local file. Load goes through both API nodes; one
//! worker and one API node are SIGKILLed mid-load and the clients move to the other
//! node, resending what was not answered. Every event answered 2xx is stored exactly
//! once, and a third API node started afterwards answers queries exactly like the
//! others.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::harness::{RedisServer, unique_prefix};
use crate::process::Proc;

const BIN: &str = env!("CARGO_BIN_EXE_eye-server");

/// The PostgreSQL server tests create their databases on.
fn admin_url() -> String {
    std::env::var("EYE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh PostgreSQL database, dropped when the test ends.
pub struct PgDatabase {
    name: String,
    url: String,
}

impl PgDatabase {
    /// Creates `eye_test_<random>`; `None` (outside CI only) when PostgreSQL does not
    /// answer.
    pub fn create() -> Option<Self> {
        let admin = admin_url();
        let name = format!("eye_test_{}", Uuid::new_v4().simple());
        let ok = Command::new("psql")
            .arg(&admin)
            .args(["-v", "ON_ERROR_STOP=1", "-qc"])
            .arg(format!("CREATE DATABASE {name}"))
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL must answer under CI at {admin}"
            );
            eprintln!("skipped: PostgreSQL does not answer at {admin}");
            return None;
        }
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Some(Self {
            url: format!("{base}/{name}"),
            name,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(admin_url())
            .args(["-qc"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .status();
    }
}

/// One machine of the deployment: a working directory of its own and only the
/// environment the deployment gives it.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn command(&self, database_url: &str, redis_url: &str, prefix: &str) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("EYE_DATABASE_URL", database_url)
            .env("EYE_REDIS_URL", redis_url)
            .env("EYE_REDIS_PREFIX", prefix)
            .env("EYE_CLAIM_IDLE_MS", "1000")
            .env("EYE_REDIS_BLOCK_MS", "200")
            .env("EYE_LOG_FORMAT", "json")
            .env("EYE_LOG", "info");
        cmd
    }
}

struct Deployment {
    db: PgDatabase,
    redis: RedisServer,
    prefix: String,
}

impl Deployment {
    fn cmd(&self, node: &Node) -> Command {
        node.command(self.db.url(), &self.redis.url(), &self.prefix)
    }

    fn run(&self, args: &[&str]) -> String {
        let node = Node::new();
        let out = self.cmd(&node).args(args).output().expect("run eye-server");
        assert!(
            out.status.success(),
            "eye-server {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn api(&self, node: &Node) -> Proc {
        let mut cmd = self.cmd(node);
        cmd.args(["serve", "--no-worker", "--bind", "127.0.0.1:0"]);
        Proc::spawn_listening(cmd)
    }

    fn worker(&self, node: &Node, name: &str) -> Proc {
        let mut cmd = self.cmd(node);
        cmd.args(["worker", "--consumer-name", name]);
        Proc::spawn_worker(cmd)
    }
}

fn event(id: Uuid, session: &str, i: u64) -> Value {
    json!({
        "id": id,
        "session_id": session,
        "category": "page_interaction",
        "name": if i.is_multiple_of(3) { "cta_click" } else { "page_view" },
        "data": if i.is_multiple_of(3) {
            json!({"host": "shop.example", "path": "/", "element": "buy"})
        } else {
            json!({"host": "shop.example", "path": format!("/p/{i}")})
        },
        "timestamp": "2022-01-01T00:00:00Z",
    })
}

/// Sends `batches` batches of 20 events over `sessions`, each batch to the first node
/// that answers 201, resending the same batch (same ids) elsewhere after an error.
async fn client(
    http: reqwest::Client,
    nodes: Arc<Mutex<Vec<String>>>,
    key: String,
    client_no: u64,
    batches: u64,
    acked: Arc<Mutex<HashMap<String, u64>>>,
    sent_batches: Arc<AtomicU64>,
) {
    for b in 0..batches {
        let session = format!("c{client_no}-s{}", b % 5);
        let body: Vec<Value> = (0..20)
            .map(|i| event(Uuid::now_v7(), &session, b * 20 + i))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut attempt = 0usize;
        loop {
            assert!(Instant::now() < deadline, "batch {b} never acknowledged");
            let urls = nodes.lock().await.clone();
            let url = &urls[(client_no as usize + attempt) % urls.len()];
            attempt += 1;
            let answer = http
                .post(format!("{url}/events"))
                .bearer_auth(&key)
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match answer {
                Ok(r) if r.status().as_u16() == 201 => {
                    *acked.lock().await.entry(session.clone()).or_default() += 20;
                    sent_batches.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(r) if r.status().is_client_error() => {
                    panic!("refused: {} {:?}", r.status(), r.text().await)
                }
                // 5xx, a refused or dropped connection: try the next node.
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

async fn get_json(http: &reqwest::Client, url: &str, key: &str) -> (u16, Value) {
    let r = http.get(url).bearer_auth(key).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_nodes_and_two_workers_on_postgres_lose_nothing_when_one_of_each_is_killed() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let d = Deployment {
        db,
        redis: RedisServer::start(),
        prefix: unique_prefix("multinode"),
    };
    d.run(&["migrate"]);
    let key = d.run(&["apps", "create", "loadgen", "--scope", "all"]);
    let (node_a, node_b, node_w1, node_w2) = (Node::new(), Node::new(), Node::new(), Node::new());
    let mut api_a = d.api(&node_a);
    let api_b = d.api(&node_b);
    let mut worker_1 = d.worker(&node_w1, "w1");
    let _worker_2 = d.worker(&node_w2, "w2");
    let nodes = Arc::new(Mutex::new(vec![
        api_a.url("").trim_end_matches('/').to_owned(),
        api_b.url("").trim_end_matches('/').to_owned(),
    ]));

    // Load through both API nodes: 4 clients x 60 batches x 20 events.
    let http = reqwest::Client::new();
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let done = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            tokio::spawn(client(
                http.clone(),
                Arc::clone(&nodes),
                key.clone(),
                c,
                60,
                Arc::clone(&acked),
                Arc::clone(&done),
            ))
        })
        .collect();

    // Mid-load: SIGKILL one worker and one API node; the clients move to the other.
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::Relaxed) < 60 {
        assert!(Instant::now() < deadline, "load did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker_1.kill();
    api_a.kill();
    nodes.lock().await.remove(0);
    for c in clients {
        c.await.expect("client");
    }

    // Every acknowledged event is stored exactly once: each session's event count
    // (which a second store of an event would raise) equals what was acknowledged.
    let acked = acked.lock().await.clone();
    let total: u64 = acked.values().sum();
    assert_eq!(total, 4 * 60 * 20);
    let b = api_b.url("");
    let b = b.trim_end_matches('/');
    for (session, n) in &acked {
        let url = format!("{b}/sessions/{session}");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, body) = get_json(&http, &url, &key).await;
            if status == 200 && body["event_count"] == *n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "session {session}: {body} (want {n})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (_, page) = get_json(&http, &format!("{b}/events?page_size=1"), &key).await;
    assert_eq!(page["count"], total, "{page}");
    let (_, clicks) = get_json(
        &http,
        &format!("{b}/events?page_size=1&name=cta_click"),
        &key,
    )
    .await;
    let (_, views) = get_json(
        &http,
        &format!("{b}/events?page_size=1&name=page_view"),
        &key,
    )
    .await;
    assert_eq!(
        clicks["count"].as_u64().unwrap() + views["count"].as_u64().unwrap(),
        total
    );

    // A third API node, started afterwards, answers queries exactly like the others.
    let node_c = Node::new();
    let api_c = d.api(&node_c);
    let c = api_c.url("");
    let c = c.trim_end_matches('/');
    for path in [
        "/events?page_size=50",
        "/events?page_size=50&page=7",
        "/events?session_id=c1-s3&page_size=100",
        "/events?category=page_interaction&name=cta_click&page_size=20&page=3",
        "/sessions/c2-s4",
        "/errors",
    ] {
        let (sb, from_b) = get_json(&http, &format!("{b}{path}"), &key).await;
        let (sc, from_c) = get_json(&http, &format!("{c}{path}"), &key).await;
        assert_eq!(sb, sc, "{path}");
        assert_eq!(
            strip_links(from_b),
            strip_links(from_c),
            "{path} differs between nodes"
        );
    }
}

/// Pagination links name the node that answered; the rest must be identical.
fn strip_links(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("next");
        o.remove("previous");
    }
    v
}

#[tokio::test]
async fn a_key_created_or_revoked_on_one_machine_takes_effect_on_every_api_node() {
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let d = Deployment {
        db,
        redis: RedisServer::start(),
        prefix: unique_prefix("keys"),
    };
    d.run(&["migrate"]);
    let (node_a, node_b) = (Node::new(), Node::new());
    let api_a = d.api(&node_a);
    let api_b = d.api(&node_b);
    let http = reqwest::Client::new();
    // Both nodes have answered a request before the key exists.
    for api in [&api_a, &api_b] {
        let (status, _) = get_json(&http, &api.url("/events"), "eye_unknown").await;
        assert_eq!(status, 401);
    }
    // Created on a third machine (the CLI): works on both nodes at once.
    let key = d.run(&["apps", "create", "shop", "--scope", "all"]);
    for api in [&api_a, &api_b] {
        let (status, _) = get_json(&http, &api.url("/events"), &key).await;
        assert_eq!(status, 200);
    }
    // Revoked there: both nodes refuse it once their cache entries expire (5 s; the
    // boundary is pinned with an injected clock in auth.rs's unit tests), polled.
    d.run(&["apps", "revoke", "shop"]);
    for api in [&api_a, &api_b] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, _) = get_json(&http, &api.url("/events"), &key).await;
            if status == 401 {
                break;
            }
            assert_eq!(status, 200);
            assert!(Instant::now() < deadline, "revoked key still accepted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
