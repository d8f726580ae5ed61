//! A real eye-server on `127.0.0.1:0` with a temporary SQLite file, which can be
//! stopped and started again on the same port and database.

use std::net::SocketAddr;
use std::time::Duration;

use eye_client::{EyeClient, EyeClientBuilder, RetryPolicy};
use eye_server::auth::create_app_with_key;
use eye_server::config::ServeConfig;
use eye_server::store::{Scopes, Store};
use eye_server::wiring::Node;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Server {
    pub addr: SocketAddr,
    /// A key with every scope, application `e2e`.
    pub key: String,
    database_url: String,
    configure: fn(&mut ServeConfig),
    running: Option<Running>,
    _dir: TempDir,
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
    store: Store,
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `configure` adjusted its configuration (kept on restart).
    pub async fn start_with(configure: fn(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database_url = format!("sqlite://{}", dir.path().join("eye.db").display());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let running = serve(&database_url, listener, configure).await;
        let key = create_key(&running.store, "e2e", Scopes::ALL).await;
        Self {
            addr,
            key,
            database_url,
            configure,
            running: Some(running),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn store(&self) -> &Store {
        &self.running.as_ref().unwrap().store
    }

    /// A client with this server's all-scopes key and quick retries.
    pub fn client(&self) -> EyeClientBuilder {
        EyeClient::builder(self.url())
            .api_key(&self.key)
            .flush_interval(Duration::from_millis(20))
            .retry_policy(RetryPolicy {
                max_retries: 200,
                initial_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(200),
                max_retry_after: Duration::from_secs(2),
            })
    }

    /// Stops the server gracefully: stops accepting, finishes in-flight requests and
    /// drains the queue into the store.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop.send(());
            r.task.await.unwrap().unwrap();
            r.store.close().await;
        }
    }

    /// Starts the server again on the same port and database.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.running = Some(serve(&self.database_url, listener, self.configure).await);
    }
}

async fn serve(
    database_url: &str,
    listener: tokio::net::TcpListener,
    configure: fn(&mut ServeConfig),
) -> Running {
    let mut config = ServeConfig::for_tests(database_url);
    configure(&mut config);
    let node = Node::start(config).await.unwrap();
    let store = node.state.store.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(node.serve(listener, async {
        let _ = stopped.await;
    }));
    Running { stop, task, store }
}

pub async fn create_key(store: &Store, name: &str, scopes: Scopes) -> String {
    create_app_with_key(store, name, scopes).await.unwrap()
}
