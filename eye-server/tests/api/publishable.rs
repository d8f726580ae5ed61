//! Publishable keys (the browser tracker's), CORS on ingest, `sent_at` clock
//! correction and `GET /eye.js`, against the real server. The browser itself is in
//! `tests/web/tracker.rs`.

use chrono::{Duration, Utc};
use eye_server::auth::create_publishable_app;
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, CONTENT_TYPE, HeaderMap,
};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error_response, page_view, spawn_app, spawn_app_with};

const SHOP: &str = "https://shop.example";

async fn publishable(app: &TestApp, name: &str) -> String {
    create_publishable_app(
        &app.state.store,
        name,
        vec![SHOP.to_owned(), "http://localhost:3000".to_owned()],
    )
    .await
    .unwrap()
}

/// What the tracker sends: `?key=`, a `text/plain` JSON array, and the headers a
/// browser adds to a cross-origin `fetch`/`sendBeacon`.
fn beacon(app: &TestApp, key: &str, origin: Option<&str>, body: &Value) -> RequestBuilder {
    let mut r = app
        .http
        .post(format!("{}/events", app.base))
        .query(&[("key", key)])
        .header(CONTENT_TYPE, "text/plain;charset=UTF-8")
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "cors")
        .body(body.to_string());
    if let Some(origin) = origin {
        r = r.header("origin", origin);
    }
    r
}

fn now_event(session: &str) -> Value {
    page_view(session, &eye_core::format_timestamp(&Utc::now()))
}

fn grant(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(ACCESS_CONTROL_ALLOW_ORIGIN)
        .map(|v| v.to_str().unwrap())
}

async fn event_count(app: &TestApp, session: &str) -> u64 {
    app.settled().await;
    let response = app.get(&format!("/sessions/{session}")).await;
    if response.status() == 404 {
        return 0;
    }
    response.json::<Value>().await.unwrap()["event_count"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn publishable_key_in_the_url_ingests_text_plain_from_its_origin_with_a_cors_grant() {
    let app = spawn_app().await;
    let key = publishable(&app, "web").await;
    assert!(key.starts_with("eye_pk_"));

    let batch = json!([now_event("tab-1"), now_event("tab-1")]);
    let response = beacon(&app, &key, Some(SHOP), &batch).send().await.unwrap();

    assert_eq!(response.status(), 201);
    let h = response.headers();
    assert_eq!(grant(h), Some(SHOP));
    assert_eq!(h["vary"], "Origin");
    assert_eq!(h[ACCESS_CONTROL_EXPOSE_HEADERS], "Retry-After");
    assert!(h.get("access-control-allow-credentials").is_none());
    assert_eq!(event_count(&app, "tab-1").await, 2);
    let session = app.get_json("/sessions/tab-1", 200).await;
    assert_eq!(session["applications"], json!(["web"]));
    app.stop().await;
}

#[tokio::test]
async fn publishable_key_from_another_origin_or_none_is_refused_without_a_grant() {
    let app = spawn_app().await;
    let key = publishable(&app, "web").await;
    for origin in [
        Some("https://evil.example"),
        Some("null"),
        Some("https://shop.example.evil"),
        None,
    ] {
        let response = beacon(&app, &key, origin, &now_event("intruder"))
            .send()
            .await
            .unwrap();
        assert!(grant(response.headers()).is_none(), "{origin:?}");
        assert_error_response(response, 403, "origin_not_allowed").await;
    }
    assert_eq!(event_count(&app, "intruder").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn publishable_key_reads_nothing() {
    let app = spawn_app().await;
    let key = publishable(&app, "web").await;
    for path in [
        "/events",
        "/events/0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c",
        "/sessions/s1",
        "/sessions/s1/events",
        "/errors",
        "/",
    ] {
        let bearer = app
            .http
            .get(format!("{}{path}", app.base))
            .bearer_auth(&key)
            .header("origin", SHOP)
            .send()
            .await
            .unwrap();
        assert_eq!(bearer.status(), 403, "Bearer {path}");
        assert!(grant(bearer.headers()).is_none(), "{path}");
        // In the URL it is not even a credential outside ingest.
        let in_url = app
            .http
            .get(format!("{}{path}?key={key}", app.base))
            .header("origin", SHOP)
            .send()
            .await
            .unwrap();
        assert_eq!(in_url.status(), 401, "?key= {path}");
        assert!(grant(in_url.headers()).is_none(), "{path}");
    }
    let basic = app
        .http
        .get(format!("{}/events", app.base))
        .basic_auth("visitor", Some(&key))
        .send()
        .await
        .unwrap();
    assert_error_response(basic, 403, "publishable_key").await;
    app.stop().await;
}

#[tokio::test]
async fn secret_keys_are_refused_in_the_url_and_as_text_plain() {
    let app = spawn_app().await;
    let in_url = app
        .http
        .post(format!("{}/events?key={}", app.base, app.key))
        .header(CONTENT_TYPE, "application/json")
        .body(now_event("leak").to_string())
        .send()
        .await
        .unwrap();
    assert_error_response(in_url, 400, "secret_key_in_url").await;
    let text = app
        .http
        .post(format!("{}/events", app.base))
        .bearer_auth(&app.key)
        .header(CONTENT_TYPE, "text/plain")
        .body(now_event("leak").to_string())
        .send()
        .await
        .unwrap();
    assert_error_response(text, 415, "unsupported_media_type").await;
    // A secret key from a page gets no CORS grant either.
    let from_page = app
        .post_events_request()
        .header("origin", SHOP)
        .body(now_event("leak").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(from_page.status(), 201);
    assert!(grant(from_page.headers()).is_none());
    assert_eq!(event_count(&app, "leak").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn error_answers_to_a_listed_origin_carry_the_grant_and_retry_after() {
    let app = spawn_app().await;
    let key = publishable(&app, "web").await;
    app.state
        .store
        .set_rate_limit("web", Some(2))
        .await
        .unwrap();

    let invalid = beacon(&app, &key, Some(SHOP), &json!({"session_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(grant(invalid.headers()), Some(SHOP));
    assert_error_response(invalid, 400, "validation_failed").await;

    let flood: Vec<Value> = (0..3).map(|_| now_event("flood")).collect();
    let limited = beacon(&app, &key, Some(SHOP), &Value::Array(flood))
        .send()
        .await
        .unwrap();
    assert_eq!(grant(limited.headers()), Some(SHOP));
    assert!(limited.headers().contains_key("retry-after"));
    assert_error_response(limited, 429, "rate_limited").await;
    assert_eq!(event_count(&app, "flood").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn preflight_is_granted_only_to_a_publishable_key_from_its_origins() {
    let app = spawn_app().await;
    let key = publishable(&app, "web").await;
    let preflight = |origin: &str, url: String| {
        app.http
            .request(Method::OPTIONS, url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let events = format!("{}/events?key={key}", app.base);

    let ok = preflight("http://localhost:3000", events.clone())
        .await
        .unwrap();
    assert_eq!(ok.status(), 204);
    let h = ok.headers();
    assert_eq!(grant(h), Some("http://localhost:3000"));
    assert_eq!(h["access-control-allow-methods"], "POST");
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("content-type")
    );

    let evil = preflight("https://evil.example", events).await.unwrap();
    assert!(grant(evil.headers()).is_none());
    let no_key = preflight(SHOP, format!("{}/events", app.base))
        .await
        .unwrap();
    assert!(grant(no_key.headers()).is_none());
    // No other route answers a preflight with a grant.
    for path in ["/sessions/s1", "/errors", "/eye.js", "/"] {
        let other = preflight(SHOP, format!("{}{path}?key={key}", app.base))
            .await
            .unwrap();
        assert!(grant(other.headers()).is_none(), "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn basic_credentials_a_beacon_carries_are_ignored_for_a_key_in_the_url() {
    // An analyst logged in to the dashboard: the browser attaches their cached Basic
    // credentials to a shop page's sendBeacon. The URL's publishable key decides;
    // the analyst's key is neither used nor a reason to refuse.
    let app = spawn_app().await;
    let key = publishable(&app, "web").await;
    let response = beacon(&app, &key, Some(SHOP), &now_event("with-basic"))
        .basic_auth("analyst", Some(&app.key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    app.settled().await;
    let session = app.get_json("/sessions/with-basic", 200).await;
    assert_eq!(session["applications"], json!(["web"]));
    app.stop().await;
}

#[tokio::test]
async fn sent_at_corrects_a_fast_client_clock_and_keeps_its_timestamp() {
    let app = spawn_app().await;
    let key = publishable(&app, "web").await;
    // The browser's clock is 2 hours fast; the click happened 1 minute ago.
    let fast = Utc::now() + Duration::hours(2);
    let clicked = fast - Duration::minutes(1);
    let event = page_view("skewed", &eye_core::format_timestamp(&clicked));

    let response = beacon(&app, &key, Some(SHOP), &event)
        .query(&[("sent_at", eye_core::format_timestamp(&fast))])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    app.settled().await;
    let page = app.get_json("/sessions/skewed/events", 200).await;
    let stored = &page["results"][0];
    let timestamp = eye_core::parse_timestamp(stored["timestamp"].as_str().unwrap()).unwrap();
    let age = Utc::now() - timestamp;
    assert!(
        age > Duration::seconds(55) && age < Duration::minutes(5),
        "{stored}"
    );
    assert_eq!(
        stored["client_timestamp"],
        eye_core::format_timestamp(&clicked),
        "{stored}"
    );

    // Without sent_at the same event is 2 hours in the future.
    let plain = beacon(&app, &key, Some(SHOP), &event).send().await.unwrap();
    assert_error_response(plain, 400, "validation_failed").await;

    // The header form, with a secret key; and no client_timestamp without either.
    let header = app
        .post_events_request()
        .header("eye-sent-at", eye_core::format_timestamp(&fast))
        .body(page_view("skewed-2", &eye_core::format_timestamp(&clicked)).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), 201);
    app.ingest(&now_event("unskewed")).await;
    app.settled().await;
    let page = app.get_json("/sessions/unskewed/events", 200).await;
    assert!(
        page["results"][0].get("client_timestamp").is_none(),
        "{page}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_sent_at_that_is_not_a_timestamp_is_a_400_and_stores_nothing() {
    let app = spawn_app().await;
    for bad in ["yesterday", "2022-13-01T00:00:00Z", ""] {
        let response = app
            .post_events_request()
            .query(&[("sent_at", bad)])
            .body(now_event("bad-sent-at").to_string())
            .send()
            .await
            .unwrap();
        assert_error_response(response, 400, "invalid_sent_at").await;
    }
    let header = app
        .post_events_request()
        .header("eye-sent-at", "soon")
        .body(now_event("bad-sent-at").to_string())
        .send()
        .await
        .unwrap();
    assert_error_response(header, 400, "invalid_sent_at").await;
    assert_eq!(event_count(&app, "bad-sent-at").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn eye_js_is_cacheable_with_an_etag_gzip_and_304() {
    let app = spawn_app().await;
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let plain = raw
        .get(format!("{}/eye.js", app.base))
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    let h = plain.headers().clone();
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(h["cache-control"].to_str().unwrap().contains("max-age"));
    assert!(h.get("content-encoding").is_none());
    assert!(h.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    let body = plain.bytes().await.unwrap();
    assert_eq!(&body[..], eye_server::routes::tracker::EYE_JS);

    let gz = raw
        .get(format!("{}/eye.js", app.base))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let gz_etag = gz.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(gz_etag, etag, "each representation has its own strong ETag");
    let gz_body = gz.bytes().await.unwrap();
    assert!(gz_body.len() <= 3072, "{} bytes gzipped", gz_body.len());

    let revalidated = raw
        .get(format!("{}/eye.js", app.base))
        .header("accept-encoding", "gzip")
        .header("if-none-match", &gz_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    assert_eq!(revalidated.headers()["etag"], gz_etag.as_str());
    assert!(revalidated.bytes().await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn tracker_path_moves_the_script() {
    let app = spawn_app_with(|c| c.http.tracker_path = "/a1b2.js".into()).await;
    assert_eq!(
        app.http
            .get(format!("{}/a1b2.js", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.http
            .get(format!("{}/eye.js", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    app.stop().await;
}
