//! The command line: `serve` (default), `worker`, `replay-dead-letters`, `erase`,
//! `export`, `migrate`, `apps`, `schema`, `openapi`. Parsing and dispatch only: what `serve` and `worker`
//! start is [`crate::wiring`]'s.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::{create_app_with_key, create_publishable_app, parse_origin};
use crate::config::{ServeConfig, StoreConfig};
use crate::export::ExportFormat;
use crate::store::{Retention, Scopes};
use crate::wiring;

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
    /// Erase a session for good: its events, session row, errors-log entries and dead
    /// letters; its events that arrive later are dropped for 30 days. Prints what was
    /// removed as JSON.
    Erase(Box<EraseArgs>),
    /// Export every event matching the filters (those of `GET /events`) as NDJSON or
    /// CSV, newest first, reading the store directly; the same bytes as
    /// `GET /events/export`. Progress and a summary go to stderr.
    Export(Box<ExportArgs>),
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

/// `erase`: the session, and the settings that say where the store and the dead
/// letters are (the same flags and `EYE_*` variables as `serve`).
#[derive(Debug, Args)]
pub struct EraseArgs {
    /// The session id to erase.
    #[arg(long)]
    pub session: String,
    /// Where the store, the journal and Redis are.
    #[command(flatten)]
    pub config: ServeConfig,
}

/// `export`: the format, the filters of `GET /events`, where to write, and the store.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format: `ndjson` (one event's JSON per line) or `csv` (a header row,
    /// then one row per event).
    #[arg(long, value_enum, default_value_t = ExportFormat::Ndjson)]
    pub format: ExportFormat,
    /// Only this session's events.
    #[arg(long)]
    pub session_id: Option<String>,
    /// Only this category (`page_interaction`, `form_interaction`).
    #[arg(long)]
    pub category: Option<String>,
    /// Only this name (`page_view`, `cta_click`, `submit`).
    #[arg(long)]
    pub name: Option<String>,
    /// Only events sent by this application.
    #[arg(long)]
    pub application: Option<String>,
    /// Earliest instant included: a date (its first microsecond) or a date-time.
    #[arg(long)]
    pub start_time: Option<String>,
    /// Latest instant included: a date (the whole day) or a date-time.
    #[arg(long)]
    pub end_time: Option<String>,
    /// Write to FILE instead of stdout. The export goes to a temporary file beside it
    /// (`.FILE.partial`), renamed to FILE only once complete: a failed or interrupted
    /// export leaves no partial file, and an existing FILE stays as it was.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// The database.
    #[command(flatten)]
    pub store: StoreConfig,
}

impl ExportArgs {
    /// The filters as URL query pairs, for the query model's own parser (the same
    /// rules and messages as `GET /events`).
    pub fn filter_pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("session_id", &self.session_id),
            ("category", &self.category),
            ("name", &self.name),
            ("application", &self.application),
            ("start_time", &self.start_time),
            ("end_time", &self.end_time),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

/// Where the `apps` commands find the database. Global within `apps`, so both
/// `apps --database-url X create shop` and `apps create shop --database-url X` work.
#[derive(Debug, Clone, Args)]
pub struct AppsStore {
    /// Database URL: `sqlite://path.db` (the default; the file is created when
    /// missing) or `postgres://user@host:5432/db` (the database must exist; several
    /// machines may share it). May hold a password: never shown or logged.
    #[arg(
        long,
        env = "EYE_DATABASE_URL",
        default_value = "sqlite://eye.db",
        global = true,
        hide_env_values = true
    )]
    pub database_url: String,
}

/// `apps` subcommands.
#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Register an application; prints its new API key alone on stdout.
    ///
    /// With `--publishable` the key is for the browser tracker (eye.js): public by
    /// design (`eye_pk_...`), it may only send events, only from pages of the given
    /// `--origin`s, and can read nothing.
    Create {
        /// Unique name, recorded on every event it sends.
        name: String,
        /// What the key may do (a publishable key: ingest only).
        #[arg(long, value_enum, default_value_t = ScopeArg::Ingest, conflicts_with = "publishable")]
        scope: ScopeArg,
        /// A publishable key for web pages (eye.js) instead of a secret key.
        #[arg(long, requires = "origin")]
        publishable: bool,
        /// An origin whose pages may send with the publishable key, such as
        /// `https://shop.example` (scheme, host and port; repeat for several).
        #[arg(long = "origin", value_name = "ORIGIN", requires = "publishable",
              value_parser = parse_origin)]
        origin: Vec<String>,
        /// Most events per second it may send (a burst of one second's worth); past
        /// it, ingest answers 429 with `Retry-After`. Default: no limit.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rate_limit: Option<u32>,
    },
    /// List applications: name, scopes, state, rate limit, retention, and for a
    /// publishable key `publishable` and its origins.
    List,
    /// Replace a publishable key's origins (API nodes apply it within 5 s).
    SetOrigins {
        /// The application's name.
        name: String,
        /// The origins that may send with its key (repeat for several).
        #[arg(long = "origin", value_name = "ORIGIN", required = true,
              value_parser = parse_origin)]
        origin: Vec<String>,
    },
    /// Set or remove an application's rate limit (API nodes apply it within 5 s).
    SetRateLimit {
        /// The application's name.
        name: String,
        /// Events per second, or `none` to remove the limit.
        limit: RateLimitArg,
    },
    /// Set how long an application's events are kept: a number of days, `forever`, or
    /// `default` (as `--retention-days` says). Retention applies it at its next pass.
    SetRetention {
        /// The application's name.
        name: String,
        /// Days, `forever` or `default`.
        retention: RetentionArg,
    },
    /// Revoke an application's key (its events stay).
    Revoke {
        /// The application's name.
        name: String,
    },
}

/// A rate limit on the command line: events per second, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitArg(pub Option<u32>);

impl std::str::FromStr for RateLimitArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("none") {
            return Ok(Self(None));
        }
        match s.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Self(Some(n))),
            _ => Err(format!(
                "`{s}` is not a positive number of events per second or `none`"
            )),
        }
    }
}

/// An application's retention on the command line: days, `forever` or `default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionArg(pub Retention);

impl std::str::FromStr for RetentionArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "default" => Ok(Self(Retention::Default)),
            "forever" | "none" => Ok(Self(Retention::Forever)),
            _ => match s.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Self(Retention::Days(n))),
                _ => Err(format!(
                    "`{s}` is not a positive number of days, `forever` or `default`"
                )),
            },
        }
    }
}

/// Scopes as the CLI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// Send events.
    Ingest,
    /// Read events.
    Query,
    /// Erase data (`DELETE /sessions/{id}`).
    Admin,
    /// Every scope: ingest, query and admin.
    All,
}

impl From<ScopeArg> for Scopes {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::Ingest => Scopes::INGEST_ONLY,
            ScopeArg::Query => Scopes::QUERY_ONLY,
            ScopeArg::Admin => Scopes::ADMIN_ONLY,
            ScopeArg::All => Scopes::ALL,
        }
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => wiring::serve(cli.serve).await,
        Some(Command::Serve(config)) => wiring::serve(*config).await,
        Some(Command::Worker(config)) => wiring::run_worker(*config).await,
        Some(Command::ReplayDeadLetters(config)) => wiring::replay_dead_letters(*config).await,
        Some(Command::Erase(args)) => wiring::erase(&args.session, &args.config).await,
        Some(Command::Export(args)) => wiring::export(&args).await,
        Some(Command::Migrate(store)) => {
            wiring::open_store_url(&store.database_url).await?;
            eprintln!(
                "migrations applied to {}",
                wiring::redact(&store.database_url)
            );
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
    let store = wiring::open_store_url(&store.database_url).await?;
    match command {
        AppsCommand::Create {
            name,
            scope,
            publishable,
            origin,
            rate_limit,
        } => {
            let key = if publishable {
                create_publishable_app(&store, &name, dedup(origin)).await?
            } else {
                create_app_with_key(&store, &name, scope.into()).await?
            };
            if rate_limit.is_some() {
                store.set_rate_limit(&name, rate_limit).await?;
            }
            if publishable {
                eprintln!(
                    "created application `{name}` with a publishable key (ingest only, from its \
                     origins; safe to put in web pages):"
                );
            } else {
                eprintln!(
                    "created application `{name}` ({}); its key is shown once:",
                    Scopes::from(scope).to_db()
                );
            }
            println!("{key}");
        }
        AppsCommand::SetOrigins { name, origin } => {
            let origins = dedup(origin);
            store.set_origins(&name, &origins).await?;
            eprintln!("`{name}` takes events from {}", origins.join(" "));
        }
        AppsCommand::List => {
            for app in store.list_apps().await? {
                let state = match app.revoked_at {
                    Some(t) => format!("revoked {}", eye_core::format_timestamp(&t)),
                    None => "active".into(),
                };
                let rate = app
                    .rate_limit
                    .map_or_else(|| "unlimited".to_owned(), |n| format!("{n}/s"));
                match &app.origins {
                    Some(origins) => println!(
                        "{}\t{}\t{}\t{rate}\tretention {}\tpublishable\t{}",
                        app.name,
                        app.scopes.to_db(),
                        state,
                        app.retention,
                        origins.join(" ")
                    ),
                    None => println!(
                        "{}\t{}\t{}\t{rate}\tretention {}",
                        app.name,
                        app.scopes.to_db(),
                        state,
                        app.retention
                    ),
                }
            }
        }
        AppsCommand::SetRateLimit { name, limit } => {
            store.set_rate_limit(&name, limit.0).await?;
            match limit.0 {
                Some(n) => eprintln!("`{name}` may send {n} events per second"),
                None => eprintln!("`{name}` has no rate limit"),
            }
        }
        AppsCommand::SetRetention { name, retention } => {
            store.set_retention(&name, retention.0).await?;
            match retention.0 {
                Retention::Default => {
                    eprintln!("`{name}` keeps its events as --retention-days says")
                }
                Retention::Forever => eprintln!("`{name}` keeps its events forever"),
                Retention::Days(n) => eprintln!("`{name}` keeps its events {n} days"),
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

/// The origins in the order given, each once.
fn dedup(origins: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(origins.len());
    for o in origins {
        if !out.contains(&o) {
            out.push(o);
        }
    }
    out
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
    fn export_takes_the_filters_of_get_events_as_flags() {
        let cli = Cli::try_parse_from([
            "eye-server",
            "export",
            "--format",
            "csv",
            "--category",
            "page_interaction",
            "--start-time",
            "2022-01-01",
            "-o",
            "out.csv",
            "--database-url",
            "sqlite://x.db",
        ])
        .unwrap();
        let Some(Command::Export(args)) = cli.command else {
            panic!("not export")
        };
        assert_eq!(args.format, ExportFormat::Csv);
        assert_eq!(
            args.filter_pairs(),
            [
                ("category", "page_interaction"),
                ("start_time", "2022-01-01")
            ]
        );
        assert_eq!(
            args.output.as_deref(),
            Some(std::path::Path::new("out.csv"))
        );
        assert_eq!(args.store.database_url, "sqlite://x.db");
    }

    #[test]
    fn serve_flags_before_another_subcommand_are_refused() {
        let r = Cli::try_parse_from(["eye-server", "--database-url", "sqlite://x.db", "migrate"]);
        assert!(r.is_err(), "{r:?}");
        assert!(Cli::try_parse_from(["eye-server", "schema", "--log-format", "json"]).is_ok());
        assert!(Cli::try_parse_from(["eye-server", "--bind", "127.0.0.1:9000"]).is_ok());
    }

    #[test]
    fn publishable_needs_origins_and_origins_need_publishable() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        let ok = parse(&[
            "eye-server",
            "apps",
            "create",
            "web",
            "--publishable",
            "--origin",
            "HTTPS://Shop.Example/",
            "--origin",
            "http://localhost:3000",
        ])
        .unwrap();
        let Some(Command::Apps {
            command:
                AppsCommand::Create {
                    origin,
                    publishable,
                    ..
                },
            ..
        }) = ok.command
        else {
            panic!("not apps create")
        };
        assert!(publishable);
        assert_eq!(origin, ["https://shop.example", "http://localhost:3000"]);
        for bad in [
            &["eye-server", "apps", "create", "web", "--publishable"][..],
            &[
                "eye-server",
                "apps",
                "create",
                "web",
                "--origin",
                "https://a.example",
            ][..],
            &[
                "eye-server",
                "apps",
                "create",
                "web",
                "--publishable",
                "--origin",
                "a.example",
            ][..],
            &[
                "eye-server",
                "apps",
                "create",
                "web",
                "--publishable",
                "--scope",
                "query",
                "--origin",
                "https://a.example",
            ][..],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
