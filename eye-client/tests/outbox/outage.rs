//! While the server is unreachable, events wait in the outbox (track never drops for
//! lack of memory) and go once it is back; delivered events leave the outbox.

use std::time::Duration;

use eye_client::EyeClient;
use eye_core::EventQuery;

use crate::helpers::{
    page_view, quick_retries, records_on_disk, segments, start_server, start_server_on, until,
};

#[tokio::test]
async fn with_the_server_down_events_spill_to_disk_and_all_go_once_it_is_back() {
    // Arrange: a port with nothing listening yet, and a client with a small buffer.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let client = EyeClient::builder(format!("http://127.0.0.1:{port}"))
        .outbox(dir.path())
        .outbox_sync_interval(Duration::from_millis(10))
        .flush_interval(Duration::from_millis(10))
        .buffer_capacity(20)
        .batch_size(10)
        .retry_policy(quick_retries())
        .build()
        .unwrap();
    let session = format!("outage-{}", uuid::Uuid::new_v4().simple());

    // Act: 50 buffers' worth of events while the server is down.
    for n in 0..1000 {
        let tracked = tokio::time::timeout(
            Duration::from_secs(30),
            client.track_wait(page_view(&session, n)),
        );
        tracked
            .await
            .expect("track_wait never waits for the server")
            .unwrap();
    }
    let during = client.flush().await;

    // Assert: nothing dropped or given up on; all of it waits on disk.
    assert_eq!(client.stats().dropped, 0);
    assert_eq!(records_on_disk(dir.path()), 1000);
    assert_eq!(
        (during.delivered, during.failed, during.in_outbox),
        (0, 0, 1000),
        "{during}"
    );
    assert!(!during.is_complete());

    // Act: the server comes back on that port.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let server = start_server_on(listener, false).await;
    until(Duration::from_secs(60), "delivery after the outage", || {
        client.stats().delivered == 1000
    })
    .await;
    let report = client.shutdown(Duration::from_secs(10)).await;

    // Assert: each event stored once, the outbox emptied.
    assert_eq!(
        (report.delivered, report.undelivered()),
        (1000, 0),
        "{report}"
    );
    assert!(report.is_complete(), "{report}");
    let q = server.query_client();
    assert_eq!(q.session(&session).await.unwrap().event_count, 1000);
    assert_eq!(server.stored().await, 1000);
    assert!(segments(dir.path()).is_empty());
    server.stop().await;
}

#[tokio::test]
async fn delivered_events_leave_the_outbox() {
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let client = server.client(dir.path()).build().unwrap();
    let session = format!("healthy-{}", uuid::Uuid::new_v4().simple());

    for n in 0..100 {
        client.track(page_view(&session, n)).unwrap();
    }
    let report = client.flush().await;
    until(
        Duration::from_secs(10),
        "the settled segments deleted",
        || segments(dir.path()).is_empty(),
    )
    .await;
    let last = client.shutdown(Duration::from_secs(5)).await;

    assert_eq!(
        (report.delivered, report.from_outbox, report.in_outbox),
        (100, 0, 0),
        "{report}"
    );
    assert!(
        report.is_complete() && last.is_complete(),
        "{report} / {last}"
    );
    let q = server.query_client();
    let page = q
        .events(&EventQuery::new().session(&session))
        .await
        .unwrap();
    assert_eq!(page.count, 100);
    server.stop().await;
}
