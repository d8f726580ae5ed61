//! A browser attaches cached Basic credentials to requests other sites make it send
//! (`navigator.sendBeacon`, a `no-cors` `fetch`, a form), so a request that carries
//! Basic credentials and says it comes from another site is refused, whatever its
//! content type and route. Bearer keys are never sent by a browser on its own and are
//! not affected.

use reqwest::RequestBuilder;
use serde_json::Value;

use crate::helpers::{TestApp, assert_error_response, seed_event, spawn_app};

/// A `sendBeacon`-like post: Basic credentials, no `Content-Type`.
fn beacon(app: &TestApp) -> RequestBuilder {
    app.http
        .post(format!("{}/events", app.base))
        .basic_auth("analyst", Some(&app.key))
        .body(seed_event().to_string())
}

/// How many events are stored, once everything acknowledged so far is.
async fn stored(app: &TestApp) -> Value {
    app.settled().await;
    app.get_json("/events", 200).await["count"].clone()
}

#[tokio::test]
async fn beacon_from_another_site_with_basic_credentials_is_refused_and_not_stored() {
    let app = spawn_app().await;
    for site in ["cross-site", "same-site"] {
        let response = beacon(&app)
            .header("sec-fetch-site", site)
            .header("sec-fetch-mode", "no-cors")
            .send()
            .await
            .unwrap();
        assert_error_response(response, 403, "cross_site_request").await;
    }
    assert_eq!(stored(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn foreign_origin_with_basic_credentials_is_refused_without_fetch_metadata() {
    let app = spawn_app().await;
    for origin in ["https://evil.example", "null"] {
        let response = beacon(&app).header("origin", origin).send().await.unwrap();
        assert_error_response(response, 403, "cross_site_request").await;
    }
    let read = app
        .http
        .get(format!("{}/events", app.base))
        .basic_auth("analyst", Some(&app.key))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_error_response(read, 403, "cross_site_request").await;
    assert_eq!(stored(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn same_origin_basic_and_cross_site_bearer_requests_are_accepted() {
    let app = spawn_app().await;
    let own_origin = app.base.clone();
    let same_origin = beacon(&app)
        .header("sec-fetch-site", "same-origin")
        .header("origin", &own_origin)
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status().as_u16(), 201);
    let typed = beacon(&app)
        .header("sec-fetch-site", "none")
        .send()
        .await
        .unwrap();
    assert_eq!(typed.status().as_u16(), 201, "a request the user made");
    let bearer = app
        .post_events_request()
        .header("sec-fetch-site", "cross-site")
        .header("origin", "https://shop.example")
        .body(seed_event().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status().as_u16(), 201, "Bearer keys are not ambient");
    assert_eq!(stored(&app).await, 3);
    app.stop().await;
}

#[tokio::test]
async fn link_followed_from_another_site_still_opens_a_page() {
    let app = spawn_app().await;
    let navigate = app
        .http
        .get(format!("{}/events", app.base))
        .basic_auth("analyst", Some(&app.key))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(navigate.status().as_u16(), 200);
    let script_read = app
        .http
        .get(format!("{}/events", app.base))
        .basic_auth("analyst", Some(&app.key))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "no-cors")
        .send()
        .await
        .unwrap();
    assert_error_response(script_read, 403, "cross_site_request").await;
    app.stop().await;
}
