//! HTML pages stay a small multiple of the JSON they show, whatever the events hold.
//! A pretty-printed `<pre>` of a form nested 30 levels deep was about 36 times its
//! JSON (every array item on its own line behind 60 spaces of indentation), so one
//! page of stored events could cost hundreds of megabytes of HTML.

use serde_json::{Value, json};

use crate::helpers::{RealApp, spawn_real};

/// How much larger than its JSON a page may be, plus a fixed allowance for the page
/// shell, the filter form and the table.
const FACTOR: usize = 4;
const OVERHEAD: usize = 64 * 1024;

/// A form submit whose form nests `depth` objects around an array of about 28 KB
/// of zeros: close to the 32 KiB event limit, and the worst case for indentation.
fn deeply_nested_form_event(session: &str) -> Value {
    let mut form = Value::from(vec![0; 13_500]);
    for level in 0..28 {
        form = json!({ format!("level{level}"): form });
    }
    json!({
        "session_id": session,
        "category": "form_interaction",
        "name": "submit",
        "data": {"host": "forms.example", "path": "/signup", "form": form},
        "timestamp": eye_core::format_timestamp(&chrono::Utc::now()),
    })
}

/// The JSON answer of `path`, as an API client gets it.
async fn json_of(app: &RealApp, path: &str) -> String {
    let response = app
        .client()
        .get(format!("{}{path}", app.base))
        .bearer_auth(&app.key)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.text().await.unwrap()
}

/// Asserts the HTML of `path` is at most [`FACTOR`] times its JSON plus [`OVERHEAD`].
async fn assert_bounded(app: &RealApp, path: &str) -> String {
    let json = json_of(app, path).await;
    let (status, html) = app.browse(path).await;
    assert_eq!(status, 200, "{path}");
    assert!(
        html.len() <= FACTOR * json.len() + OVERHEAD,
        "{path}: {} bytes of HTML for {} bytes of JSON",
        html.len(),
        json.len()
    );
    html
}

#[tokio::test]
async fn pages_of_deeply_nested_large_forms_stay_a_small_multiple_of_their_json() {
    let app = spawn_real().await;
    let event = deeply_nested_form_event("nested-forms");
    assert!(event.to_string().len() > 27_000, "a large form");
    for _ in 0..10 {
        assert_eq!(app.post(&event).await, 201);
    }
    app.settled().await;

    let list = assert_bounded(&app, "/events?page_size=10").await;
    let timeline = assert_bounded(&app, "/sessions/nested-forms/events?page_size=10").await;
    let id = list
        .split("href=\"/events/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let detail = assert_bounded(&app, &format!("/events/{id}")).await;

    // The pages still show the events and say where the whole JSON is.
    for page in [&list, &timeline, &detail] {
        assert!(page.contains("level27"), "the form is shown");
    }
    assert!(list.contains("format=json"), "a link to the full JSON");
    app.stop().await;
}

#[tokio::test]
async fn pages_of_forms_full_of_characters_to_escape_stay_a_small_multiple_of_their_json() {
    let app = spawn_real().await;
    // Every character becomes an entity of 4 or 5 bytes in HTML.
    let mut event = deeply_nested_form_event("escapes");
    event["data"]["form"] = json!({"text": "&<".repeat(14_000)});
    for _ in 0..10 {
        assert_eq!(app.post(&event).await, 201);
    }
    app.settled().await;

    let list = assert_bounded(&app, "/events?page_size=10").await;
    let id = list
        .split("href=\"/events/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert_bounded(&app, &format!("/events/{id}")).await;
    assert_bounded(&app, "/errors").await;
    app.stop().await;
}
