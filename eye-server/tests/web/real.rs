//! The HTML layer, metrics and docs on the real server.

use serde_json::json;

use crate::helpers::{hostile_wire_event, spawn_real};

#[tokio::test]
async fn hostile_event_posted_through_the_api_is_shown_escaped() {
    let app = spawn_real().await;
    assert_eq!(app.post(&hostile_wire_event()).await, 201);
    app.settled().await;
    for path in ["/", "/events"] {
        let (status, page) = app.browse(path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert!(!page.contains("<script"), "{path} lets a script through");
        assert!(
            page.contains("&lt;script&gt;alert('session')&lt;/script&gt;"),
            "{path}"
        );
    }
    let (_, page) = app.browse("/events").await;
    let id = page
        .split("href=\"/events/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let (status, page) = app.browse(&format!("/events/{id}")).await;
    assert_eq!(status, 200);
    assert!(!page.contains("<script") && !page.contains("<img"));
    app.stop().await;
}

#[tokio::test]
async fn browser_without_a_key_is_asked_for_basic_credentials_everywhere() {
    let app = spawn_real().await;
    for path in [
        "/",
        "/events",
        "/errors",
        "/sessions/x",
        "/sessions/x/events",
    ] {
        let r = app.browse_with(path, None).await;
        assert_eq!(r.status().as_u16(), 401, "{path}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Basic"), "{path}: {challenge}");
        assert!(
            r.text().await.unwrap().starts_with("<!DOCTYPE html>"),
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn dashboard_shows_totals_newest_sessions_and_errors() {
    let app = spawn_real().await;
    let now = eye_core::format_timestamp(&chrono::Utc::now());
    let ok = json!({"session_id": "dash-session", "category": "page_interaction", "name": "cta_click",
        "data": {"host": "shop.example", "path": "/cart", "element": "buy"}, "timestamp": now});
    assert_eq!(app.post(&ok).await, 201);
    let bad = json!({"session_id": "dash-session", "category": "page_interaction", "name": "page_view",
        "data": {"host": "not a host", "path": "/"}, "timestamp": now});
    assert_eq!(app.post(&bad).await, 400);
    app.settled().await;
    let (status, page) = app.browse("/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(r#"<div class="value" id="total-events">1</div>"#),
        "{page}"
    );
    assert!(page.contains(r#"href="/sessions/dash-session/events""#));
    assert!(page.contains("invalid_host"));
    assert!(page.contains("<svg"));
    // One bar segment for the CTA click in the current hour.
    assert!(page.contains(r#"class="bar t1""#));
    let (_, refreshing) = app.browse("/?refresh=1").await;
    assert!(refreshing.contains(r#"<meta http-equiv="refresh" content="5">"#));
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_ingest_and_http_requests_by_route() {
    let app = spawn_real().await;
    let event = json!({"session_id": "m", "category": "form_interaction", "name": "submit",
        "data": {"host": "a.example", "path": "/f", "form": {}},
        "timestamp": eye_core::format_timestamp(&chrono::Utc::now())});
    assert_eq!(app.post(&event).await, 201);
    let mut bad = event.clone();
    bad["data"]["path"] = json!("no-slash");
    assert_eq!(app.post(&bad).await, 400);
    app.settled().await;
    let _ = app
        .browse("/events/0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c")
        .await;
    let text = app.get_text("/metrics").await;
    assert!(
        text.contains(r#"eye_events_accepted_total{category="form_interaction",name="submit"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"eye_events_rejected_total{code="invalid_path"}"#),
        "{text}"
    );
    assert!(text.contains("eye_events_stored_total"));
    assert!(text.contains("eye_errors_logged_total"));
    assert!(text.contains("eye_commit_duration_seconds_bucket"));
    assert!(text.contains("eye_queue_backlog"));
    assert!(text.contains("eye_store_bytes"));
    // SQLite's own memory: at least the schema and the pages this test read.
    let sqlite_bytes: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("eye_sqlite_memory_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no eye_sqlite_memory_bytes sample in {text}"));
    assert!(sqlite_bytes > 64.0 * 1024.0, "{sqlite_bytes}");
    // The heap in use holds SQLite's memory and more (glibc, as CI and this server run).
    let heap_bytes: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("eye_heap_in_use_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no eye_heap_in_use_bytes sample in {text}"));
    assert!(heap_bytes > sqlite_bytes, "{heap_bytes} <= {sqlite_bytes}");
    assert!(text.contains("eye_http_request_duration_seconds_bucket"));
    // The route template, not the raw path.
    assert!(text.contains(r#"route="/events/{id}""#), "{text}");
    assert!(!text.contains("0190a3f0-8c2e"));
    // Unknown paths share one series instead of one per path.
    let _ = app.browse("/no/such/path/42").await;
    let text = app.get_text("/metrics").await;
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(!text.contains("/no/such/path"));
    app.stop().await;
}

#[tokio::test]
async fn docs_page_loads_only_the_vendored_viewer() {
    let app = spawn_real().await;
    let docs = app.get_text("/docs").await;
    assert!(docs.contains(r#"<script src="/assets/redoc.standalone.js">"#));
    assert!(!docs.contains("https://"), "nothing from a CDN");
    let js = app.get("/assets/redoc.standalone.js").await;
    assert_eq!(js.status().as_u16(), 200);
    assert!(js.text().await.unwrap().len() > 500_000);
    let spec = app.get_json("/openapi.json").await;
    assert_eq!(spec["openapi"], "3.1.0");
    let schema = app.get_json("/schema").await;
    assert_eq!(schema, eye_core::event_schema().to_value());
    app.stop().await;
}

#[tokio::test]
async fn pagination_links_and_filters_work_in_the_browser_view() {
    let app = spawn_real().await;
    let now = chrono::Utc::now();
    let batch: Vec<_> = (0..12)
        .map(|i| {
            json!({"session_id": format!("p{}", i % 2), "category": "page_interaction", "name": "page_view",
                "data": {"host": "a.example", "path": format!("/page-{i}")},
                "timestamp": eye_core::format_timestamp(&(now - chrono::Duration::minutes(i)))})
        })
        .collect();
    assert_eq!(app.post(&serde_json::Value::Array(batch)).await, 201);
    app.settled().await;
    let (_, first) = app.browse("/events?page_size=5&session_id=p0").await;
    assert!(first.contains("page 1 of 2 · 6 results"), "{first}");
    let next = first
        .split("rel=\"next\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let path = next.strip_prefix(&app.base).unwrap_or(&next).to_owned();
    let (status, second) = app.browse(&path).await;
    assert_eq!(status, 200);
    assert!(second.contains("page 2 of 2"), "{second}");
    assert!(
        second.contains(r#"value="p0""#),
        "the filter form keeps the filter"
    );
    assert!(!second.contains("/page-1<"), "only session p0's events");
    let (status, past_end) = app.browse("/events?page=9").await;
    assert_eq!(status, 404);
    assert!(past_end.contains("Invalid page."));
    let (status, slash) = app.browse("/events/").await;
    assert_eq!(status, 200);
    assert!(slash.contains("<h1>Events</h1>"));
    app.stop().await;
}

#[tokio::test]
async fn json_answers_of_negotiated_urls_vary_on_accept() {
    let app = spawn_real().await;
    let r = app
        .client()
        .get(format!("{}/events", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    let vary: Vec<_> = r
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let varies_on_accept = vary.iter().any(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("accept"))
    });
    assert!(varies_on_accept, "{vary:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_key_without_the_query_scope_sees_no_data_in_the_browser() {
    use eye_server::auth::create_app_with_key;
    use eye_server::store::Scopes;
    let app = spawn_real().await;
    let ingest_only = create_app_with_key(&app.state.store, "sender", Scopes::INGEST_ONLY)
        .await
        .unwrap();
    for path in ["/", "/events", "/errors"] {
        let r = app.browse_with(path, Some(&ingest_only)).await;
        assert_eq!(r.status().as_u16(), 403, "{path}");
        assert!(
            r.text().await.unwrap().contains("lacks the `query` scope"),
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_path_is_a_404_page_for_a_browser_and_json_for_a_client() {
    let app = spawn_real().await;
    let (status, page) = app.browse("/no/such/page").await;
    assert_eq!(status, 404);
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    let r = app.get("/no/such/page").await;
    assert_eq!(r.status().as_u16(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    app.stop().await;
}
