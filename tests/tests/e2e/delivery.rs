//! Delivery through the real server: exactly once, across restarts, with reasons.

use std::collections::HashSet;
use std::time::Duration;

use eye_client::{FailureReason, TrackError};
use eye_core::{ErrorCode, ErrorQuery, Event, EventQuery, StoredEvent};
use futures_util::TryStreamExt;
use uuid::Uuid;

use eye_server::config::AckAfter;

use crate::helpers::Server;

/// Event `i` of a mixed stream: page views, CTA clicks and form submits over 20
/// sessions.
fn event(i: usize) -> Event {
    let session = format!("e2e-{}", i % 20);
    match i % 3 {
        0 => Event::page_view(&session, "shop.example", "/").unwrap(),
        1 => Event::cta_click(&session, "shop.example", "/", "buy now").unwrap(),
        _ => Event::form_submit(
            &session,
            "shop.example",
            "/signup",
            serde_json::json!({"n": i, "name": "Ada"}),
        )
        .unwrap(),
    }
}

async fn all_stored(server: &Server) -> Vec<StoredEvent> {
    let client = server.client().build().unwrap();
    client
        .events_stream(EventQuery::new().page_size(1000))
        .try_collect()
        .await
        .unwrap()
}

fn assert_stored_exactly_once(stored: &[StoredEvent], tracked: &[Uuid]) {
    let ids: HashSet<Uuid> = stored.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), stored.len(), "an event was stored twice");
    assert_eq!(stored.len(), tracked.len(), "stored count");
    assert!(
        tracked.iter().all(|id| ids.contains(id)),
        "an event is missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_tracked_from_many_threads_is_stored_exactly_once() {
    let server = Server::start().await;
    let client = server.client().batch_size(100).build().unwrap();

    // Plain OS threads with no async runtime: `track` needs none.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                (0..750)
                    .map(|i| {
                        loop {
                            match client.track(event(t * 750 + i)) {
                                Ok(id) => break id,
                                Err(TrackError::BufferFull) => std::thread::yield_now(),
                                Err(e) => panic!("{e}"),
                            }
                        }
                    })
                    .collect::<Vec<Uuid>>()
            })
        })
        .collect();
    let tracked: Vec<Uuid> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let report = client.shutdown(Duration::from_secs(30)).await;

    assert!(report.is_complete(), "{report}");
    assert_eq!(report.delivered, 3000);
    assert_stored_exactly_once(&all_stored(&server).await, &tracked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_mid_stream_loses_nothing_reported_delivered() {
    restarted_mid_stream(Server::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_journal_a_server_restarted_mid_stream_loses_nothing_reported_delivered() {
    let server = Server::start_with(|c| c.queue.ack_after = AckAfter::Journal).await;
    restarted_mid_stream(server).await;
}

/// Events a server acknowledged from its journal are stored a little later: polls the
/// count (bounded, 20 s) until at least `n` are, then reads them all. (Walking the
/// pages while rows still arrive would see rows shift between pages.)
async fn stored_eventually(server: &Server, n: usize) -> Vec<StoredEvent> {
    let client = server.client().build().unwrap();
    for _ in 0..200 {
        let page = client
            .events(&EventQuery::new().page_size(1))
            .await
            .unwrap();
        if page.count >= n as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    all_stored(server).await
}

async fn restarted_mid_stream(mut server: Server) {
    let client = server.client().batch_size(50).build().unwrap();
    let producer = tokio::spawn({
        let client = client.clone();
        async move {
            let mut ids = Vec::new();
            for i in 0..2000 {
                ids.push(client.track_wait(event(i)).await.unwrap());
                if i % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            ids
        }
    });

    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().await;
    let tracked = producer.await.unwrap();
    let report = client.shutdown(Duration::from_secs(30)).await;

    assert!(report.is_complete(), "{report}");
    assert_eq!(report.delivered, 2000);
    assert!(client.stats().retried > 0, "the restart was not noticed");
    assert_stored_exactly_once(&stored_eventually(&server, tracked.len()).await, &tracked);
}

#[tokio::test]
async fn a_rejected_event_is_reported_with_the_servers_reason_and_logged() {
    let server = Server::start().await;
    let client = server.client().build().unwrap();
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);

    let good = client.track(event(0)).unwrap();
    let bad = client.track(event(1).with_timestamp(tomorrow)).unwrap();
    let report = client.flush().await;

    assert_eq!((report.delivered, report.rejected), (1, 1), "{report}");
    assert_eq!(report.rejections[0].id(), bad);
    assert!(
        report.rejections[0]
            .errors
            .has_code(ErrorCode::TimestampInFuture)
    );
    assert_eq!(client.event(good).await.unwrap().id, good);
    let query = ErrorQuery {
        code: Some("timestamp_in_future".into()),
        ..ErrorQuery::default()
    };
    let errors = client.errors(&query).await.unwrap();
    assert_eq!(errors.count, 1);
    assert_eq!(errors.results[0].application, "e2e");
}

#[tokio::test]
async fn an_unknown_key_fails_the_batch_without_retrying() {
    let server = Server::start().await;
    let client = server.client().api_key("eye_not-a-key").build().unwrap();

    client.track(event(0)).unwrap();
    let report = client.flush().await;

    assert_eq!(report.failed, 1, "{report}");
    assert!(matches!(
        &report.failures[0].reason,
        FailureReason::Refused { status: 401, code, .. } if code == "unauthorized"
    ));
    assert_eq!(client.stats().requests, 1);
}

#[tokio::test]
async fn the_same_event_tracked_twice_is_stored_once() {
    let server = Server::start().await;
    let client = server.client().build().unwrap();
    let e = event(0).with_id(Uuid::now_v7());

    client.track(e.clone()).unwrap();
    let _ = client.flush().await;
    client.track(e.clone()).unwrap();
    let report = client.shutdown(Duration::from_secs(10)).await;

    assert!(report.is_complete(), "{report}");
    assert_eq!(all_stored(&server).await.len(), 1);
}

#[tokio::test]
async fn a_batch_of_only_rejected_events_is_reported_not_retried() {
    let server = Server::start().await;
    let client = server.client().build().unwrap();
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);

    for i in 0..3 {
        client.track(event(i).with_timestamp(tomorrow)).unwrap();
    }
    let report = client.flush().await;

    assert_eq!(report.rejected, 3, "{report}");
    assert_eq!(client.stats().requests, 1);
}

#[tokio::test]
async fn a_body_over_the_servers_limit_is_split_until_it_fits() {
    let server = Server::start_with(|c| {
        c.http.max_body_bytes = 8 * 1024;
        c.ingest.max_event_bytes = 4 * 1024;
    })
    .await;
    // The client's own limit is higher than the server's: only the 413 can save it.
    let client = server
        .client()
        .max_batch_bytes(1024 * 1024)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();

    let tracked: Vec<Uuid> = (0..60).map(|i| client.track(event(i)).unwrap()).collect();
    let report = client.shutdown(Duration::from_secs(10)).await;

    assert!(report.is_complete(), "{report}");
    assert!(client.stats().requests > 1, "the batch was never split");
    assert_stored_exactly_once(&all_stored(&server).await, &tracked);
}
