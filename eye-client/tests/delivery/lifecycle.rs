//! The bounded buffer, flush, shutdown, drop, and what each reports.

use std::time::Duration;

use eye_client::{DeliveryReport, TrackError};
use eye_core::Event;
use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::scripted::{
    Ingest, builder, mount_after, mount_ingest, page_view, sorted, track_n, unavailable_for_good,
};

#[tokio::test]
async fn full_buffer_refuses_events_and_counts_the_drops() {
    let server = MockServer::start().await;
    let stuck = ResponseTemplate::new(503).set_delay(Duration::from_secs(30));
    mount_after(&server, stuck, 1000, &Ingest::default()).await;
    let client = builder(&server.uri())
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
    let (_server, client) = unavailable_for_good().await;

    track_n(&client, 5);
    let report = client.shutdown(Duration::from_millis(300)).await;

    assert_eq!((report.pending, report.delivered), (5, 0), "{report}");
    assert_eq!(client.track(page_view("late")), Err(TrackError::Closed));
    assert_eq!(client.stats().dropped, 1);
}

#[tokio::test]
async fn shutdown_delivers_everything_buffered() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri())
        .flush_interval(Duration::from_secs(3600))
        .batch_size(64)
        .build()
        .unwrap();

    let ids = track_n(&client, 1000);
    let report = client.shutdown(Duration::from_secs(10)).await;

    assert_eq!(report.delivered, 1000, "{report}");
    // Up to 4 batches are in flight at once, so batches may arrive in any order.
    assert_eq!(sorted(ingest.accepted_ids()), sorted(ids), "each once");
    assert!(ingest.seen().iter().all(|s| s.gzip && s.ids.len() <= 64));
}

#[tokio::test]
async fn dropping_the_last_clone_delivers_the_buffer() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri())
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let ids = track_n(&client, 10);

    let clone = client.clone();
    drop(client);
    assert!(ingest.seen().is_empty(), "a clone is still alive");
    drop(clone);

    assert_eq!(ingest.accepted_ids(), ids);
}

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
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri()).build().unwrap();
    let id = Uuid::now_v7();

    let tracked = client.track(page_view("s").with_id(id)).unwrap();
    let _ = client.flush().await;

    assert_eq!(tracked, id);
    assert_eq!(ingest.accepted_ids(), vec![id]);
}

#[tokio::test]
async fn batches_over_the_byte_limit_are_split_before_sending() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri())
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
    let seen = ingest.seen();
    assert!(seen.iter().all(|s| s.ids.len() <= 3), "{seen:?}");
    assert_eq!(
        client.stats().requests,
        seen.len() as u64,
        "no request was refused"
    );
}

#[tokio::test]
async fn each_event_appears_in_exactly_one_report() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri()).build().unwrap();

    track_n(&client, 3);
    let first = client.flush().await;
    client.track(page_view("reject-me")).unwrap();
    track_n(&client, 2);
    let second = client.shutdown(Duration::from_secs(5)).await;

    assert_eq!((first.delivered, first.rejected), (3, 0), "{first}");
    assert_eq!((second.delivered, second.rejected), (2, 1), "{second}");
    let stats = client.stats();
    assert_eq!((stats.tracked, stats.delivered, stats.rejected), (6, 5, 1));
    assert_eq!(stats.pending(), 0);
}

#[tokio::test]
async fn track_wait_waits_for_room_instead_of_dropping() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    Mock::given(method("POST"))
        .respond_with(ingest.clone())
        .mount(&server)
        .await;
    let client = builder(&server.uri())
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
}

#[tokio::test]
async fn a_partial_batch_is_sent_when_the_flush_interval_passes() {
    let server = MockServer::start().await;
    let ingest = Ingest::default();
    mount_ingest(&server, &ingest).await;
    let client = builder(&server.uri()).batch_size(100).build().unwrap();

    let id = client.track(page_view("s")).unwrap();
    for _ in 0..250 {
        if !ingest.seen().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(ingest.accepted_ids(), vec![id], "sent without flush()");
}

#[tokio::test]
async fn events_left_pending_at_shutdown_are_reported_once() {
    let (_server, client) = unavailable_for_good().await;

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
    let (_server, client) = unavailable_for_good().await;

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
    let server = MockServer::start().await;
    mount_ingest(&server, &Ingest::default()).await;
    let client = builder(&server.uri()).build().unwrap();

    track_n(&client, 2);
    let shutdown = client.shutdown(Duration::from_secs(5)).await;
    assert_eq!(client.track(page_view("late")), Err(TrackError::Closed));
    let first = client.flush().await;
    let second = client.flush().await;

    assert_eq!((shutdown.delivered, shutdown.dropped), (2, 0), "{shutdown}");
    assert_eq!((first.dropped, first.pending), (1, 0), "{first}");
    assert_eq!(second, DeliveryReport::default(), "{second}");
}
