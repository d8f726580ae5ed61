//! `/healthz` and `/readyz`.

use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_is_ok() {
    let app = spawn_app().await;
    let body = app.get_json("/healthz", 200).await;
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_reports_the_queue_and_its_backlog() {
    let app = spawn_app().await;
    let body = app.get_json("/readyz", 200).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["queue"], "embedded");
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
