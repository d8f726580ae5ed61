//! The data lifecycle: erasing a session everywhere it is kept, and the retention task
//! that deletes what is past its age (docs/lifecycle.md).
//!
//! - [`erase_session`]: the store (events, session, counters, errors log, and the
//!   suppression list that drops the session's late events), then the dead letters
//!   (the journal's file and the Redis dead-letter stream). `DELETE /sessions/{id}`
//!   and `eye-server erase` both call it.
//! - [`RetentionTask`]: in `serve` and `worker`, a pass at start and then every
//!   `--retention-interval-secs`: events past `--retention-days` (or their
//!   application's own retention), errors-log entries past `--errors-retention-days`,
//!   erased sessions past [`ERASED_KEPT_DAYS`], then free SQLite pages given back.
//!   Deletes go in small transactions with a pause after each, so ingest and queries
//!   never wait long.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::SharedClock;
use crate::config::{RetentionConfig, ServeConfig};
use crate::queue::journal::JournalQueue;
use crate::store::{ERASED_KEPT_DAYS, Retention, Store, StoreError};
use crate::streams::Keys;

/// Where dead letters are kept: the journal's dead-letter file, the Redis dead-letter
/// stream, or both (a deployment that moved from one queue to the other).
#[derive(Debug, Clone, Default)]
pub struct DeadLetterPlaces {
    /// The journal directory (its `dead-letters.jsonl`).
    pub journal_dir: Option<PathBuf>,
    /// The Redis URL and the deployment's keys.
    pub redis: Option<(String, Keys)>,
}

impl DeadLetterPlaces {
    /// The places `config` uses: the journal directory it names or the default one
    /// next to a SQLite file, and Redis when a URL is set.
    pub fn from_config(config: &ServeConfig) -> Self {
        Self {
            journal_dir: config
                .queue
                .journal
                .dir
                .clone()
                .or_else(|| JournalQueue::default_dir(&config.store.database_url)),
            redis: config
                .queue
                .redis
                .url
                .clone()
                .map(|url| (url, Keys::new(&config.queue.redis.prefix))),
        }
    }
}

/// What an erasure removed, as `DELETE /sessions/{session_id}` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Erasure {
    /// The erased session.
    pub session_id: String,
    /// How many of each were removed.
    pub removed: Removed,
    /// Until when events of this session that reach the store (a client's retry, a
    /// queue's redelivery) are dropped: 30 days after the erasure.
    #[serde(with = "eye_core::serde_micros")]
    #[schemars(with = "String")]
    pub suppressed_until: DateTime<Utc>,
}

/// Counts of what an erasure removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Removed {
    /// Stored events of the session.
    pub events: u64,
    /// Session rows (0 or 1).
    pub sessions: u64,
    /// Errors-log entries whose payload carried the session id.
    pub errors: u64,
    /// Dead letters carrying the session id (journal file and Redis stream).
    pub dead_letters: u64,
}

/// Why an erasure did not finish. Erasing again is safe and finishes it.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// The store failed; nothing of the store part was removed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store part is done (and the session suppressed), the dead letters are not.
    #[error("dead letters: {0}")]
    DeadLetters(String),
}

/// Erases `session_id` from the store ([`Store::erase_session`]) and then from the
/// dead letters in `places`, as of `now`.
pub async fn erase_session(
    store: &Store,
    places: &DeadLetterPlaces,
    session_id: &str,
    now: DateTime<Utc>,
) -> Result<Erasure, EraseError> {
    let erased = store.erase_session(session_id, now).await?;
    let mut dead_letters = 0;
    if let Some(dir) = &places.journal_dir {
        let dir = dir.clone();
        let sid = session_id.to_owned();
        dead_letters += tokio::task::spawn_blocking(move || {
            crate::queue::journal::erase_dead_letters(&dir, &sid)
        })
        .await
        .map_err(|e| EraseError::DeadLetters(e.to_string()))?
        .map_err(|e| EraseError::DeadLetters(format!("the journal's dead-letter file: {e}")))?;
    }
    if let Some((url, keys)) = &places.redis {
        dead_letters += crate::streams::erase_dead_letters(url, keys, session_id)
            .await
            .map_err(|e| EraseError::DeadLetters(format!("the Redis dead-letter stream: {e}")))?;
    }
    tracing::info!(
        events = erased.events,
        errors = erased.errors,
        dead_letters,
        "session erased"
    );
    Ok(Erasure {
        session_id: session_id.to_owned(),
        removed: Removed {
            events: erased.events,
            sessions: erased.sessions,
            errors: erased.errors,
            dead_letters,
        },
        suppressed_until: now + chrono::Duration::days(ERASED_KEPT_DAYS),
    })
}

/// Free pages given back per step (`PRAGMA incremental_vacuum`): 1 MiB of 4 KiB
/// pages, a few milliseconds of writer time.
const PAGES_PER_STEP: u32 = 256;

/// The shortest pause between two retention transactions.
const MIN_PAUSE: Duration = Duration::from_millis(5);

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Events deleted.
    pub events: u64,
    /// Errors-log entries deleted.
    pub errors: u64,
    /// Sessions taken off the suppression list.
    pub unerased: u64,
}

/// One retention pass as of `now`; stops early (between two transactions) when
/// `stop` says so.
///
/// ```no_run
/// # async fn demo(store: eye_server::store::Store, config: eye_server::config::RetentionConfig) {
/// let report = eye_server::lifecycle::retention_pass(&store, &config, chrono::Utc::now(), &|| false)
///     .await
///     .unwrap();
/// println!("{} events and {} errors deleted", report.events, report.errors);
/// # }
/// ```
pub async fn retention_pass(
    store: &Store,
    config: &RetentionConfig,
    now: DateTime<Utc>,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<PassReport, StoreError> {
    let mut report = PassReport::default();
    if let Err(e) = store.prepare_partitions(now).await {
        tracing::warn!(error = %e, "events partitions not created ahead; tried again at the next pass");
    }
    let overrides: HashMap<String, Retention> = store
        .list_apps()
        .await?
        .into_iter()
        .map(|a| (a.name, a.retention))
        .collect();
    let cutoffs: Vec<(String, Option<DateTime<Utc>>)> = store
        .event_applications()
        .await?
        .into_iter()
        .map(|app| {
            let days = match overrides.get(&app).copied().unwrap_or_default() {
                Retention::Default => config.retention_days,
                Retention::Forever => None,
                Retention::Days(n) => Some(n),
            };
            let before =
                days.map(|d| store.retention_cutoff(now - chrono::Duration::days(i64::from(d))));
            (app, before)
        })
        .collect();
    // Whole days that every application's retention has passed go first, as whole
    // partitions (PostgreSQL); row deletes then take what is left: rows outside the
    // day partitions, and the applications with a shorter retention than the others.
    if let Some(Some(before)) = cutoffs.iter().map(|(_, b)| *b).min()
        && !stop()
    {
        let n = store.drop_days_before(before).await?;
        report.events += n;
        metrics::counter!(crate::metrics::names::RETENTION_DELETED, "table" => "events")
            .increment(n);
    }
    for (app, before) in cutoffs {
        let Some(before) = before else { continue };
        loop {
            if stop() {
                return Ok(report);
            }
            let started = Instant::now();
            let n = store
                .expire_events(&app, before, config.retention_batch)
                .await?;
            report.events += n;
            metrics::counter!(crate::metrics::names::RETENTION_DELETED, "table" => "events")
                .increment(n);
            if n < u64::from(config.retention_batch) {
                break;
            }
            pause(started).await;
        }
    }
    if let Some(days) = config.errors_retention_days.0 {
        let before = now - chrono::Duration::days(i64::from(days));
        loop {
            if stop() {
                return Ok(report);
            }
            let started = Instant::now();
            let n = store.expire_errors(before, config.retention_batch).await?;
            report.errors += n;
            metrics::counter!(crate::metrics::names::RETENTION_DELETED, "table" => "errors")
                .increment(n);
            if n < u64::from(config.retention_batch) {
                break;
            }
            pause(started).await;
        }
    }
    report.unerased = store.purge_erased(now).await?;
    // Bounded: a pass never spends more than ~10k steps (10 GiB) giving space back.
    for _ in 0..10_000 {
        if stop() {
            break;
        }
        let started = Instant::now();
        if store.reclaim_space(PAGES_PER_STEP).await? == 0 {
            break;
        }
        pause(started).await;
    }
    Ok(report)
}

/// Waits as long as the last transaction took (at least [`MIN_PAUSE`]): retention uses
/// at most about half of the writer's time.
async fn pause(started: Instant) {
    tokio::time::sleep(started.elapsed().max(MIN_PAUSE)).await;
}

/// The background retention task of a `serve` or `worker` process.
#[derive(Debug)]
pub struct RetentionTask {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl RetentionTask {
    /// Starts the task: a pass now, then one every `config.interval()`. Failures are
    /// logged and retried at the next pass.
    pub fn spawn(store: Store, config: RetentionConfig, clock: SharedClock) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let handle = tokio::spawn(async move {
            loop {
                let flag = stopped.clone();
                let started = Instant::now();
                match retention_pass(&store, &config, clock.now(), &move || *flag.borrow()).await {
                    Ok(r) if r != PassReport::default() => tracing::info!(
                        events = r.events,
                        errors = r.errors,
                        unerased = r.unerased,
                        seconds = started.elapsed().as_secs_f64(),
                        "retention pass"
                    ),
                    Ok(_) => tracing::debug!("retention pass: nothing to delete"),
                    Err(e) => {
                        tracing::warn!(error = %e, "retention pass failed; retried at the next one")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(config.interval()) => {}
                    _ = stopped.changed() => {}
                }
                if *stopped.borrow() {
                    return;
                }
            }
        });
        Self { stop, handle }
    }

    /// Stops the task after the transaction in progress, and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}
