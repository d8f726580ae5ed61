//! Store benchmark: fills an SQLite store through [`Store::write_batch`] and measures
//! every query shape of the API.
//!
//! ```text
//! cargo run --release -p eye-server --example store_bench -- [EVENTS] [SESSIONS] [DB_PATH]
//! ```
//!
//! Defaults: 1,000,000 events over 10,000 sessions, in a temporary file. With
//! `STORE_BENCH_FILL_ONLY=1` it stops after filling (for profiling the write path);
//! with `STORE_BENCH_LOCAL_SESSIONS=1` each event goes to one of about 50 sessions
//! active around its time instead of a uniformly random one; with
//! `STORE_BENCH_SYNCHRONOUS=full` the store runs with `synchronous=FULL` (as a Redis
//! worker's does) instead of `NORMAL`. Events get
//! UUIDv7 ids and are written in 1,000-event transactions (as the embedded queue's group
//! commit does), spread over 30 days, 60% page views, 30% CTA clicks, 10% form submits,
//! 80% from application `shop` and 20% from `crm`. Prints the write rate, then p50 and
//! p99 of each query shape over many runs with random parameters. A benchmark measures;
//! it asserts nothing.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use eye_core::{Event, EventQuery, Pagination};
use eye_server::message::{AcceptedEvent, Message};
use eye_server::store::{Store, Synchronous};
use uuid::Uuid;

/// Events per transaction.
const BATCH: usize = 1000;
/// Runs of each query shape.
const RUNS: usize = 300;
/// The span the timestamps cover.
const SPAN_SECS: i64 = 30 * 86_400;

/// SplitMix64: a small deterministic generator, so every run measures the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap()
}

fn session_name(i: u64) -> String {
    format!("session-{i:05}")
}

/// Event `i` of `total`: time-ordered with jitter, random type and application. The
/// session is uniformly random over all sessions (every session spans the whole 30
/// days: the worst case for the session index), or with `local` one of about 50
/// sessions active around that time, as real visits are.
fn make_event(rng: &mut Rng, i: u64, total: u64, sessions: u64, local: bool) -> Message {
    let micros = (i as i128 * SPAN_SECS as i128 * 1_000_000 / total.max(1) as i128) as i64
        + rng.below(60_000_000) as i64;
    let at = start() + chrono::Duration::microseconds(micros);
    let session = if local {
        let centre = i * sessions / total.max(1);
        session_name((centre + rng.below(50)).min(sessions - 1))
    } else {
        session_name(rng.below(sessions))
    };
    let path = format!("/products/{}", rng.below(500));
    let event = match rng.below(10) {
        0..=5 => Event::page_view(&session, "shop.example.com", &path),
        6..=8 => Event::cta_click(&session, "shop.example.com", &path, "buy button"),
        _ => Event::form_submit(
            &session,
            "shop.example.com",
            "/checkout",
            serde_json::json!({"email": "someone@example.com", "plan": "pro"}),
        ),
    }
    .unwrap()
    .with_timestamp(at);
    Message::EventV1(AcceptedEvent {
        client_timestamp: None,
        id: Uuid::now_v7(),
        application: if rng.below(5) == 0 { "crm" } else { "shop" }.to_owned(),
        received_at: at,
        event,
    })
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`:
/// unlike wall time it does not depend on what else the machine is running.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at `) `.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line: 0-based 11 and 12 here.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Nanoseconds all of this process's threads have spent on a CPU (the first field of
/// each `/proc/self/task/*/schedstat`). On a busy machine wall-clock latency includes
/// waiting for a core; on-CPU time is what the query itself cost.
fn on_cpu() -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `f` [`RUNS`] times (after a few warm-up runs) and prints p50 and p99.
async fn measure<F, Fut>(name: &str, mut f: F)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    for i in 0..10 {
        f(i).await;
    }
    let mut times = Vec::with_capacity(RUNS);
    let mut cpu = Vec::with_capacity(RUNS);
    let mut rows = 0;
    for i in 0..RUNS as u64 {
        let c = on_cpu();
        let t = Instant::now();
        rows += f(i + 10).await;
        times.push(t.elapsed());
        cpu.push(on_cpu().saturating_sub(c));
    }
    times.sort();
    cpu.sort();
    println!(
        "{name:<34} p50 {:>6.3} ms  p99 {:>6.3} ms  max {:>6.3} ms | on-CPU p50 {:>6.3} p99 {:>6.3} ms | {:.0} rows/run",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(*times.last().unwrap()),
        ms(percentile(&cpu, 0.5)),
        ms(percentile(&cpu, 0.99)),
        rows as f64 / RUNS as f64
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let total: u64 = args.first().map_or(Ok(1_000_000), |s| s.parse())?;
    let sessions: u64 = args.get(1).map_or(Ok(10_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let path = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| dir.path().join("bench.db").display().to_string());
    let synchronous = match std::env::var("STORE_BENCH_SYNCHRONOUS").as_deref() {
        Ok("full") => Synchronous::Full,
        _ => Synchronous::Normal,
    };
    println!("synchronous={synchronous:?}");
    // A `postgres://` URL in place of the path benchmarks PostgreSQL instead.
    let url = if eye_server::store::is_postgres(&path) {
        path.clone()
    } else {
        format!("sqlite://{path}")
    };
    let store = Store::open_with(&url, synchronous).await?;

    let local = std::env::var_os("STORE_BENCH_LOCAL_SESSIONS").is_some();
    let existing = store.total_events().await?;
    if existing == 0 {
        println!(
            "filling {total} events over {sessions} sessions ({}) into {path}",
            if local {
                "about 50 active at a time"
            } else {
                "uniformly random"
            }
        );
        let mut rng = Rng(42);
        let mut write_time = Duration::ZERO;
        let mut window = Duration::ZERO;
        let mut i = 0u64;
        let mut cpu_in_writes = Duration::ZERO;
        while i < total {
            let n = (total - i).min(BATCH as u64);
            let batch: Vec<Message> = (i..i + n)
                .map(|j| make_event(&mut rng, j, total, sessions, local))
                .collect();
            let t = Instant::now();
            let cpu = cpu_time();
            let outcome = store.write_batch(&batch).await?;
            let took = t.elapsed();
            cpu_in_writes += cpu_time().saturating_sub(cpu);
            assert_eq!(outcome.inserted, n);
            write_time += took;
            window += took;
            i += n;
            if i.is_multiple_of(200_000) {
                println!(
                    "  {:>8} rows: {:>8.0} rows/s over the last 200k",
                    i,
                    200_000.0 / window.as_secs_f64()
                );
                window = Duration::ZERO;
            }
        }
        println!(
            "write: {total} rows in {:.1} s of write_batch time: {:.0} rows/s ({} rows per transaction)",
            write_time.as_secs_f64(),
            total as f64 / write_time.as_secs_f64(),
            BATCH
        );
        println!(
            "write CPU time (user + system): {:.1} s, {:.0} rows per CPU-second",
            cpu_in_writes.as_secs_f64(),
            total as f64 / cpu_in_writes.as_secs_f64()
        );
    } else {
        println!("reusing {path} with {existing} events");
    }
    let size = store.store_size().await?;
    println!(
        "database file: {:.1} MiB",
        size.database_bytes as f64 / 1_048_576.0
    );

    if std::env::var_os("STORE_BENCH_FILL_ONLY").is_some() {
        store.close().await;
        return Ok(());
    }

    let mut rng = Rng(7);
    let mut session = move || session_name(rng.below(sessions));
    let mut rng = Rng(9);
    let mut day = move || {
        let d = rng.below(29) as i64;
        (
            start() + chrono::Duration::days(d),
            start() + chrono::Duration::days(d + 1) - chrono::Duration::microseconds(1),
        )
    };
    let s = &store;
    let rows = |r: (u64, Vec<eye_core::StoredEvent>)| r.1.len();

    println!("queries (page size 10, {RUNS} runs each):");
    measure("session filter, page 1", |_| {
        let q = EventQuery::new().session(session());
        async move { rows(s.query_events(&q).await.unwrap()) }
    })
    .await;
    measure("category filter, page 1", |i| {
        let c = if i % 2 == 0 {
            "page_interaction"
        } else {
            "form_interaction"
        };
        let q = EventQuery::new().category(c);
        async move { rows(s.query_events(&q).await.unwrap()) }
    })
    .await;
    measure("category+name filter, page 1", |_| {
        let q = EventQuery::new()
            .category("page_interaction")
            .name("cta_click");
        async move { rows(s.query_events(&q).await.unwrap()) }
    })
    .await;
    measure("application filter, page 1", |_| {
        let q = EventQuery::new().application("crm");
        async move { rows(s.query_events(&q).await.unwrap()) }
    })
    .await;
    measure("time range (1 day), page 1", |_| {
        let (a, b) = day();
        let q = EventQuery::new().start_time(a).end_time(b);
        async move { rows(s.query_events(&q).await.unwrap()) }
    })
    .await;
    measure("time range + category, page 1", |_| {
        let (a, b) = day();
        let q = EventQuery::new()
            .start_time(a)
            .end_time(b)
            .category("form_interaction");
        async move { rows(s.query_events(&q).await.unwrap()) }
    })
    .await;
    measure("session + category + time range", |_| {
        let (a, b) = day();
        let q = EventQuery::new()
            .session(session())
            .category("page_interaction")
            .start_time(a - chrono::Duration::days(10))
            .end_time(b);
        async move { rows(s.query_events(&q).await.unwrap()) }
    })
    .await;
    measure("page 1", |_| {
        let q = EventQuery::new();
        async move { rows(s.query_events(&q).await.unwrap()) }
    })
    .await;
    measure("page 10,000", |_| {
        let q = EventQuery::new().page(10_000);
        async move { rows(s.query_events(&q).await.unwrap()) }
    })
    .await;
    measure("category filter, page 10,000", |_| {
        let q = EventQuery::new().category("page_interaction").page(10_000);
        async move { rows(s.query_events(&q).await.unwrap()) }
    })
    .await;
    measure("session events, page 1", |_| {
        let id = session();
        async move { rows(s.session_events(&id, &Pagination::default()).await.unwrap()) }
    })
    .await;
    measure("count, all", |_| async move {
        s.count_events(&EventQuery::new()).await.unwrap() as usize
    })
    .await;
    measure("count, category", |_| async move {
        let q = EventQuery::new().category("page_interaction");
        s.count_events(&q).await.unwrap() as usize
    })
    .await;
    measure("count, time range (1 day)", |_| {
        let (a, b) = day();
        let q = EventQuery::new().start_time(a).end_time(b);
        async move { s.count_events(&q).await.unwrap() as usize }
    })
    .await;
    measure("get event by id", |_| async move {
        usize::from(s.get_event(Uuid::now_v7()).await.unwrap().is_some())
    })
    .await;
    measure("totals by type", |_| async move {
        s.totals_by_type().await.unwrap().len()
    })
    .await;
    measure("events per hour (7 days)", |_| async move {
        let a = start();
        s.events_per_hour(a, a + chrono::Duration::days(7), None)
            .await
            .unwrap()
            .len()
    })
    .await;
    store.close().await;
    Ok(())
}
