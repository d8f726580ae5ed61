//! When the database fails: 5xx bodies are opaque, nothing internal leaks, and what
//! ingest acknowledged is not lost. With the journal (the default) ingest keeps
//! answering 201 and the events wait in the journal until the store can write; with
//! `--ack-after store` ingest answers 503 so the client retries.

use eye_server::config::AckAfter;
use serde_json::Value;

use crate::helpers::{TestApp, assert_error, seed_event, spawn_app, spawn_app_with};

/// Runs one statement on the server's own store, whichever the backend.
async fn execute(app: &TestApp, sql: &'static str) {
    let store = &app.state.store;
    if let Some(pool) = store.pool() {
        sqlx::query(sql).execute(pool).await.unwrap();
    } else {
        let pool = store.pg_pool().expect("a SQLite or PostgreSQL store");
        sqlx::query(sql).execute(pool).await.unwrap();
    }
}

/// Breaks the store under the running server.
async fn break_events_table(app: &TestApp) {
    execute(app, "ALTER TABLE events RENAME TO events_gone").await;
}

#[tokio::test]
async fn query_failure_is_an_opaque_500() {
    let app = spawn_app().await;
    app.ingest(&seed_event()).await; // warms the key cache
    app.settled().await;
    break_events_table(&app).await;

    let response = app.get("/events").await;

    assert_eq!(response.status().as_u16(), 500);
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_error(&body, "internal");
    assert!(!text.contains("events"), "internals leaked: {text}");
    assert!(
        !text.to_lowercase().contains("sql"),
        "internals leaked: {text}"
    );
}

#[tokio::test]
async fn with_ack_after_store_a_write_failure_is_503_with_retry_after_and_nothing_acknowledged() {
    let app = spawn_app_with(|c| c.queue.ack_after = AckAfter::Store).await;
    app.ingest(&seed_event()).await;
    break_events_table(&app).await;

    let response = app.post_events(&seed_event()).await;

    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let text = response.text().await.unwrap();
    assert!(
        !text.to_lowercase().contains("sql"),
        "internals leaked: {text}"
    );
    assert_error(&serde_json::from_str(&text).unwrap(), "unavailable");
}

#[tokio::test]
async fn with_the_journal_a_store_held_back_keeps_acknowledged_events_until_it_is_free() {
    // Arrange
    let app = spawn_app().await;
    app.ingest(&seed_event()).await;
    app.settled().await;
    let hold = app.hold_store().await;

    // Act: the store cannot write; ingest still acknowledges, from the journal.
    let body = app
        .ingest(&serde_json::json!([seed_event(), seed_event()]))
        .await;
    let ready = app.get_json("/readyz", 200).await;
    hold.release().await;
    app.settled().await;

    // Assert: the two events waited in the journal (the backlog counts them), and are
    // stored once the store is free, once each.
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(
        ready["backlog"], 2,
        "the events wait in the journal: {ready}"
    );
    let session = app.get_json("/sessions/123", 200).await;
    assert_eq!(session["event_count"], 3, "{session}");
    assert_eq!(app.get_json("/events", 200).await["count"], 3);
}
