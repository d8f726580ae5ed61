//! Paging by cursor over HTTP: links, walks with writes between pages, and the 400 of
//! a cursor the server did not make for this query.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, spawn_app};

/// `n` page views at one instant, with random ids (so ids written later interleave).
fn same_instant(n: usize, session: &str) -> Value {
    Value::Array(
        (0..n)
            .map(|_| {
                json!({"id": uuid::Uuid::new_v4(), "session_id": session,
                       "category": "page_interaction", "name": "page_view",
                       "data": {"host": "a.com", "path": "/"},
                       "timestamp": "2022-01-01T00:00:00Z"})
            })
            .collect(),
    )
}

fn ids(page: &Value) -> Vec<String> {
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The path and query of an absolute link of `app`.
fn path<'a>(app: &TestApp, link: &'a str) -> &'a str {
    link.strip_prefix(app.base.as_str()).unwrap()
}

#[tokio::test]
async fn cursor_walk_over_one_timestamp_with_concurrent_inserts_sees_every_event_once() {
    // Arrange: 150 events at one instant.
    let app = spawn_app().await;
    let before = same_instant(150, "s1");
    app.ingest(&before).await;
    app.settled().await;
    let before: HashSet<String> = before
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    // Act: walk 9 a page; after each page, 4 more at the same instant.
    let mut url = "/events?page_size=9&cursor=".to_owned();
    let mut seen = Vec::new();
    for _ in 0..200 {
        let page = app.get_json(&url, 200).await;
        seen.extend(ids(&page));
        let Some(next) = page["next"].as_str() else {
            break;
        };
        url = path(&app, next).to_owned();
        app.ingest(&same_instant(4, "s1")).await;
        app.settled().await;
    }
    // Assert: no event twice, every event stored before the walk seen.
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an event was seen twice");
    assert!(before.is_subset(&unique), "an event was skipped");
}

#[tokio::test]
async fn cursor_links_keep_filters_drop_page_and_walk_both_ways() {
    // Arrange
    let app = spawn_app().await;
    app.ingest(&same_instant(25, "s1")).await;
    app.settled().await;
    app.ingest(&same_instant(5, "s2")).await;
    app.settled().await;
    let all = app
        .get_json("/events?session_id=s1&page_size=100", 200)
        .await;
    // Act
    let first = app
        .get_json("/events?session_id=s1&page_size=10&cursor=", 200)
        .await;
    let next = first["next"].as_str().unwrap();
    let second = app.get_json(path(&app, next), 200).await;
    let third = app
        .get_json(path(&app, second["next"].as_str().unwrap()), 200)
        .await;
    let back = app
        .get_json(path(&app, third["previous"].as_str().unwrap()), 200)
        .await;
    // Assert
    assert_eq!(first["count"], 25);
    assert_eq!(first["previous"], Value::Null);
    assert!(
        next.starts_with(&format!(
            "{}/events?session_id=s1&page_size=10&cursor=",
            app.base
        )),
        "{next}"
    );
    assert_eq!(third["next"], Value::Null);
    assert_eq!(ids(&third).len(), 5);
    let walked: Vec<String> = [&first, &second, &third]
        .iter()
        .flat_map(|p| ids(p))
        .collect();
    assert_eq!(walked, ids(&all));
    assert_eq!(ids(&back), ids(&second));
}

#[tokio::test]
async fn session_timeline_and_errors_log_page_by_cursor() {
    // Arrange
    let app = spawn_app().await;
    app.ingest(&same_instant(12, "s1")).await;
    app.settled().await;
    // Act
    let first = app
        .get_json("/sessions/s1/events?page_size=5&cursor=", 200)
        .await;
    let mut seen = ids(&first);
    let mut next = first["next"].as_str().map(str::to_owned);
    while let Some(link) = next {
        let page = app.get_json(path(&app, &link), 200).await;
        seen.extend(ids(&page));
        next = page["next"].as_str().map(str::to_owned);
    }
    let errors = app.get_json("/errors?cursor=", 200).await;
    // Assert
    let all = app.get_json("/sessions/s1/events?page_size=100", 200).await;
    assert_eq!(seen, ids(&all));
    assert_eq!(errors["next"], Value::Null);
    app.get_json("/sessions/nobody/events?cursor=", 404).await;
}

#[tokio::test]
async fn bad_tampered_or_foreign_cursors_are_400_invalid_cursor() {
    // Arrange: a valid cursor of `session_id=s1`.
    let app = spawn_app().await;
    app.ingest(&same_instant(5, "s1")).await;
    app.settled().await;
    let first = app
        .get_json("/events?session_id=s1&page_size=2&cursor=", 200)
        .await;
    let next = first["next"].as_str().unwrap();
    let token = next.split("cursor=").nth(1).unwrap().to_owned();
    let mut tampered = token.clone().into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let cases = [
        "/events?cursor=not-a-cursor".to_owned(),
        format!("/events?session_id=s1&cursor={tampered}"),
        format!("/events?session_id=s1&cursor={}", &token[..40]),
        // Another filter, another listing, and with `page`.
        format!("/events?session_id=s2&cursor={token}"),
        format!("/events?cursor={token}"),
        format!("/errors?cursor={token}"),
        format!("/sessions/s1/events?cursor={token}"),
    ];
    for url in cases {
        // Act
        let body = app.get_json(&url, 400).await;
        // Assert
        assert_error(&body, "invalid_query");
        assert_eq!(
            body["error"]["details"]["code"], "invalid_cursor",
            "{url}: {body}"
        );
        assert_eq!(body["error"]["details"]["parameter"], "cursor", "{url}");
    }
    // With a cursor, `page` is ignored (as DRF's cursor pagination does).
    let with_page = app
        .get_json("/events?page=2&page_size=2&cursor=", 200)
        .await;
    assert_eq!(ids(&with_page), ids(&first));
    // The same cursor with the same filters and another page size is fine.
    let page = app
        .get_json(
            &format!("/events?session_id=s1&page_size=3&cursor={token}"),
            200,
        )
        .await;
    assert_eq!(ids(&page).len(), 3);
}

#[tokio::test]
async fn without_cursor_page_links_are_unchanged() {
    let app = spawn_app().await;
    app.ingest(&same_instant(3, "s1")).await;
    app.settled().await;
    let page = app.get_json("/events?page_size=2", 200).await;
    assert_eq!(
        page["next"],
        format!("{}/events?page_size=2&page=2", app.base)
    );
}
