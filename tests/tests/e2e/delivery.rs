//! Delivery through the real server: exactly once, across restarts, with reasons.

use std::time::Duration;

use eye_client::{FailureReason, TrackError};
use eye_core::{ErrorCode, ErrorQuery, Event};
use uuid::Uuid;

use crate::helpers::{Server, assert_stored_exactly_once, eventually};

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
    assert_stored_exactly_once(&server, &tracked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_mid_stream_loses_nothing_reported_delivered() {
    restarted_mid_stream(Server::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_after_the_store_a_server_restarted_mid_stream_loses_nothing_reported_delivered()
 {
    restarted_mid_stream(Server::start_with(&["--ack-after", "store"]).await).await;
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

    // Stop once some of the stream is through, and start again once the client has
    // met the closed port: events before, during and after the outage.
    eventually("200 events delivered", || async {
        (client.stats().delivered >= 200).then_some(())
    })
    .await;
    server.stop().await;
    eventually("the client to retry against the stopped server", || async {
        (client.stats().retried > 0).then_some(())
    })
    .await;
    server.restart().await;
    let tracked = producer.await.unwrap();
    let report = client.shutdown(Duration::from_secs(30)).await;

    assert!(report.is_complete(), "{report}");
    assert_eq!(report.delivered, 2000);
    assert!(client.stats().retried > 0, "the restart was not noticed");
    assert_stored_exactly_once(&server, &tracked).await;
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
    assert_stored_exactly_once(&server, &[good]).await;
    let query = ErrorQuery {
        code: Some("timestamp_in_future".into()),
        ..ErrorQuery::default()
    };
    // The rejection reaches the errors log through the journal too: shortly after.
    let errors = eventually("the rejection in the errors log", || async {
        let errors = client.errors(&query).await.unwrap();
        (errors.count > 0).then_some(errors)
    })
    .await;
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
    let id = Uuid::now_v7();
    let e = event(0).with_id(id);

    client.track(e.clone()).unwrap();
    let _ = client.flush().await;
    assert_stored_exactly_once(&server, &[id]).await;
    client.track(e.clone()).unwrap();
    let report = client.shutdown(Duration::from_secs(10)).await;
    // Something after the repeat, so that once it is stored, the repeat (queued
    // before it) has been through the store too.
    let after = server.client().build().unwrap();
    let marker = after.track(event(1)).unwrap();
    assert!(after.shutdown(Duration::from_secs(10)).await.is_complete());

    assert!(report.is_complete(), "{report}");
    assert_stored_exactly_once(&server, &[id, marker]).await;
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
    let server =
        Server::start_with(&["--max-body-bytes", "8192", "--max-event-bytes", "4096"]).await;
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
    assert_stored_exactly_once(&server, &tracked).await;
}
