//! The Eye's server: ingest, queue, store and query in one binary.
//!
//! Applications (trusted clients with API keys) `POST /events`; each event is
//! validated at the edge with [`eye_core`], then handed to a [`queue::Queue`]. In the
//! default embedded mode the queue is an append-only journal on local disk: ingest
//! answers once the events are appended, and a background task stores them right
//! after (with `--ack-after store`, a group-commit writer answers once they are
//! committed instead). In Redis mode it is a Redis Stream that workers drain into the
//! store. Analysts query events, sessions and the errors log.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use clap::Parser;
//! let cli = eye_server::cli::Cli::parse_from(["eye-server", "--database-url", "sqlite://eye.db"]);
//! eye_server::cli::run(cli).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Dependencies point one way, from the process down to the leaves:
//!
//! ```text
//! cli -> wiring -> server -> routes, web, openapi -> state, auth, error
//!                  wiring, routes -> export -> store
//!                  wiring, routes -> lifecycle -> store, queue (journal), streams
//!                  wiring -> queue, worker -> sink -> store -> message
//!                            queue (redis), worker -> streams
//!                  everything may record through metrics (a leaf)
//! ```
//!
//! - [`cli`]: the command line, parsing and dispatch only.
//! - [`wiring`]: process wiring. [`wiring::Node`] opens the store, builds the queue,
//!   starts a Redis worker when the process runs one, and owns the handles; `serve`,
//!   `worker` and `replay-dead-letters` live here.
//! - [`config`]: typed, nested configuration from flags, `EYE_*` variables and `.env`.
//! - [`server`]: [`server::run`] (listener + shutdown future) and signal handling.
//! - [`routes`]: the HTTP API, one file per resource, and [`routes::router`].
//! - [`web`]: the browsable API (HTML for browsers on the same URLs) and the dashboard.
//! - [`openapi`]: the OpenAPI 3.1 document, `/openapi.json`, `/docs`, `/schema`.
//! - [`state`]: [`state::AppState`], what every handler shares.
//! - [`auth`]: API keys and request authentication; its extractors work on any state
//!   that implements [`auth::HasAuthenticator`].
//! - [`error`]: [`error::ApiError`], the one error type handlers return.
//! - [`export`]: every event matching a query as NDJSON or CSV, page by page; what
//!   `GET /events/export` streams and `eye-server export` writes.
//! - [`queue`]: the [`queue::Queue`] trait (the producer side) and its
//!   implementations: the journal (default), the group-commit writer and Redis.
//! - [`worker`]: the Redis worker, the consumer side: moves stream entries into the
//!   store.
//! - [`streams`]: the Redis Streams plumbing the queue and the worker share (key
//!   names, the message field, the connection, dead-letter replay).
//! - [`sink`]: the one fallback rule for writing to a store that may fail.
//! - [`lifecycle`]: erasing a session everywhere (store and dead letters), and the
//!   retention task.
//! - [`store`]: the store: events, sessions, errors log, applications.
//! - [`message`]: the queue's message format, a leaf every side imports.
//! - [`metrics`]: metric names, the Prometheus recorder and the HTTP middleware; a
//!   leaf, so the store, queues and worker all record through it.
//! - [`ratelimit`]: per-application rate limits (GCRA; in Redis mode shared by every
//!   API node, with local leases so most requests cost no round trip).
//! - [`clock`]: the injected clock.
//! - `backoff`: the one exponential backoff of every retry loop.
//! - `memory`: giving freed heap memory back to the operating system when idle.

pub mod auth;
pub(crate) mod backoff;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod export;
pub mod lifecycle;
pub(crate) mod memory;
pub mod message;
pub mod metrics;
pub mod openapi;
pub mod queue;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod sink;
pub mod state;
pub mod store;
pub mod streams;
pub mod web;
pub mod wiring;
pub mod worker;
