//! The real router over a real SQLite store seeded with hostile data, for the HTML
//! layer (`html.rs`), and the real server on a socket (`spawn_real`).

use std::ops::Deref;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use eye_core::{ErrorCode, Event, FieldError};
use eye_server::config::ServeConfig;
use eye_server::message::{AcceptedEvent, Message, RejectedEvent};
use eye_server::state::AppState;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

/// The id of the stored [`hostile_event`].
pub const HOSTILE_ID: &str = "0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c";

/// The hostile event's session id, as a path segment.
pub const HOSTILE_SESSION_PATH: &str = "%3Cscript%3Ealert%28%27session%27%29%3C%2Fscript%3E";

/// The real router (every route, the real middleware) over a fresh SQLite file that
/// holds [`hostile_event`], 25 more page views and a hostile errors-log entry.
/// Dereferences to the router.
pub struct App {
    router: Router,
    /// The server's state (its store).
    pub state: AppState,
    _dir: tempfile::TempDir,
}

impl Deref for App {
    type Target = Router;
    fn deref(&self) -> &Router {
        &self.router
    }
}

/// [`App`] without keys (`--insecure-no-auth`), so pages render without credentials.
pub async fn app() -> App {
    app_with_auth(false).await
}

/// [`App`], with API keys required when `auth`.
pub async fn app_with_auth(auth: bool) -> App {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("eye.db").display());
    let mut config = ServeConfig::for_tests(&url);
    config.http.insecure_no_auth = !auth;
    let node = eye_server::wiring::Node::start(config).await.unwrap();
    let state = node.state.clone();
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let hostile = hostile_event();
    let event = Event::form_submit(
        hostile["session_id"].as_str().unwrap(),
        "www.example.com",
        "/",
        hostile["data"]["form"].clone(),
    )
    .unwrap()
    .with_timestamp(at("2026-11-27T03:00:00Z"));
    let mut messages = vec![Message::EventV1(AcceptedEvent {
        id: HOSTILE_ID.parse().unwrap(),
        application: hostile["application"].as_str().unwrap().to_owned(),
        received_at: at("2026-11-27T03:00:01Z"),
        client_timestamp: None,
        event,
    })];
    for i in 0..25 {
        let event = Event::page_view("s1", "www.example.com", &format!("/{i}"))
            .unwrap()
            .with_timestamp(at("2026-11-27T02:00:00Z") + chrono::Duration::seconds(i));
        messages.push(Message::EventV1(AcceptedEvent {
            id: Uuid::now_v7(),
            application: "shop".into(),
            received_at: at("2026-11-27T02:30:00Z"),
            client_timestamp: None,
            event,
        }));
    }
    messages.push(Message::RejectedV1(RejectedEvent {
        key: Uuid::now_v7(),
        application: "shop".into(),
        received_at: at("2026-11-27T03:00:00Z"),
        errors: vec![FieldError::new(
            "/data/host",
            ErrorCode::InvalidHost,
            "<b>bad</b>",
        )],
        payload: r#"{"data": {"host": "<script>alert(1)</script>"}}"#.into(),
    }));
    state.store.write_batch(&messages).await.unwrap();
    App {
        router: eye_server::routes::router(state.clone()),
        state,
        _dir: dir,
    }
}

/// Event data an attacker controls, trying every context of the page.
pub fn hostile_event() -> Value {
    json!({
        "id": HOSTILE_ID,
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
