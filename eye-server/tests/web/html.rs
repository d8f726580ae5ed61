use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::helpers::{BROWSER, HOSTILE_SESSION_PATH, app, app_with_auth, get_as, send};

/// Every browsable page, each showing some of the stored hostile data.
fn pages() -> [String; 5] {
    [
        "/events".into(),
        format!("/events/{}", crate::helpers::HOSTILE_ID),
        format!("/sessions/{HOSTILE_SESSION_PATH}"),
        format!("/sessions/{HOSTILE_SESSION_PATH}/events"),
        "/errors".into(),
    ]
}

#[tokio::test]
async fn browsers_get_html_and_everyone_else_gets_json_from_the_same_urls() {
    let app = app().await;
    for uri in pages() {
        let uri = uri.as_str();
        let html = get_as(&app, uri, BROWSER).await;
        assert_eq!(html.status, StatusCode::OK, "{uri}");
        assert!(
            html.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{uri}"
        );
        assert!(html.body.starts_with("<!DOCTYPE html>"), "{uri}");
        let json = get_as(&app, uri, "*/*").await;
        assert!(
            serde_json::from_str::<serde_json::Value>(&json.body).is_ok(),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn format_parameter_overrides_accept() {
    let app = app().await;
    let json = get_as(&app, "/events?format=json", BROWSER).await;
    assert!(json.body.starts_with('{'));
    let html = get_as(&app, "/events?format=html", "application/json").await;
    assert!(html.body.starts_with("<!DOCTYPE html>"));
}

#[tokio::test]
async fn hostile_event_data_is_escaped_on_every_page() {
    let app = app().await;
    for uri in pages() {
        let uri = uri.as_str();
        let page = get_as(&app, uri, BROWSER).await.body;
        for tag in ["<script", "<img", "<svg onload"] {
            assert!(!page.contains(tag), "{uri} lets {tag} through");
        }
        assert!(
            page.contains("&lt;script&gt;"),
            "{uri} shows the payload as text"
        );
    }
}

#[tokio::test]
async fn pages_forbid_inline_script_with_a_content_security_policy() {
    let app = app().await;
    let page = get_as(&app, "/events", BROWSER).await;
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'"));
    assert!(!csp.contains("script-src"));
}

#[tokio::test]
async fn events_page_has_filters_pagination_and_a_post_form() {
    let app = app().await;
    let page = get_as(
        &app,
        "/events?page=2&page_size=10&category=page_interaction",
        BROWSER,
    )
    .await
    .body;
    for field in [
        "session_id",
        "category",
        "name",
        "application",
        "start_time",
        "end_time",
        "page_size",
    ] {
        assert!(
            page.contains(&format!("name=\"{field}\"")),
            "filter {field}"
        );
    }
    assert!(page.contains(r#"<option value="page_interaction" selected>"#));
    // 25 stored page views, 10 a page.
    assert!(page.contains("page=3"), "a link to the next page");
    assert!(page.contains("page 2 of 3"));
    // A link the API did not build as http(s) never becomes an href.
    assert!(!page.contains("href=\"javascript:"));
    assert!(page.contains(r#"<form method="post" action="/events">"#));
}

#[tokio::test]
async fn session_links_are_percent_encoded() {
    let app = app().await;
    let page = get_as(&app, "/events", BROWSER).await.body;
    assert!(
        page.contains(r#"href="/sessions/%3Cscript%3Ealert%28%27session%27%29%3C%2Fscript%3E""#)
    );
}

#[tokio::test]
async fn unauthorized_browser_is_asked_for_basic_credentials() {
    let app = app_with_auth(true).await;
    let page = get_as(&app, "/events", BROWSER).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    let challenges: Vec<_> = page
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .collect();
    assert!(challenges[0].to_str().unwrap().starts_with("Basic"));
}

fn form_post(content: &str, origin: &str) -> Request<Body> {
    let body = format!("content={}", eye_server::web::layout::encode(content));
    Request::post("/events")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "127.0.0.1:8000")
        .header(header::ORIGIN, origin)
        .header(header::ACCEPT, crate::helpers::BROWSER)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn accepted_form_post_redirects_back_to_the_events_page() {
    let app = app().await;
    let event = serde_json::json!({
        "session_id": "s", "category": "page_interaction", "name": "page_view",
        "data": {"host": "www.example.com", "path": "/"},
        "timestamp": eye_core::format_timestamp(&chrono::Utc::now()),
    });
    let answer = send(&app, form_post(&event.to_string(), "http://127.0.0.1:8000")).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.headers[header::LOCATION], "/events");
    // Stored: readable shortly after the answer (26 were seeded).
    let mut stored = 0;
    for _ in 0..1500 {
        stored = app.state.store.total_events().await.unwrap();
        if stored == 27 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(stored, 27);
}

#[tokio::test]
async fn rejected_form_post_shows_the_api_error_as_a_page() {
    let app = app().await;
    let answer = send(&app, form_post("{}", "http://127.0.0.1:8000")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("missing_field"), "{}", answer.body);
    assert!(answer.body.starts_with("<!DOCTYPE html>"));
    // The form comes back with what was sent, to fix and resend.
    assert!(
        answer
            .body
            .contains(r#"<textarea name="content" id="content" spellcheck="false">{}</textarea>"#)
    );
}

#[tokio::test]
async fn form_post_from_another_site_is_refused() {
    let app = app().await;
    let answer = send(
        &app,
        form_post(r#"{"session_id": "s"}"#, "https://evil.example"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn form_body_from_an_api_client_is_left_to_the_api() {
    let app = app().await;
    let mut request = form_post(r#"{"session_id": "s"}"#, "http://127.0.0.1:8000");
    request
        .headers_mut()
        .insert(header::ACCEPT, "application/json".parse().unwrap());
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn errors_page_suggests_every_error_code() {
    let app = app().await;
    let page = get_as(&app, "/errors", BROWSER).await.body;
    for code in eye_core::ErrorCode::ALL.map(eye_core::ErrorCode::as_str) {
        assert!(
            page.contains(&format!(r#"<option value="{code}">"#)),
            "{code}"
        );
    }
}
