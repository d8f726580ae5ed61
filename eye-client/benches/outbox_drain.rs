//! The outbox under load: fill one with 1,000,000 events while the server is down
//! (how fast `track_wait` can go when every event goes to disk), then start the real
//! server (in this process, default journal acknowledgement, SQLite) and time a new
//! client delivering the whole outbox.
//!
//! ```sh
//! cargo bench -p eye-client --bench outbox_drain            # 1,000,000 events
//! EYE_BENCH_EVENTS=100000 cargo bench -p eye-client --bench outbox_drain
//! ```

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use eye_client::{EyeClient, RetryPolicy};
use eye_core::Event;
use eye_server::config::{AckAfter, ServeConfig};
use eye_server::wiring::Node;

const OUTBOX_BYTES: u64 = 4 << 30;

fn main() {
    let events: u64 = std::env::var("EYE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(events));
}

async fn run(events: u64) {
    let outbox = tempfile::tempdir().unwrap();

    // Fill: the server is down; every event goes to disk.
    let started = Instant::now();
    let client = EyeClient::builder("http://127.0.0.1:9")
        .outbox(outbox.path())
        .outbox_max_bytes(OUTBOX_BYTES)
        .retry_policy(RetryPolicy {
            max_retries: u32::MAX,
            initial_backoff: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(3600),
            max_retry_after: Duration::from_secs(3600),
        })
        .build()
        .unwrap();
    for n in 0..events {
        let session = format!("drain-{}", n % 1000);
        let event = Event::page_view(&session, "bench.example", "/products").unwrap();
        client.track_wait(event).await.unwrap();
    }
    let left = client.shutdown(Duration::from_millis(100)).await;
    let fill = started.elapsed();
    let bytes: u64 = std::fs::read_dir(outbox.path())
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert_eq!(left.in_outbox, events, "{left}");
    println!(
        "fill: {events} events on disk in {:.2} s ({:.0} events/s, {:.0} MiB, {:.0} B/event)",
        fill.as_secs_f64(),
        events as f64 / fill.as_secs_f64(),
        bytes as f64 / f64::from(1 << 20),
        bytes as f64 / events as f64
    );

    // The server comes back.
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("eye.db").display());
    let mut config = ServeConfig::for_tests(&url);
    config.queue.ack_after = AckAfter::Journal;
    config.http.insecure_no_auth = true;
    let node = Node::start(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(node.serve(listener, async {
        let _ = stopped.await;
    }));

    // Drain: a new client on the outbox delivers all of it.
    let started = Instant::now();
    let client = EyeClient::builder(&base)
        .outbox(outbox.path())
        .outbox_max_bytes(OUTBOX_BYTES)
        .batch_size(1000)
        .build()
        .unwrap();
    let opened = started.elapsed();
    let report = client.shutdown(Duration::from_secs(3600)).await;
    let drain = started.elapsed();
    let stats = client.stats();
    assert_eq!(report.delivered, events, "{report}");
    println!(
        "drain: {} events delivered in {:.2} s ({:.0} events/s; opening the outbox {:.0} ms), {} requests, {report}",
        report.delivered,
        drain.as_secs_f64(),
        report.delivered as f64 / drain.as_secs_f64(),
        opened.as_secs_f64() * 1000.0,
        stats.requests
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
