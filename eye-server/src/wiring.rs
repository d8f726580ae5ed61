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
use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use eye_core::EventQuery;
use tokio::net::TcpListener;

use crate::auth::{Authenticator, create_app_with_key};
use crate::cli::ExportArgs;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{AckAfter, ServeConfig};
use crate::export::Export;
use crate::lifecycle::RetentionTask;
use crate::queue::Queue;
use crate::queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use crate::queue::journal::{JournalConfig, JournalQueue};
use crate::queue::metered::MeteredQueue;
use crate::queue::redis::{RedisQueue, RedisQueueConfig};
use crate::ratelimit::Limiter;
use crate::state::{AppState, Services};
use crate::store::{Scopes, Store, Synchronous};
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

/// `eye-server export`: every event matching the filters, written to `--output` (by
/// way of a temporary file beside it, renamed once complete) or to stdout, with a
/// progress line on stderr every few seconds and a summary at the end.
pub async fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let query = EventQuery::from_pairs(args.filter_pairs(), &eye_core::PageLimits::default())
        .map_err(|e| anyhow::anyhow!("--{}: {}", e.parameter.replace('_', "-"), e.message))?;
    let url = &args.store.database_url;
    let synchronous = args.store.sqlite_synchronous.unwrap_or(Synchronous::Normal);
    let store = Store::open_configured(url, synchronous, args.store.pg_pool())
        .await
        .with_context(|| format!("opening the store at {}", redact(url)))?;
    let mut export = Export::new(store.clone(), query, args.format);
    let mut progress = Progress::new();
    let written = match &args.output {
        None => {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
            async {
                let bytes =
                    interruptible(export.write_all(&mut out, |e, _| progress.tick(e))).await?;
                out.flush()?;
                anyhow::Ok(bytes)
            }
            .await
        }
        Some(path) => write_file(&mut export, path, &mut progress).await,
    };
    store.close().await;
    let bytes = written?;
    progress.finish(export.events(), bytes, args.output.as_deref());
    Ok(())
}

/// Writes `export` to a temporary file beside `path`, then renames it to `path`; on
/// any failure (or Ctrl-C) the temporary file is removed and `path` is untouched.
async fn write_file(
    export: &mut Export,
    path: &std::path::Path,
    progress: &mut Progress,
) -> anyhow::Result<u64> {
    let name = path
        .file_name()
        .with_context(|| format!("--output {} names no file", path.display()))?;
    let partial = path.with_file_name(format!(".{}.partial", name.to_string_lossy()));
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
    let result = async {
        let bytes = interruptible(export.write_all(&mut out, |e, _| progress.tick(e))).await?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
        anyhow::Ok(bytes)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// `work`, or an error when Ctrl-C (or SIGTERM) comes first.
async fn interruptible<T>(
    work: impl Future<Output = Result<T, crate::export::ExportError>>,
) -> anyhow::Result<T> {
    tokio::select! {
        r = work => Ok(r?),
        () = crate::server::shutdown_signal() => anyhow::bail!("interrupted"),
    }
}

/// The progress lines of `eye-server export` on stderr: one every few seconds (count
/// and rate), and a summary at the end.
struct Progress {
    start: std::time::Instant,
    last: std::time::Instant,
}

impl Progress {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);

    fn new() -> Self {
        let now = std::time::Instant::now();
        Self {
            start: now,
            last: now,
        }
    }

    fn rate(&self, events: u64) -> f64 {
        events as f64 / self.start.elapsed().as_secs_f64().max(1e-3)
    }

    fn tick(&mut self, events: u64) {
        if self.last.elapsed() >= Self::EVERY {
            self.last = std::time::Instant::now();
            eprintln!(
                "export: {events} events so far, {:.0} events/s",
                self.rate(events)
            );
        }
    }

    fn finish(&self, events: u64, bytes: u64, output: Option<&std::path::Path>) {
        let to = output.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
        eprintln!(
            "export: {events} events, {bytes} bytes to {to} in {:.1} s ({:.0} events/s)",
            self.start.elapsed().as_secs_f64(),
            self.rate(events)
        );
    }
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
