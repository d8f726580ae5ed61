//! `soak`: hours of mixed traffic against the real release binary, sampled every 10 s,
//! ending with a verdict (what `bench/soak` runs; see docs/development.md, "The soak run").
//!
//! It starts `eye-server` on a fresh SQLite file in its own directory (embedded mode:
//! the journal; Redis mode: a private `redis-server` with an append-only file fsynced
//! on every write, an API node `serve --no-worker` and a separate `eye-server worker`),
//! then sends, at a fixed moderate rate, for `--duration`:
//!
//! - events through the SDK (`eye-client`, `track`), 1 % of them invalid;
//! - single events and batches of 40 as raw HTTP, about 5 % of the batch items and a
//!   few single requests invalid (future timestamp, unknown name, missing field,
//!   wrong type, malformed JSON), each retried with the same ids on 429, 503 or a
//!   connection error until a 2xx or a 400;
//! - queries of every shape: `GET /events` with each filter and their combinations,
//!   pages deep and shallow, counts, `/events/{id}`, `/sessions/{id}` and its events,
//!   `/errors` with filters, refused queries (400), and the browser pages (dashboard
//!   and HTML views, HTTP Basic).
//!
//! In Redis mode the worker is killed (SIGKILL) and a new one started, and Redis is
//! killed and restarted on the same port and data, twice each along the way.
//!
//! Every `--sample-every` it writes a CSV row: RSS and open file descriptors of the
//! server (and worker and Redis), CPU seconds, the server's heap in use and the memory
//! SQLite holds in it (`eye_heap_in_use_bytes`, `eye_sqlite_memory_bytes` from
//! `/metrics`), journal, WAL and database size, the
//! queue backlog (`/readyz`), and the p99 latency of ingest and query requests in the
//! window. At the end it waits for the backlog to drain and judges:
//!
//! 1. every acknowledged event stored exactly once, checked on the counters a double
//!    store would break (the total, the per-type counters, each session's
//!    `event_count`, the per-minute counts of event time) against what the server
//!    acknowledged, plus a sample of acknowledged ids read back one by one;
//! 2. no unexpected answer (a 5xx, or a 4xx for a valid request);
//! 3. server memory and open fds flat after warm-up: the least-squares slope over the
//!    post-warm-up samples within the tolerances. Memory is judged as the heap in use
//!    (`eye_heap_in_use_bytes`) less what SQLite holds (`eye_sqlite_memory_bytes`):
//!    SQLite's page caches fill for as long as new pages are read (up to 32 MiB for
//!    the writer, 2 MiB for each reader), growth by design and bounded, and that bound
//!    is its own check (`--sqlite-mib-max`); RSS also holds what the allocator keeps
//!    after a peak, so it steps up at a heavy moment and stays without anything
//!    growing: its slope is reported, not judged;
//! 4. p99 stable: the median p99 of the last quarter within a factor of the second
//!    quarter's (or under a floor).
//!
//! It exits 1 when any of these fails.
//!
//! # Layout
//!
//! One file: command line, processes, traffic, sampler, verdict, `main`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use eye_client::{EyeClient, RetryPolicy, TrackError};
use eye_core::{Event, EventType};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "soak",
    about = "Mixed traffic against the release binary for a long time, sampled, with a verdict"
)]
struct Args {
    /// How long to send traffic (`90s`, `10m`, `1h`).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    duration: Duration,
    /// Queue mode.
    #[arg(long, value_enum, default_value_t = Mode::Embedded)]
    mode: Mode,
    /// Events per second, all sources together (SDK 45 %, raw singles 15 %, raw
    /// batches 40 %).
    #[arg(long, default_value_t = 600)]
    rate: u32,
    /// Query requests per second (JSON; the browser pages come on top, one a second).
    #[arg(long, default_value_t = 8)]
    query_rate: u32,
    /// The `eye-server` binary.
    #[arg(long, default_value = "target/release/eye-server")]
    server: PathBuf,
    /// Where the CSV and the verdict go (`soak-<mode>.csv`, `soak-<mode>.verdict.txt`).
    #[arg(long, default_value = "bench/results")]
    out_dir: PathBuf,
    /// Working directory for the database, journal, Redis and logs (default: a new
    /// one under /tmp, removed at the end unless `--keep`).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the working directory.
    #[arg(long)]
    keep: bool,
    /// Interval between samples.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    sample_every: Duration,
    /// Samples before this are warm-up, left out of the slopes (default: a fifth of
    /// the duration, at least 2 minutes).
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// Largest growth after warm-up of the server's heap in use less the memory SQLite
    /// holds, MiB per hour.
    #[arg(long, alias = "rss-mib-per-hour", default_value_t = 5.0)]
    memory_mib_per_hour: f64,
    /// Most memory SQLite may hold in the server at any sample, MiB (its page caches
    /// are bounded at 32 MiB for the writer and 4 x 2 MiB for the readers; schemas and
    /// statements come on top).
    #[arg(long, default_value_t = 48.0)]
    sqlite_mib_max: f64,
    /// Largest growth of the server's open file descriptors after warm-up, per hour.
    #[arg(long, default_value_t = 5.0)]
    fds_per_hour: f64,
    /// The last quarter's median p99 may be at most this many times the second
    /// quarter's...
    #[arg(long, default_value_t = 2.0)]
    p99_factor: f64,
    /// ...or under this many milliseconds.
    #[arg(long, default_value_t = 5.0)]
    p99_floor_ms: f64,
    /// Run nothing: judge the trends (RSS, fds, p99) of a CSV an earlier run wrote,
    /// with this command line's `--duration`, `--warmup` and tolerances.
    #[arg(long)]
    judge_csv: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The embedded journal (the default queue).
    Embedded,
    /// Redis Streams: API node, separate worker, private Redis.
    Redis,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Embedded => "embedded",
            Mode::Redis => "redis",
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("not a duration: {s}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("unit of {s} is not s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

// ------------------------------------------------------------------ processes ------

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process whose output goes to a log file; SIGKILLed on drop.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then up to `secs` for it to exit; SIGKILL after that.
    fn terminate(&mut self, secs: u64) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "[soak] {} did not exit within {secs}s; killing it",
            self.name
        );
        self.kill();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<File> {
    Ok(OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))?)
}

/// The server's binary with a clean environment (no `EYE_*` of the caller, no `.env`:
/// the working directory is `dir`).
fn eye(server: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(server);
    cmd.env_clear()
        .current_dir(dir)
        .env("EYE_LOG", "warn")
        .process_group(0);
    for var in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    cmd
}

struct Setup {
    mode: Mode,
    server: PathBuf,
    dir: PathBuf,
    db: PathBuf,
    port: u16,
    redis_port: u16,
}

impl Setup {
    fn database_url(&self) -> String {
        format!("sqlite://{}", self.db.display())
    }

    fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.redis_port)
    }

    fn redis_flags(&self) -> Vec<String> {
        vec![
            "--redis-url".into(),
            self.redis_url(),
            "--redis-prefix".into(),
            "soak".into(),
        ]
    }

    fn create_key(&self) -> anyhow::Result<String> {
        let out = eye(&self.server, &self.dir)
            .args(["apps", "create", "soak", "--scope", "all", "--database-url"])
            .arg(self.database_url())
            .output()
            .context("run eye-server apps create")?;
        if !out.status.success() {
            bail!(
                "apps create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    fn start_server(&self) -> anyhow::Result<Proc> {
        let mut cmd = eye(&self.server, &self.dir);
        cmd.args(["serve", "--bind", &format!("127.0.0.1:{}", self.port)])
            .arg("--database-url")
            .arg(self.database_url())
            // Every generator connects from 127.0.0.1.
            .args(["--max-connections-per-ip", "1024"]);
        if self.mode == Mode::Redis {
            cmd.args(self.redis_flags()).arg("--no-worker");
        }
        let log = log_file(&self.dir, "server")?;
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn eye-server serve")?;
        Ok(Proc {
            name: "eye-server serve",
            child,
        })
    }

    fn start_worker(&self) -> anyhow::Result<Proc> {
        let log = log_file(&self.dir, "worker")?;
        let child = eye(&self.server, &self.dir)
            .arg("worker")
            .arg("--database-url")
            .arg(self.database_url())
            .args(self.redis_flags())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn eye-server worker")?;
        Ok(Proc {
            name: "eye-server worker",
            child,
        })
    }

    /// A private `redis-server`: loopback, its own port and directory, an append-only
    /// file fsynced on every write, so a SIGKILL loses nothing it acknowledged.
    fn start_redis(&self) -> anyhow::Result<Proc> {
        let data = self.dir.join("redis");
        fs::create_dir_all(&data)?;
        let log = log_file(&self.dir, "redis")?;
        let child = Command::new("redis-server")
            .process_group(0)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.redis_port.to_string(),
            ])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&data)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .context("spawn redis-server (apt-get install redis-server)")?;
        let proc = Proc {
            name: "redis-server",
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pong = Command::new("redis-cli")
                .args(["-p", &self.redis_port.to_string(), "ping"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
                .unwrap_or(false);
            if pong {
                return Ok(proc);
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer PING within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What /proc says about a process.
#[derive(Debug, Clone, Copy, Default)]
struct ProcStat {
    rss_mib: f64,
    /// The anonymous part of the RSS (heap, stacks): RSS less the binary's and the
    /// libraries' mapped pages, which grow as code paths first run.
    anon_mib: f64,
    fds: u64,
    cpu_s: f64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let anon_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of /proc/PID/stat, 12 and 13 after `) `.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ProcStat {
        rss_mib: rss_kib / 1024.0,
        anon_mib: anon_kib / 1024.0,
        fds,
        cpu_s: ticks / clk_tck(),
    })
}

fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(path) else {
        return fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_bytes(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

fn file_bytes(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

// ------------------------------------------------------------------ the ledger -----

/// What the server acknowledged, kept the way the server's counters are: a double
/// store would make a counter exceed its entry here, a loss would make it fall short.
#[derive(Debug, Default)]
struct Ledger {
    total: u64,
    per_type: [u64; 3],
    per_session: HashMap<String, u64>,
    /// Events per minute of event time (minutes since the epoch).
    per_minute: BTreeMap<i64, u64>,
    /// Of those, the events in the last [`SHIFT_SECS`] of their minute: the server
    /// may store them in the next one (see [`SHIFT_SECS`]).
    near_minute_end: BTreeMap<i64, u64>,
    /// A sample of acknowledged ids, read back one by one at the end.
    sample: Vec<Uuid>,
}

fn type_index(t: EventType) -> usize {
    match t {
        EventType::PageView => 0,
        EventType::CtaClick => 1,
        EventType::FormSubmit => 2,
    }
}

impl Ledger {
    fn add(&mut self, m: &Meta, n: i64) {
        let add = |x: &mut u64| *x = x.saturating_add_signed(n);
        add(&mut self.total);
        add(&mut self.per_type[type_index(m.kind)]);
        add(self.per_session.entry(m.session.clone()).or_default());
        add(self.per_minute.entry(m.ts.timestamp() / 60).or_default());
        if m.ts.timestamp().rem_euclid(60) >= 60 - SHIFT_SECS {
            add(self
                .near_minute_end
                .entry(m.ts.timestamp() / 60)
                .or_default());
        }
        if n > 0 && self.total.is_multiple_of(997) {
            self.sample.push(m.id);
        }
    }

    fn merge(&mut self, other: Ledger) {
        self.total += other.total;
        for (a, b) in self.per_type.iter_mut().zip(other.per_type) {
            *a += b;
        }
        for (k, v) in other.per_session {
            *self.per_session.entry(k).or_default() += v;
        }
        for (k, v) in other.per_minute {
            *self.per_minute.entry(k).or_default() += v;
        }
        for (k, v) in other.near_minute_end {
            *self.near_minute_end.entry(k).or_default() += v;
        }
        self.sample.extend(other.sample);
    }
}

/// The SDK sends `Eye-Sent-At`, and the server moves those events' timestamps later
/// by the request's transit time (its receive time minus `sent_at`: milliseconds on
/// one machine, more under load or after a retry). An event generated in the last
/// moments of a minute may so be stored in the next. The per-minute check allows the
/// events of a minute's last `SHIFT_SECS` seconds to move on, and no other.
const SHIFT_SECS: i64 = 2;

/// One generated event: what the ledger needs.
#[derive(Debug, Clone)]
struct Meta {
    id: Uuid,
    kind: EventType,
    session: String,
    ts: DateTime<Utc>,
    valid: bool,
}

const HOSTS: [&str; 3] = ["shop.example", "www.example.com", "blog.example.org"];

/// Event `i` of a source: type `i % 3`, session `<prefix>-<i / 100>`, timestamped now.
fn meta(prefix: &str, i: u64, valid: bool) -> Meta {
    let kind = EventType::ALL[(i % 3) as usize];
    Meta {
        id: Uuid::now_v7(),
        kind,
        session: format!("{prefix}-{}", i / 100),
        ts: eye_core::truncate_to_micros(Utc::now()),
        valid,
    }
}

fn wire_ts(ts: DateTime<Utc>) -> String {
    ts.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// The raw JSON of an event; invalid ones in one of four ways (`i` picks which).
fn raw_json(m: &Meta, i: u64) -> Value {
    let host = HOSTS[(i % 3) as usize];
    let path = format!("/p/{}", i % 50);
    let data = match m.kind {
        EventType::PageView => json!({"host": host, "path": path}),
        EventType::CtaClick => json!({"host": host, "path": path, "element": "buy now"}),
        EventType::FormSubmit => {
            json!({"host": host, "path": path, "form": {"email": "a@b.example", "n": i}})
        }
    };
    let mut v = json!({
        "id": m.id,
        "session_id": m.session,
        "category": m.kind.category(),
        "name": m.kind.name(),
        "data": data,
        "timestamp": wire_ts(m.ts),
    });
    if !m.valid {
        match i % 4 {
            0 => v["timestamp"] = json!(wire_ts(m.ts + chrono::Duration::days(1))),
            1 => v["name"] = json!("page_veiw"),
            2 => {
                if let Some(d) = v["data"].as_object_mut() {
                    d.remove("host");
                }
            }
            _ => v["data"]["path"] = json!(42),
        }
    }
    v
}

fn sdk_event(m: &Meta, i: u64) -> Event {
    let host = HOSTS[(i % 3) as usize];
    let path = format!("/p/{}", i % 50);
    let e = match m.kind {
        EventType::PageView => Event::page_view(&m.session, host, &path),
        EventType::CtaClick => Event::cta_click(&m.session, host, &path, "buy now"),
        EventType::FormSubmit => {
            Event::form_submit(&m.session, host, &path, json!({"email": "a@b.example"}))
        }
    }
    .expect("a valid event");
    let ts = if m.valid {
        m.ts
    } else {
        m.ts + chrono::Duration::days(1)
    };
    e.with_id(m.id).with_timestamp(ts)
}

// ------------------------------------------------------------------ traffic --------

/// What every traffic task shares.
struct Shared {
    http: reqwest::Client,
    base: String,
    key: String,
    stop: AtomicBool,
    ledger: Mutex<Ledger>,
    /// Latencies (µs) of answered ingest and query requests since the last sample.
    ingest_lat: Mutex<Vec<u32>>,
    query_lat: Mutex<Vec<u32>>,
    /// Ingest answers that asked for a retry (429, 503) or connection errors.
    retries: AtomicU64,
    /// Answers no valid request should get (a 5xx other than 503, a 4xx for a valid
    /// event or query), or a batch result that does not match what was sent.
    unexpected: AtomicU64,
    unexpected_log: Mutex<Vec<String>>,
    /// Events whose fate is unknown: retries gave up, or an unexpected answer.
    unknown: AtomicU64,
    /// Invalid events refused as they should be.
    rejected: AtomicU64,
    recent_session: Mutex<String>,
    recent_id: Mutex<Option<Uuid>>,
    /// Gates on the requests in flight, so the end can wait for all of them.
    inflight: Arc<Semaphore>,
}

const INFLIGHT: u32 = 64;

impl Shared {
    fn unexpected(&self, what: String) {
        let n = self.unexpected.fetch_add(1, Ordering::Relaxed);
        if n < 50 {
            eprintln!("[soak] unexpected: {what}");
            self.unexpected_log.lock().expect("not poisoned").push(what);
        }
    }

    fn ack(&self, m: &Meta) {
        self.ledger.lock().expect("not poisoned").add(m, 1);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// POSTs `body` (the events `metas`, a batch when `batch`) until a final answer, the
/// same body (same ids) every time; books the outcome.
async fn post_events(sh: Arc<Shared>, body: String, metas: Vec<Meta>, batch: bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let url = format!("{}/events", sh.base);
    let valid = metas.iter().filter(|m| m.valid).count() as u64;
    loop {
        let t0 = Instant::now();
        let sent = sh
            .http
            .post(&url)
            .bearer_auth(&sh.key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let mut wait = Duration::from_millis(250);
        // A connection error: retried like a 503.
        if let Ok(resp) = sent {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let text = resp.text().await.unwrap_or_default();
            sh.ingest_lat
                .lock()
                .expect("not poisoned")
                .push(micros(t0.elapsed()));
            match status {
                201 | 400 => {
                    book(&sh, status, &text, &metas, batch);
                    return;
                }
                429 | 503 => {
                    if let Some(s) = retry_after {
                        wait = Duration::from_secs(s.min(2));
                    }
                }
                _ => {
                    sh.unexpected(format!("POST /events answered {status}: {text:.300}"));
                    sh.unknown.fetch_add(valid, Ordering::Relaxed);
                    return;
                }
            }
        }
        sh.retries.fetch_add(1, Ordering::Relaxed);
        if Instant::now() + wait > deadline {
            sh.unexpected(format!(
                "gave up on {} events after 5 minutes of retries",
                metas.len()
            ));
            sh.unknown.fetch_add(valid, Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

/// Books a final answer (201 or 400) to what was sent.
fn book(sh: &Shared, status: u16, text: &str, metas: &[Meta], batch: bool) {
    if !batch {
        let m = &metas[0];
        match (status, m.valid) {
            (201, true) => sh.ack(m),
            (400, false) => {
                sh.rejected.fetch_add(1, Ordering::Relaxed);
            }
            _ => sh.unexpected(format!(
                "single event (valid: {}) answered {status}: {text:.300}",
                m.valid
            )),
        }
        return;
    }
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let Some(results) = body["results"].as_array() else {
        sh.unexpected(format!(
            "batch answered {status} without results: {text:.300}"
        ));
        sh.unknown.fetch_add(metas.len() as u64, Ordering::Relaxed);
        return;
    };
    if results.len() != metas.len() {
        sh.unexpected(format!(
            "batch of {} got {} results",
            metas.len(),
            results.len()
        ));
    }
    for (m, r) in metas.iter().zip(results) {
        match (r["status"].as_str(), m.valid) {
            (Some("accepted"), true) if status == 201 => sh.ack(m),
            (Some("rejected"), false) => {
                sh.rejected.fetch_add(1, Ordering::Relaxed);
            }
            (s, v) => sh.unexpected(format!(
                "batch item (valid: {v}) came back {s:?} in a {status}"
            )),
        }
    }
}

/// Calls `tick(n)` `per_sec` times a second, every 20 ms, until stopped. The count
/// follows the clock, so a late wake-up is made up for: the rate stays the one asked.
async fn paced<F, Fut>(sh: &Shared, per_sec: f64, mut tick: F)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Instant::now();
    let mut n = 0u64;
    while !sh.stopped() {
        interval.tick().await;
        let due = (per_sec * start.elapsed().as_secs_f64()) as u64;
        while n < due && !sh.stopped() {
            tick(n).await;
            n += 1;
        }
    }
}

async fn raw_singles(sh: Arc<Shared>, per_sec: f64) {
    paced(&sh.clone(), per_sec, |i| {
        let sh = sh.clone();
        async move {
            let m = meta("raw", i, true);
            *sh.recent_session.lock().expect("not poisoned") = m.session.clone();
            *sh.recent_id.lock().expect("not poisoned") = Some(m.id);
            let body = raw_json(&m, i).to_string();
            let permit = sh.inflight.clone().acquire_owned().await.expect("open");
            tokio::spawn(async move {
                post_events(sh, body, vec![m], false).await;
                drop(permit);
            });
        }
    })
    .await;
}

const BATCH: u64 = 40;

async fn raw_batches(sh: Arc<Shared>, events_per_sec: f64) {
    paced(&sh.clone(), events_per_sec / BATCH as f64, |b| {
        let sh = sh.clone();
        async move {
            let metas: Vec<Meta> = (0..BATCH)
                .map(|k| {
                    let i = b * BATCH + k;
                    // Two of each 40 (5 %) invalid.
                    meta("batch", i, !(k == 7 || k == 23))
                })
                .collect();
            let items: Vec<Value> = metas
                .iter()
                .enumerate()
                .map(|(k, m)| raw_json(m, b * BATCH + k as u64 + b))
                .collect();
            let body = Value::Array(items).to_string();
            let permit = sh.inflight.clone().acquire_owned().await.expect("open");
            tokio::spawn(async move {
                post_events(sh, body, metas, true).await;
                drop(permit);
            });
        }
    })
    .await;
}

/// Invalid single events, and now and then a body that is not JSON at all.
async fn raw_invalid(sh: Arc<Shared>, per_sec: f64) {
    paced(&sh.clone(), per_sec, |i| {
        let sh = sh.clone();
        async move {
            let m = meta("invalid", i, false);
            let body = if i % 5 == 4 {
                "{\"session_id\": \"x\", not json".to_owned()
            } else {
                raw_json(&m, i).to_string()
            };
            let permit = sh.inflight.clone().acquire_owned().await.expect("open");
            tokio::spawn(async move {
                post_events(sh, body, vec![m], false).await;
                drop(permit);
            });
        }
    })
    .await;
}

/// The SDK's share: `track`, 1 % invalid (a future timestamp, refused by the server
/// and reported by the client). Returns what it tracked, by validity.
async fn sdk(sh: Arc<Shared>, client: EyeClient, per_sec: f64) -> (Ledger, u64, u64) {
    let mut tracked = Ledger::default();
    let (mut invalid, mut dropped) = (0u64, 0u64);
    paced(&sh.clone(), per_sec, |i| {
        let valid = i % 100 != 50;
        let m = meta("sdk", i, valid);
        match client.track(sdk_event(&m, i)) {
            Ok(_) if valid => tracked.add(&m, 1),
            Ok(_) => invalid += 1,
            Err(TrackError::BufferFull) => dropped += 1,
            Err(e) => sh.unexpected(format!("track: {e}")),
        }
        std::future::ready(())
    })
    .await;
    (tracked, invalid, dropped)
}

fn time_param(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The most recent acknowledged session and event id, for reads that should find them.
fn recent(sh: &Shared) -> (String, Uuid) {
    let session = sh.recent_session.lock().expect("not poisoned").clone();
    let id = sh
        .recent_id
        .lock()
        .expect("not poisoned")
        .unwrap_or_default();
    (session, id)
}

/// The query shapes, in turn: (path and query, browser page?, statuses that are fine).
fn query_shape(sh: &Shared, k: u64) -> (String, bool, &'static [u16]) {
    let (session, id) = recent(sh);
    let now = Utc::now();
    let minute_ago = time_param(now - chrono::Duration::seconds(60));
    let hour_ago = time_param(now - chrono::Duration::hours(1));
    let now = time_param(now);
    const OK: &[u16] = &[200];
    const OK_OR_404: &[u16] = &[200, 404];
    const REFUSED: &[u16] = &[400];
    match k % 20 {
        0 => ("/events?page_size=20".into(), false, OK),
        1 => (format!("/events?session_id={session}"), false, OK),
        2 => (
            "/events?category=page_interaction&page_size=50".into(),
            false,
            OK,
        ),
        3 => (
            "/events?name=cta_click&application=soak&page_size=10".into(),
            false,
            OK,
        ),
        4 => (
            format!("/events?start_time={minute_ago}&end_time={now}&page_size=100"),
            false,
            OK,
        ),
        5 => (
            format!(
                "/events?session_id={session}&category=page_interaction&start_time={hour_ago}&end_time={now}"
            ),
            false,
            OK,
        ),
        6 => ("/events?page=5&page_size=10".into(), false, OK_OR_404),
        7 => ("/events?page=400&page_size=10".into(), false, OK_OR_404),
        8 => ("/events?page_size=1".into(), false, OK),
        9 => (
            "/events?category=form_interaction&name=submit&page_size=1".into(),
            false,
            OK,
        ),
        10 => (format!("/events/{id}"), false, OK_OR_404),
        11 => (format!("/sessions/{session}"), false, OK_OR_404),
        12 => (
            format!("/sessions/{session}/events?page_size=50"),
            false,
            OK_OR_404,
        ),
        13 => ("/errors?page_size=10".into(), false, OK),
        14 => (
            format!("/errors?code=timestamp_in_future&application=soak&start_time={hour_ago}"),
            false,
            OK,
        ),
        15 => ("/events?page_size=abc".into(), false, REFUSED),
        16 => (
            "/events?name=page_view&name=cta_click".into(),
            false,
            REFUSED,
        ),
        17 => (
            format!("/events?application=soak&start_time={hour_ago}&page=3&page_size=25"),
            false,
            OK_OR_404,
        ),
        18 => ("/events?name=page_view&page_size=1000".into(), false, OK),
        _ => (
            format!("/events?start_time={hour_ago}&end_time={minute_ago}&page_size=1"),
            false,
            OK,
        ),
    }
}

/// The browser pages, in turn.
fn page_shape(sh: &Shared, k: u64) -> (String, bool, &'static [u16]) {
    let (session, id) = recent(sh);
    const OK: &[u16] = &[200];
    const OK_OR_404: &[u16] = &[200, 404];
    match k % 7 {
        0 => ("/".into(), true, OK),
        1 => ("/events".into(), true, OK),
        2 => ("/events?category=page_interaction&page=2".into(), true, OK),
        3 => (format!("/sessions/{session}"), true, OK_OR_404),
        4 => (format!("/events/{id}"), true, OK_OR_404),
        5 => ("/errors".into(), true, OK),
        _ => ("/".into(), true, OK),
    }
}

async fn get(sh: &Shared, path: &str, html: bool, ok: &[u16]) {
    let url = format!("{}{path}", sh.base);
    let req = if html {
        sh.http
            .get(&url)
            .basic_auth("soak", Some(&sh.key))
            .header("accept", "text/html")
    } else {
        sh.http.get(&url).bearer_auth(&sh.key)
    };
    let t0 = Instant::now();
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.bytes().await;
            sh.query_lat
                .lock()
                .expect("not poisoned")
                .push(micros(t0.elapsed()));
            // 503: the store was busy (or, in Redis mode, the API node's Redis was
            // down for the rate limiter): allowed, counted as a retry.
            if status == 503 {
                sh.retries.fetch_add(1, Ordering::Relaxed);
            } else if !ok.contains(&status) || body.is_err() {
                sh.unexpected(format!("GET {path} answered {status}"));
            }
        }
        Err(e) => {
            sh.retries.fetch_add(1, Ordering::Relaxed);
            if !sh.stopped() {
                eprintln!("[soak] GET {path}: {e}");
            }
        }
    }
}

async fn queries(sh: Arc<Shared>, per_sec: f64, pages: bool) {
    paced(&sh.clone(), per_sec, |k| {
        let sh = sh.clone();
        async move {
            let (path, html, ok) = if pages {
                page_shape(&sh, k)
            } else {
                query_shape(&sh, k)
            };
            // One at a time per task: a query's latency is its own, not a queue's.
            get(&sh, &path, html, ok).await;
        }
    })
    .await;
}

// ------------------------------------------------------------------ sampling -------

#[derive(Debug, Clone, Default)]
struct Sample {
    t_s: f64,
    server: ProcStat,
    worker: ProcStat,
    redis: ProcStat,
    heap_mib: Option<f64>,
    sqlite_mib: Option<f64>,
    journal_mib: f64,
    wal_mib: f64,
    db_mib: f64,
    backlog: Option<u64>,
    acked: u64,
    ingest_n: usize,
    ingest_p99_ms: Option<f64>,
    query_n: usize,
    query_p99_ms: Option<f64>,
    retries: u64,
    unexpected: u64,
    load1: f64,
    note: String,
}

const CSV_HEADER: &str = "t_s,server_rss_mib,server_anon_mib,server_fds,server_cpu_s,server_heap_mib,server_sqlite_mib,worker_rss_mib,worker_fds,redis_rss_mib,journal_mib,wal_mib,db_mib,backlog,acked_events,ingest_requests,ingest_p99_ms,query_requests,query_p99_ms,retries,unexpected,load1,note";

impl Sample {
    fn csv(&self) -> String {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_default();
        format!(
            "{:.0},{:.1},{:.1},{},{:.2},{},{},{:.1},{},{:.1},{:.2},{:.2},{:.1},{},{},{},{},{},{},{},{},{:.2},{}",
            self.t_s,
            self.server.rss_mib,
            self.server.anon_mib,
            self.server.fds,
            self.server.cpu_s,
            self.heap_mib.map(|v| format!("{v:.1}")).unwrap_or_default(),
            self.sqlite_mib
                .map(|v| format!("{v:.1}"))
                .unwrap_or_default(),
            self.worker.rss_mib,
            self.worker.fds,
            self.redis.rss_mib,
            self.journal_mib,
            self.wal_mib,
            self.db_mib,
            self.backlog.map(|b| b.to_string()).unwrap_or_default(),
            self.acked,
            self.ingest_n,
            opt(self.ingest_p99_ms),
            self.query_n,
            opt(self.query_p99_ms),
            self.retries,
            self.unexpected,
            self.load1,
            self.note,
        )
    }
}

fn p99_ms(mut v: Vec<u32>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let i = ((v.len() as f64) * 0.99).ceil() as usize;
    Some(f64::from(v[i.clamp(1, v.len()) - 1]) / 1000.0)
}

async fn backlog(sh: &Shared) -> Option<u64> {
    let resp = sh
        .http
        .get(format!("{}/readyz", sh.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let v: Value = resp.json().await.ok()?;
    v["backlog"].as_u64()
}

/// The server's memory gauges from its `/metrics`, MiB: the heap in use and the
/// memory SQLite holds (each `None` when absent).
async fn memory_gauges(sh: &Shared) -> (Option<f64>, Option<f64>) {
    let text = match sh
        .http
        .get(format!("{}/metrics", sh.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let gauge = |name: &str| {
        let bytes: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
            .trim()
            .parse()
            .ok()?;
        Some(bytes / 1048576.0)
    };
    (
        gauge("eye_heap_in_use_bytes"),
        gauge("eye_sqlite_memory_bytes"),
    )
}

fn load1() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

// ------------------------------------------------------------------ the verdict ----

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

struct Verdict {
    lines: Vec<String>,
    pass: bool,
}

impl Verdict {
    fn check(&mut self, ok: bool, what: String) {
        self.pass &= ok;
        self.lines
            .push(format!("{} {what}", if ok { "PASS" } else { "FAIL" }));
    }

    fn note(&mut self, what: String) {
        self.lines.push(format!("     {what}"));
    }
}

async fn count(sh: &Shared, query: &str) -> anyhow::Result<u64> {
    let url = format!("{}/events?page_size=1{query}", sh.base);
    for _ in 0..20 {
        let resp = sh.http.get(&url).bearer_auth(&sh.key).send().await?;
        if resp.status().as_u16() == 503 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let v: Value = resp.json().await?;
        return v["count"].as_u64().context("a count");
    }
    bail!("GET {url} kept answering 503")
}

/// Polls until the backlog is 0 and the total reaches `want` (bounded).
async fn drain(sh: &Shared, want: u64, limit: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + limit;
    loop {
        let total = count(sh, "").await.unwrap_or(0);
        let b = backlog(sh).await;
        if total >= want && b == Some(0) {
            // Let a batch in flight land before the counters are read.
            tokio::time::sleep(Duration::from_secs(2)).await;
            return Ok(total);
        }
        if Instant::now() > deadline {
            return Ok(total);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn stored_once(sh: &Shared, ledger: &Ledger, v: &mut Verdict) -> anyhow::Result<()> {
    let total = count(sh, "").await?;
    v.check(
        total == ledger.total,
        format!(
            "total: the server counts {total}, it acknowledged {}",
            ledger.total
        ),
    );
    for t in EventType::ALL {
        let n = count(sh, &format!("&category={}&name={}", t.category(), t.name())).await?;
        let want = ledger.per_type[type_index(t)];
        v.check(
            n == want,
            format!("per-type {t}: counted {n}, acknowledged {want}"),
        );
    }
    // Each session's event_count.
    let sessions: Vec<(String, u64)> = ledger
        .per_session
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    let mut wrong = Vec::new();
    let mut sum = 0u64;
    for chunk in sessions.chunks(8) {
        let answers = futures_util::future::join_all(chunk.iter().map(|(s, _)| async move {
            let resp = sh
                .http
                .get(format!("{}/sessions/{s}", sh.base))
                .bearer_auth(&sh.key)
                .send()
                .await
                .ok()?;
            let body: Value = resp.json().await.ok()?;
            body["event_count"].as_u64()
        }))
        .await;
        for ((s, want), got) in chunk.iter().zip(answers) {
            let got = got.unwrap_or(0);
            sum += got;
            if got != *want {
                wrong.push(format!("{s}: {got} != {want}"));
            }
        }
    }
    v.check(
        wrong.is_empty(),
        format!(
            "event_count of each of {} sessions (sum {sum}) equals its acknowledged events{}",
            sessions.len(),
            if wrong.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} differ, e.g. {:?}",
                    wrong.len(),
                    &wrong[..wrong.len().min(5)]
                )
            }
        ),
    );
    // Per minute of event time: the counter tree. Events only move later, and by less
    // than SHIFT_SECS: up to the end of each minute the server holds at most what was
    // acknowledged up to there, and at least that less what was near its end.
    let mut wrong = Vec::new();
    let (mut cum_want, mut cum_n) = (0_u64, 0_u64);
    for (minute, want) in &ledger.per_minute {
        let start = DateTime::from_timestamp(minute * 60, 0).context("a minute")?;
        let end = start + chrono::Duration::microseconds(59_999_999);
        let n = count(
            sh,
            &format!(
                "&start_time={}&end_time={}",
                time_param(start),
                time_param(end)
            ),
        )
        .await?;
        cum_want += want;
        cum_n += n;
        let near = ledger.near_minute_end.get(minute).copied().unwrap_or(0);
        if cum_n > cum_want || cum_n + near < cum_want {
            wrong.push(format!(
                "{}: {n} stored, {want} acknowledged ({near} in its last {SHIFT_SECS} s)",
                start.format("%H:%M")
            ));
        }
    }
    v.check(
        wrong.is_empty(),
        format!(
            "count of each of {} minutes of event time equals its acknowledged events, \
             but for events of a minute's last {SHIFT_SECS} s stored in the next (Eye-Sent-At){}",
            ledger.per_minute.len(),
            if wrong.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} differ: {:?}",
                    wrong.len(),
                    &wrong[..wrong.len().min(5)]
                )
            }
        ),
    );
    let mut missing = 0;
    for id in &ledger.sample {
        let resp = sh
            .http
            .get(format!("{}/events/{id}", sh.base))
            .bearer_auth(&sh.key)
            .send()
            .await?;
        if resp.status().as_u16() != 200 {
            missing += 1;
        }
    }
    v.check(
        missing == 0,
        format!(
            "{} sampled acknowledged ids read back by GET /events/{{id}}: {missing} missing",
            ledger.sample.len()
        ),
    );
    Ok(())
}

fn judge_trends(args: &Args, samples: &[Sample], v: &mut Verdict) {
    let warmup = args
        .warmup
        .unwrap_or((args.duration / 5).max(Duration::from_secs(120)))
        .as_secs_f64();
    // The run's end: the duration, or the last sample of a run cut short.
    let end = samples
        .last()
        .map_or(0.0, |s| s.t_s)
        .min(args.duration.as_secs_f64());
    let steady: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t_s >= warmup && s.t_s <= end)
        .collect();
    if steady.len() < 3 {
        v.check(
            false,
            format!(
                "only {} samples after warm-up: too short to judge",
                steady.len()
            ),
        );
        return;
    }
    let hours = |p: &&Sample| p.t_s / 3600.0;
    let range = |pts: &[(f64, f64)]| {
        pts.iter()
            .map(|p| p.1)
            .fold((f64::MAX, f64::MIN), |a, x| (a.0.min(x), a.1.max(x)))
    };
    let rss: Vec<(f64, f64)> = steady
        .iter()
        .map(|s| (hours(s), s.server.rss_mib))
        .collect();
    let fds: Vec<(f64, f64)> = steady
        .iter()
        .map(|s| (hours(s), s.server.fds as f64))
        .collect();
    let (rs, fs) = (slope(&rss), slope(&fds));
    let rss_range = range(&rss);
    // What a leak makes grow is the heap in use less SQLite's bounded page caches.
    // RSS also holds what the allocator keeps after a peak (a heavy query's buffers,
    // a page cache SQLite emptied): it steps up and stays, without anything growing.
    // A CSV of an older run has no gauges: then the raw RSS is judged, as it was.
    let heap: Option<Vec<(f64, f64, f64)>> = steady
        .iter()
        .map(|s| Some((hours(s), s.heap_mib?, s.sqlite_mib.unwrap_or(0.0))))
        .collect();
    match heap {
        Some(heap) => {
            let rest: Vec<(f64, f64)> = heap.iter().map(|(t, h, q)| (*t, h - q)).collect();
            let rest_slope = slope(&rest);
            let rest_range = range(&rest);
            let heap_range = range(&heap.iter().map(|(t, h, _)| (*t, *h)).collect::<Vec<_>>());
            v.check(
                rest_slope < args.memory_mib_per_hour,
                format!(
                    "server heap in use less SQLite's memory after {warmup:.0} s of warm-up: slope {rest_slope:+.2} MiB/hour (tolerance < {} MiB/hour), {:.1}..{:.1} MiB over {} samples (heap in use {:.1}..{:.1} MiB; RSS {:.1}..{:.1} MiB, slope {rs:+.2} MiB/hour, reported, not judged)",
                    args.memory_mib_per_hour,
                    rest_range.0,
                    rest_range.1,
                    steady.len(),
                    heap_range.0,
                    heap_range.1,
                    rss_range.0,
                    rss_range.1,
                ),
            );
            let all: Vec<f64> = samples.iter().filter_map(|s| s.sqlite_mib).collect();
            let max = all.iter().copied().fold(0.0, f64::max);
            v.check(
                max <= args.sqlite_mib_max,
                format!(
                    "SQLite's memory in the server: at most {max:.1} MiB over {} samples (bound {} MiB)",
                    all.len(),
                    args.sqlite_mib_max
                ),
            );
        }
        None => v.check(
            rs < args.memory_mib_per_hour,
            format!(
                "server RSS after {warmup:.0} s of warm-up: slope {rs:+.2} MiB/hour (tolerance < {} MiB/hour), {:.1}..{:.1} MiB over {} samples (no heap gauge in the CSV: raw RSS judged)",
                args.memory_mib_per_hour,
                rss_range.0,
                rss_range.1,
                steady.len()
            ),
        ),
    }
    v.check(
        fs < args.fds_per_hour,
        format!(
            "server open fds after warm-up: slope {fs:+.2}/hour (tolerance < {}/hour), {}..{}",
            args.fds_per_hour,
            steady.iter().map(|s| s.server.fds).min().unwrap_or(0),
            steady.iter().map(|s| s.server.fds).max().unwrap_or(0)
        ),
    );
    let quarter = |q: f64, f: fn(&Sample) -> Option<f64>| {
        median(
            samples
                .iter()
                .filter(|s| s.t_s > end * (q - 1.0) / 4.0 && s.t_s <= end * q / 4.0)
                .filter_map(f)
                .collect(),
        )
    };
    for (name, f) in [
        (
            "ingest",
            (|s: &Sample| s.ingest_p99_ms) as fn(&Sample) -> Option<f64>,
        ),
        ("query", |s: &Sample| s.query_p99_ms),
    ] {
        match (quarter(2.0, f), quarter(4.0, f)) {
            (Some(q2), Some(q4)) => v.check(
                q4 <= args.p99_factor * q2 || q4 <= args.p99_floor_ms,
                format!(
                    "{name} p99: median over the last quarter {q4:.2} ms, second quarter {q2:.2} ms (tolerance: at most {}x, or under {} ms)",
                    args.p99_factor, args.p99_floor_ms
                ),
            ),
            _ => v.check(false, format!("{name} p99: no samples in a quarter")),
        }
    }
}

// ------------------------------------------------------------------ main -----------

/// Restarts scheduled along the run, as fractions of the duration (Redis mode).
const WORKER_KILLS: [f64; 2] = [0.30, 0.70];
const REDIS_RESTARTS: [f64; 2] = [0.45, 0.85];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(csv) = &args.judge_csv {
        let samples = read_csv(csv)?;
        let mut v = Verdict {
            lines: Vec::new(),
            pass: true,
        };
        judge_trends(&args, &samples, &mut v);
        let mut out = std::io::stdout().lock();
        for l in &v.lines {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(out, "{l}");
        }
        std::process::exit(i32::from(!v.pass));
    }
    let server = fs::canonicalize(&args.server).with_context(|| {
        format!(
            "{} (build it: cargo build --release -p eye-server)",
            args.server.display()
        )
    })?;
    let (dir, tmp) = match &args.work_dir {
        Some(d) => {
            fs::create_dir_all(d)?;
            (fs::canonicalize(d)?, None)
        }
        None => {
            let t = tempfile_dir()?;
            (t.clone(), Some(t))
        }
    };
    fs::create_dir_all(&args.out_dir)?;
    let mode = args.mode;
    let setup = Setup {
        mode,
        server,
        db: dir.join("eye.db"),
        dir: dir.clone(),
        port: free_port()?,
        redis_port: free_port()?,
    };
    eprintln!(
        "[soak] {} mode, {:?}, {} events/s, {} queries/s, working in {}",
        mode.name(),
        args.duration,
        args.rate,
        args.query_rate,
        dir.display()
    );

    let mut redis = match mode {
        Mode::Redis => Some(setup.start_redis()?),
        Mode::Embedded => None,
    };
    let key = setup.create_key()?;
    let mut srv = setup.start_server()?;
    let mut worker = match mode {
        Mode::Redis => Some(setup.start_worker()?),
        Mode::Embedded => None,
    };
    let base = format!("http://127.0.0.1:{}", setup.port);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        if Instant::now() > deadline {
            bail!(
                "the server did not answer /healthz within 60 s; see {}/server.log",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sh = Arc::new(Shared {
        http,
        base: base.clone(),
        key: key.clone(),
        stop: AtomicBool::new(false),
        ledger: Mutex::new(Ledger::default()),
        ingest_lat: Mutex::new(Vec::new()),
        query_lat: Mutex::new(Vec::new()),
        retries: AtomicU64::new(0),
        unexpected: AtomicU64::new(0),
        unexpected_log: Mutex::new(Vec::new()),
        unknown: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        recent_session: Mutex::new("raw-0".into()),
        recent_id: Mutex::new(None),
        inflight: Arc::new(Semaphore::new(INFLIGHT as usize)),
    });
    let client = EyeClient::builder(&base)
        .api_key(&key)
        .batch_size(100)
        .flush_interval(Duration::from_millis(100))
        .buffer_capacity(200_000)
        .report_detail_limit(1_000_000)
        .retry_policy(RetryPolicy {
            max_retries: 1_000,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(2),
        })
        .build()?;

    let rate = f64::from(args.rate);
    let t0 = Instant::now();
    let sdk_task = tokio::spawn(sdk(sh.clone(), client.clone(), rate * 0.45));
    let mut tasks = vec![
        tokio::spawn(raw_singles(sh.clone(), rate * 0.15)),
        tokio::spawn(raw_batches(sh.clone(), rate * 0.40)),
        tokio::spawn(raw_invalid(sh.clone(), 2.0)),
        tokio::spawn(queries(sh.clone(), f64::from(args.query_rate) / 2.0, false)),
        tokio::spawn(queries(sh.clone(), f64::from(args.query_rate) / 2.0, false)),
        tokio::spawn(queries(sh.clone(), 1.0, true)),
    ];

    // The sampler and the scheduled restarts, on this task.
    let csv_path = args.out_dir.join(format!("soak-{}.csv", mode.name()));
    let mut csv = File::create(&csv_path)?;
    writeln!(csv, "{CSV_HEADER}")?;
    let mut samples: Vec<Sample> = Vec::new();
    let mut worker_cpu_done = 0.0;
    let mut redis_cpu_done = 0.0;
    let mut events: Vec<(f64, &str)> = Vec::new();
    if mode == Mode::Redis {
        let secs = args.duration.as_secs_f64();
        for f in WORKER_KILLS {
            events.push((f * secs, "worker-kill"));
            events.push((f * secs + 10.0, "worker-start"));
        }
        for f in REDIS_RESTARTS {
            events.push((f * secs, "redis-kill"));
            events.push((f * secs + 3.0, "redis-start"));
        }
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let mut next_event = 0;
    let mut next_sample = args.sample_every;
    let mut note = String::new();
    let mut last_retries = 0;
    // SIGINT or SIGTERM ends the traffic early; the drain and the verdict still run.
    // (The children are in their own process group: a Ctrl-C reaches only this.)
    let interrupted = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let interrupted = interrupted.clone();
        async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("[soak] interrupted: the traffic stops, the verdict follows");
            interrupted.store(true, Ordering::Relaxed);
        }
    });
    loop {
        let elapsed = t0.elapsed();
        if let Some((at, what)) = events.get(next_event).copied()
            && elapsed.as_secs_f64() >= at
        {
            next_event += 1;
            match what {
                "worker-kill" => {
                    if let Some(mut w) = worker.take() {
                        worker_cpu_done += proc_stat(w.pid()).map_or(0.0, |s| s.cpu_s);
                        w.kill();
                        eprintln!(
                            "[soak] {:.0}s: worker SIGKILLed; a new one in 10 s",
                            elapsed.as_secs_f64()
                        );
                        note.push_str("worker-killed ");
                    }
                }
                "worker-start" => worker = Some(setup.start_worker()?),
                "redis-kill" => {
                    if let Some(mut r) = redis.take() {
                        redis_cpu_done += proc_stat(r.pid()).map_or(0.0, |s| s.cpu_s);
                        r.kill();
                        eprintln!(
                            "[soak] {:.0}s: redis-server SIGKILLed; restarting in 3 s",
                            elapsed.as_secs_f64()
                        );
                        note.push_str("redis-killed ");
                    }
                }
                _ => {
                    let setup = &setup;
                    redis = Some(tokio::task::block_in_place(|| setup.start_redis())?);
                }
            }
            continue;
        }
        if elapsed >= next_sample {
            next_sample += args.sample_every;
            let ingest = std::mem::take(&mut *sh.ingest_lat.lock().expect("not poisoned"));
            let query = std::mem::take(&mut *sh.query_lat.lock().expect("not poisoned"));
            let retries = sh.retries.load(Ordering::Relaxed);
            let (heap_mib, sqlite_mib) = memory_gauges(&sh).await;
            let s = Sample {
                t_s: elapsed.as_secs_f64(),
                server: proc_stat(srv.pid()).unwrap_or_default(),
                worker: worker
                    .as_ref()
                    .and_then(|w| proc_stat(w.pid()))
                    .unwrap_or_default(),
                redis: redis
                    .as_ref()
                    .and_then(|r| proc_stat(r.pid()))
                    .unwrap_or_default(),
                heap_mib,
                sqlite_mib,
                journal_mib: dir_bytes(&dir.join("eye.db.journal")) as f64 / 1048576.0,
                wal_mib: file_bytes(&dir.join("eye.db-wal")) as f64 / 1048576.0,
                db_mib: file_bytes(&setup.db) as f64 / 1048576.0,
                backlog: backlog(&sh).await,
                acked: sh.ledger.lock().expect("not poisoned").total + client.stats().delivered,
                ingest_n: ingest.len(),
                ingest_p99_ms: p99_ms(ingest),
                query_n: query.len(),
                query_p99_ms: p99_ms(query),
                retries: retries - last_retries,
                unexpected: sh.unexpected.load(Ordering::Relaxed),
                load1: load1(),
                note: std::mem::take(&mut note).trim().to_owned(),
            };
            last_retries = retries;
            writeln!(csv, "{}", s.csv())?;
            csv.flush()?;
            if samples.len().is_multiple_of(6) {
                eprintln!(
                    "[soak] {:>5.0}s rss {:.1} MiB, fds {}, backlog {:?}, acked {}, ingest p99 {:?} ms, query p99 {:?} ms, load {:.1}",
                    s.t_s,
                    s.server.rss_mib,
                    s.server.fds,
                    s.backlog,
                    s.acked,
                    s.ingest_p99_ms,
                    s.query_p99_ms,
                    s.load1
                );
            }
            samples.push(s);
            continue;
        }
        if elapsed >= args.duration || interrupted.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The end: stop the generators, let every request in flight finish, flush the SDK.
    eprintln!("[soak] traffic stopped; draining");
    sh.stop.store(true, Ordering::Relaxed);
    for t in tasks.drain(..) {
        t.await?;
    }
    let (mut sdk_ledger, sdk_invalid, sdk_dropped) = sdk_task.await?;
    let _all = sh.inflight.acquire_many(INFLIGHT).await?;
    let report = client.shutdown(Duration::from_secs(300)).await;
    for f in &report.failures {
        // Given up on: not acknowledged, out of the ledger.
        if let (Some(id), t) = (f.event.id(), f.event.event_type()) {
            let m = Meta {
                id,
                kind: t,
                session: f.event.session_id().as_ref().to_owned(),
                ts: f.event.timestamp(),
                valid: true,
            };
            sdk_ledger.add(&m, -1);
        }
    }
    let traffic_s = t0.elapsed().as_secs_f64();
    let mut ledger = std::mem::take(&mut *sh.ledger.lock().expect("not poisoned"));
    ledger.merge(sdk_ledger);
    let stored = drain(&sh, ledger.total, Duration::from_secs(600)).await?;
    let drained_s = t0.elapsed().as_secs_f64() - traffic_s;

    let mut v = Verdict {
        lines: Vec::new(),
        pass: true,
    };
    let unknown = sh.unknown.load(Ordering::Relaxed);
    v.check(
        report.failed == 0 && report.pending == 0 && report.rejected == sdk_invalid,
        format!(
            "SDK: {report}; {sdk_invalid} invalid tracked, {sdk_dropped} refused by a full buffer (not counted as sent)"
        ),
    );
    v.check(
        sh.unexpected.load(Ordering::Relaxed) == 0 && unknown == 0,
        format!(
            "unexpected answers: {} ({unknown} events of unknown fate); {} invalid events refused as they should be; {} retries (429/503/connection)",
            sh.unexpected.load(Ordering::Relaxed),
            sh.rejected.load(Ordering::Relaxed) + report.rejected,
            sh.retries.load(Ordering::Relaxed)
        ),
    );
    if let Err(e) = stored_once(&sh, &ledger, &mut v).await {
        v.check(
            false,
            format!("the stored-once checks could not run: {e:#}"),
        );
    }
    judge_trends(&args, &samples, &mut v);

    // Cost: CPU seconds of the server (and worker, and Redis) per acknowledged event.
    let server_cpu = proc_stat(srv.pid()).map(|s| s.cpu_s).unwrap_or(0.0);
    let worker_cpu = worker_cpu_done
        + worker
            .as_ref()
            .and_then(|w| proc_stat(w.pid()))
            .map_or(0.0, |s| s.cpu_s);
    let redis_cpu = redis_cpu_done
        + redis
            .as_ref()
            .and_then(|r| proc_stat(r.pid()))
            .map_or(0.0, |s| s.cpu_s);
    let per_event = |cpu: f64| cpu * 1e6 / ledger.total.max(1) as f64;
    v.note(format!(
        "{} events acknowledged in {traffic_s:.0} s ({:.0}/s), all stored {drained_s:.1} s after the traffic stopped (server count {stored})",
        ledger.total,
        ledger.total as f64 / traffic_s
    ));
    let mut cpu = format!(
        "CPU per acknowledged event (queries, pages and invalid events included): server {:.1} µs",
        per_event(server_cpu)
    );
    if mode == Mode::Redis {
        let _ = write!(
            cpu,
            ", worker {:.1} µs, redis-server {:.1} µs",
            per_event(worker_cpu),
            per_event(redis_cpu)
        );
    }
    v.note(cpu);
    if let Some(last) = samples.last() {
        v.note(format!(
            "at the end: server RSS {:.1} MiB, {} fds; database {:.1} MiB, WAL {:.1} MiB, journal {:.1} MiB; load average {:.2}",
            last.server.rss_mib, last.server.fds, last.db_mib, last.wal_mib, last.journal_mib, last.load1
        ));
    }
    let loads: Vec<f64> = samples.iter().map(|s| s.load1).collect();
    if !loads.is_empty() {
        v.note(format!(
            "machine load (1-minute average, {} cores) during the run: median {:.2}, max {:.2}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            median(loads.clone()).unwrap_or(0.0),
            loads.iter().copied().fold(0.0, f64::max)
        ));
    }
    for u in sh
        .unexpected_log
        .lock()
        .expect("not poisoned")
        .iter()
        .take(10)
    {
        v.note(format!("unexpected: {u}"));
    }

    // Shut down: the server must exit 0 on SIGTERM.
    let code = srv.terminate(60);
    v.check(
        code == Some(0),
        format!("the server exited {code:?} on SIGTERM"),
    );
    if let Some(mut w) = worker.take() {
        w.terminate(30);
    }
    if let Some(mut r) = redis.take() {
        r.terminate(10);
    }

    let mut text = format!(
        "soak {} mode, {:.0} s of traffic at {} events/s: {}\n",
        mode.name(),
        args.duration.as_secs_f64(),
        args.rate,
        if v.pass { "PASS" } else { "FAIL" }
    );
    for l in &v.lines {
        text.push_str(l);
        text.push('\n');
    }
    print!("{text}");
    fs::write(
        args.out_dir
            .join(format!("soak-{}.verdict.txt", mode.name())),
        &text,
    )?;
    eprintln!("[soak] wrote {}", csv_path.display());
    if let Some(t) = tmp
        && !args.keep
    {
        let _ = fs::remove_dir_all(t);
    }
    if !v.pass {
        std::process::exit(1);
    }
    Ok(())
}

/// The samples of a CSV written by [`Sample::csv`] (the columns the trends need).
fn read_csv(path: &Path) -> anyhow::Result<Vec<Sample>> {
    let text = fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("an empty CSV")?.split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .context(name.to_owned())
    };
    let (t, rss, fds) = (col("t_s")?, col("server_rss_mib")?, col("server_fds")?);
    let (ip, qp) = (col("ingest_p99_ms")?, col("query_p99_ms")?);
    // Absent from the CSVs of runs before the gauge existed.
    let sq = col("server_sqlite_mib").ok();
    let hp = col("server_heap_mib").ok();
    let mut out = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
        out.push(Sample {
            t_s: num(t).unwrap_or(0.0),
            server: ProcStat {
                rss_mib: num(rss).unwrap_or(0.0),
                anon_mib: 0.0,
                fds: num(fds).unwrap_or(0.0) as u64,
                cpu_s: 0.0,
            },
            sqlite_mib: sq.and_then(num),
            heap_mib: hp.and_then(num),
            ingest_p99_ms: num(ip),
            query_p99_ms: num(qp),
            ..Sample::default()
        });
    }
    Ok(out)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "eye-soak-{}-{}",
        std::process::id(),
        Uuid::new_v4().simple()
    ));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}
