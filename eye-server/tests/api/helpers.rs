//! `spawn_app()`: the real router on `127.0.0.1:0` over a fresh store, on the default
//! ack path (the journal), plus helpers to send requests and to wait for what was
//! acknowledged to be readable.
//!
//! The store is a SQLite file in a temporary directory, or, with
//! `EYE_TEST_STORE=postgres`, a PostgreSQL database created for the test and dropped
//! after it (see `eye_server::store::testing::PgDatabase`; the server is
//! `EYE_TEST_DATABASE_URL` or the local one). `.ci/run` runs the suite both ways.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use eye_server::auth::create_app_with_key;
use eye_server::config::ServeConfig;
use eye_server::state::AppState;
use eye_server::store::testing::PgDatabase;
use eye_server::store::{Scopes, Store};
use eye_server::wiring::Node;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long [`TestApp::settled`] waits for the journal to be stored: far more than
/// it takes (milliseconds), so only a lost or stuck event fails it, even on a loaded
/// machine.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

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
    // Dropped after the server (fields drop in order): the store's files and database.
    _database: TestDatabase,
}

/// Which store the suite runs against: `EYE_TEST_STORE` (`sqlite`, the default, or
/// `postgres`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// From `EYE_TEST_STORE`; any other value is a mistake worth a panic.
    pub fn from_env() -> Self {
        match std::env::var("EYE_TEST_STORE").as_deref() {
            Err(_) | Ok("" | "sqlite") => Self::Sqlite,
            Ok("postgres" | "postgresql") => Self::Postgres,
            Ok(other) => panic!("EYE_TEST_STORE={other}: expected sqlite or postgres"),
        }
    }
}

/// What keeps a test's store alive: its directory (the SQLite file, the journal) and,
/// on PostgreSQL, its database (dropped with this value).
struct TestDatabase {
    _pg: Option<PgDatabase>,
    _dir: TempDir,
}

/// A fresh store for one test: its URL, and what keeps it alive. On PostgreSQL the
/// journal goes in the temporary directory (a `postgres://` URL names no file to put
/// it next to).
async fn test_database() -> (String, Option<std::path::PathBuf>, TestDatabase) {
    let dir = tempfile::tempdir().expect("temp dir");
    match Backend::from_env() {
        Backend::Sqlite => {
            let url = format!("sqlite://{}", dir.path().join("eye.db").display());
            (
                url,
                None,
                TestDatabase {
                    _pg: None,
                    _dir: dir,
                },
            )
        }
        Backend::Postgres => {
            // Asked for by name: no Postgres is a failure here, not a skip.
            let pg = PgDatabase::create()
                .await
                .expect("EYE_TEST_STORE=postgres, but PostgreSQL does not answer");
            let journal = dir.path().join("eye.journal");
            (
                pg.url.clone(),
                Some(journal),
                TestDatabase {
                    _pg: Some(pg),
                    _dir: dir,
                },
            )
        }
    }
}

/// Spawns the app with the default test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the app after `configure` adjusted its configuration.
pub async fn spawn_app_with(configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let (database_url, journal_dir, database) = test_database().await;
    let mut config = ServeConfig::for_tests(&database_url);
    config.queue.journal.dir = journal_dir;
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
        _database: database,
    }
}

/// A write lock on the store held from outside the server (see
/// [`TestApp::hold_store`]).
#[allow(dead_code)]
pub enum StoreHold {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl StoreHold {
    /// Ends the transaction, so the server's writes go through.
    #[allow(dead_code)]
    pub async fn release(self) {
        use sqlx::Connection;
        match self {
            Self::Sqlite(mut c) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut c)
                    .await
                    .expect("ROLLBACK");
                c.close().await.expect("close");
            }
            Self::Postgres(mut c) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut c)
                    .await
                    .expect("ROLLBACK");
                c.close().await.expect("close");
            }
        }
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

    /// Waits until everything acknowledged so far is stored, so a read sees it.
    ///
    /// On the default ack path an event is readable shortly after its 2xx, not at it
    /// (docs/http-api.md): a background task stores what the journal holds. This
    /// polls `GET /readyz` every 5 ms until its `backlog` (messages acknowledged and
    /// not yet stored, counted before the 2xx) is 0, for at most 30 s. Rejected
    /// events travel the same way to the errors log, so reads of `/errors` wait too.
    ///
    /// # Panics
    ///
    /// When the backlog is not 0 within 30 s, or `/readyz` fails.
    pub async fn settled(&self) {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let ready = self.get_json("/readyz", 200).await;
            let backlog = ready["backlog"]
                .as_u64()
                .expect("/readyz names its backlog");
            if backlog == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{backlog} acknowledged messages still not stored after {SETTLE_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Holds the store's write lock from another connection until released, as a
    /// long transaction of another process would: on SQLite `BEGIN IMMEDIATE`, on
    /// PostgreSQL `LOCK TABLE events IN EXCLUSIVE MODE` (reads go on). The server's
    /// writes wait or fail as busy, which its queues retry.
    #[allow(dead_code)]
    pub async fn hold_store(&self) -> StoreHold {
        use sqlx::Connection;
        if self.state.store.pool().is_some() {
            let mut conn = sqlx::SqliteConnection::connect(&self.database_url)
                .await
                .expect("a second connection to the SQLite file");
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .expect("BEGIN IMMEDIATE");
            StoreHold::Sqlite(conn)
        } else {
            let mut conn = sqlx::PgConnection::connect(&self.database_url)
                .await
                .expect("a second connection to the PostgreSQL database");
            for sql in ["BEGIN", "LOCK TABLE events IN EXCLUSIVE MODE"] {
                sqlx::query(sql).execute(&mut conn).await.expect(sql);
            }
            StoreHold::Postgres(conn)
        }
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
