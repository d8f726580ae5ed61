//! The SDK's own throughput: N events from C concurrent tasks, delivered in batches.
//! Prints events per second, requests made and the delivery report; exits 1 when
//! anything was not delivered.
//!
//! ```sh
//! EYE_API_KEY=... cargo run --release -p eye-examples --bin load -- --events 100000 --concurrency 8
//! ```
//!
//! With `EYE_OUTBOX_DIR` set, every event goes through an outbox on disk (and a run
//! with `--events 0` delivers what an earlier run left there).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use eye_core::Event;
use eye_examples::{Settings, print_report};

/// Sends many events through one client and measures delivery.
#[derive(Debug, Parser)]
struct Args {
    /// Events to send.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Concurrent tasks calling `track`.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Events per request.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Longest the final shutdown may take to deliver, in seconds (with an outbox,
    /// what is left stays there for the next run).
    #[arg(long, default_value_t = 60)]
    shutdown_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let settings = Settings::from_env();
    let client = settings
        .sender()
        .batch_size(args.batch_size)
        .max_in_flight(args.in_flight)
        .buffer_capacity(args.batch_size * 20)
        .flush_interval(Duration::from_millis(50))
        .build()?;
    let concurrency = args.concurrency.max(1);
    println!(
        "sending {} events from {concurrency} tasks to {} (batches of {}, {} in flight)",
        args.events, settings.url, args.batch_size, args.in_flight
    );

    let run = chrono::Utc::now().format("%H%M%S%3f").to_string();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..concurrency {
        let client = client.clone();
        let run = run.clone();
        let n = args.events / concurrency + usize::from(task < args.events % concurrency);
        tasks.spawn(async move {
            for i in 0..n {
                let session = format!("load-{run}-{task}-{}", i % 100);
                let event = Event::page_view(&session, "load.example", "/products")?;
                // Waits for room in the buffer instead of dropping: back-pressure.
                client.track_wait(event).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a sending task panicked")??;
    }
    let tracked_in = started.elapsed();
    let report = client
        .shutdown(Duration::from_secs(args.shutdown_timeout))
        .await;
    let elapsed = started.elapsed();
    let stats = client.stats();

    let secs = elapsed.as_secs_f64();
    println!(
        "tracked {} events in {:.2} s; all settled after {:.2} s",
        stats.tracked,
        tracked_in.as_secs_f64(),
        secs
    );
    println!(
        "{:.0} events/s delivered, {} requests ({} retried)",
        report.delivered as f64 / secs,
        stats.requests,
        stats.retried
    );
    print_report(&report);
    Ok(
        if report.is_complete() && report.delivered >= args.events as u64 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
