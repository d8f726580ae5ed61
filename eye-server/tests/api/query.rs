//! `GET /events`, `/events/{id}`, `/sessions/...`, `/errors`: filters, ordering and
//! pagination.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, page_view, spawn_app};

/// Three sessions over two days and two categories.
async fn seeded() -> TestApp {
    let app = spawn_app().await;
    let submit = |session: &str, ts: &str| {
        json!({"session_id": session, "category": "form_interaction", "name": "submit",
               "data": {"host": "a.com", "path": "/signup", "form": {"email": "x@y.z"}},
               "timestamp": ts})
    };
    let click = |session: &str, ts: &str| {
        json!({"session_id": session, "category": "page_interaction", "name": "cta_click",
               "data": {"host": "a.com", "path": "/", "element": "buy"}, "timestamp": ts})
    };
    app.ingest(&json!([
        page_view("abc123", "2022-01-01T10:00:00Z"),
        click("abc123", "2022-01-01T10:01:00Z"),
        submit("abc123", "2022-01-01T10:02:00Z"),
        page_view("def456", "2022-01-15T09:00:00Z"),
        submit("def456", "2022-02-02T09:00:00Z"),
        page_view("ghi789", "2022-03-01T00:00:00Z"),
    ]))
    .await;
    app.settled().await;
    app
}

fn field<'a>(page: &'a Value, name: &str) -> Vec<&'a str> {
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[name].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn events_are_newest_first() {
    let app = seeded().await;
    let page = app.get_json("/events", 200).await;
    assert_eq!(page["count"], 6);
    let times = field(&page, "timestamp");
    let mut sorted = times.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);
    assert_eq!(page["next"], Value::Null);
    assert_eq!(page["previous"], Value::Null);
}

#[tokio::test]
async fn each_filter_works_alone() {
    let app = seeded().await;
    let cases = [
        ("session_id=abc123", 3),
        ("category=form_interaction", 2),
        ("name=cta_click", 1),
        ("application=tests", 6),
        ("application=other", 0),
        ("start_time=2022-02-01", 2),
        ("end_time=2022-01-01", 3),
    ];
    for (query, count) in cases {
        let page = app.get_json(&format!("/events?{query}"), 200).await;
        assert_eq!(page["count"], count, "{query}: {page}");
    }
}

#[tokio::test]
async fn filters_combine() {
    let app = seeded().await;
    let page = app
        .get_json(
            "/events?session_id=abc123&category=page_interaction&start_time=2022-01-01&end_time=2022-02-01",
            200,
        )
        .await;
    assert_eq!(page["count"], 2, "{page}");
    assert_eq!(field(&page, "name"), ["cta_click", "page_view"]);
}

#[tokio::test]
async fn time_filters_accept_date_times() {
    let app = seeded().await;
    let page = app
        .get_json(
            "/events?start_time=2022-01-01T10:00:30Z&end_time=2022-01-01%2010:01:30",
            200,
        )
        .await;
    assert_eq!(field(&page, "name"), ["cta_click"]);
}

#[tokio::test]
async fn pages_link_to_each_other_and_keep_filters() {
    let app = seeded().await;
    let first = app
        .get_json("/events?category=page_interaction&page_size=2", 200)
        .await;
    assert_eq!(first["count"], 4);
    assert_eq!(first["previous"], Value::Null);
    let next = first["next"].as_str().unwrap();
    assert_eq!(
        next,
        format!(
            "{}/events?category=page_interaction&page_size=2&page=2",
            app.base
        )
    );

    let path = next.trim_start_matches(&app.base);
    let second = app.get_json(path, 200).await;
    assert_eq!(second["next"], Value::Null);
    assert_eq!(
        second["previous"],
        format!("{}/events?category=page_interaction&page_size=2", app.base)
    );
    let mut all = field(&first, "id");
    all.extend(field(&second, "id"));
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 4, "pages overlap");
}

#[tokio::test]
async fn page_past_the_end_is_404_invalid_page_as_drf() {
    let app = seeded().await;
    for query in ["page=2", "page=abc", "page=0"] {
        let body = app.get_json(&format!("/events?{query}"), 404).await;
        assert_eq!(body["detail"], "Invalid page.", "{query}");
        assert_error(&body, "invalid_page");
    }
}

#[tokio::test]
async fn empty_first_page_is_200() {
    let app = spawn_app().await;
    let page = app.get_json("/events", 200).await;
    assert_eq!(
        page,
        json!({"count": 0, "next": null, "previous": null, "results": []})
    );
}

#[tokio::test]
async fn malformed_filter_is_400_naming_the_parameter() {
    let app = seeded().await;
    for (query, parameter) in [
        ("start_time=last%20tuesday", "start_time"),
        ("end_time=2022-13-01", "end_time"),
        ("start_time=2022-02-01&end_time=2022-01-01", "start_time"),
        ("page_size=0", "page_size"),
        ("page_size=100000", "page_size"),
    ] {
        let body = app.get_json(&format!("/events?{query}"), 400).await;
        assert_error(&body, "invalid_query");
        assert_eq!(body["error"]["details"]["parameter"], parameter, "{query}");
    }
}

#[tokio::test]
async fn unknown_event_id_and_non_uuid_are_404() {
    let app = seeded().await;
    assert_error(
        &app.get_json("/events/0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c", 404)
            .await,
        "not_found",
    );
    assert_error(&app.get_json("/events/not-a-uuid", 404).await, "not_found");
}

#[tokio::test]
async fn session_row_counts_its_events_and_applications() {
    let app = seeded().await;
    let session = app.get_json("/sessions/abc123", 200).await;
    assert_eq!(session["event_count"], 3);
    assert_eq!(session["first_seen"], "2022-01-01T10:00:00.000000Z");
    assert_eq!(session["last_seen"], "2022-01-01T10:02:00.000000Z");
    assert_eq!(session["applications"], json!(["tests"]));
    assert_error(&app.get_json("/sessions/nope", 404).await, "not_found");
}

#[tokio::test]
async fn session_events_are_oldest_first_and_paginated() {
    let app = seeded().await;
    let page = app
        .get_json("/sessions/abc123/events?page_size=2", 200)
        .await;
    assert_eq!(page["count"], 3);
    assert_eq!(field(&page, "name"), ["page_view", "cta_click"]);
    let second = app
        .get_json("/sessions/abc123/events?page_size=2&page=2", 200)
        .await;
    assert_eq!(field(&second, "name"), ["submit"]);
    assert_error(
        &app.get_json("/sessions/nope/events", 404).await,
        "not_found",
    );
}

#[tokio::test]
async fn errors_log_filters_by_code_and_application() {
    let app = seeded().await;
    let body = app
        .post_events(&json!([
            page_view("s", "2999-01-01T00:00:00Z"),
            page_view("s", "garbage"),
        ]))
        .await;
    assert_eq!(body.status().as_u16(), 400);
    app.settled().await;

    let all = app.get_json("/errors", 200).await;
    let future = app.get_json("/errors?code=timestamp_in_future", 200).await;
    let other = app.get_json("/errors?application=other", 200).await;

    assert_eq!(all["count"], 2, "{all}");
    assert_eq!(future["count"], 1, "{future}");
    assert_eq!(
        future["results"][0]["codes"],
        json!(["timestamp_in_future"])
    );
    assert_eq!(other["count"], 0);
}
