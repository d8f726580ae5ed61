//! Process wiring: what `serve` and `worker` open and start, and the order in which
//! they stop. The only module that knows every part: it opens the store, builds the
//! queue the configuration asks for, starts the Redis worker when this process runs
//! one, and owns the handles. The queue never starts a worker; the worker never knows
//! the server.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use eye_server::config::ServeConfig;
//! use eye_server::wiring::Node;
//! # let config: ServeConfig = unimplemented!();
//! let node = Node::start(config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! node.serve(listener, eye_server::server::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::auth::{Authenticator, create_app_with_key};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{AckAfter, ServeConfig};
use crate::lifecycle::RetentionTask;
use crate::queue::Queue;
use crate::queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use crate::queue::journal::{JournalConfig, JournalQueue};
use crate::queue::metered::MeteredQueue;
use crate::queue::redis::{RedisQueue, RedisQueueConfig};
use crate::ratelimit::Limiter;
use crate::state::{AppState, Services};
use crate::store::{Scopes, Store};
use crate::streams::{Keys, connect};
use crate::worker::{Worker, WorkerConfig, WorkerHandle};

/// One running process: the state handlers share, and the background tasks this
/// process owns besides the queue's own (a Redis worker in `serve` without
/// `--no-worker`).
pub struct Node {
    /// What every handler shares.
    pub state: AppState,
    worker: Option<WorkerHandle>,
    retention: RetentionTask,
}

impl Node {
    /// Opens the store (applying migrations), builds the queue and, in Redis mode
    /// without `--no-worker`, starts a worker; the clock is the system's.
    pub async fn start(config: ServeConfig) -> anyhow::Result<Self> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Self::start`] with an injected clock, so tests can pin "now" (validation of
    /// future timestamps, `received_at`).
    pub async fn start_with_clock(config: ServeConfig, clock: SharedClock) -> anyhow::Result<Self> {
        config.validate()?;
        // Before anything records: the journal's recovery at start counts too.
        crate::metrics::install();
        let store = open_store(&config).await?;
        let queue = MeteredQueue::wrap(make_queue(&store, &config)?);
        let worker = if config.queue.redis.url.is_some() && !config.no_worker {
            Some(start_worker(&store, &config)?)
        } else {
            if config.queue.redis.url.is_some() {
                tracing::info!(
                    "Redis queue without a worker (--no-worker): run `eye-server worker`"
                );
            }
            None
        };
        let limiter = match config.queue.redis.url.as_deref() {
            Some(url) => Limiter::redis(
                connect(url, std::time::Duration::from_secs(2)).context("invalid Redis URL")?,
                &config.queue.redis.prefix,
            ),
            None => Limiter::local(),
        };
        let retention =
            RetentionTask::spawn(store.clone(), config.retention.clone(), Arc::clone(&clock));
        let state = AppState::new(Services {
            limiter,
            queue,
            auth: Authenticator::new(store.clone(), config.http.insecure_no_auth)
                .with_public_url(config.http.public_url.as_deref()),
            store,
            clock,
            config: Arc::new(config),
        });
        Ok(Self {
            state,
            worker,
            retention,
        })
    }

    /// Serves the API on `listener` until `shutdown` completes; then the queue is
    /// drained ([`crate::server::run`]), the worker finishes its batch, and the store
    /// is closed.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let served = crate::server::run(listener, self.state.clone(), shutdown).await;
        self.stop_background().await;
        served
    }

    /// Stops without serving: closes the queue (storing what it accepted), stops the
    /// worker and closes the store.
    pub async fn stop(self) {
        self.state.queue.close().await;
        self.stop_background().await;
    }

    async fn stop_background(self) {
        self.retention.stop().await;
        if let Some(worker) = self.worker {
            let stats = worker.stop().await;
            tracing::info!(?stats, "worker stopped");
        }
        self.state.store.close().await;
    }
}

/// Opens the store the configuration names, applying migrations.
pub async fn open_store(config: &ServeConfig) -> anyhow::Result<Store> {
    let url = &config.store.database_url;
    Store::open_configured(url, config.sqlite_synchronous(), config.store.pg_pool())
        .await
        .with_context(|| format!("opening the store at {}", redact(url)))
}

/// Opens the store at `url` with default settings (the `apps` and `migrate`
/// commands), applying migrations.
pub async fn open_store_url(url: &str) -> anyhow::Result<Store> {
    Store::open(url)
        .await
        .with_context(|| format!("opening the store at {}", redact(url)))
}

/// A database URL fit for logs and error messages: any password replaced by `***`.
///
/// ```
/// use eye_server::wiring::redact;
/// assert_eq!(redact("postgres://eye:s3cret@db:5432/eye"), "postgres://eye:***@db:5432/eye");
/// assert_eq!(redact("postgres://eye@db/eye"), "postgres://eye@db/eye");
/// assert_eq!(redact("sqlite://eye.db"), "sqlite://eye.db");
/// ```
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Builds the queue the configuration asks for: Redis when a URL is set, else the
/// journal (`--ack-after journal`, when the store has a journal directory), else the
/// group-commit writer of `--ack-after store`. Starts no worker.
pub fn make_queue(store: &Store, config: &ServeConfig) -> anyhow::Result<Arc<dyn Queue>> {
    if config.queue.redis.url.is_some() {
        let queue = RedisQueue::connect(RedisQueueConfig::from(&config.queue))
            .context("invalid Redis URL")?;
        return Ok(Arc::new(queue));
    }
    let journal_dir = match config.queue.ack_after {
        AckAfter::Journal => config
            .queue
            .journal
            .dir
            .clone()
            .or_else(|| JournalQueue::default_dir(&config.store.database_url)),
        AckAfter::Store => None,
    };
    if let Some(dir) = journal_dir {
        let queue = JournalQueue::open(
            store.clone(),
            JournalConfig {
                dir,
                batch: config.queue.journal.batch,
                max_bytes: config.queue.journal.max_mib.saturating_mul(1024 * 1024),
                segment_bytes: crate::queue::journal::SEGMENT_BYTES,
                sync: config.sqlite_synchronous() == crate::store::Synchronous::Full,
            },
        )?;
        return Ok(Arc::new(queue));
    }
    if config.queue.ack_after == AckAfter::Journal {
        tracing::info!(
            "no journal directory for this database: events are acknowledged once stored"
        );
    }
    Ok(Arc::new(EmbeddedQueue::start(
        store.clone(),
        EmbeddedConfig {
            commit_batch: config.queue.commit.batch,
            commit_interval: config.queue.commit.interval(),
            max_backlog: config.queue.max_backlog,
        },
    )))
}

/// Starts a Redis worker in this process that drains the stream into `store`.
pub fn start_worker(store: &Store, config: &ServeConfig) -> anyhow::Result<WorkerHandle> {
    let Some(url) = config.queue.redis.url.as_deref() else {
        anyhow::bail!("a worker needs a Redis queue: set --redis-url or EYE_REDIS_URL");
    };
    let worker_config = WorkerConfig::from_queue_config(&config.queue);
    let conn = connect(url, worker_config.response_timeout()).context("invalid Redis URL")?;
    Ok(Worker::new(conn, Arc::new(store.clone()), worker_config).spawn())
}

/// `eye-server serve`: the HTTP API, the queue and (in Redis mode without
/// `--no-worker`) a worker, until SIGINT or SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let node = Node::start(config).await?;
    let config = Arc::clone(&node.state.config);
    if config.http.insecure_no_auth {
        tracing::warn!(
            "authentication is DISABLED (--insecure-no-auth): anyone who can reach this port can send and read events"
        );
    } else {
        first_run(&node.state.store, &config).await?;
    }
    let listener = TcpListener::bind(config.http.bind)
        .await
        .with_context(|| format!("binding {}", config.http.bind))?;
    // Signal handlers go in before the "listening" line tells anyone we are ready.
    let shutdown = crate::server::shutdown_signal();
    tracing::info!(addr = %listener.local_addr()?, queue = node.state.queue.kind(), "The Eye is listening");
    node.serve(listener, shutdown).await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// `eye-server worker`: a worker only, until SIGINT or SIGTERM; the current batch is
/// finished before it exits.
pub async fn run_worker(config: ServeConfig) -> anyhow::Result<()> {
    config.validate()?;
    if config.queue.redis.url.is_none() {
        anyhow::bail!("`eye-server worker` needs a Redis queue: set --redis-url or EYE_REDIS_URL");
    }
    crate::metrics::install();
    let store = open_store(&config).await?;
    let shutdown = crate::server::shutdown_signal();
    let handle = start_worker(&store, &config)?;
    let retention = RetentionTask::spawn(
        store.clone(),
        config.retention.clone(),
        Arc::new(SystemClock),
    );
    shutdown.await;
    retention.stop().await;
    let stats = handle.stop().await;
    store.close().await;
    tracing::info!(?stats, "worker exited cleanly");
    Ok(())
}

/// `eye-server replay-dead-letters`: moves every dead-lettered Redis message back onto
/// the stream.
pub async fn replay_dead_letters(config: ServeConfig) -> anyhow::Result<()> {
    let Some(url) = config.queue.redis.url.as_deref() else {
        anyhow::bail!("set --redis-url or EYE_REDIS_URL");
    };
    let keys = Keys::new(&config.queue.redis.prefix);
    let moved = crate::streams::replay_dead_letters(url, &keys).await?;
    eprintln!(
        "moved {moved} dead-lettered message(s) from {} back to {}",
        keys.dead, keys.stream
    );
    Ok(())
}

/// `eye-server erase --session ID`: erases a session from the store and the dead
/// letters the configuration names, and prints what was removed as JSON.
pub async fn erase(session_id: &str, config: &ServeConfig) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let places = crate::lifecycle::DeadLetterPlaces::from_config(config);
    let erased =
        crate::lifecycle::erase_session(&store, &places, session_id, chrono::Utc::now()).await;
    store.close().await;
    let erased = erased?;
    println!("{}", serde_json::to_string(&erased)?);
    Ok(())
}

/// Creates the `default` application on the very first start and prints its key.
async fn first_run(store: &Store, config: &ServeConfig) -> anyhow::Result<()> {
    if store.count_apps().await? > 0 {
        return Ok(());
    }
    let key = create_app_with_key(store, "default", Scopes::ALL).await?;
    let addr = config.http.bind;
    eprintln!(
        "\nFirst run: created application `default` with every scope. Its API key, shown only this once:\n\n    {key}\n\nTry it:\n    curl -H 'Authorization: Bearer {key}' http://{addr}/events\n"
    );
    Ok(())
}
