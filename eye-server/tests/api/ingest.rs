//! `POST /events`: single events, batches, rejections and the errors log.

use std::collections::HashSet;

use eye_core::StoredEvent;
use eye_server::store::testing::assert_stored_once;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    assert_error, assert_error_response, page_view, seed_event, spawn_app, spawn_app_with,
};

/// Posts one event, waits for the store, and returns the event as stored.
async fn ingest_and_read_back(app: &crate::helpers::TestApp, event: &Value) -> StoredEvent {
    let body = app.ingest(event).await;
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(1), Some(0)),
        "{body}"
    );
    let id = accepted_id(&body, 0);
    app.settled().await;
    app.state
        .store
        .get_event(id)
        .await
        .unwrap()
        .expect("the acknowledged event is stored")
}

fn accepted_id(body: &Value, i: usize) -> Uuid {
    assert_eq!(body["results"][i]["status"], "accepted", "{body}");
    body["results"][i]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("id")
}

#[tokio::test]
async fn each_event_type_is_accepted_with_201_and_stored() {
    let app = spawn_app().await;
    let events = [
        seed_event(),
        json!({"session_id": "s", "category": "page_interaction", "name": "cta_click",
               "data": {"host": "www.consumeraffairs.com", "path": "/", "element": "chat bubble"},
               "timestamp": "2022-04-11T01:08:01.407119"}),
        json!({"session_id": "s", "category": "form_interaction", "name": "submit",
               "data": {"host": "www.consumeraffairs.com", "path": "/",
                        "form": {"first_name": "John", "last_name": "Doe"}},
               "timestamp": "2022-04-11 01:08:01.407119"}),
    ];
    for event in &events {
        let stored = ingest_and_read_back(&app, event).await;
        assert_eq!(stored.event_type().name(), event["name"].as_str().unwrap());
        assert_eq!(stored.application, "tests");
    }
}

#[tokio::test]
async fn single_event_answers_location_of_the_stored_event() {
    let app = spawn_app().await;
    let response = app.post_events(&seed_event()).await;
    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    app.settled().await;
    let event = app.get_json(&location, 200).await;
    assert_eq!(event["session_id"], "123");
    assert_eq!(event["timestamp"], "2022-01-01T00:00:00.000000Z");
}

#[tokio::test]
async fn trailing_slash_route_accepts_events_too() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/events/", app.base))
        .header(AUTHORIZATION, format!("Bearer {}", app.key))
        .json(&seed_event())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

#[tokio::test]
async fn client_id_is_kept_and_a_retry_is_stored_once() {
    let app = spawn_app().await;
    let id = Uuid::now_v7();
    let mut event = seed_event();
    event["id"] = json!(id.to_string());

    let first = app.ingest(&event).await;
    let retry = app.ingest(&event).await;
    let in_batch = app.ingest(&json!([event.clone(), event.clone()])).await;

    assert_eq!(accepted_id(&first, 0), id);
    assert_eq!(accepted_id(&retry, 0), id);
    assert_eq!(accepted_id(&in_batch, 1), id);
    app.settled().await;
    let page = app.get_json("/events", 200).await;
    assert_eq!(page["count"], 1, "{page}");
    let session = app.get_json("/sessions/123", 200).await;
    assert_eq!(session["event_count"], 1, "{session}");
    assert_eq!(
        assert_stored_once(&app.state.store).await,
        HashSet::from([id])
    );
}

#[tokio::test]
async fn invalid_single_event_is_400_with_every_error_and_logged() {
    let app = spawn_app().await;
    let bad = json!({"session_id": "", "category": "page interaction", "name": "pageview",
                     "data": {"host": "a.com", "path": "/"}, "timestamp": "yesterday"});

    let response = app.post_events(&bad).await;

    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_error(&body, "validation_failed");
    let codes: Vec<&str> = body["error"]["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"invalid_session_id"), "{codes:?}");
    assert!(codes.contains(&"unknown_event_type"), "{codes:?}");
    assert!(codes.contains(&"invalid_timestamp"), "{codes:?}");
    app.settled().await;
    let log = app.get_json("/errors", 200).await;
    assert_eq!(log["count"], 1, "{log}");
    assert_eq!(log["results"][0]["application"], "tests");
    assert!(
        log["results"][0]["payload"]
            .as_str()
            .unwrap()
            .contains("pageview")
    );
}

#[tokio::test]
async fn future_timestamp_is_rejected_with_timestamp_in_future() {
    let app = spawn_app().await;
    let response = app
        .post_events(&page_view("s", "2999-01-01T00:00:00Z"))
        .await;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["details"]["errors"][0]["code"],
        "timestamp_in_future"
    );
    app.settled().await;
    let log = app.get_json("/errors?code=timestamp_in_future", 200).await;
    assert_eq!(log["count"], 1, "{log}");
}

#[tokio::test]
async fn batch_with_some_invalid_events_keeps_every_valid_one() {
    let app = spawn_app().await;
    let batch = json!([
        page_view("s1", "2022-01-01T00:00:01Z"),
        {"session_id": "s1", "category": "nope", "name": "x", "data": {}, "timestamp": "2022-01-01"},
        page_view("s1", "2022-01-01T00:00:02Z"),
        42,
        page_view("s2", "2999-01-01T00:00:00Z"),
    ]);

    let response = app.post_events(&batch).await;

    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(3))
    );
    let statuses: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["accepted", "rejected", "accepted", "rejected", "rejected"]
    );
    app.settled().await;
    for i in [0, 2] {
        let id = accepted_id(&body, i);
        assert!(app.state.store.get_event(id).await.unwrap().is_some());
    }
    let log = app.get_json("/errors", 200).await;
    assert_eq!(log["count"], 3, "{log}");
}

#[tokio::test]
async fn batch_with_no_valid_event_is_400_with_per_event_results() {
    let app = spawn_app().await;
    let response = app
        .post_events(&json!([{"session_id": "s"}, page_view("s", "not a time")]))
        .await;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(body["results"][1]["errors"][0]["code"], "invalid_timestamp");
    app.settled().await;
    assert_eq!(app.get_json("/events", 200).await["count"], 0);
}

#[tokio::test]
async fn empty_batch_is_400_empty_batch() {
    let app = spawn_app().await;
    let response = app.post_events(&json!([])).await;
    assert_error_response(response, 400, "empty_batch").await;
}

#[tokio::test]
async fn batch_over_1000_events_is_413_batch_too_large() {
    let app = spawn_app_with_big_body().await;
    let batch: Vec<Value> = (0..1001).map(|_| seed_event()).collect();
    let response = app.post_events(&Value::from(batch)).await;
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert_error(&body, "batch_too_large");
    assert_eq!(body["error"]["details"]["max"], 1000);
}

async fn spawn_app_with_big_body() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|c| c.http.max_body_bytes = 4 * 1024 * 1024).await
}

#[tokio::test]
async fn batch_of_exactly_1000_events_is_accepted() {
    let app = spawn_app_with_big_body().await;
    let batch: Vec<Value> = (0..1000)
        .map(|i| page_view(&format!("s{}", i % 7), "2022-01-01T00:00:00Z"))
        .collect();
    let body = app.ingest(&Value::from(batch)).await;
    assert_eq!(body["accepted"], 1000);
    app.settled().await;
    assert_eq!(app.get_json("/events", 200).await["count"], 1000);
}

#[tokio::test]
async fn malformed_json_is_400_with_position_and_logged() {
    let app = spawn_app().await;
    let response = app
        .post_events_request()
        .body(r#"{"session_id": "123", "category": }"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_error(&body, "malformed_json");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("column"),
        "{body}"
    );
    app.settled().await;
    let log = app.get_json("/errors?code=invalid_json", 200).await;
    assert_eq!(log["count"], 1, "{log}");
}

#[tokio::test]
async fn empty_body_is_400_malformed_json() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/events", app.base))
        .header(AUTHORIZATION, format!("Bearer {}", app.key))
        .send()
        .await
        .unwrap();
    assert_error_response(response, 400, "malformed_json").await;
}

#[tokio::test]
async fn xml_body_is_415_unsupported_media_type() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/events", app.base))
        .header(AUTHORIZATION, format!("Bearer {}", app.key))
        .header(CONTENT_TYPE, "application/xml")
        .body("<event/>")
        .send()
        .await
        .unwrap();
    assert_error_response(response, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn event_over_the_per_event_limit_is_rejected_in_a_batch() {
    let app = spawn_app().await;
    let mut big = seed_event();
    big["data"]["path"] = json!(format!("/{}", "a".repeat(40 * 1024)));
    let body = app.ingest(&json!([seed_event(), big])).await;
    assert_eq!(
        body["results"][1]["errors"][0]["code"], "event_too_large",
        "{body}"
    );
}

#[tokio::test]
async fn concurrent_posts_to_one_session_count_every_event() {
    let app = spawn_app().await;
    let requests = (0..40).map(|i| {
        let event = page_view("shared", &format!("2022-01-01T00:00:{:02}Z", i % 60));
        let app = &app;
        async move { app.post_events(&json!([event.clone(), event])).await }
    });

    let responses = futures_util::future::join_all(requests).await;

    assert!(responses.iter().all(|r| r.status().as_u16() == 201));
    app.settled().await;
    let session = app.get_json("/sessions/shared", 200).await;
    assert_eq!(session["event_count"], 80, "{session}");
    assert_eq!(assert_stored_once(&app.state.store).await.len(), 80);
    assert_eq!(session["first_seen"], "2022-01-01T00:00:00.000000Z");
    assert_eq!(session["last_seen"], "2022-01-01T00:00:39.000000Z");
}

/// One event per rejection rule, each with exactly that problem.
fn one_bad_event_per_rule() -> Vec<(&'static str, Value)> {
    let base = || page_view("s", "2022-01-01T00:00:00Z");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut e = base();
        f(&mut e);
        e
    };
    let mut deep = json!("leaf");
    for _ in 0..40 {
        deep = json!({ "n": deep });
    }
    vec![
        (
            "missing_field",
            with(&|e| drop(e.as_object_mut().unwrap().remove("session_id"))),
        ),
        ("wrong_type", with(&|e| e["session_id"] = json!(123))),
        ("unknown_field", with(&|e| e["extra"] = json!(1))),
        ("unknown_event_type", with(&|e| e["name"] = json!("scroll"))),
        ("invalid_id", with(&|e| e["id"] = json!("not-a-uuid"))),
        ("invalid_session_id", with(&|e| e["session_id"] = json!(""))),
        (
            "invalid_host",
            with(&|e| e["data"]["host"] = json!("not a host")),
        ),
        (
            "invalid_path",
            with(&|e| e["data"]["path"] = json!("no-slash")),
        ),
        (
            "invalid_element",
            json!({"session_id": "s", "category": "page_interaction", "name": "cta_click",
                   "data": {"host": "a.com", "path": "/", "element": ""},
                   "timestamp": "2022-01-01T00:00:00Z"}),
        ),
        (
            "form_too_deep",
            json!({"session_id": "s", "category": "form_interaction", "name": "submit",
                   "data": {"host": "a.com", "path": "/", "form": {"deep": deep}},
                   "timestamp": "2022-01-01T00:00:00Z"}),
        ),
        (
            "invalid_timestamp",
            with(&|e| e["timestamp"] = json!("2022-02-30")),
        ),
        (
            "timestamp_in_future",
            with(&|e| e["timestamp"] = json!("2999-01-01T00:00:00Z")),
        ),
        (
            "event_too_large",
            with(&|e| e["data"]["path"] = json!(format!("/{}", "a".repeat(33 * 1024)))),
        ),
    ]
}

#[tokio::test]
async fn each_rejection_rule_answers_its_code_and_is_logged() {
    let app = spawn_app().await;
    let cases = one_bad_event_per_rule();
    let mut batch: Vec<Value> = cases.iter().map(|(_, e)| e.clone()).collect();
    batch.push(seed_event());

    let body = app.ingest(&Value::from(batch)).await;
    app.settled().await;

    for (i, (code, _)) in cases.iter().enumerate() {
        let result = &body["results"][i];
        assert_eq!(result["status"], "rejected", "{code}: {result}");
        assert_eq!(result["errors"][0]["code"], *code, "{result}");
        let log = app.get_json(&format!("/errors?code={code}"), 200).await;
        assert_eq!(log["count"], 1, "{code}: {log}");
    }
    assert_eq!(body["accepted"], 1);
}

#[tokio::test]
async fn ties_on_timestamp_page_stably_by_id() {
    let app = spawn_app().await;
    let batch: Vec<Value> = (0..25)
        .map(|i| page_view(&format!("s{i}"), "2022-01-01T00:00:00Z"))
        .collect();
    app.ingest(&Value::from(batch)).await;
    app.settled().await;

    let mut ids = Vec::new();
    for page in 1..=3 {
        let body = app
            .get_json(&format!("/events?page_size=10&page={page}"), 200)
            .await;
        for e in body["results"].as_array().unwrap() {
            ids.push(e["id"].as_str().unwrap().to_owned());
        }
    }

    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(ids.len(), 25);
    assert_eq!(
        ids, sorted,
        "ties are ordered by id, with no overlap between pages"
    );
}

/// With more clock skew allowed than the default, an event timestamped ahead of the
/// server's clock is acknowledged and then stored: reading it back from the journal
/// does not judge its timestamp again (it did, with the default 5 minutes, and the
/// acknowledged event became an undecodable frame).
#[tokio::test]
async fn an_event_ahead_within_a_larger_allowed_skew_is_stored() {
    let app = spawn_app_with(|c| c.ingest.max_clock_skew_secs = 3600).await;
    let ahead = chrono::Utc::now() + chrono::Duration::minutes(50);
    let event = page_view("ahead", &eye_core::format_timestamp(&ahead));
    let stored = ingest_and_read_back(&app, &event).await;
    assert_eq!(
        stored.timestamp,
        eye_core::truncate_to_micros(ahead),
        "{stored:?}"
    );
    // Beyond the allowed skew it is still refused at the door.
    let too_far = page_view(
        "ahead",
        &eye_core::format_timestamp(&(ahead + chrono::Duration::minutes(20))),
    );
    let response = app.post_events(&too_far).await;
    assert_error_response(response, 400, "validation_failed").await;
}
