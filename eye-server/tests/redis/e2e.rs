//! End to end through the real binaries: API nodes (`serve --no-worker`), workers
//! (`eye-server worker`), Redis and SQLite, over loopback HTTP.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{RedisServer, TestRedis, conn, eventually};
use crate::process::Deployment;
use eye_server::store::testing::assert_stored_once;
use eye_server::streams::Keys;

/// What a POST /events got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Created,
    /// 503 with a `Retry-After` header.
    Unavailable,
    Other(u16),
    Failed,
}

fn event(id: Uuid) -> Value {
    json!({
        "id": id, "session_id": "e2e", "category": "page_interaction", "name": "page_view",
        "data": {"host": "www.example.com", "path": "/"},
        "timestamp": "2022-01-01 00:00:00.000000"
    })
}

async fn post(client: &reqwest::Client, url: &str, id: Uuid) -> Outcome {
    match client.post(url).json(&event(id)).send().await {
        Ok(r) if r.status().as_u16() == 201 => Outcome::Created,
        Ok(r) if r.status().as_u16() == 503 && r.headers().contains_key("retry-after") => {
            Outcome::Unavailable
        }
        Ok(r) => Outcome::Other(r.status().as_u16()),
        Err(_) => Outcome::Failed,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client")
}

/// Posts `n` events with fresh ids from `concurrency` tasks, round-robin over `urls`.
async fn post_many(urls: &[String], n: usize, concurrency: usize) -> Vec<(Uuid, Outcome)> {
    let next = Arc::new(AtomicUsize::new(0));
    let urls = Arc::new(urls.to_vec());
    let client = client();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, urls, client) = (Arc::clone(&next), Arc::clone(&urls), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return out;
                }
                let id = Uuid::new_v4();
                out.push((id, post(&client, &urls[i % urls.len()], id).await));
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.expect("poster"));
    }
    all
}

fn ids_with(outcomes: &[(Uuid, Outcome)], wanted: Outcome) -> HashSet<Uuid> {
    outcomes
        .iter()
        .filter(|(_, o)| *o == wanted)
        .map(|(id, _)| *id)
        .collect()
}

/// Waits (up to `limit`) until the store's counters reach `n` events, then checks that
/// each stored event is stored once by every counter a double store would break, and
/// returns the stored ids.
async fn wait_stored(d: &Deployment, n: usize, limit: Duration) -> HashSet<Uuid> {
    let store = d.store().await;
    eventually(limit, || async {
        store.total_events().await.expect("total") >= n as u64
    })
    .await;
    let ids = assert_stored_once(&store).await;
    store.close().await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_api_nodes_and_two_workers_store_every_acknowledged_event_exactly_once() {
    // Arrange
    let redis = TestRedis::get();
    let d = Deployment::new(&redis.url(), "e2e");
    let apis = [d.api(&[]), d.api(&[])];
    let _workers = [d.worker("w1", &[]), d.worker("w2", &[])];
    let urls: Vec<String> = apis.iter().map(|a| a.url("/events")).collect();

    // Act
    let started = Instant::now();
    let outcomes = post_many(&urls, 10_000, 64).await;
    let posted_in = started.elapsed();
    let acked = ids_with(&outcomes, Outcome::Created);
    let stored = wait_stored(&d, acked.len(), Duration::from_secs(180)).await;
    eprintln!(
        "10,000 events: posted in {posted_in:.2?}, all stored after {:.2?}",
        started.elapsed()
    );

    // Assert
    assert_eq!(
        acked.len(),
        10_000,
        "every post is acknowledged: {:?}",
        &outcomes[..3]
    );
    assert_eq!(stored, acked, "every acknowledged event stored, each once");
    let len: u64 = conn(&redis.url())
        .await
        .xlen(Keys::new(&d.prefix).stream)
        .await
        .expect("XLEN");
    assert_eq!(len, 0, "acknowledged entries are trimmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_drain_leaves_its_pending_entries_to_the_survivor() {
    // Arrange: a backlog of 3,000 events, then two workers.
    let redis = TestRedis::get();
    let d = Deployment::new(&redis.url(), "sigkill");
    let keys = Keys::new(&d.prefix);
    let api = d.api(&[]);
    let outcomes = post_many(&[api.url("/events")], 3_000, 32).await;
    let acked = ids_with(&outcomes, Outcome::Created);
    assert_eq!(acked.len(), 3_000);
    let mut doomed = d.worker("doomed", &["--commit-batch", "200"]);
    let survivor = d.worker("survivor", &["--commit-batch", "200"]);
    let mut c = conn(&redis.url()).await;

    // Act: SIGKILL `doomed` while it holds entries it has not acknowledged.
    let holding = eventually(Duration::from_secs(30), || {
        let (mut c, keys) = (c.clone(), keys.clone());
        async move {
            // Fails (NOGROUP) until a worker has created the group.
            let p: Result<redis::streams::StreamPendingCountReply, _> = c
                .xpending_consumer_count(&keys.stream, &keys.group, "-", "+", 10, "doomed")
                .await;
            p.is_ok_and(|p| !p.ids.is_empty())
        }
    })
    .await;
    doomed.kill();
    let orphaned: redis::streams::StreamPendingCountReply = c
        .xpending_consumer_count(&keys.stream, &keys.group, "-", "+", 10_000, "doomed")
        .await
        .expect("XPENDING");
    let stored = wait_stored(&d, acked.len(), Duration::from_secs(120)).await;

    // Assert
    assert!(
        holding && !orphaned.ids.is_empty(),
        "doomed was killed holding entries"
    );
    assert_eq!(stored, acked, "every acknowledged event stored, each once");
    // doomed may have committed its last batch without acknowledging it: the events
    // are stored, but its entries wait for the survivor's claim all the same.
    let reclaimed = eventually(Duration::from_secs(30), || {
        let (mut c, keys) = (c.clone(), keys.clone());
        async move {
            let left: redis::streams::StreamPendingCountReply = c
                .xpending_consumer_count(&keys.stream, &keys.group, "-", "+", 10, "doomed")
                .await
                .expect("XPENDING");
            let len: u64 = c.xlen(&keys.stream).await.expect("XLEN");
            left.ids.is_empty() && len == 0
        }
    })
    .await;
    assert!(reclaimed, "the survivor claimed every orphaned entry");
    // Every entry is now acknowledged: nothing more can be written. Stored again,
    // a reclaimed entry would have counted its event twice.
    let stored = wait_stored(&d, acked.len(), Duration::from_secs(1)).await;
    assert_eq!(
        stored, acked,
        "reclaimed entries already stored are not stored again"
    );
    assert!(survivor.log().contains("claimed idle pending entries"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_crash_and_restart_while_posting_loses_no_acknowledged_event() {
    // Arrange: a private Redis with an fsynced append-only file; it will be killed.
    let mut server = RedisServer::start_persistent();
    let d = Deployment::new(&server.url(), "outage");
    let api = d.api(&[]);
    let _worker = d.worker("w", &[]);
    let url = api.url("/events");
    let stop = Arc::new(AtomicBool::new(false));
    let mut posters = Vec::new();
    for _ in 0..16 {
        let (stop, url, client) = (Arc::clone(&stop), url.clone(), client());
        posters.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let id = Uuid::new_v4();
                out.push((id, post(&client, &url, id).await));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            out
        }));
    }
    let http = client();

    // Act: SIGKILL Redis mid-traffic, keep posting, start it again on the same port.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let readyz_down = http
        .get(api.url("/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16());
    // Requests in flight at the crash are held until Redis answers; one sent once the
    // API knows Redis is down is refused at once.
    let probe = Uuid::new_v4();
    let probe_outcome = post(&http, &url, probe).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.restart();
    let readyz_back = eventually(Duration::from_secs(15), || async {
        matches!(http.get(api.url("/readyz")).send().await, Ok(r) if r.status().is_success())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = vec![(probe, probe_outcome)];
    for p in posters {
        outcomes.extend(p.await.expect("poster"));
    }
    let acked = ids_with(&outcomes, Outcome::Created);
    let refused = ids_with(&outcomes, Outcome::Unavailable);
    let stored = wait_stored(&d, acked.len(), Duration::from_secs(60)).await;
    eprintln!(
        "outage: {} acknowledged, {} answered 503, {} other",
        acked.len(),
        refused.len(),
        outcomes.len() - acked.len() - refused.len()
    );

    // Assert
    assert_eq!(readyz_down.ok(), Some(503), "/readyz reports Redis down");
    assert!(readyz_back, "/readyz recovers without a restart");
    assert_eq!(
        probe_outcome,
        Outcome::Unavailable,
        "a post during the outage is answered 503"
    );
    assert_eq!(
        outcomes.len(),
        acked.len() + refused.len(),
        "every post is either 201 or 503 with Retry-After"
    );
    let last = &outcomes[outcomes.len() - 1].1;
    assert_eq!(
        *last,
        Outcome::Created,
        "ingest recovered without a restart"
    );
    assert!(
        acked.is_subset(&stored),
        "{} acknowledged events missing",
        acked.difference(&stored).count()
    );
    assert!(
        refused.is_disjoint(&stored),
        "an event answered 503 was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_message_reaches_the_dead_letter_stream_and_the_errors_log_and_the_rest_flows() {
    // Arrange: an entry from a "newer API" the worker cannot decode.
    let redis = TestRedis::get();
    let d = Deployment::new(&redis.url(), "poison");
    let keys = Keys::new(&d.prefix);
    let api = d.api(&[]);
    let mut c = conn(&redis.url()).await;
    let _: String = c
        .xadd(
            &keys.stream,
            "*",
            &[("m", r#"{"type":"event.v9","id":"from-the-future"}"#)],
        )
        .await
        .expect("XADD");

    // Act
    let outcomes = post_many(&[api.url("/events")], 50, 8).await;
    let _worker = d.worker("w", &[]);
    let acked = ids_with(&outcomes, Outcome::Created);
    let stored = wait_stored(&d, acked.len(), Duration::from_secs(30)).await;
    let http = client();
    let logged = eventually(Duration::from_secs(10), || async {
        let page: Value = match http.get(api.url("/errors?code=dead_lettered")).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        page["count"] == 1
    })
    .await;

    // Assert
    assert_eq!(stored, acked, "the rest flows");
    assert!(logged, "the errors log holds the dead letter");
    let dead: redis::streams::StreamRangeReply = c.xrange_all(&keys.dead).await.expect("XRANGE");
    assert_eq!(dead.ids.len(), 1);
    let raw: String = dead.ids[0].get("m").expect("raw message");
    assert!(raw.contains("event.v9"));
    let len: u64 = c.xlen(&keys.stream).await.expect("XLEN");
    assert_eq!(len, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_backlog_turns_ingest_to_503_with_retry_after_until_a_worker_drains_it() {
    // Arrange: an API node with a backlog limit of 5 and no worker.
    let redis = TestRedis::get();
    let d = Deployment::new(&redis.url(), "backpressure");
    let api = d.api(&["--max-backlog", "5"]);
    let http = client();
    let url = api.url("/events");

    // Act
    let mut first = Vec::new();
    for _ in 0..5 {
        first.push(post(&http, &url, Uuid::new_v4()).await);
    }
    let sixth = post(&http, &url, Uuid::new_v4()).await;
    let ready = http
        .get(api.url("/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16());
    let _worker = d.worker("w", &[]);
    let accepted_again = eventually(Duration::from_secs(15), || async {
        post(&http, &url, Uuid::new_v4()).await == Outcome::Created
    })
    .await;

    // Assert
    assert!(first.iter().all(|o| *o == Outcome::Created), "{first:?}");
    assert_eq!(sixth, Outcome::Unavailable);
    assert_eq!(ready.ok(), Some(200), "a full backlog is not an outage");
    assert!(accepted_again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_stops_a_worker_cleanly_and_serve_with_its_embedded_worker() {
    // Arrange: `serve` with its embedded worker, and a standalone worker.
    let redis = TestRedis::get();
    let d = Deployment::new(&redis.url(), "sigterm");
    let mut serve = d.serve(&[]);
    let mut worker = d.worker("w", &[]);
    let outcomes = post_many(&[serve.url("/events")], 100, 4).await;
    let acked = ids_with(&outcomes, Outcome::Created);
    let stored = wait_stored(&d, acked.len(), Duration::from_secs(30)).await;

    // Act
    let worker_exit = worker.terminate();
    let serve_exit = serve.terminate();

    // Assert
    assert_eq!(acked.len(), 100);
    assert_eq!(stored, acked);
    assert_eq!(worker_exit, Some(0), "{}", worker.log());
    assert_eq!(serve_exit, Some(0), "{}", serve.log());
    assert!(worker.log().contains("worker stopped"));
    assert!(
        serve.log().contains("worker stopped"),
        "the embedded worker stopped too"
    );
}
