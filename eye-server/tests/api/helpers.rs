//! `spawn_app()`: the real router on `127.0.0.1:0` over a fresh SQLite file, plus
//! helpers to send requests.

use std::net::SocketAddr;

use eye_server::auth::create_app_with_key;
use eye_server::config::ServeConfig;
use eye_server::state::AppState;
use eye_server::store::{Scopes, Store};
use eye_server::wiring::Node;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A key with every scope, application `tests`.
    pub key: String,
    /// The server's state (its store, to check what was written).
    pub state: AppState,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// The database URL, to reopen the store.
    #[allow(dead_code)]
    pub database_url: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _dir: TempDir,
}

/// Spawns the app with the default test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the app after `configure` adjusted its configuration.
pub async fn spawn_app_with(configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}", dir.path().join("eye.db").display());
    let mut config = ServeConfig::for_tests(&database_url);
    configure(&mut config);
    let node = Node::start(config).await.expect("state");
    let state = node.state.clone();
    let key = create_key(&state.store, "tests", Scopes::ALL).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(node.serve(listener, async {
        let _ = stopped.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        key,
        state,
        http: reqwest::Client::new(),
        database_url,
        stop: Some(stop),
        server: Some(server),
        _dir: dir,
    }
}

/// Registers an application and returns its key.
pub async fn create_key(store: &Store, name: &str, scopes: Scopes) -> String {
    create_app_with_key(store, name, scopes)
        .await
        .expect("create app")
}

/// A valid page view of `session` at `timestamp`.
pub fn page_view(session: &str, timestamp: &str) -> Value {
    json!({
        "session_id": session,
        "category": "page_interaction",
        "name": "page_view",
        "data": {"host": "www.consumeraffairs.com", "path": "/"},
        "timestamp": timestamp,
    })
}

/// The seed's example event.
pub fn seed_event() -> Value {
    page_view("123", "2022-01-01 00:00:00.000000")
}

impl TestApp {
    /// A `POST /events` with this app's key and a JSON content type, for the caller
    /// to finish (body, more headers) and send.
    pub fn post_events_request(&self) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/events", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", self.key))
            .header(CONTENT_TYPE, "application/json")
    }

    /// `POST /events` with a JSON body and this app's key.
    pub async fn post_events(&self, body: &Value) -> reqwest::Response {
        self.post_events_request()
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    /// `POST /events` with a JSON body and `key` as the bearer token.
    pub async fn post_events_with_key(&self, key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/events", self.base))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `GET path` with this app's key.
    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.get_with_key(path_and_query, &self.key).await
    }

    /// `GET path` with `key` as the bearer token.
    pub async fn get_with_key(&self, path_and_query: &str, key: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path_and_query}", self.base))
            .header(AUTHORIZATION, format!("Bearer {key}"))
            .send()
            .await
            .expect("request")
    }

    /// `GET path` and the JSON body, asserting the status.
    pub async fn get_json(&self, path_and_query: &str, status: u16) -> Value {
        let response = self.get(path_and_query).await;
        assert_eq!(response.status().as_u16(), status, "GET {path_and_query}");
        response.json().await.expect("json body")
    }

    /// Posts events and asserts 201.
    pub async fn ingest(&self, body: &Value) -> Value {
        let response = self.post_events(body).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("json");
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Stops the server gracefully (drains the queue).
    #[allow(dead_code)]
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("join").expect("server");
        }
    }
}

/// Asserts an error body has the given code and returns it.
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// Asserts a response's status and that its body is a JSON error with `code`.
pub async fn assert_error_response(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status().as_u16(), status);
    assert_error(&response.json().await.expect("json body"), code);
}
