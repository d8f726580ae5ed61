//! `/healthz` and `/readyz`.

use eye_server::config::AckAfter;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_is_ok() {
    let app = spawn_app().await;
    let body = app.get_json("/healthz", 200).await;
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_names_the_journal_queue_in_the_default_mode() {
    let app = spawn_app_with(|c| c.queue.ack_after = AckAfter::Journal).await;
    let body = app.get_json("/readyz", 200).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["queue"], "journal");
    assert_eq!(body["backlog"], 0);
}

#[tokio::test]
async fn readyz_names_the_group_commit_queue_with_ack_after_store() {
    let app = spawn_app_with(|c| c.queue.ack_after = AckAfter::Store).await;
    let body = app.get_json("/readyz", 200).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["queue"], "group_commit");
    assert_eq!(body["backlog"], 0);
}

#[tokio::test]
async fn readyz_is_503_once_the_queue_is_closed() {
    let app = spawn_app().await;
    app.state.queue.close().await;
    let body = app.get_json("/readyz", 503).await;
    assert_eq!(body["status"], "unavailable");
}

#[tokio::test]
async fn ingest_after_shutdown_began_is_503_with_retry_after() {
    let app = spawn_app().await;
    app.state.queue.close().await;
    let response = app.post_events(&crate::helpers::seed_event()).await;
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    crate::helpers::assert_error(&response.json().await.unwrap(), "unavailable");
}
