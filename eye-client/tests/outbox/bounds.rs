//! The outbox's byte and age bounds: past them the oldest events are dropped, and
//! every one dropped is counted as `evicted`.

use std::time::Duration;

use crate::helpers::{down_client, page_view, records_on_disk, segments, start_server};

#[tokio::test]
async fn past_the_byte_bound_the_oldest_events_are_evicted_and_counted() {
    // Arrange: a 16 KiB outbox and about 100 KiB of events, the server down.
    let dir = tempfile::tempdir().unwrap();
    let client = down_client(dir.path())
        .outbox_max_bytes(16 << 10)
        .buffer_capacity(50)
        .batch_size(10)
        .build()
        .unwrap();
    let session = format!("bytes-{}", uuid::Uuid::new_v4().simple());
    let mut ids = Vec::new();
    for n in 0..600 {
        ids.push(client.track_wait(page_view(&session, n)).await.unwrap());
    }

    // Act
    let left = client.shutdown(Duration::from_millis(50)).await;

    // Assert: every event either evicted or left, none silently lost; the outbox
    // holds about its bound.
    assert!(left.evicted > 0, "{left}");
    assert_eq!(left.evicted + left.pending, 600, "{left}");
    assert_eq!(records_on_disk(dir.path()), left.in_outbox);
    let bytes: u64 = segments(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(bytes <= 32 << 10, "{bytes} bytes on disk");

    // And the next client delivers what is left: the newest events.
    let server = start_server().await;
    let next = server.client(dir.path()).build().unwrap();
    let report = next.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        (report.delivered, report.from_outbox, report.undelivered()),
        (left.in_outbox, left.in_outbox, 0),
        "{report}"
    );
    assert_eq!(server.stored().await, left.in_outbox);
    let q = server.query_client();
    assert!(q.event(ids[599]).await.is_ok(), "the newest event is kept");
    assert!(
        q.event(ids[0]).await.unwrap_err().is_not_found(),
        "the oldest is evicted"
    );
    server.stop().await;
}

#[tokio::test]
async fn events_older_than_the_age_bound_are_evicted_not_delivered() {
    // Arrange: 30 events left in the outbox, then aged past a 100 ms bound.
    let dir = tempfile::tempdir().unwrap();
    let writer = down_client(dir.path()).build().unwrap();
    for n in 0..30 {
        writer.track(page_view("aged", n)).unwrap();
    }
    let left = writer.shutdown(Duration::from_millis(50)).await;
    assert_eq!(left.in_outbox, 30, "{left}");
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Act
    let server = start_server().await;
    let client = server
        .client(dir.path())
        .outbox_max_age(Duration::from_millis(100))
        .build()
        .unwrap();
    let report = client.shutdown(Duration::from_secs(10)).await;

    // Assert
    assert_eq!(
        (report.delivered, report.evicted, report.from_outbox),
        (0, 30, 30),
        "{report}"
    );
    assert!(!report.is_complete());
    assert_eq!(client.stats().evicted, 30);
    assert_eq!(server.stored().await, 0);
    assert!(segments(dir.path()).is_empty());
    server.stop().await;
}
