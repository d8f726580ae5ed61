//! One client per outbox, and a torn record costs that record only.

use std::time::Duration;

use eye_client::BuildError;

use crate::helpers::{down_client, page_view, record_ends, segments, start_server};

#[tokio::test]
async fn a_second_client_on_the_same_outbox_is_refused_until_the_first_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let first = down_client(dir.path()).build().unwrap();

    let second = down_client(dir.path()).build();

    match &second {
        Err(e @ BuildError::OutboxLocked { dir: locked }) => {
            assert_eq!(locked, dir.path());
            assert!(e.to_string().contains("in use by another client"), "{e}");
        }
        other => panic!("expected OutboxLocked, got {other:?}"),
    }
    let _ = first.shutdown(Duration::from_millis(50)).await;
    let third = down_client(dir.path()).build();
    assert!(third.is_ok(), "{third:?}");
}

#[tokio::test]
async fn a_torn_last_record_is_skipped_and_the_records_before_it_are_delivered() {
    // Arrange: 20 events left in the outbox, the last one cut in the middle as a
    // crash during its write would leave it.
    let dir = tempfile::tempdir().unwrap();
    let writer = down_client(dir.path()).build().unwrap();
    let session = format!("torn-{}", uuid::Uuid::new_v4().simple());
    let ids: Vec<_> = (0..20)
        .map(|n| writer.track(page_view(&session, n)).unwrap())
        .collect();
    let left = writer.shutdown(Duration::from_millis(50)).await;
    assert_eq!((left.pending, left.in_outbox), (20, 20), "{left}");
    let files = segments(dir.path());
    assert_eq!(files.len(), 1);
    let ends = record_ends(&files[0]);
    assert_eq!(ends.len(), 20);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&files[0])
        .unwrap();
    file.set_len(ends[18] as u64 + 11).unwrap();

    // Act
    let server = start_server().await;
    let client = server.client(dir.path()).build().unwrap();
    let recovered = client.stats().recovered;
    let report = client.shutdown(Duration::from_secs(10)).await;

    // Assert: the 19 intact records delivered, the torn one not, the file gone.
    assert_eq!(recovered, 19);
    assert_eq!(
        (report.delivered, report.from_outbox, report.undelivered()),
        (19, 19, 0),
        "{report}"
    );
    assert_eq!(server.stored().await, 19);
    let q = server.query_client();
    assert!(q.event(ids[18]).await.is_ok());
    assert!(q.event(ids[19]).await.unwrap_err().is_not_found());
    assert!(segments(dir.path()).is_empty());
    server.stop().await;
}
