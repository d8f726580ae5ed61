//! The cost of `track()` on the caller's thread: id assignment plus a bounded-channel
//! push, without and with an outbox (whose worker writes to disk meanwhile). Run with
//! `cargo bench -p eye-client --bench track`.

use std::time::Duration;

use divan::Bencher;
use eye_client::{EyeClient, RetryPolicy};
use eye_core::Event;

fn main() {
    divan::main();
}

/// A client whose sender cannot deliver (nothing listens on port 9) and waits an hour
/// between retries: after taking two batches it stops reading, so every tracked event
/// stays in the buffer and the measurement is `track` alone.
fn parked_client(capacity: usize, batch_size: usize) -> EyeClient {
    EyeClient::builder("http://127.0.0.1:9")
        .buffer_capacity(capacity)
        .batch_size(batch_size)
        .max_in_flight(1)
        .flush_interval(Duration::from_secs(3600))
        .retry_policy(RetryPolicy {
            max_retries: u32::MAX,
            initial_backoff: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(3600),
            max_retry_after: Duration::from_secs(3600),
        })
        .drop_timeout(Duration::ZERO)
        .build()
        .expect("valid settings")
}

fn event() -> Event {
    Event::page_view("bench-session", "shop.example", "/products/42").expect("valid event")
}

/// The usual case: room in the buffer, a UUIDv7 assigned.
#[divan::bench(sample_count = 100, sample_size = 2000)]
fn track_new_event(bencher: Bencher) {
    let client = parked_client(1 << 20, 1000);
    let e = event();
    bencher
        .with_inputs(|| e.clone())
        .bench_local_values(|e| client.track(e));
}

/// With an outbox: the same push, while the sender thread empties the buffer to disk
/// (one write and one fdatasync per 100 ms) since the server is down.
#[divan::bench(sample_count = 100, sample_size = 2000)]
fn track_new_event_with_outbox(bencher: Bencher) {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = EyeClient::builder("http://127.0.0.1:9")
        .buffer_capacity(1 << 20)
        .batch_size(1000)
        .outbox(dir.path())
        .outbox_max_bytes(1 << 30)
        .retry_policy(RetryPolicy {
            max_retries: u32::MAX,
            initial_backoff: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(3600),
            max_retry_after: Duration::from_secs(3600),
        })
        .drop_timeout(Duration::ZERO)
        .build()
        .expect("valid settings");
    let e = event();
    bencher
        .with_inputs(|| e.clone())
        .bench_local_values(|e| client.track(e));
    let stats = client.stats();
    assert_eq!(stats.dropped, 0, "the outbox kept up: {stats:?}");
}

/// The event already carries its id.
#[divan::bench(sample_count = 100, sample_size = 2000)]
fn track_event_with_id(bencher: Bencher) {
    let client = parked_client(1 << 20, 1000);
    let e = event().with_id(uuid::Uuid::now_v7());
    bencher
        .with_inputs(|| e.clone())
        .bench_local_values(|e| client.track(e));
}

/// The buffer is full: the event is dropped and counted.
#[divan::bench(sample_count = 100, sample_size = 2000)]
fn track_into_full_buffer(bencher: Bencher) {
    let client = parked_client(1, 1);
    for _ in 0..100 {
        let _ = client.track(event());
    }
    let e = event();
    bencher
        .with_inputs(|| e.clone())
        .bench_local_values(|e| client.track(e));
}

/// For comparison: the uuid crate's own generator, which `track` does not use (it
/// takes a process-wide lock and a system call per id).
#[divan::bench]
fn uuid_crate_now_v7() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
