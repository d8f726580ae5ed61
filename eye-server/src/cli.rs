//! The command line: `serve` (default), `worker`, `migrate`, `apps`, `schema`, `openapi`.

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::{Authenticator, create_app_with_key};
use crate::clock::SystemClock;
use crate::config::{AckAfter, ServeConfig, StoreConfig};
use crate::queue::Queue;

use crate::queue::embedded::{EmbeddedConfig, EmbeddedQueue};
use crate::queue::journal::{JournalConfig, JournalQueue};
use crate::queue::redis::{RedisQueue, RedisQueueConfig};
use crate::state::{AppState, Services};
use crate::store::{Scopes, Store};
use crate::worker::WorkerConfig;

/// The Eye: collects user web interactions from trusted applications.
#[derive(Debug, Parser)]
// Flags go after the subcommand they belong to: `eye-server --database-url X migrate`
// is refused rather than silently migrating the default database. (`--log-format` is
// global: it goes anywhere after the subcommand.)
#[command(
    name = "eye-server",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "EYE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings of the default `serve` command.
    #[command(flatten)]
    pub serve: ServeConfig,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for machines.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the background worker (the default).
    Serve(Box<ServeConfig>),
    /// Run a worker only: move events from Redis into the store (Redis mode).
    Worker(Box<ServeConfig>),
    /// Move every dead-lettered Redis message back onto the stream (Redis mode).
    ReplayDeadLetters(Box<ServeConfig>),
    /// Apply the database migrations and exit.
    Migrate(StoreConfig),
    /// Manage applications and their API keys.
    Apps {
        /// The database.
        #[command(flatten)]
        store: AppsStore,
        /// What to do.
        #[command(subcommand)]
        command: AppsCommand,
    },
    /// Print the JSON Schema of the event format.
    Schema,
    /// Print the OpenAPI 3.1 document of the HTTP API (what `GET /openapi.json` serves).
    Openapi,
}

/// Where the `apps` commands find the database. Global within `apps`, so both
/// `apps --database-url X create shop` and `apps create shop --database-url X` work.
#[derive(Debug, Clone, Args)]
pub struct AppsStore {
    /// SQLite database URL; the file is created when missing.
    #[arg(
        long,
        env = "EYE_DATABASE_URL",
        default_value = "sqlite://eye.db",
        global = true
    )]
    pub database_url: String,
}

/// `apps` subcommands.
#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Register an application; prints its new API key alone on stdout.
    Create {
        /// Unique name, recorded on every event it sends.
        name: String,
        /// What the key may do.
        #[arg(long, value_enum, default_value_t = ScopeArg::Ingest)]
        scope: ScopeArg,
    },
    /// List applications.
    List,
    /// Revoke an application's key (its events stay).
    Revoke {
        /// The application's name.
        name: String,
    },
}

/// Scopes as the CLI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// Send events.
    Ingest,
    /// Read events.
    Query,
    /// Both.
    All,
}

impl From<ScopeArg> for Scopes {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::Ingest => Scopes::INGEST_ONLY,
            ScopeArg::Query => Scopes::QUERY_ONLY,
            ScopeArg::All => Scopes::ALL,
        }
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(config)) => serve(*config).await,
        Some(Command::Worker(config)) => crate::worker::run_standalone(*config).await,
        Some(Command::ReplayDeadLetters(config)) => {
            let Some(url) = config.queue.redis_url.as_deref() else {
                anyhow::bail!("set --redis-url or EYE_REDIS_URL");
            };
            let keys = crate::queue::redis::Keys::new(&config.queue.redis_prefix);
            let moved = crate::queue::redis::replay_dead_letters(url, &keys).await?;
            eprintln!(
                "moved {moved} dead-lettered message(s) from {} back to {}",
                keys.dead, keys.stream
            );
            Ok(())
        }
        Some(Command::Migrate(store)) => {
            Store::open(&store.database_url).await?;
            eprintln!("migrations applied to {}", store.database_url);
            Ok(())
        }
        Some(Command::Apps { store, command }) => apps(&store, command).await,
        Some(Command::Schema) => {
            print!("{}", eye_core::event_schema_json());
            Ok(())
        }
        Some(Command::Openapi) => {
            print!("{}", crate::openapi::document_json());
            Ok(())
        }
    }
}

async fn apps(store: &AppsStore, command: AppsCommand) -> anyhow::Result<()> {
    let store = Store::open(&store.database_url).await?;
    match command {
        AppsCommand::Create { name, scope } => {
            let key = create_app_with_key(&store, &name, scope.into()).await?;
            eprintln!(
                "created application `{name}` ({}); its key is shown once:",
                Scopes::from(scope).to_db()
            );
            println!("{key}");
        }
        AppsCommand::List => {
            for app in store.list_apps().await? {
                let state = match app.revoked_at {
                    Some(t) => format!("revoked {}", eye_core::format_timestamp(&t)),
                    None => "active".into(),
                };
                println!("{}\t{}\t{}", app.name, app.scopes.to_db(), state);
            }
        }
        AppsCommand::Revoke { name } => {
            store.revoke_app(&name).await?;
            eprintln!("revoked application `{name}`");
        }
    }
    store.close().await;
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

/// Builds the queue the configuration asks for.
pub async fn make_queue(store: &Store, config: &ServeConfig) -> anyhow::Result<Arc<dyn Queue>> {
    if config.queue.redis_url.is_some() {
        let queue = RedisQueue::connect(RedisQueueConfig::from(&config.queue))
            .context("invalid Redis URL")?
            .with_store_check(store.clone());
        if config.no_worker {
            tracing::info!("Redis queue without a worker (--no-worker): run `eye-server worker`");
        } else {
            queue
                .start_worker(
                    store.clone(),
                    WorkerConfig::from_queue_config(&config.queue),
                )
                .await
                .context("starting the worker")?;
        }
        return Ok(Arc::new(queue));
    }
    let journal_dir = match config.queue.ack_after {
        AckAfter::Journal => config
            .queue
            .journal_dir
            .clone()
            .or_else(|| JournalQueue::default_dir(&config.store.database_url)),
        AckAfter::Store => None,
    };
    if let Some(dir) = journal_dir {
        let queue = JournalQueue::open(
            store.clone(),
            JournalConfig {
                dir,
                batch: config.queue.journal_batch,
                max_bytes: config.queue.max_journal_mib.saturating_mul(1024 * 1024),
                segment_bytes: crate::queue::journal::SEGMENT_BYTES,
                sync: config.sqlite_synchronous() == crate::store::Synchronous::Full,
            },
        )?;
        return Ok(Arc::new(queue));
    }
    if config.queue.ack_after == AckAfter::Journal {
        tracing::info!("in-memory database: no journal, events are acknowledged once stored");
    }
    Ok(Arc::new(EmbeddedQueue::start(
        store.clone(),
        EmbeddedConfig {
            commit_batch: config.queue.commit_batch,
            commit_interval: config.queue.commit_interval(),
            max_backlog: config.queue.max_backlog,
        },
    )))
}

/// Builds the application state for a configuration: opens the store (applying
/// migrations) and starts the queue.
pub async fn build_state(config: ServeConfig) -> anyhow::Result<AppState> {
    config.validate().map_err(anyhow::Error::msg)?;
    let store = Store::open_with(&config.store.database_url, config.sqlite_synchronous())
        .await
        .with_context(|| format!("opening the store at {}", config.store.database_url))?;
    let queue = crate::metrics::MeteredQueue::wrap(make_queue(&store, &config).await?);
    Ok(AppState::new(Services {
        queue,
        auth: Authenticator::new(store.clone(), config.http.insecure_no_auth),
        store,
        clock: Arc::new(SystemClock),
        config: Arc::new(config),
    }))
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let state = build_state(config).await?;
    let config = Arc::clone(&state.config);
    if config.http.insecure_no_auth {
        tracing::warn!(
            "authentication is DISABLED (--insecure-no-auth): anyone who can reach this port can send and read events"
        );
    } else {
        first_run(&state.store, &config).await?;
    }
    let listener = tokio::net::TcpListener::bind(config.http.bind)
        .await
        .with_context(|| format!("binding {}", config.http.bind))?;
    // Signal handlers go in before the "listening" line tells anyone we are ready.
    let shutdown = crate::server::shutdown_signal();
    tracing::info!(addr = %listener.local_addr()?, queue = state.queue.kind(), "The Eye is listening");
    let store = state.store.clone();
    crate::server::run(listener, state, shutdown).await?;
    store.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn apps_database_url_may_come_before_or_after_the_subcommand() {
        for args in [
            &[
                "eye-server",
                "apps",
                "--database-url",
                "sqlite://x.db",
                "list",
            ][..],
            &[
                "eye-server",
                "apps",
                "create",
                "shop",
                "--database-url",
                "sqlite://x.db",
            ][..],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let Some(Command::Apps { store, .. }) = cli.command else {
                panic!("not apps: {args:?}")
            };
            assert_eq!(store.database_url, "sqlite://x.db");
        }
    }

    #[test]
    fn serve_flags_before_another_subcommand_are_refused() {
        let r = Cli::try_parse_from(["eye-server", "--database-url", "sqlite://x.db", "migrate"]);
        assert!(r.is_err(), "{r:?}");
        assert!(Cli::try_parse_from(["eye-server", "schema", "--log-format", "json"]).is_ok());
        assert!(Cli::try_parse_from(["eye-server", "--bind", "127.0.0.1:9000"]).is_ok());
    }
}
