//! `bench-fill`: fills a store for `bench/run`'s deep-read figures, through the
//! store's own write path (so sessions and the counter tree are exact), much faster
//! than ingest over HTTP.
//!
//! `--timestamps identical` stamps every event with one instant (a batch import, a
//! client with a coarse clock): the shape that defeats the counter tree. `jittered`
//! spreads them over `--spread-secs` seconds. `--bot-share` of the events belong to
//! one session, `bot`; the rest rotate over `--sessions` sessions `session-00000`...
//! Event types rotate (page_view, cta_click, form submit); ids are random (UUIDv4), so
//! events at one instant are ordered by id in no relation to their writing order.
//!
//! # Layout
//!
//! One file: the command line and the write loop.

use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Utc};
use clap::{Parser, ValueEnum};
use eye_core::Event;
use eye_server::message::{AcceptedEvent, Message};
use eye_server::store::Store;
use rand::Rng;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Timestamps {
    Identical,
    Jittered,
}

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "bench-fill",
    about = "Fill a store for the deep-read benchmark"
)]
struct Args {
    /// The store (`sqlite://path.db` or `postgres://...`).
    #[arg(long)]
    database_url: String,
    /// Events to write.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// How event timestamps are spread.
    #[arg(long, value_enum, default_value_t = Timestamps::Identical)]
    timestamps: Timestamps,
    /// With `jittered`: the seconds the timestamps are spread over.
    #[arg(long, default_value_t = 86_400)]
    spread_secs: i64,
    /// The share of the events that belong to the session `bot` (0 to 1).
    #[arg(long, default_value_t = 0.21)]
    bot_share: f64,
    /// Sessions the other events rotate over.
    #[arg(long, default_value_t = 10_000)]
    sessions: u64,
    /// Events per write transaction.
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = Store::open(&args.database_url)
        .await
        .context("opening the store")?;
    let base: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .context("base instant")?;
    let mut rng = rand::rng();
    let bot_every = if args.bot_share > 0.0 {
        (1.0 / args.bot_share).max(1.0)
    } else {
        f64::INFINITY
    };
    let started = std::time::Instant::now();
    let mut batch = Vec::with_capacity(args.batch);
    let mut next_bot = 0.0f64;
    for i in 0..args.events {
        let session = if (i as f64) >= next_bot {
            next_bot += bot_every;
            "bot".to_owned()
        } else {
            format!("session-{:05}", i % args.sessions.max(1))
        };
        let at = match args.timestamps {
            Timestamps::Identical => base,
            Timestamps::Jittered => {
                base + Duration::microseconds(rng.random_range(0..args.spread_secs * 1_000_000))
            }
        };
        let event = match i % 3 {
            0 => Event::page_view(&session, "shop.example", "/"),
            1 => Event::cta_click(&session, "shop.example", "/", "buy"),
            _ => Event::form_submit(
                &session,
                "shop.example",
                "/signup",
                serde_json::json!({"first_name": "Ada"}),
            ),
        }
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .with_timestamp(at);
        batch.push(Message::EventV1(AcceptedEvent {
            id: Uuid::new_v4(),
            application: if i % 4 == 0 { "crm" } else { "shop" }.to_owned(),
            received_at: base,
            client_timestamp: None,
            event,
        }));
        if batch.len() == args.batch {
            store.write_batch(&batch).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.write_batch(&batch).await?;
    }
    store.close().await;
    eprintln!(
        "bench-fill: {} events in {:.1} s",
        args.events,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
