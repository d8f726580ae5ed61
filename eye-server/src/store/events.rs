//! Events, sessions and the errors log.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use eye_core::{ErrorQuery, ErrorRecord, EventQuery, Pagination, Session, StoredEvent};
use sqlx::sqlite::{Sqlite, SqliteArguments};
use sqlx::{AssertSqlSafe, SqliteConnection};
use uuid::Uuid;

use super::rows::{
    ERROR_COLUMNS, EVENT_COLUMNS, ErrorRow, EventRow, HOUR_MICROS, SESSION_SELECT, SessionRow,
    distinct_codes, hour_of, to_micros,
};
use super::sql::{Arg, CountPlan, EventPlan, Filter};
use super::{Store, StoreError};
use crate::queue::{AcceptedEvent, Message, RejectedEvent};

/// What one [`Store::write_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Events newly stored.
    pub inserted: u64,
    /// Events whose id was already stored (a retry or a redelivery): not stored again.
    pub duplicates: u64,
    /// Rejected events newly recorded in the errors log.
    pub errors_logged: u64,
}

/// Rows per multi-row `INSERT`: 8 columns each, far below SQLite's 32,766 variables,
/// and large enough that statement overhead is small.
const ROWS_PER_INSERT: usize = 100;

pub(crate) type SqlQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;
pub(crate) type SqlQueryAs<'q, O> = sqlx::query::QueryAs<'q, Sqlite, O, SqliteArguments>;
pub(crate) type SqlScalar<'q, O> = sqlx::query::QueryScalar<'q, Sqlite, O, SqliteArguments>;

/// Binds arguments in order.
pub(crate) fn bind_as<'q, O>(mut q: SqlQueryAs<'q, O>, args: &[Arg]) -> SqlQueryAs<'q, O> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s.clone()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

/// Binds arguments in order.
pub(crate) fn bind_scalar<'q, O>(mut q: SqlScalar<'q, O>, args: &[Arg]) -> SqlScalar<'q, O> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s.clone()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

/// A row offset or limit as SQLite's integer.
fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An event ready to insert.
struct NewEvent<'a> {
    id: [u8; 16],
    src: &'a AcceptedEvent,
    category: &'static str,
    name: &'static str,
    data: String,
    timestamp: i64,
}

impl<'a> NewEvent<'a> {
    fn new(src: &'a AcceptedEvent) -> Result<Self, StoreError> {
        let t = src.event.event_type();
        let data = serde_json::to_string(src.event.payload())
            .map_err(|e| StoreError::Corrupt(format!("event {}: data: {e}", src.id)))?;
        Ok(Self {
            id: src.id.into_bytes(),
            src,
            category: t.category(),
            name: t.name(),
            data,
            timestamp: to_micros(src.event.timestamp()),
        })
    }
}

/// Running totals of one session within a batch.
struct SessionDelta {
    first: i64,
    last: i64,
    count: i64,
}

/// Counter rows keyed by (application, category, name), optionally per hour.
type CounterKey<'a> = (&'a str, &'static str, &'static str);

impl Store {
    /// Writes a batch of queue messages in one transaction: events are inserted once
    /// per id (a duplicate id is a no-op), the sessions of newly inserted events are
    /// updated in the same transaction, rejected events go to the errors log (once
    /// per key). Either all of it commits or none of it does.
    ///
    /// Runs on the single writer connection with `BEGIN IMMEDIATE`, so concurrent
    /// calls queue up rather than race: session counters stay exact.
    pub async fn write_batch(&self, messages: &[Message]) -> Result<WriteOutcome, StoreError> {
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
        let started = std::time::Instant::now();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let inserted = insert_events(&mut tx, &events).await?;
        update_aggregates(&mut tx, &inserted).await?;
        let mut errors_logged = 0;
        for r in rejected {
            errors_logged += u64::from(log_error(&mut tx, r).await?);
        }
        tx.commit().await?;
        let inserted = inserted.len() as u64;
        let duplicates = events.len() as u64 - inserted;
        crate::metrics::batch_committed(messages.len(), inserted, duplicates, started.elapsed());
        crate::metrics::errors_logged(errors_logged);
        Ok(WriteOutcome {
            inserted,
            duplicates,
            errors_logged,
        })
    }

    /// One page of events matching `query`, newest first (ties broken by id), and the
    /// total count of matches.
    pub async fn query_events(
        &self,
        query: &EventQuery,
    ) -> Result<(u64, Vec<StoredEvent>), StoreError> {
        let Some(plan) = EventPlan::new(query) else {
            return Ok((0, Vec::new()));
        };
        // One read transaction: the count and the page see the same snapshot.
        let mut conn = self.pool.begin().await?;
        let count = count_events(&mut conn, &plan).await?;
        let p = &query.pagination;
        if count == 0 || p.offset() >= count {
            return Ok((count, Vec::new()));
        }
        let (plan, offset) = if p.offset() >= SEEK_FROM_OFFSET {
            seek(&mut conn, &plan, p.offset()).await?
        } else {
            (plan, p.offset())
        };
        let sql = plan.page_sql();
        let q = bind_as(
            sqlx::query_as::<_, EventRow>(AssertSqlSafe(sql)),
            &plan.filter().args,
        )
        .bind(i64::from(p.page_size))
        .bind(sql_int(offset));
        let rows = q.fetch_all(&mut *conn).await?;
        let events = rows
            .into_iter()
            .map(StoredEvent::try_from)
            .collect::<Result<_, _>>()?;
        Ok((count, events))
    }

    /// How many events match `query` (its pagination is ignored), without reading the
    /// page. Served from the counters where it can be: constant time without a session
    /// or time filter, a few index lookups with one.
    pub async fn count_events(&self, query: &EventQuery) -> Result<u64, StoreError> {
        let Some(plan) = EventPlan::new(query) else {
            return Ok(0);
        };
        let mut conn = self.pool.acquire().await?;
        count_events(&mut conn, &plan).await
    }

    /// One event by id.
    pub async fn get_event(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events AS e WHERE e.id = ?");
        let row = sqlx::query_as::<_, EventRow>(AssertSqlSafe(sql))
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await?;
        row.map(StoredEvent::try_from).transpose()
    }

    /// One session's row.
    pub async fn get_session(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        let sql = format!("{SESSION_SELECT} WHERE s.session_id = ?");
        let row = sqlx::query_as::<_, SessionRow>(AssertSqlSafe(sql))
            .bind(session_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(Session::try_from).transpose()
    }

    /// One page of a session's events in the order they occurred (oldest first, ties
    /// by id), and the session's event count.
    pub async fn session_events(
        &self,
        session_id: &str,
        pagination: &Pagination,
    ) -> Result<(u64, Vec<StoredEvent>), StoreError> {
        let mut conn = self.pool.begin().await?;
        let count: Option<i64> =
            sqlx::query_scalar("SELECT event_count FROM sessions WHERE session_id = ?")
                .bind(session_id)
                .fetch_optional(&mut *conn)
                .await?;
        let count = count.map_or(0, |c| u64::try_from(c).unwrap_or(0));
        if count == 0 || pagination.offset() >= count {
            return Ok((count, Vec::new()));
        }
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM (SELECT id FROM events INDEXED BY events_session \
             WHERE session_id = ? ORDER BY timestamp, id LIMIT ? OFFSET ?) AS page \
             JOIN events AS e ON e.id = page.id ORDER BY e.timestamp, e.id"
        );
        let rows = sqlx::query_as::<_, EventRow>(AssertSqlSafe(sql))
            .bind(session_id)
            .bind(i64::from(pagination.page_size))
            .bind(sql_int(pagination.offset()))
            .fetch_all(&mut *conn)
            .await?;
        let events = rows
            .into_iter()
            .map(StoredEvent::try_from)
            .collect::<Result<_, _>>()?;
        Ok((count, events))
    }

    /// One page of the errors log, newest first (ties by id), and the total count of
    /// matches.
    pub async fn query_errors(
        &self,
        query: &ErrorQuery,
    ) -> Result<(u64, Vec<ErrorRecord>), StoreError> {
        let (from, filter) = error_filter(query);
        let mut conn = self.pool.begin().await?;
        let count_sql = format!("SELECT count(*) FROM {from}{}", filter.sql());
        let count: i64 = bind_scalar(sqlx::query_scalar(AssertSqlSafe(count_sql)), &filter.args)
            .fetch_one(&mut *conn)
            .await?;
        let count = u64::try_from(count).unwrap_or(0);
        let p = &query.pagination;
        if count == 0 || p.offset() >= count {
            return Ok((count, Vec::new()));
        }
        let order = if query.code.is_some() {
            "c.received_at DESC, c.error_id DESC"
        } else {
            "e.received_at DESC, e.id DESC"
        };
        let sql = format!(
            "SELECT {ERROR_COLUMNS} FROM {from}{} ORDER BY {order} LIMIT ? OFFSET ?",
            filter.sql()
        );
        let rows = bind_as(
            sqlx::query_as::<_, ErrorRow>(AssertSqlSafe(sql)),
            &filter.args,
        )
        .bind(i64::from(p.page_size))
        .bind(sql_int(p.offset()))
        .fetch_all(&mut *conn)
        .await?;
        let records = rows
            .into_iter()
            .map(ErrorRecord::try_from)
            .collect::<Result<_, _>>()?;
        Ok((count, records))
    }
}

/// The `FROM` and `WHERE` of an errors-log query.
fn error_filter(query: &ErrorQuery) -> (&'static str, Filter) {
    let mut f = Filter::default();
    let (from, time_col) = if let Some(code) = &query.code {
        f.push("c.code = ?", Arg::Text(code.clone()));
        (
            "error_codes AS c JOIN errors AS e ON e.id = c.error_id",
            "c.received_at",
        )
    } else if query.application.is_some() {
        ("errors AS e INDEXED BY errors_application", "e.received_at")
    } else {
        ("errors AS e INDEXED BY errors_time", "e.received_at")
    };
    if let Some(app) = &query.application {
        f.push("e.application = ?", Arg::Text(app.clone()));
    }
    if let Some(s) = query.time.start {
        f.push_owned(format!("{time_col} >= ?"), Arg::Int(to_micros(s)));
    }
    if let Some(e) = query.time.end {
        f.push_owned(format!("{time_col} <= ?"), Arg::Int(to_micros(e)));
    }
    (from, f)
}

/// Counts the events `plan` matches without scanning the table: from the counters
/// when no session or time filter applies, from the hourly counters plus the partial
/// hours at the edges for a time range, and from the session index for a session.
pub(crate) async fn count_events(
    conn: &mut SqliteConnection,
    plan: &EventPlan,
) -> Result<u64, StoreError> {
    let total = match plan.count() {
        CountPlan::Direct => count_direct(conn, plan, plan.start, plan.end).await?,
        CountPlan::Totals => {
            let f = plan.counter_filter();
            let sql = format!(
                "SELECT coalesce(sum(events), 0) FROM event_counts{}",
                f.sql()
            );
            bind_scalar(sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql)), &f.args)
                .fetch_one(&mut *conn)
                .await?
        }
        CountPlan::Hours {
            first_hour,
            last_hour_exclusive,
            head,
            tail,
        } => {
            let mut f = plan.counter_filter();
            if let Some(h) = first_hour {
                f.push("hour >= ?", Arg::Int(h));
            }
            if let Some(h) = last_hour_exclusive {
                f.push("hour < ?", Arg::Int(h));
            }
            let sql = format!(
                "SELECT coalesce(sum(events), 0) FROM event_hours{}",
                f.sql()
            );
            let mut n = bind_scalar(sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql)), &f.args)
                .fetch_one(&mut *conn)
                .await?;
            for (s, e) in [head, tail].into_iter().flatten() {
                if s <= e {
                    n += count_direct(conn, plan, Some(s), Some(e)).await?;
                }
            }
            n
        }
    };
    Ok(u64::try_from(total).unwrap_or(0))
}

/// From this offset on, a page is found by [`seek`] rather than by skipping index
/// entries one by one.
pub(crate) const SEEK_FROM_OFFSET: u64 = 2_000;

/// Hour rows read per round trip while seeking.
const SEEK_HOURS_PER_READ: i64 = 128;

/// Narrows a deep page to the hour it starts in, using the hourly counters: walking
/// whole hours newest first, the events of every hour that ends before the page starts
/// are skipped by their count, so the remaining `OFFSET` is less than one hour's events
/// instead of up to the whole table. Returns the narrowed plan (same filters, an
/// earlier `end`) and the offset within it. The counters are written in the same
/// transactions as the events and read in the same snapshot, so the result is exact.
///
/// A session filter is not in the counters; such queries are returned unchanged (a
/// session's events are few).
pub(crate) async fn seek(
    conn: &mut SqliteConnection,
    plan: &EventPlan,
    offset: u64,
) -> Result<(EventPlan, u64), StoreError> {
    if !plan.has_counters() {
        return Ok((plan.clone(), offset));
    }
    let mut skipped = 0u64;
    // Hours strictly below `upper` are whole; the hour holding `end` is partial.
    let mut upper = None;
    if let Some(e) = plan.end {
        let tail_hour = hour_of(e);
        let tail_start = tail_hour.saturating_mul(HOUR_MICROS);
        let from = plan.start.map_or(tail_start, |s| s.max(tail_start));
        let tail = u64::try_from(count_direct(conn, plan, Some(from), Some(e)).await?).unwrap_or(0);
        if offset < tail {
            return Ok((plan.clone(), offset));
        }
        skipped = tail;
        upper = Some(tail_hour);
    }
    // Hours from `first_full` on lie wholly after `start`.
    let first_full = plan
        .start
        .map(|s| hour_of(s.saturating_add(HOUR_MICROS - 1)));
    loop {
        let mut f = plan.counter_filter();
        if let Some(h) = first_full {
            f.push("hour >= ?", Arg::Int(h));
        }
        if let Some(h) = upper {
            f.push("hour < ?", Arg::Int(h));
        }
        let sql = format!(
            "SELECT hour, sum(events) FROM event_hours{} GROUP BY hour ORDER BY hour DESC \
             LIMIT {SEEK_HOURS_PER_READ}",
            f.sql()
        );
        let hours = bind_as(sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(sql)), &f.args)
            .fetch_all(&mut *conn)
            .await?;
        for &(hour, n) in &hours {
            let n = u64::try_from(n).unwrap_or(0);
            if skipped + n > offset {
                let mut narrowed = plan.clone();
                let hour_end = hour
                    .saturating_add(1)
                    .saturating_mul(HOUR_MICROS)
                    .saturating_sub(1);
                narrowed.end = Some(narrowed.end.map_or(hour_end, |e| e.min(hour_end)));
                return Ok((narrowed, offset - skipped));
            }
            skipped += n;
            upper = Some(hour);
        }
        if (hours.len() as i64) < SEEK_HOURS_PER_READ {
            break;
        }
    }
    // Every whole hour is skipped: the page starts in the partial hour before
    // `first_full`, if there is one.
    match first_full {
        Some(h) => {
            let mut narrowed = plan.clone();
            narrowed.end = Some(h.saturating_mul(HOUR_MICROS).saturating_sub(1));
            Ok((narrowed, offset - skipped))
        }
        None => Ok((plan.clone(), offset)),
    }
}

/// `count(*)` over the plan's index, restricted to `[start, end]`.
async fn count_direct(
    conn: &mut SqliteConnection,
    plan: &EventPlan,
    start: Option<i64>,
    end: Option<i64>,
) -> Result<i64, StoreError> {
    let (sql, f) = plan.count_sql(start, end);
    Ok(
        bind_scalar(sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql)), &f.args)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// `INSERT ... ON CONFLICT(id) DO NOTHING RETURNING id` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO events (id, application, session_id, category, name, data, timestamp, \
         received_at) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?,?,?)");
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
                .bind(e.id.as_slice())
                .bind(e.src.application.as_str())
                .bind(e.src.event.session_id().as_str())
                .bind(e.category)
                .bind(e.name)
                .bind(e.data.as_str())
                .bind(e.timestamp)
                .bind(to_micros(e.src.received_at));
        }
        for row in q.fetch_all(&mut *conn).await? {
            let id: Vec<u8> = sqlx::Row::try_get(&row, 0)?;
            new_ids.insert(id);
        }
    }
    // The first occurrence of an id in the batch is the one SQLite inserted.
    Ok(events
        .iter()
        .filter(|e| new_ids.remove(e.id.as_slice()))
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
    let mut sessions: BTreeMap<&str, SessionDelta> = BTreeMap::new();
    let mut session_apps: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut totals: HashMap<CounterKey<'_>, i64> = HashMap::new();
    let mut hours: BTreeMap<(i64, CounterKey<'_>), i64> = BTreeMap::new();
    for e in inserted {
        let sid = e.src.event.session_id().as_str();
        let app = e.src.application.as_str();
        sessions
            .entry(sid)
            .and_modify(|d| {
                d.first = d.first.min(e.timestamp);
                d.last = d.last.max(e.timestamp);
                d.count += 1;
            })
            .or_insert(SessionDelta {
                first: e.timestamp,
                last: e.timestamp,
                count: 1,
            });
        session_apps.insert((sid, app));
        let key = (app, e.category, e.name);
        *totals.entry(key).or_default() += 1;
        *hours.entry((hour_of(e.timestamp), key)).or_default() += 1;
    }

    let sessions: Vec<_> = sessions.into_iter().collect();
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

    let session_apps: Vec<_> = session_apps.into_iter().collect();
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

    let totals: Vec<_> = totals.into_iter().collect();
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

    let hours: Vec<_> = hours.into_iter().collect();
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
    Ok(())
}

/// `head` followed by `rows` copies of `row` separated by commas, then `tail`.
fn multi_row(head: &str, row: &str, rows: usize, tail: &str) -> String {
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
