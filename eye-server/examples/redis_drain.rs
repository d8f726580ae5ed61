//! Redis queue benchmark: how fast API-side appends go into the stream, and how fast
//! workers drain it into SQLite.
//!
//! ```text
//! cargo run --release -p eye-server --example redis_drain -- [EVENTS] [WORKERS] [BATCH]
//! ```
//!
//! Defaults: 100,000 events, 2 workers, 1,000 entries per read (a transaction holds up to
//! 10 reads when a backlog builds up, as `eye-server worker` does). Starts
//! a private `redis-server` (no persistence) on a free loopback port, or uses
//! `EYE_TEST_REDIS_URL`; the store is a temporary SQLite file with `synchronous=FULL`
//! as a worker's is by default (`REDIS_DRAIN_SYNCHRONOUS=normal` for `NORMAL`). Phase 1 appends every
//! event through [`RedisQueue::enqueue`] from 16 concurrent tasks, one event per call
//! (as one `POST /events` does) and prints the append rate. Phase 2 starts the workers
//! in this process and prints the drain rate: events moved from the stream into the
//! store per second, until the stream is empty. A benchmark measures; it asserts
//! nothing, but it does check that the store ends up with every event once.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use eye_core::Event;
use eye_server::message::{AcceptedEvent, Message};
use eye_server::queue::Queue;
use eye_server::queue::redis::{RedisQueue, RedisQueueConfig};
use eye_server::store::{Store, Synchronous};
use eye_server::streams::{Keys, connect};
use eye_server::worker::{Worker, WorkerConfig};
use uuid::Uuid;

const PRODUCERS: usize = 16;

struct PrivateRedis(Child);

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_url() -> (String, Option<PrivateRedis>) {
    if let Ok(url) = std::env::var("EYE_TEST_REDIS_URL")
        && !url.is_empty()
    {
        return (url, None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (
        format!("redis://127.0.0.1:{port}/"),
        Some(PrivateRedis(child)),
    )
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let (events, workers, batch) = (arg(1, 100_000), arg(2, 2), arg(3, 1000));
    let (url, _redis) = redis_url();
    let prefix = format!("eye-bench-{}", Uuid::new_v4().simple());
    let queue = Arc::new(
        RedisQueue::connect(RedisQueueConfig {
            url: url.clone(),
            keys: Keys::new(&prefix),
            max_backlog: 0,
            enqueue_timeout: Duration::from_secs(5),
        })
        .unwrap(),
    );

    // Phase 1: append.
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let (queue, next) = (Arc::clone(&queue), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < events {
                let event = Event::page_view(&format!("s{p}"), "www.example.com", "/").unwrap();
                let accepted = AcceptedEvent {
                    client_timestamp: None,
                    id: Uuid::now_v7(),
                    application: "bench".into(),
                    received_at: Utc::now(),
                    event,
                };
                queue
                    .enqueue(vec![Message::EventV1(accepted)])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let append = started.elapsed();
    println!(
        "append: {events} events, one per call, {PRODUCERS} tasks: {:.2?} = {:.0} events/s",
        append,
        events as f64 / append.as_secs_f64()
    );

    // Phase 2: drain.
    let dir = tempfile::tempdir().unwrap();
    // As `eye-server worker` does: synchronous=FULL unless REDIS_DRAIN_SYNCHRONOUS=normal.
    let synchronous = match std::env::var("REDIS_DRAIN_SYNCHRONOUS").as_deref() {
        Ok("normal") => Synchronous::Normal,
        _ => Synchronous::Full,
    };
    println!("store: synchronous={synchronous:?}");
    let store = Store::open_with(
        &format!("sqlite://{}", dir.path().join("eye.db").display()),
        synchronous,
    )
    .await
    .unwrap();
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|i| {
            let config = WorkerConfig {
                keys: Keys::new(&prefix),
                consumer: format!("bench-{i}"),
                batch,
                max_commit: batch * 10,
                block: Duration::from_millis(100),
                claim_idle: Duration::from_secs(30),
                max_deliveries: 5,
                dead_letter_maxlen: 1000,
                forget_consumers_after: Duration::from_secs(3600),
            };
            let conn = connect(&url, config.response_timeout()).unwrap();
            Worker::new(conn, Arc::new(store.clone()), config).spawn()
        })
        .collect();
    while queue.backlog().await.unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain = started.elapsed();
    let mut stored = 0;
    for h in handles {
        stored += h.stop().await.stored;
    }
    println!(
        "drain: {workers} worker(s), batch {batch}: {:.2?} = {:.0} events/s into SQLite",
        drain,
        events as f64 / drain.as_secs_f64()
    );
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM events")
        .fetch_one(store.pool().expect("a SQLite store"))
        .await
        .unwrap();
    assert_eq!(stored as usize, events, "every event stored once");
    println!("store holds {rows} events");
    store.close().await;
}
