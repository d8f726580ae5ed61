//! Per-application rate limits in embedded mode (one process, local buckets).

use eye_server::store::Scopes;
use serde_json::Value;

use crate::helpers::{create_key, page_view, spawn_app};

fn batch(session: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|_| page_view(session, "2022-01-01T00:00:00Z"))
            .collect(),
    )
}

#[tokio::test]
async fn past_its_limit_an_application_gets_429_and_nothing_of_the_request_is_stored() {
    // Arrange: application `limited` may send 5 events per second; `free` has no limit.
    let app = spawn_app().await;
    let limited = create_key(&app.state.store, "limited", Scopes::ALL).await;
    let free = create_key(&app.state.store, "free", Scopes::ALL).await;
    app.state
        .store
        .set_rate_limit("limited", Some(5))
        .await
        .unwrap();

    // Act: a burst of 5 fits; the next request does not.
    let first = app.post_events_with_key(&limited, &batch("rl", 5)).await;
    let second = app.post_events_with_key(&limited, &batch("rl", 3)).await;
    let other = app.post_events_with_key(&free, &batch("other", 50)).await;

    // Assert
    assert_eq!(first.status(), 201);
    assert_eq!(second.status(), 429);
    let retry: u64 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // Another application is not held back.
    assert_eq!(other.status(), 201);
    // Only the first request's events were stored.
    app.settled().await;
    let session = app.get_json("/sessions/rl", 200).await;
    assert_eq!(session["event_count"], 5);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("eye_rate_limited_events_total{application=\"limited\"} 3")),
        "{metrics}"
    );
}

#[tokio::test]
async fn removing_the_limit_lets_the_application_through_again() {
    let app = spawn_app().await;
    let key = create_key(&app.state.store, "bursty", Scopes::ALL).await;
    let store = &app.state.store;
    store.set_rate_limit("bursty", Some(1)).await.unwrap();
    assert_eq!(
        store
            .find_app_by_name("bursty")
            .await
            .unwrap()
            .unwrap()
            .rate_limit,
        Some(1)
    );
    // 100 events into a full bucket of 1/s: allowed once, leaving a 99 s debt.
    assert_eq!(
        app.post_events_with_key(&key, &batch("b", 100))
            .await
            .status(),
        201
    );
    assert_eq!(
        app.post_events_with_key(&key, &batch("b", 1))
            .await
            .status(),
        429
    );
    store.set_rate_limit("bursty", None).await.unwrap();
    assert_eq!(
        store
            .find_app_by_name("bursty")
            .await
            .unwrap()
            .unwrap()
            .rate_limit,
        None
    );
    // The key cache keeps the old limit for at most 5 s: poll, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let status = app
            .post_events_with_key(&key, &batch("b", 1))
            .await
            .status();
        if status == 201 {
            break;
        }
        assert_eq!(status, 429);
        assert!(std::time::Instant::now() < deadline, "limit never lifted");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
