//! `baseline-axum`: the machine's limit for HTTP ingest, for `bench/run`.
//!
//! A bare axum server that parses a JSON event body (one event, or an array of them)
//! into plain structs and answers 201. No validation beyond the JSON shape, no
//! authentication, no store: what The Eye's ingest is compared against.
//!
//! With `--redis-url`, every request also appends its events to a Redis Stream (one
//! XADD per event, pipelined within a request), the limit of the Redis-mode ingest.
//!
//! # Layout
//!
//! One file: the wire structs, the handler, and `main`.

use std::net::SocketAddr;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "baseline-axum",
    about = "Bare axum parse-and-201 ingest baseline"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8100")]
    bind: SocketAddr,
    /// Also XADD each event to a stream on this Redis.
    #[arg(long)]
    redis_url: Option<String>,
    /// Stream key used with `--redis-url`.
    #[arg(long, default_value = "baseline:events")]
    stream: String,
}

/// `data` of any event type, as plain optional fields.
#[derive(Debug, Deserialize, Serialize)]
struct Data {
    host: String,
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    element: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    form: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One event as sent on the wire.
#[derive(Debug, Deserialize, Serialize)]
struct RawEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<uuid::Uuid>,
    session_id: String,
    category: String,
    name: String,
    data: Data,
    timestamp: String,
}

/// A request body: one event or a batch.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Body {
    One(RawEvent),
    Many(Vec<RawEvent>),
}

#[derive(Clone)]
struct AppState {
    redis: Option<ConnectionManager>,
    stream: String,
}

async fn ingest(State(state): State<AppState>, Json(body): Json<Body>) -> StatusCode {
    let Some(mut conn) = state.redis else {
        return StatusCode::CREATED;
    };
    let events = match body {
        Body::One(e) => vec![e],
        Body::Many(v) => v,
    };
    let mut pipe = redis::pipe();
    for e in &events {
        let Ok(json) = serde_json::to_string(e) else {
            return StatusCode::INTERNAL_SERVER_ERROR;
        };
        pipe.cmd("XADD")
            .arg(&state.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(2_000_000)
            .arg("*")
            .arg("m")
            .arg(json)
            .ignore();
    }
    match pipe.query_async::<()>(&mut conn).await {
        Ok(()) => StatusCode::CREATED,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let redis = match &args.redis_url {
        Some(url) => {
            let client = redis::Client::open(url.as_str()).context("redis url")?;
            Some(
                ConnectionManager::new(client)
                    .await
                    .context("connecting to redis")?,
            )
        }
        None => None,
    };
    let app = Router::new()
        .route("/events", post(ingest))
        .with_state(AppState {
            redis,
            stream: args.stream.clone(),
        });
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    eprintln!(
        "baseline-axum listening on {} (redis: {})",
        listener.local_addr()?,
        args.redis_url.is_some()
    );
    axum::serve(listener, app).await?;
    Ok(())
}
