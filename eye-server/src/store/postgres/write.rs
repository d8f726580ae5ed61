//! PostgreSQL's write path: one transaction per batch, the same handful of round trips
//! whatever its size (`BEGIN`, the ids, the events, the sessions, every counter in one
//! statement, the erasure check, `COMMIT`), each statement a multi-row `INSERT ... SELECT * FROM UNNEST($1::uuid[], $2::text[], ...)`
//! (one bind per column, never a round trip per event).
//!
//! Concurrency: any number of writers may write the same ids and sessions at once.
//! - Ids go into `event_ids` with `ON CONFLICT (id) DO NOTHING RETURNING id`, and only
//!   the returned ones into `events` (its day partitions created first when missing:
//!   `partitions`); only those (really inserted) events bump sessions and counters.
//!   A writer racing on an id that another transaction inserted waits for it; if that
//!   commits, the id is a duplicate here.
//! - Every table's rows are sorted by key, and every writer writes the tables in one
//!   order (events; then the aggregates statement, whose parts PostgreSQL runs in the
//!   same order for every writer since they all run the same statement; then errors,
//!   error_hours, error_codes), so two writers take row locks in the same global
//!   order: they may wait for each other, never deadlock.
//! - Counters are `ON CONFLICT DO UPDATE SET n = t.n + excluded.n`, which under READ
//!   COMMITTED adds to the newest committed value: no lost update.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use sqlx::PgConnection;
use uuid::Uuid;

use super::PgStore;
use crate::message::{Message, RejectedEvent};
use crate::store::StoreError;
use crate::store::batch::{Deltas, NewEvent};
use crate::store::events::WriteOutcome;
use crate::store::rows::{distinct_codes, hour_of, to_micros};

impl PgStore {
    /// Writes a batch of queue messages in one transaction; see
    /// [`crate::store::Store::write_batch`] and this module's docs.
    pub(crate) async fn write_batch(
        &self,
        messages: &[Message],
    ) -> Result<WriteOutcome, StoreError> {
        let mut events = Vec::new();
        let mut rejected = Vec::new();
        for m in messages {
            match m {
                Message::EventV1(e) => events.push(NewEvent::new(e)?),
                Message::RejectedV1(r) => rejected.push(r),
            }
        }
        if events.is_empty() && rejected.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let total_events = events.len() as u64;
        // The first occurrence of an id in the batch is the one stored; then id order,
        // the lock order every writer follows.
        let mut seen = HashSet::new();
        events.retain(|e| seen.insert(e.src.id));
        events.sort_by_key(|e| e.src.id);
        let mut seen = HashSet::new();
        rejected.retain(|r| seen.insert(r.key));
        rejected.sort_by_key(|r| r.key);

        let started = std::time::Instant::now();
        self.ensure_days(
            events.iter().map(|e| e.timestamp),
            chrono::Utc::now().timestamp_micros(),
        )
        .await;
        let mut attempts = 0;
        let (inserted, suppressed, errors_logged) = loop {
            let mut tx = self.pool.begin().await?;
            let inserted = insert_events(&mut tx, &events).await?;
            update_aggregates(&mut tx, &inserted).await?;
            // After the session rows are locked (see `erased_among`).
            let erased = erased_among(&mut tx, &events).await?;
            if inserted.iter().any(|e| erased.contains(e.session())) {
                // An erasure of one of these sessions committed while this batch was
                // being written: start again; the insert now sees it and drops them.
                tx.rollback().await?;
                attempts += 1;
                if attempts >= MAX_ERASURE_RETRIES {
                    return Err(StoreError::Contended(
                        "sessions erased while a batch of them was written".into(),
                    ));
                }
                continue;
            }
            let suppressed = events
                .iter()
                .filter(|e| erased.contains(e.session()))
                .count() as u64;
            let errors_logged = log_errors(&mut tx, &rejected).await?;
            tx.commit().await?;
            break (inserted.len() as u64, suppressed, errors_logged);
        };
        let duplicates = total_events - inserted - suppressed;
        crate::metrics::batch_committed(messages.len(), inserted, duplicates, started.elapsed());
        crate::metrics::errors_logged(errors_logged);
        crate::metrics::events_suppressed(suppressed);
        Ok(WriteOutcome {
            inserted,
            duplicates,
            errors_logged,
            suppressed,
        })
    }
}

/// How often a batch is written again because sessions of it were erased meanwhile.
/// Each retry sees the erasures committed before it, so a second attempt succeeds
/// unless yet another erasure of the same batch's sessions commits meanwhile.
const MAX_ERASURE_RETRIES: u32 = 5;

/// The sessions of `events` that are erased, read after this transaction has upserted
/// the session row of every event it inserted.
///
/// Why that closes the race with an erasure: the erasure locks the session's row (it
/// creates a placeholder when there is none) before it deletes the session's events,
/// and each holds its lock until it commits. If this write locked the row first, the
/// erasure waits, then deletes what this write committed. If the erasure did, this
/// write waits at its session upsert until the erasure commits, and this read (a new
/// statement, so a new snapshot under READ COMMITTED) sees the erasure.
async fn erased_among(
    conn: &mut PgConnection,
    events: &[NewEvent<'_>],
) -> Result<HashSet<String>, StoreError> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    let sessions: BTreeSet<&str> = events.iter().map(NewEvent::session).collect();
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT session_id FROM erased_sessions WHERE session_id = ANY($1)")
            .bind(sessions.into_iter().collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().map(|(s,)| s).collect())
}

/// Inserts `events` (distinct ids, sorted), returning those that were not stored yet.
/// Events of erased sessions are left out (see `erased_among`).
async fn insert_events<'e, 'a>(
    conn: &mut PgConnection,
    events: &'e [NewEvent<'a>],
) -> Result<Vec<&'e NewEvent<'a>>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    // The ids go into `event_ids` first (sorted: the lock order); only the events whose
    // ids it did not hold yet go into `events`, whose own key is `(timestamp, id)`. Two
    // statements: as one (`WITH new AS (INSERT ... RETURNING id) INSERT ... JOIN new`),
    // the generic plan of the prepared statement joined the two with a nested loop
    // (it guesses 10 rows per array), quadratic in the batch: 2.4x slower at 2,000.
    let ids: Vec<Uuid> = events.iter().map(|e| e.src.id).collect();
    let sessions: Vec<&str> = events.iter().map(NewEvent::session).collect();
    let new_ids: Vec<(Uuid,)> = sqlx::query_as(
        "INSERT INTO event_ids (id) SELECT u.id FROM UNNEST($1::uuid[], $2::text[]) \
         AS u (id, session_id) WHERE NOT EXISTS (SELECT 1 FROM erased_sessions AS x \
         WHERE x.session_id = u.session_id) ON CONFLICT (id) DO NOTHING RETURNING id",
    )
    .bind(&ids)
    .bind(&sessions)
    .fetch_all(&mut *conn)
    .await?;
    let new_ids: HashSet<Uuid> = new_ids.into_iter().map(|(id,)| id).collect();
    let fresh: Vec<&'e NewEvent<'a>> = events
        .iter()
        .filter(|e| new_ids.contains(&e.src.id))
        .collect();
    if fresh.is_empty() {
        return Ok(fresh);
    }
    let ids: Vec<Uuid> = fresh.iter().map(|e| e.src.id).collect();
    let applications: Vec<&str> = fresh.iter().map(|e| e.application()).collect();
    let sessions: Vec<&str> = fresh.iter().map(|e| e.session()).collect();
    let categories: Vec<&str> = fresh.iter().map(|e| e.category).collect();
    let names: Vec<&str> = fresh.iter().map(|e| e.name).collect();
    let data: Vec<&str> = fresh.iter().map(|e| e.data.as_str()).collect();
    let timestamps: Vec<i64> = fresh.iter().map(|e| e.timestamp).collect();
    let received: Vec<i64> = fresh.iter().map(|e| to_micros(e.src.received_at)).collect();
    let client_timestamps: Vec<Option<i64>> = fresh
        .iter()
        .map(|e| e.src.client_timestamp.map(to_micros))
        .collect();
    sqlx::query(
        "INSERT INTO events (id, application, session_id, category, name, data, timestamp, \
         received_at, client_timestamp) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::bigint[], $8::bigint[], $9::bigint[])",
    )
    .bind(ids)
    .bind(applications)
    .bind(sessions)
    .bind(categories)
    .bind(names)
    .bind(data)
    .bind(timestamps)
    .bind(received)
    .bind(client_timestamps)
    .execute(&mut *conn)
    .await?;
    Ok(fresh)
}

/// Updates sessions, their applications and the counters from newly inserted events,
/// in two statements, rows inserted sorted by key.
///
/// Lock order, the same in every transaction that changes these tables (writers,
/// erasure, retention): session rows first (this statement), then the counters through
/// [`upsert_counters`], one statement shared by all of them, so PostgreSQL runs its
/// parts in the same order for each. Within a table every transaction locks rows in key
/// order: two of them may wait for each other, never deadlock. (A single statement for
/// sessions and counters together ran the counters first, since PostgreSQL runs the
/// main query of a `WITH` before its data-modifying CTEs, and deadlocked with an
/// erasure, which locks the session row first.)
async fn update_aggregates(
    conn: &mut PgConnection,
    inserted: &[&NewEvent<'_>],
) -> Result<(), StoreError> {
    if inserted.is_empty() {
        return Ok(());
    }
    let deltas = Deltas::of(inserted);
    let Deltas {
        sessions,
        session_apps,
        ..
    } = &deltas;

    sqlx::query(
        "WITH s AS (\
           INSERT INTO sessions (session_id, first_seen, last_seen, event_count) \
           SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
           ON CONFLICT (session_id) DO UPDATE SET \
           first_seen = least(sessions.first_seen, excluded.first_seen), \
           last_seen = greatest(sessions.last_seen, excluded.last_seen), \
           event_count = sessions.event_count + excluded.event_count) \
         INSERT INTO session_applications (session_id, application) \
         SELECT * FROM UNNEST($5::text[], $6::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(sessions.keys().copied().collect::<Vec<_>>())
    .bind(sessions.values().map(|d| d.first).collect::<Vec<_>>())
    .bind(sessions.values().map(|d| d.last).collect::<Vec<_>>())
    .bind(sessions.values().map(|d| d.count).collect::<Vec<_>>())
    .bind(session_apps.iter().map(|(s, _)| *s).collect::<Vec<_>>())
    .bind(session_apps.iter().map(|(_, a)| *a).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    upsert_counters(conn, &deltas).await
}

/// Adds `deltas`' counters (negative when events are removed) to `event_counts`,
/// `event_hours` and `event_buckets` in one statement (keys sorted). Every transaction
/// that changes counters runs this same statement, after it locked its session rows
/// (see [`update_aggregates`]).
pub(super) async fn upsert_counters(
    conn: &mut PgConnection,
    deltas: &Deltas<'_>,
) -> Result<(), StoreError> {
    let Deltas {
        totals,
        hours,
        buckets,
        ..
    } = deltas;
    sqlx::query(
        "WITH c AS (\
           INSERT INTO event_counts (application, category, name, events) \
           SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) \
           ON CONFLICT (application, category, name) DO UPDATE SET \
           events = event_counts.events + excluded.events), \
         h AS (\
           INSERT INTO event_hours (hour, application, category, name, events) \
           SELECT * FROM UNNEST($5::bigint[], $6::text[], $7::text[], $8::text[], \
           $9::bigint[]) \
           ON CONFLICT (hour, application, category, name) DO UPDATE SET \
           events = event_hours.events + excluded.events) \
         INSERT INTO event_buckets (width, bucket, application, category, name, events) \
         SELECT * FROM UNNEST($10::bigint[], $11::bigint[], $12::text[], $13::text[], \
         $14::text[], $15::bigint[]) \
         ON CONFLICT (width, bucket, application, category, name) DO UPDATE SET \
         events = event_buckets.events + excluded.events",
    )
    .bind(totals.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind(totals.keys().map(|k| k.1).collect::<Vec<_>>())
    .bind(totals.keys().map(|k| k.2).collect::<Vec<_>>())
    .bind(totals.values().copied().collect::<Vec<_>>())
    .bind(hours.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind(hours.keys().map(|k| k.1.0).collect::<Vec<_>>())
    .bind(hours.keys().map(|k| k.1.1).collect::<Vec<_>>())
    .bind(hours.keys().map(|k| k.1.2).collect::<Vec<_>>())
    .bind(hours.values().copied().collect::<Vec<_>>())
    .bind(buckets.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind(buckets.keys().map(|k| k.1).collect::<Vec<_>>())
    .bind(buckets.keys().map(|k| k.2.0).collect::<Vec<_>>())
    .bind(buckets.keys().map(|k| k.2.1).collect::<Vec<_>>())
    .bind(buckets.keys().map(|k| k.2.2).collect::<Vec<_>>())
    .bind(buckets.values().copied().collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records rejected events (distinct keys, sorted) once per key, with their hourly
/// counters and code index. Returns how many were new.
async fn log_errors(
    conn: &mut PgConnection,
    rejected: &[&RejectedEvent],
) -> Result<u64, StoreError> {
    if rejected.is_empty() {
        return Ok(0);
    }
    let mut codes = Vec::with_capacity(rejected.len());
    let mut codes_json = Vec::with_capacity(rejected.len());
    let mut errors_json = Vec::with_capacity(rejected.len());
    for r in rejected {
        let c = distinct_codes(&r.errors);
        codes_json.push(
            serde_json::to_string(&c)
                .map_err(|e| StoreError::Corrupt(format!("error codes: {e}")))?,
        );
        errors_json.push(
            serde_json::to_string(&r.errors)
                .map_err(|e| StoreError::Corrupt(format!("errors: {e}")))?,
        );
        codes.push(c);
    }
    let new: Vec<(i64, Uuid)> = sqlx::query_as(
        "INSERT INTO errors (key, application, received_at, codes, errors, payload) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
         $6::text[]) ON CONFLICT (key) DO NOTHING RETURNING id, key",
    )
    .bind(rejected.iter().map(|r| r.key).collect::<Vec<_>>())
    .bind(
        rejected
            .iter()
            .map(|r| r.application.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        rejected
            .iter()
            .map(|r| to_micros(r.received_at))
            .collect::<Vec<_>>(),
    )
    .bind(codes_json)
    .bind(errors_json)
    .bind(
        rejected
            .iter()
            .map(|r| r.payload.as_str())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *conn)
    .await?;
    if new.is_empty() {
        return Ok(0);
    }
    let new: BTreeMap<Uuid, i64> = new.into_iter().map(|(id, key)| (key, id)).collect();
    // The entry counts once under code '' and once under each of its codes.
    let mut hours: BTreeMap<(i64, &str, &str), i64> = BTreeMap::new();
    let mut code_rows: BTreeSet<(&str, i64, i64)> = BTreeSet::new();
    for (r, codes) in rejected.iter().zip(&codes) {
        let Some(&id) = new.get(&r.key) else {
            continue;
        };
        let received_at = to_micros(r.received_at);
        let hour = hour_of(received_at);
        for code in std::iter::once("").chain(codes.iter().map(String::as_str)) {
            *hours
                .entry((hour, r.application.as_str(), code))
                .or_default() += 1;
        }
        for code in codes {
            code_rows.insert((code.as_str(), received_at, id));
        }
    }
    sqlx::query(
        "INSERT INTO error_hours (hour, application, code, errors) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) \
         ON CONFLICT (hour, application, code) DO UPDATE SET \
         errors = error_hours.errors + excluded.errors",
    )
    .bind(hours.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind(hours.keys().map(|k| k.1).collect::<Vec<_>>())
    .bind(hours.keys().map(|k| k.2).collect::<Vec<_>>())
    .bind(hours.values().copied().collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    if !code_rows.is_empty() {
        sqlx::query(
            "INSERT INTO error_codes (code, received_at, error_id) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[])",
        )
        .bind(code_rows.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(code_rows.iter().map(|k| k.1).collect::<Vec<_>>())
        .bind(code_rows.iter().map(|k| k.2).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(new.len() as u64)
}
