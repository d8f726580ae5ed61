//! The Eye's server: ingest, queue, store and query in one binary.
//!
//! Applications (trusted clients with API keys) `POST /events`; each event is
//! validated at the edge with [`eye_core`], then handed to a [`queue::Queue`]. In the
//! default embedded mode the queue is an append-only journal on local disk that answers
//! once the events are appended and stores them in SQLite right after (or, with
//! `--ack-after store`, a group-commit writer that answers once they are committed); in
//! Redis mode it is a Redis Stream that workers drain into the store. Analysts query events, sessions and the errors log.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = eye_server::config::ServeConfig::for_tests("sqlite://eye.db");
//! let state = eye_server::cli::build_state(config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! eye_server::server::run(listener, state, eye_server::server::shutdown_signal()).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`cli`]: the command line (`serve`, `worker`, `migrate`, `apps`, `schema`) and
//!   [`cli::build_state`], which wires a configuration into an [`state::AppState`].
//! - [`config`]: typed, nested configuration from flags, `EYE_*` variables and `.env`.
//! - [`server`]: [`server::run`] (listener + shutdown future) and signal handling.
//! - [`routes`]: the HTTP API, one file per resource, and [`routes::router`].
//! - [`auth`]: API keys and request authentication.
//! - [`backoff`]: the exponential backoff of retry loops.
//! - [`error`]: [`error::ApiError`], the one error type handlers return.
//! - [`queue`]: the [`queue::Queue`] trait, its message format, and its three
//!   implementations: the journal (default), the group-commit writer and Redis.
//! - [`worker`]: the Redis worker that moves messages into the store.
//! - [`store`]: SQLite through sqlx: events, sessions, errors log, applications.
//! - [`clock`]: the injected clock.
//! - [`state`]: [`state::AppState`], what every handler shares.
//! - [`memory`]: giving freed heap memory back to the operating system when idle.
//! - [`metrics`]: the Prometheus recorder, `/metrics`, the HTTP metrics middleware and
//!   the metered queue.
//! - [`openapi`]: the OpenAPI 3.1 document, `/openapi.json`, `/docs`, `/schema`.
//! - [`web`]: the browsable API (HTML for browsers on the same URLs) and the dashboard.

pub mod auth;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod memory;
pub mod metrics;
pub mod openapi;
pub mod queue;
pub mod routes;
pub mod server;
pub mod state;
pub mod store;
pub mod web;
pub mod worker;
