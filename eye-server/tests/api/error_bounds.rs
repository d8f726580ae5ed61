//! Error answers stay small whatever the input: an event lists at most 20 problems,
//! then one `too_many_errors` entry that says how many more there were, so a body of
//! unknown keys cannot make the 400 (or the errors log) many times its own size.

use serde_json::{Map, Value, json};

use crate::helpers::{TestApp, spawn_app_with};

/// Problems listed per event before the summary entry.
const LISTED: usize = 20;

/// A page view carrying `extra` unknown top-level keys (`k0`, `k1`, ...).
fn event_with_unknown_keys(session: &str, extra: usize) -> Value {
    let mut event = json!({
        "session_id": session,
        "category": "page_interaction",
        "name": "page_view",
        "data": {"host": "www.example.com", "path": "/"},
        "timestamp": "2022-01-01T00:00:00Z",
    });
    let obj: &mut Map<String, Value> = event.as_object_mut().unwrap();
    for i in 0..extra {
        obj.insert(format!("k{i}"), Value::from(0));
    }
    event
}

/// An app whose event limit admits 10,000 unknown keys (about 100 KB of JSON).
async fn app_for_large_events() -> TestApp {
    spawn_app_with(|c| {
        c.http.max_body_bytes = 2 * 1024 * 1024;
        c.ingest.max_event_bytes = 1024 * 1024;
    })
    .await
}

/// Checks one event's error list: the first 20 problems, then the summary.
fn assert_capped(errors: &Value, found: usize) {
    let errors = errors.as_array().expect("an error list");
    assert_eq!(errors.len(), LISTED + 1, "20 listed and one summary");
    let summary = &errors[LISTED];
    assert_eq!(summary["code"], "too_many_errors", "{summary}");
    assert_eq!(summary["path"], "", "the summary points at the event");
    assert_eq!(summary["omitted"], found - LISTED, "{summary}");
    assert!(
        errors[..LISTED]
            .iter()
            .all(|e| e["code"] == "unknown_field"),
        "the listed problems are the real ones"
    );
}

#[tokio::test]
async fn event_with_ten_thousand_unknown_keys_gets_twenty_errors_and_a_summary() {
    let app = app_for_large_events().await;
    let event = event_with_unknown_keys("many-keys", 10_000);

    let response = app.post_events(&event).await;

    assert_eq!(response.status().as_u16(), 400);
    let text = response.text().await.unwrap();
    assert!(
        text.len() < 8 * 1024,
        "a small body, not {} bytes",
        text.len()
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "validation_failed");
    assert_capped(&body["error"]["details"]["errors"], 10_000);
    // The errors log keeps the same bounded list.
    app.settled().await;
    let logged = app.get_json("/errors", 200).await;
    assert_eq!(logged["count"], 1, "{logged}");
    assert_capped(&logged["results"][0]["errors"], 10_000);
    app.stop().await;
}

#[tokio::test]
async fn megabyte_batch_of_unknown_keys_answers_a_body_far_smaller_than_itself() {
    let app = app_for_large_events().await;
    let batch: Vec<Value> = (0..11)
        .map(|i| event_with_unknown_keys(&format!("s{i}"), 10_000))
        .collect();
    let body = Value::from(batch).to_string();
    assert!(body.len() > 1_000_000, "a 1 MB batch");

    let response = app.post_events_request().body(body).send().await.unwrap();

    assert_eq!(response.status().as_u16(), 400);
    let text = response.text().await.unwrap();
    // 11 events of at most 21 errors of a few hundred bytes each.
    assert!(text.len() < 80 * 1024, "{} bytes of errors", text.len());
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["rejected"], 11);
    for result in answer["results"].as_array().unwrap() {
        assert_capped(&result["errors"], 10_000);
    }
    app.stop().await;
}
