//! A stub JSON API with the real middleware around it, so the HTML layer is tested
//! against exactly what it wraps: handlers that answer JSON.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use eye_server::auth::Authenticator;
use eye_server::clock::FixedClock;
use eye_server::config::ServeConfig;
use eye_server::message::Message;
use eye_server::queue::{Queue, QueueError};
use eye_server::state::{AppState, Services};
use eye_server::store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A queue that takes everything and stores nothing.
pub struct NullQueue;

#[async_trait]
impl Queue for NullQueue {
    async fn enqueue(&self, _: Vec<Message>) -> Result<(), QueueError> {
        Ok(())
    }
    async fn backlog(&self) -> Result<u64, QueueError> {
        Ok(0)
    }
    async fn ready(&self) -> Result<(), QueueError> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "null"
    }
}

pub async fn state() -> AppState {
    let store = Store::open("sqlite::memory:").await.unwrap();
    AppState::new(Services {
        limiter: eye_server::ratelimit::Limiter::local(),
        queue: Arc::new(NullQueue),
        auth: Authenticator::new(store.clone(), true),
        store,
        clock: Arc::new(FixedClock(
            chrono::DateTime::parse_from_rfc3339("2026-11-27T04:00:00Z")
                .unwrap()
                .into(),
        )),
        config: Arc::new(ServeConfig::for_tests("sqlite::memory:")),
    })
}

/// Event data an attacker controls, trying every context of the page.
pub fn hostile_event() -> Value {
    json!({
        "id": "0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c",
        "session_id": "<script>alert('session')</script>",
        "category": "form_interaction",
        "name": "submit",
        "data": {
            "host": "www.example.com",
            "path": "/\"><script>alert('path')</script>",
            "form": {"<img src=x onerror=alert(1)>": "</pre><script>alert('form')</script>"}
        },
        "timestamp": "2026-11-27T03:00:00.000000Z",
        "application": "<svg onload=alert('app')>",
        "received_at": "2026-11-27T03:00:01.000000Z"
    })
}

fn page_of(results: Vec<Value>) -> Value {
    json!({"count": 25, "next": "http://testserver/events?page=3", "previous": "javascript:alert(1)", "results": results})
}

async fn post_events(headers: axum::http::HeaderMap, body: String) -> Response {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/json");
    if !json_type {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    match serde_json::from_str::<Value>(&body) {
        Ok(v) if v.get("session_id").is_some() => (
            StatusCode::CREATED,
            Json(json!({"accepted": 1, "rejected": 0, "results": []})),
        )
            .into_response(),
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": "validation_failed", "message": "the event has 1 problem(s)"}})),
        )
            .into_response(),
    }
}

async fn unauthorized() -> Response {
    eye_server::error::ApiError::Unauthorized.into_response()
}

/// Stub handlers at the API's paths, wrapped in the web middleware.
pub async fn app() -> Router {
    let state = state().await;
    let api = Router::new()
        .route(
            "/events",
            get(|| async { Json(page_of(vec![hostile_event()])) }).post(post_events),
        )
        .route("/events/{id}", get(|| async { Json(hostile_event()) }))
        .route(
            "/sessions/{session_id}",
            get(|| async {
                Json(json!({"session_id": "<script>x</script>", "first_seen": "2026-11-27T03:00:00.000000Z",
                    "last_seen": "2026-11-27T03:00:00.000000Z", "event_count": 1, "applications": ["shop"]}))
            }),
        )
        .route(
            "/sessions/{session_id}/events",
            get(|| async { Json(page_of(vec![hostile_event()])) }),
        )
        .route(
            "/errors",
            get(|| async {
                Json(json!({"count": 1, "next": null, "previous": null, "results": [{
                    "id": 1, "application": "shop", "received_at": "2026-11-27T03:00:00.000000Z",
                    "codes": ["invalid_host"], "errors": [{"path": "/data/host", "code": "invalid_host", "message": "<b>bad</b>"}],
                    "payload": "{\"data\": {\"host\": \"<script>alert(1)</script>\"}}"}]}))
            }),
        )
        .route("/private", get(unauthorized));
    api.merge(eye_server::web::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            eye_server::web::negotiate,
        ))
        .with_state(state)
}

pub const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(to_bytes(body, usize::MAX).await.unwrap().to_vec()).unwrap(),
    }
}

pub async fn get_as(app: &Router, uri: &str, accept: &str) -> Answer {
    send(
        app,
        Request::get(uri)
            .header(header::ACCEPT, accept)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// The real server on `127.0.0.1:0` over a fresh SQLite file, on the default ack path
/// (the journal), with a key of every scope.
pub struct RealApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A key with every scope.
    pub key: String,
    /// The server's state.
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub async fn spawn_real() -> RealApp {
    use eye_server::auth::create_app_with_key;
    use eye_server::store::Scopes;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("eye.db").display());
    let node = eye_server::wiring::Node::start(ServeConfig::for_tests(&url))
        .await
        .unwrap();
    let state = node.state.clone();
    let key = create_app_with_key(&state.store, "web-tests", Scopes::ALL)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(node.serve(listener, async {
        let _ = stopped.await;
    }));
    RealApp {
        base,
        key,
        state,
        stop: Some(stop),
        server: Some(server),
        _dir: dir,
    }
}

impl RealApp {
    /// The real router, for `oneshot` requests.
    pub fn router(&self) -> Router {
        eye_server::routes::router(self.state.clone())
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// `POST /events` with a JSON body; returns the status.
    pub async fn post(&self, body: &Value) -> u16 {
        self.client()
            .post(format!("{}/events", self.base))
            .bearer_auth(&self.key)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// `GET` with the key as Basic credentials and a browser's `Accept`.
    pub async fn browse(&self, path: &str) -> (u16, String) {
        let r = self.browse_with(path, Some(&self.key)).await;
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// `GET` with a browser's `Accept` and `key`, if any, as Basic credentials.
    pub async fn browse_with(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let request = self
            .client()
            .get(format!("{}{path}", self.base))
            .header(header::ACCEPT, BROWSER);
        let request = match key {
            Some(key) => request.basic_auth("analyst", Some(key)),
            None => request,
        };
        request.send().await.unwrap()
    }

    /// `GET` without credentials.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// `GET` without credentials; the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// `GET` without credentials; the body as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }

    /// Waits until everything acknowledged so far is stored (readable shortly after
    /// the 2xx on the journal path): polls `/readyz` until its `backlog` is 0, for at
    /// most 30 s.
    pub async fn settled(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.get_json("/readyz").await["backlog"] != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the journal was not stored within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// A wire event (no server fields) carrying the hostile strings of
/// [`hostile_event`] where validation lets them through.
pub fn hostile_wire_event() -> Value {
    let mut e = hostile_event();
    let obj = e.as_object_mut().unwrap();
    obj.remove("application");
    obj.remove("received_at");
    obj.remove("id");
    obj.insert(
        "timestamp".into(),
        json!(eye_core::format_timestamp(&chrono::Utc::now())),
    );
    // Keep to the free-text fields (session id, form), so a stricter path rule in
    // eye-core does not turn this into a 400.
    e["data"]["path"] = json!("/");
    e
}
