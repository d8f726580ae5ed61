//! The bounded buffer, flush, shutdown, drop, and what each reports, against the
//! real server (or none listening, for a server that is down).

use std::time::Duration;

use eye_client::{DeliveryReport, EyeClient, TrackError};
use eye_core::{Event, EventQuery};
use serde_json::json;
use uuid::Uuid;
use wiremock::MockServer;

use crate::real::{DOWN, Limits, Server, from_the_future};
use crate::scripted::{Ingest, builder, fast_retries, mount_ingest, page_view, track_n};

/// A client of a server that is down for good (nothing listens): nothing is ever
/// delivered, and it keeps retrying.
fn unavailable_for_good() -> EyeClient {
    builder(DOWN)
        .retry_policy(fast_retries(1000))
        .build()
        .unwrap()
}

#[tokio::test]
async fn full_buffer_refuses_events_and_counts_the_drops() {
    let client = builder(DOWN)
        .retry_policy(fast_retries(1000))
        .batch_size(1)
        .buffer_capacity(4)
        .max_in_flight(1)
        .build()
        .unwrap();

    let results: Vec<_> = (0..100).map(|_| client.track(page_view("s"))).collect();

    let refused = results
        .iter()
        .filter(|r| **r == Err(TrackError::BufferFull))
        .count();
    // At most: the buffer, one event waiting in a batch, one in flight.
    assert!(refused >= 100 - (4 + 1 + 1), "only {refused} refused");
    let stats = client.stats();
    assert_eq!(stats.dropped, refused as u64);
    assert_eq!(stats.tracked, 100 - refused as u64);
    let report = client.shutdown(Duration::from_millis(200)).await;
    assert_eq!(report.dropped, refused as u64);
    assert_eq!(report.pending, stats.tracked, "{report}");
}

#[tokio::test]
async fn shutdown_past_its_deadline_reports_the_rest_as_pending() {
    let client = unavailable_for_good();

    track_n(&client, 5);
    let report = client.shutdown(Duration::from_millis(300)).await;

    assert_eq!((report.pending, report.delivered), (5, 0), "{report}");
    assert_eq!(client.track(page_view("late")), Err(TrackError::Closed));
    assert_eq!(client.stats().dropped, 1);
}

#[tokio::test]
async fn shutdown_delivers_everything_buffered() {
    let server = Server::start().await;
    let client = server
        .client()
        .flush_interval(Duration::from_secs(3600))
        .batch_size(64)
        .build()
        .unwrap();

    track_n(&client, 1000);
    let report = client.shutdown(Duration::from_secs(30)).await;

    assert_eq!(report.delivered, 1000, "{report}");
    assert_eq!(server.stored_eventually(1000).await, 1000, "each once");
    // Batches of at most 64: at least 16 requests.
    assert!(client.stats().requests >= 16, "{:?}", client.stats());
}

// Two worker threads: the drop blocks one while it delivers, and the in-process server
// answers on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_clone_delivers_the_buffer() {
    let server = Server::start().await;
    let client = server
        .client()
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    track_n(&client, 10);

    let clone = client.clone();
    drop(client);
    assert_eq!(clone.stats().requests, 0, "a clone is still alive");
    drop(clone);

    assert_eq!(server.stored_eventually(10).await, 10);
}

/// A stub: the real server cannot show in what encoding a request came; this looks at
/// the request itself.
#[tokio::test]
async fn gzip_can_be_turned_off() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri()).gzip(false).build().unwrap();

    track_n(&client, 2);
    let report = client.flush().await;

    assert_eq!(report.delivered, 2);
    assert!(!ingest.seen()[0].gzip);
}

#[tokio::test]
async fn an_event_with_an_id_keeps_it() {
    let server = Server::start().await;
    let client = server.client().build().unwrap();
    let id = Uuid::now_v7();

    let tracked = client.track(page_view("s").with_id(id)).unwrap();
    let report = client.flush().await;
    server.stored_eventually(1).await;
    let stored = client.events(&EventQuery::new()).await.unwrap();

    assert_eq!((tracked, report.delivered), (id, 1), "{report}");
    let ids: Vec<Uuid> = stored.results.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![id]);
}

#[tokio::test]
async fn batches_over_the_byte_limit_are_split_before_sending() {
    // The server refuses bodies over 2048 bytes too: a batch sent whole would be
    // answered 413 and split in halves (1 + 2 + 4 + 8 requests for 16 events).
    let server = Server::start_with(Limits {
        max_body_bytes: Some(2048),
        ..Limits::default()
    })
    .await;
    let client = server
        .client()
        .max_batch_bytes(2048)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let form = json!({"comment": "x".repeat(500)});

    for i in 0..16 {
        let e = Event::form_submit(&format!("s{i}"), "shop.example", "/f", form.clone()).unwrap();
        client.track(e).unwrap();
    }
    let report = client.flush().await;

    assert_eq!(report.delivered, 16, "{report}");
    assert_eq!(server.stored_eventually(16).await, 16);
    // About 560 bytes an event: two or three a request, so at most eight requests,
    // where sending the batch whole and splitting it on 413s takes fifteen.
    assert!(client.stats().requests <= 8, "{:?}", client.stats());
}

#[tokio::test]
async fn each_event_appears_in_exactly_one_report() {
    let server = Server::start().await;
    let client = server.client().build().unwrap();

    track_n(&client, 3);
    let first = client.flush().await;
    client.track(from_the_future("reject-me")).unwrap();
    track_n(&client, 2);
    let second = client.shutdown(Duration::from_secs(5)).await;

    assert_eq!((first.delivered, first.rejected), (3, 0), "{first}");
    assert_eq!((second.delivered, second.rejected), (2, 1), "{second}");
    let stats = client.stats();
    assert_eq!((stats.tracked, stats.delivered, stats.rejected), (6, 5, 1));
    assert_eq!(stats.pending(), 0);
    assert_eq!(server.stored_eventually(5).await, 5);
}

#[tokio::test]
async fn track_wait_waits_for_room_instead_of_dropping() {
    let server = Server::start().await;
    let client = server
        .client()
        .batch_size(5)
        .buffer_capacity(5)
        .max_in_flight(1)
        .build()
        .unwrap();

    for i in 0..200 {
        client
            .track_wait(page_view(&format!("s{i}")))
            .await
            .unwrap();
    }
    let report = client.shutdown(Duration::from_secs(10)).await;

    assert_eq!((report.delivered, report.dropped), (200, 0), "{report}");
    assert_eq!(server.stored_eventually(200).await, 200);
}

#[tokio::test]
async fn a_partial_batch_is_sent_when_the_flush_interval_passes() {
    let server = Server::start().await;
    let client = server.client().batch_size(100).build().unwrap();

    client.track(page_view("s")).unwrap();
    let stored = server.stored_eventually(1).await;

    assert_eq!(stored, 1, "sent without flush()");
    assert_eq!(client.stats().delivered, 1);
}

#[tokio::test]
async fn events_left_pending_at_shutdown_are_reported_once() {
    let client = unavailable_for_good();

    track_n(&client, 5);
    let shutdown = client.shutdown(Duration::from_millis(300)).await;
    let flushed = client.flush().await;
    let again = client.shutdown(Duration::from_millis(300)).await;

    assert_eq!(shutdown.pending, 5, "{shutdown}");
    assert_eq!(flushed, DeliveryReport::default(), "{flushed}");
    assert_eq!(again, DeliveryReport::default(), "{again}");
}

#[tokio::test]
async fn a_flush_during_shutdown_leaves_the_events_to_the_shutdown_report() {
    let client = unavailable_for_good();

    track_n(&client, 4);
    let shutting_down = tokio::spawn({
        let client = client.clone();
        async move { client.shutdown(Duration::from_millis(500)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let flushed = client.flush().await;
    let shutdown = shutting_down.await.unwrap();

    assert_eq!(flushed.pending, 0, "{flushed}");
    assert_eq!(shutdown.pending, 4, "{shutdown}");
}

#[tokio::test]
async fn drops_after_shutdown_are_in_the_next_report_once() {
    let server = Server::start().await;
    let client = server.client().build().unwrap();

    track_n(&client, 2);
    let shutdown = client.shutdown(Duration::from_secs(5)).await;
    assert_eq!(client.track(page_view("late")), Err(TrackError::Closed));
    let first = client.flush().await;
    let second = client.flush().await;

    assert_eq!((shutdown.delivered, shutdown.dropped), (2, 0), "{shutdown}");
    assert_eq!((first.dropped, first.pending), (1, 0), "{first}");
    assert_eq!(second, DeliveryReport::default(), "{second}");
}
