//! `--ack-after store`, the non-default ack path: a group-commit writer answers once
//! the events are committed, so what a 2xx acknowledged is readable at the 2xx. The
//! rest of the suite runs on the default path (the journal); these tests pin what is
//! particular to this one. Its failure mode (503, nothing acknowledged) is in
//! `failures`, its SIGKILL test in `binary`, its `/readyz` in `probes`.

use eye_server::config::AckAfter;
use eye_server::store::testing::assert_stored_once;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, page_view, seed_event, spawn_app_with};

async fn spawn_store_ack() -> TestApp {
    spawn_app_with(|c| c.queue.ack_after = AckAfter::Store).await
}

#[tokio::test]
async fn with_ack_after_store_an_event_is_readable_at_its_2xx() {
    let app = spawn_store_ack().await;

    let response = app.post_events(&seed_event()).await;

    // No wait: the 201 came after the commit.
    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let event = app.get_json(&location, 200).await;
    assert_eq!(event["session_id"], "123");
    assert_eq!(app.get_json("/sessions/123", 200).await["event_count"], 1);
}

#[tokio::test]
async fn with_ack_after_store_rejections_are_in_the_errors_log_at_the_2xx() {
    let app = spawn_store_ack().await;

    let body = app
        .ingest(&json!([
            page_view("s", "2022-01-01T00:00:00Z"),
            page_view("s", "2999-01-01T00:00:00Z"),
        ]))
        .await;

    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    let log = app.get_json("/errors?code=timestamp_in_future", 200).await;
    assert_eq!(log["count"], 1, "{log}");
}

#[tokio::test]
async fn with_ack_after_store_concurrent_posts_and_retries_are_each_stored_once() {
    // Arrange: 40 concurrent requests into one session, each a batch of a fresh event
    // and one retried id, so the group-commit writer merges duplicates across requests.
    let app = spawn_store_ack().await;
    let retried = Uuid::now_v7();
    let requests = (0..40).map(|i| {
        let mut fresh = page_view("shared", &format!("2022-01-01T00:00:{:02}Z", i % 60));
        let id = Uuid::now_v7();
        fresh["id"] = json!(id.to_string());
        let mut again = page_view("shared", "2022-01-01T00:01:00Z");
        again["id"] = json!(retried.to_string());
        let app = &app;
        async move {
            let status = app.post_events(&json!([fresh, again])).await.status();
            (id, status.as_u16())
        }
    });

    // Act
    let answers = futures_util::future::join_all(requests).await;

    // Assert: every request acknowledged, every id stored once by every counter.
    assert!(answers.iter().all(|(_, s)| *s == 201), "{answers:?}");
    let mut acked: std::collections::HashSet<Uuid> = answers.iter().map(|(id, _)| *id).collect();
    acked.insert(retried);
    assert_eq!(assert_stored_once(&app.state.store).await, acked);
    let session: Value = app.get_json("/sessions/shared", 200).await;
    assert_eq!(session["event_count"], 41, "{session}");
}
