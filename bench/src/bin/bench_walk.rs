//! `bench-walk`: walks a listing by cursor over HTTP, for `bench/run`.
//!
//! Starts at `<url><path>?<query>&cursor=&page_size=N` and follows `next` links on one
//! keep-alive connection until there is none, or, with `--stop-at ROWS`, until that
//! many rows were read: then it prints the path and query of the `next` link (a cursor
//! at that depth, for wrk) and stops. Otherwise it prints one line of figures:
//!
//! ```text
//! walk rows 1000000 pages 10000 secs 12.3 rows_per_sec 81300 page_p50_ms 1.1 page_p99_ms 2.0
//! ```
//!
//! It checks the walk as it goes: rows strictly descending (or ascending, for a
//! session's timeline) by `(timestamp, id)`, and no id twice; it fails otherwise.
//!
//! # Layout
//!
//! One file: the command line, the walk and the figures.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use eye_core::{Page, StoredEvent};

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "bench-walk", about = "Walk a listing by cursor")]
struct Args {
    /// The server, `http://127.0.0.1:8000`.
    #[arg(long)]
    url: String,
    /// API key with the `query` scope.
    #[arg(long, env = "EYE_API_KEY")]
    key: String,
    /// The listing's path.
    #[arg(long, default_value = "/events")]
    path: String,
    /// Filters, as a query string (`category=page_interaction`).
    #[arg(long, default_value = "")]
    query: String,
    /// Rows per page.
    #[arg(long, default_value_t = 100)]
    page_size: u32,
    /// Stop after this many rows and print the next link's path and query.
    #[arg(long)]
    stop_at: Option<u64>,
    /// The listing is oldest first (a session's timeline).
    #[arg(long)]
    ascending: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let sep = if args.query.is_empty() { "" } else { "&" };
    let mut url = format!(
        "{}{}?{}{sep}page_size={}&cursor=",
        args.url, args.path, args.query, args.page_size
    );
    let mut seen: HashSet<uuid::Uuid> = HashSet::new();
    let mut last: Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)> = None;
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut rows = 0u64;
    loop {
        let t0 = Instant::now();
        let resp = http.get(&url).bearer_auth(&args.key).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        if !status.is_success() {
            bail!("{url}: {status}: {}", String::from_utf8_lossy(&body));
        }
        let page: Page<StoredEvent> = serde_json::from_slice(&body).context("decoding a page")?;
        for e in &page.results {
            let key = (e.timestamp, e.id);
            if let Some(prev) = last {
                let in_order = if args.ascending {
                    key > prev
                } else {
                    key < prev
                };
                if !in_order {
                    bail!("out of order after {rows} rows: {prev:?} then {key:?}");
                }
            }
            if !seen.insert(e.id) {
                bail!("event {} seen twice", e.id);
            }
            last = Some(key);
            rows += 1;
        }
        let Some(next) = page.next else { break };
        if args.stop_at.is_some_and(|n| rows >= n) {
            let u = reqwest::Url::parse(&next)?;
            println!("{}?{}", u.path(), u.query().unwrap_or_default());
            return Ok(());
        }
        url = next;
    }
    if args.stop_at.is_some() {
        bail!("the listing ended after {rows} rows");
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "walk rows {rows} pages {} secs {secs:.2} rows_per_sec {:.0} page_p50_ms {:.2} page_p99_ms {:.2}",
        latencies.len(),
        rows as f64 / secs,
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}
