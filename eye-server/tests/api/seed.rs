//! Every curl example of the seed README, verbatim plus the auth header.

use crate::helpers::spawn_app;

/// `curl -X POST http://localhost:8000/events -H "Content-Type: application/json" -d '...'`
const SEED_EVENT: &str = r#"{"session_id": "123", "category": "page_interaction", "name": "page_view", "data": {"host": "www.consumeraffairs.com", "path": "/"}, "timestamp": "2022-01-01 00:00:00.000000"}"#;

#[tokio::test]
async fn seed_post_example_returns_201() {
    let app = spawn_app().await;
    let response = app
        .post_events_request()
        .body(SEED_EVENT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

#[tokio::test]
async fn seed_get_examples_answer_drf_pages() {
    let app = spawn_app().await;
    for i in 0..12 {
        let event = SEED_EVENT.replace("00:00:00.000000", &format!("00:00:{i:02}.000000"));
        let response = app.post_events_request().body(event).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
    app.settled().await;

    let all = app.get_json("/events", 200).await;
    assert_eq!(all["count"], 12);
    assert_eq!(all["results"].as_array().unwrap().len(), 10, "10 per page");
    assert_eq!(
        all["results"][0]["timestamp"],
        "2022-01-01T00:00:11.000000Z"
    );
    let page2 = app.get_json("/events?page=2", 200).await;
    assert_eq!(page2["results"].as_array().unwrap().len(), 2);

    for path in [
        "/events?session_id=abc123",
        "/events?category=name",
        "/events?start_time=2022-01-01&end_time=2022-02-01",
        "/events?session_id=abc123&category=name&start_time=2022-01-01&end_time=2022-02-01",
    ] {
        let page = app.get_json(path, 200).await;
        for key in ["count", "next", "previous", "results"] {
            assert!(page.get(key).is_some(), "{path}: {key}");
        }
    }
    assert_eq!(
        app.get_json("/events?start_time=2022-01-01&end_time=2022-02-01", 200)
            .await["count"],
        12
    );
    assert_eq!(
        app.get_json("/events?session_id=123", 200).await["count"],
        12
    );
}
