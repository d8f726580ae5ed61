//! When the database fails: 5xx bodies are opaque, ingest answers 503 so the client
//! retries, and nothing internal leaks.

use serde_json::Value;

use crate::helpers::{assert_error, seed_event, spawn_app};

/// Breaks the store under the running server.
async fn break_events_table(app: &crate::helpers::TestApp) {
    sqlx::query("ALTER TABLE events RENAME TO events_gone")
        .execute(app.state.store.pool().expect("a SQLite store"))
        .await
        .unwrap();
}

#[tokio::test]
async fn query_failure_is_an_opaque_500() {
    let app = spawn_app().await;
    app.ingest(&seed_event()).await; // warms the key cache
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
async fn write_failure_is_503_with_retry_after_and_nothing_acknowledged() {
    let app = spawn_app().await;
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
