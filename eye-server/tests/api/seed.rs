//! Every curl example of the seed README, verbatim plus the auth header.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

/// `curl -X POST http://localhost:8000/events -H "Content-Type: application/json" -d '...'`
const SEED_EVENT: &str = r#"{"session_id": "123", "category": "page_interaction", "name": "page_view", "data": {"host": "www.consumeraffairs.com", "path": "/"}, "timestamp": "2022-01-01 00:00:00.000000"}"#;

async fn curl_get(app: &TestApp, path: &str) -> Value {
    let response = app
        .http
        .get(format!("{}{path}", app.base))
        .header(AUTHORIZATION, format!("Bearer {}", app.key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn seed_post_example_returns_201() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/events", app.base))
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, format!("Bearer {}", app.key))
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
        let response = app
            .http
            .post(format!("{}/events", app.base))
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, format!("Bearer {}", app.key))
            .body(event)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }

    let all = curl_get(&app, "/events").await;
    assert_eq!(all["count"], 12);
    assert_eq!(all["results"].as_array().unwrap().len(), 10, "10 per page");
    assert_eq!(
        all["results"][0]["timestamp"],
        "2022-01-01T00:00:11.000000Z"
    );
    let page2 = curl_get(&app, "/events?page=2").await;
    assert_eq!(page2["results"].as_array().unwrap().len(), 2);

    for path in [
        "/events?session_id=abc123",
        "/events?category=name",
        "/events?start_time=2022-01-01&end_time=2022-02-01",
        "/events?session_id=abc123&category=name&start_time=2022-01-01&end_time=2022-02-01",
    ] {
        let page = curl_get(&app, path).await;
        for key in ["count", "next", "previous", "results"] {
            assert!(page.get(key).is_some(), "{path}: {key}");
        }
    }
    assert_eq!(
        curl_get(&app, "/events?start_time=2022-01-01&end_time=2022-02-01").await["count"],
        12
    );
    assert_eq!(curl_get(&app, "/events?session_id=123").await["count"], 12);
}
