//! Applications are trusted clients: 401 without a valid key, 403 without the scope.

use eye_server::store::Scopes;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use serde_json::Value;

use crate::helpers::{
    assert_error, assert_error_response, create_key, seed_event, spawn_app, spawn_app_with,
};

#[tokio::test]
async fn missing_key_is_401_with_www_authenticate_and_json() {
    let app = spawn_app().await;
    for request in [
        app.http.get(format!("{}/events", app.base)),
        app.http
            .post(format!("{}/events", app.base))
            .json(&seed_event()),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        let challenges: Vec<_> = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(
            challenges.iter().any(|c| c.starts_with("Basic")),
            "{challenges:?}"
        );
        assert!(
            challenges.iter().any(|c| c.starts_with("Bearer")),
            "{challenges:?}"
        );
        let body: Value = response.json().await.unwrap();
        assert_error(&body, "unauthorized");
    }
}

#[tokio::test]
async fn unknown_key_is_401_and_nothing_is_stored() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(format!("{}/events", app.base))
        .header(AUTHORIZATION, "Bearer eye_not-a-real-key")
        .json(&seed_event())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    app.settled().await;
    assert_eq!(app.get_json("/events", 200).await["count"], 0);
}

#[tokio::test]
async fn ingest_only_key_cannot_query_403() {
    let app = spawn_app().await;
    let key = create_key(&app.state.store, "shop", Scopes::INGEST_ONLY).await;
    let response = app.get_with_key("/events", &key).await;
    assert_error_response(response, 403, "forbidden").await;
}

#[tokio::test]
async fn query_only_key_cannot_ingest_403() {
    let app = spawn_app().await;
    let key = create_key(&app.state.store, "analyst", Scopes::QUERY_ONLY).await;
    let response = app.post_events_with_key(&key, &seed_event()).await;
    assert_eq!(response.status().as_u16(), 403);
    app.settled().await;
    assert_eq!(app.get_json("/events", 200).await["count"], 0);
}

#[tokio::test]
async fn basic_auth_with_the_key_as_password_works_and_records_the_application() {
    let app = spawn_app().await;
    let key = create_key(&app.state.store, "shop", Scopes::ALL).await;
    let response = app
        .http
        .post(format!("{}/events", app.base))
        .basic_auth("anyone", Some(&key))
        .json(&seed_event())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    app.settled().await;
    let page = app.get_json("/events?application=shop", 200).await;
    assert_eq!(page["count"], 1, "{page}");
    assert_eq!(page["results"][0]["application"], "shop");
}

#[tokio::test]
async fn revoked_key_is_401() {
    let app = spawn_app().await;
    let key = create_key(&app.state.store, "old", Scopes::ALL).await;
    app.state.store.revoke_app("old").await.unwrap();
    let response = app.get_with_key("/events", &key).await;
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn insecure_no_auth_accepts_anonymous_requests() {
    let app = spawn_app_with(|c| c.http.insecure_no_auth = true).await;
    let response = app
        .http
        .post(format!("{}/events", app.base))
        .json(&seed_event())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    app.settled().await;
    let page: Value = app
        .http
        .get(format!("{}/events", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["results"][0]["application"], "anonymous");
}

#[tokio::test]
async fn probes_need_no_key() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
}
