//! SQLite's write path: one transaction per batch of queue messages.

use sqlx::sqlite::{Sqlite, SqliteArguments};
use sqlx::{AssertSqlSafe, SqliteConnection};

use super::SqliteStore;
use crate::message::{Message, RejectedEvent};
use crate::store::StoreError;
use crate::store::batch::{Deltas, NewEvent};
use crate::store::events::WriteOutcome;
use crate::store::rows::{distinct_codes, hour_of, to_micros};

type SqlQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

/// Rows per multi-row `INSERT`: 8 columns each, far below SQLite's 32,766 variables,
/// and large enough that statement overhead is small.
pub(super) const ROWS_PER_INSERT: usize = 100;

impl SqliteStore {
    /// Writes a batch of queue messages in one transaction: events are inserted once
    /// per id (a duplicate id is a no-op), the sessions of newly inserted events are
    /// updated in the same transaction, rejected events go to the errors log (once
    /// per key). Either all of it commits or none of it does.
    ///
    /// Runs on the single writer connection with `BEGIN IMMEDIATE`, so concurrent
    /// calls queue up rather than race: session counters stay exact.
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
        // In event-time order, each time-ordered index takes the batch's rows at a few
        // neighbouring leaves instead of at random ones. Stable, so for a repeated id
        // the first occurrence still wins.
        events.sort_by_key(|e| e.timestamp);
        let started = std::time::Instant::now();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        // In the transaction: an erasure (same writer, or another process through
        // SQLite's lock) is either wholly before this check or wholly after the commit.
        let suppressed = drop_erased(&mut tx, &mut events).await?;
        let inserted = insert_events(&mut tx, &events).await?;
        update_aggregates(&mut tx, &inserted).await?;
        let mut errors_logged = 0;
        for r in rejected {
            errors_logged += u64::from(log_error(&mut tx, r).await?);
        }
        tx.commit().await?;
        let inserted = inserted.len() as u64;
        // Events of erased sessions were taken out of `events` above.
        let duplicates = events.len() as u64 - inserted;
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

/// Drops the events of erased sessions from `events` (see `erased_sessions`); returns
/// how many. One cheap look at the table when it is empty, the common case.
async fn drop_erased(
    conn: &mut SqliteConnection,
    events: &mut Vec<NewEvent<'_>>,
) -> Result<u64, StoreError> {
    if events.is_empty() {
        return Ok(0);
    }
    let (any,): (i64,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM erased_sessions)")
        .fetch_one(&mut *conn)
        .await?;
    if any == 0 {
        return Ok(0);
    }
    let sessions: Vec<&str> = events
        .iter()
        .map(NewEvent::session)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut erased = std::collections::HashSet::new();
    for chunk in sessions.chunks(ROWS_PER_INSERT) {
        let sql = multi_row(
            "SELECT session_id FROM erased_sessions WHERE session_id IN (",
            "?",
            chunk.len(),
            ")",
        );
        let mut q = sqlx::query_as::<_, (String,)>(AssertSqlSafe(sql));
        for sid in chunk {
            q = q.bind(*sid);
        }
        erased.extend(q.fetch_all(&mut *conn).await?.into_iter().map(|(s,)| s));
    }
    let before = events.len();
    events.retain(|e| !erased.contains(e.session()));
    Ok((before - events.len()) as u64)
}

/// `INSERT ... ON CONFLICT(id) DO NOTHING RETURNING id` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO events (id, application, session_id, category, name, data, timestamp, \
         received_at, client_timestamp) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?,?,?,?)");
    }
    sql.push_str(" ON CONFLICT(id) DO NOTHING RETURNING id");
    sql
}

/// Inserts `events`, returning those that were new (first occurrence of each id that
/// was not already stored), in batch order.
async fn insert_events<'a, 'e>(
    conn: &mut SqliteConnection,
    events: &'e [NewEvent<'a>],
) -> Result<Vec<&'e NewEvent<'a>>, StoreError> {
    let mut new_ids = std::collections::HashSet::new();
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut q: SqlQuery<'_> = sqlx::query(AssertSqlSafe(insert_sql(chunk.len())));
        for e in chunk {
            q = q
                .bind(e.src.id.as_bytes().as_slice())
                .bind(e.src.application.as_str())
                .bind(e.src.event.session_id().as_str())
                .bind(e.category)
                .bind(e.name)
                .bind(e.data.as_str())
                .bind(e.timestamp)
                .bind(to_micros(e.src.received_at))
                .bind(e.src.client_timestamp.map(to_micros));
        }
        for row in q.fetch_all(&mut *conn).await? {
            let id: Vec<u8> = sqlx::Row::try_get(&row, 0)?;
            new_ids.insert(id);
        }
    }
    // The first occurrence of an id in the batch is the one SQLite inserted.
    Ok(events
        .iter()
        .filter(|e| new_ids.remove(e.src.id.as_bytes().as_slice()))
        .collect())
}

/// Updates sessions, their applications and the counters from newly inserted events.
async fn update_aggregates(
    conn: &mut SqliteConnection,
    inserted: &[&NewEvent<'_>],
) -> Result<(), StoreError> {
    if inserted.is_empty() {
        return Ok(());
    }
    let deltas = Deltas::of(inserted);
    let sessions: Vec<_> = deltas.sessions.iter().collect();
    for chunk in sessions.chunks(ROWS_PER_INSERT) {
        let sql = multi_row(
            "INSERT INTO sessions (session_id, first_seen, last_seen, event_count) VALUES ",
            "(?,?,?,?)",
            chunk.len(),
            " ON CONFLICT(session_id) DO UPDATE SET \
             first_seen = min(first_seen, excluded.first_seen), \
             last_seen = max(last_seen, excluded.last_seen), \
             event_count = event_count + excluded.event_count",
        );
        let mut q: SqlQuery<'_> = sqlx::query(AssertSqlSafe(sql));
        for (sid, d) in chunk {
            q = q.bind(*sid).bind(d.first).bind(d.last).bind(d.count);
        }
        q.execute(&mut *conn).await?;
    }

    let session_apps: Vec<_> = deltas.session_apps.iter().collect();
    for chunk in session_apps.chunks(ROWS_PER_INSERT) {
        let sql = multi_row(
            "INSERT INTO session_applications (session_id, application) VALUES ",
            "(?,?)",
            chunk.len(),
            " ON CONFLICT DO NOTHING",
        );
        let mut q: SqlQuery<'_> = sqlx::query(AssertSqlSafe(sql));
        for (sid, app) in chunk {
            q = q.bind(*sid).bind(*app);
        }
        q.execute(&mut *conn).await?;
    }

    upsert_counters(conn, &deltas).await
}

/// Adds `deltas`' counters (negative when events are removed) to `event_counts`,
/// `event_hours` and `event_buckets`.
pub(super) async fn upsert_counters(
    conn: &mut SqliteConnection,
    deltas: &Deltas<'_>,
) -> Result<(), StoreError> {
    let totals: Vec<_> = deltas.totals.iter().collect();
    for chunk in totals.chunks(ROWS_PER_INSERT) {
        let sql = multi_row(
            "INSERT INTO event_counts (application, category, name, events) VALUES ",
            "(?,?,?,?)",
            chunk.len(),
            " ON CONFLICT DO UPDATE SET events = events + excluded.events",
        );
        let mut q: SqlQuery<'_> = sqlx::query(AssertSqlSafe(sql));
        for ((app, cat, name), n) in chunk {
            q = q.bind(*app).bind(*cat).bind(*name).bind(*n);
        }
        q.execute(&mut *conn).await?;
    }

    let hours: Vec<_> = deltas.hours.iter().collect();
    for chunk in hours.chunks(ROWS_PER_INSERT) {
        let sql = multi_row(
            "INSERT INTO event_hours (hour, application, category, name, events) VALUES ",
            "(?,?,?,?,?)",
            chunk.len(),
            " ON CONFLICT DO UPDATE SET events = events + excluded.events",
        );
        let mut q: SqlQuery<'_> = sqlx::query(AssertSqlSafe(sql));
        for ((hour, (app, cat, name)), n) in chunk {
            q = q.bind(*hour).bind(*app).bind(*cat).bind(*name).bind(*n);
        }
        q.execute(&mut *conn).await?;
    }

    let buckets: Vec<_> = deltas.buckets.iter().collect();
    for chunk in buckets.chunks(ROWS_PER_INSERT) {
        let sql = multi_row(
            "INSERT INTO event_buckets (width, bucket, application, category, name, events) \
             VALUES ",
            "(?,?,?,?,?,?)",
            chunk.len(),
            " ON CONFLICT DO UPDATE SET events = events + excluded.events",
        );
        let mut q: SqlQuery<'_> = sqlx::query(AssertSqlSafe(sql));
        for ((width, bucket, (app, cat, name)), n) in chunk {
            q = q
                .bind(*width)
                .bind(*bucket)
                .bind(*app)
                .bind(*cat)
                .bind(*name)
                .bind(*n);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `head` followed by `rows` copies of `row` separated by commas, then `tail`.
pub(super) fn multi_row(head: &str, row: &str, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + rows * (row.len() + 1) + tail.len());
    sql.push_str(head);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(row);
    }
    sql.push_str(tail);
    sql
}

/// Records a rejected event once per key. Returns whether it was new.
async fn log_error(conn: &mut SqliteConnection, r: &RejectedEvent) -> Result<bool, StoreError> {
    let codes = distinct_codes(&r.errors);
    let codes_json = serde_json::to_string(&codes)
        .map_err(|e| StoreError::Corrupt(format!("error codes: {e}")))?;
    let errors_json = serde_json::to_string(&r.errors)
        .map_err(|e| StoreError::Corrupt(format!("errors: {e}")))?;
    let received_at = to_micros(r.received_at);
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO errors (key, application, received_at, codes, errors, payload) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING RETURNING id",
    )
    .bind(r.key.as_bytes().as_slice())
    .bind(r.application.as_str())
    .bind(received_at)
    .bind(codes_json)
    .bind(errors_json)
    .bind(r.payload.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(id) = id else {
        return Ok(false);
    };
    // The entry counts once under code '' and once under each of its codes.
    let hour = hour_of(received_at);
    for code in std::iter::once("").chain(codes.iter().map(String::as_str)) {
        sqlx::query(
            "INSERT INTO error_hours (hour, application, code, errors) VALUES (?, ?, ?, 1) \
             ON CONFLICT DO UPDATE SET errors = errors + 1",
        )
        .bind(hour)
        .bind(r.application.as_str())
        .bind(code)
        .execute(&mut *conn)
        .await?;
    }
    for code in &codes {
        sqlx::query("INSERT INTO error_codes (code, received_at, error_id) VALUES (?, ?, ?)")
            .bind(code.as_str())
            .bind(received_at)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(true)
}
