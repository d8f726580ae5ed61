//! Keyset pages: a page read from a cursor's position, `(time, id)` strictly after or
//! before it in the listing's order, with the same index as the page-number query and
//! a row-value bound (`(timestamp, id) < (?, ?)`) that both SQLite and PostgreSQL turn
//! into an index range. A page costs the same at any depth, however many rows share a
//! timestamp; and since the position is a key, not an offset, rows added while a
//! client walks never shift a page: no row is skipped or repeated across a walk.

use eye_core::{
    CursorParam, Direction, ErrorQuery, ErrorRecord, EventQuery, StoredEvent, TimelineQuery,
};
use uuid::Uuid;

use super::conn::Dialect;
use super::count;
use super::events::error_filter;
use super::rows::{ERROR_COLUMNS, ErrorRow, EventRow, to_micros};
use super::sql::{Arg, EventPlan, Filter};
use super::{Store, StoreError};

/// One page read by cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct KeysetPage<T> {
    /// How many rows match in all (as with page numbers).
    pub count: u64,
    /// This page's rows, in the listing's order.
    pub results: Vec<T>,
    /// Whether more rows lie beyond this page in the direction it was read (after it
    /// for the first page and `next` cursors, before it for `previous` cursors).
    pub more: bool,
}

impl<T> KeysetPage<T> {
    fn empty(count: u64) -> Self {
        Self {
            count,
            results: Vec::new(),
            more: false,
        }
    }
}

/// How a page is read from a cursor in a listing whose order is `descending` or not.
struct Read {
    /// The row-value bound's operator and the cursor's `(time, id)`, if any.
    bound: Option<(&'static str, i64, u128)>,
    /// Index order to read in.
    descending: bool,
    /// Whether the rows come back against the listing's order (a `previous` page).
    reversed: bool,
}

fn read(listing_descending: bool, cursor: Option<&CursorParam>) -> Read {
    match cursor {
        None | Some(CursorParam::First) => Read {
            bound: None,
            descending: listing_descending,
            reversed: false,
        },
        Some(CursorParam::At(c)) => {
            let forward = c.direction == Direction::Next;
            // Forward in a descending listing reads smaller keys, and so on.
            let descending = listing_descending == forward;
            Read {
                bound: Some((if descending { "<" } else { ">" }, c.time, c.id)),
                descending,
                reversed: !forward,
            }
        }
    }
}

impl Read {
    /// Keeps `page_size` of the rows read (one more was read to learn whether more
    /// follow) and puts them in the listing's order.
    fn finish<T>(&self, count: u64, mut rows: Vec<T>, page_size: u32) -> KeysetPage<T> {
        let more = rows.len() > page_size as usize;
        rows.truncate(page_size as usize);
        if self.reversed {
            rows.reverse();
        }
        KeysetPage {
            count,
            results: rows,
            more,
        }
    }

    fn limit(page_size: u32) -> Arg {
        Arg::Int(i64::from(page_size) + 1)
    }
}

/// The plan's filter with the cursor's row-value bound in place of the time bound on
/// the same side: `(timestamp, id) < (t, id)` replaces `timestamp <= end` (and the
/// other way round for `>`), with the cursor clamped into the range. Both backends
/// then start the index range at the cursor itself; given both terms, SQLite seeks by
/// the plain `timestamp <= end` and would walk every row of the cursor's instant.
pub(crate) fn bounded_filter(
    plan: &EventPlan,
    dialect: Dialect,
    (op, time, id): (&'static str, i64, u128),
) -> Filter {
    let (mut f, time, id) = if op == "<" {
        let f = plan.filter_between(plan.start, None);
        // Past `end`: the bound `(end + 1, nil)` keeps exactly `timestamp <= end`.
        let (time, id) = match plan.end {
            Some(end) if time > end => (end.saturating_add(1), 0),
            _ => (time, id),
        };
        (f, time, id)
    } else {
        let f = plan.filter_between(None, plan.end);
        // Before `start`: `(start - 1, max)` keeps exactly `timestamp >= start`.
        let (time, id) = match plan.start {
            Some(start) if time < start => (start.saturating_sub(1), u128::MAX),
            _ => (time, id),
        };
        (f, time, id)
    };
    push_bound(&mut f, dialect, leading(plan), op, time, id);
    f
}

/// The plan's leading index column and its value (`session_id = ?` → `session_id`),
/// when its index has one.
fn leading(plan: &EventPlan) -> Option<(&'static str, String)> {
    let (term, value) = plan.filter_terms.first()?;
    Some((term.strip_suffix(" = ?")?, value.clone()))
}

/// Adds the row-value bound `(timestamp, id) op (time, id)`. On PostgreSQL, with a
/// leading index column fixed by equality, the bound is written
/// `(column, timestamp, id) op (value, time, id)`: the same rows, but a comparison
/// only that column's index can serve. The planner guesses a row comparison matches
/// almost nothing, and given `(timestamp, id)` alone it walks `events_time` instead,
/// across every event of the instant (150 ms for one session's page among 300,000
/// events at one timestamp, against 0.1 ms).
fn push_bound(
    f: &mut Filter,
    dialect: Dialect,
    leading: Option<(&'static str, String)>,
    op: &str,
    time: i64,
    id: u128,
) {
    let key = [Arg::Int(time), Arg::Uuid(Uuid::from_u128(id))];
    match (dialect, leading) {
        (Dialect::Postgres, Some((column, value))) => f.push_terms(
            format!("({column}, timestamp, id) {op} (?, ?, ?)"),
            std::iter::once(Arg::Text(value)).chain(key),
        ),
        _ => f.push_terms(format!("(timestamp, id) {op} (?, ?)"), key),
    }
}

/// The position of an event in the `(timestamp, id)` order of the event listings:
/// what a cursor holds, and where [`Store::events_after`] goes on from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKey {
    /// The event's timestamp.
    pub timestamp: chrono::DateTime<chrono::Utc>,
    /// The event's id (the tie-break between events of one timestamp).
    pub id: Uuid,
}

impl EventKey {
    /// The position of `event`.
    pub fn of(event: &StoredEvent) -> Self {
        Self {
            timestamp: event.timestamp,
            id: event.id,
        }
    }
}

/// The events of one keyset read `r` under `plan`: the ids from the plan's index,
/// then the rows by primary key, `limit` at most, in `r`'s index order.
async fn keyset_events(
    conn: &mut super::conn::Conn<'_>,
    plan: &EventPlan,
    r: &Read,
    limit: Arg,
) -> Result<Vec<StoredEvent>, StoreError> {
    let f = match r.bound {
        None => plan.filter(),
        Some(bound) => bounded_filter(plan, conn.dialect(), bound),
    };
    let sql = plan.keyset_sql(conn.dialect(), r.descending, &f);
    let mut args = f.args;
    args.push(limit);
    let rows: Vec<EventRow> = conn.fetch_all(&sql, &args).await?;
    rows.into_iter().map(StoredEvent::try_from).collect()
}

/// The `(time, id)` of an errors-log entry as a cursor id, and back.
pub(crate) fn error_id_of(id: u128) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

impl Store {
    /// One page of events matching `query`, newest first, read from `query.cursor`'s
    /// position (the first page when it is `None` or `First`), and the total count.
    pub async fn events_by_cursor(
        &self,
        query: &EventQuery,
    ) -> Result<KeysetPage<StoredEvent>, StoreError> {
        let Some(plan) = EventPlan::new(query) else {
            return Ok(KeysetPage::empty(0));
        };
        let mut held = self.snapshot().await?;
        let mut conn = held.conn();
        let count = count::count_events(&mut conn, &plan).await?;
        let r = read(true, query.cursor.as_ref());
        let events = keyset_events(
            &mut conn,
            &plan,
            &r,
            Read::limit(query.pagination.page_size),
        )
        .await?;
        Ok(r.finish(count, events, query.pagination.page_size))
    }

    /// Up to `limit` events matching `query`'s filters (its paging is ignored), in the
    /// order of `GET /events` (newest first, ties by id, descending), strictly after
    /// `after` in that order (from the newest when `None`): the read a `next` cursor
    /// makes, without the page's total and its snapshot transaction. An export walks
    /// the whole listing with it, one page at a time, each page a single statement.
    ///
    /// ```
    /// # tokio_test_block_on(async {
    /// use eye_server::store::{EventKey, Store};
    /// let store = Store::open("sqlite::memory:").await.unwrap();
    /// let query = eye_core::EventQuery::new();
    /// let page = store.events_after(&query, None, 1000).await.unwrap();
    /// assert!(page.is_empty());
    /// let after = page.last().map(EventKey::of);
    /// assert!(store.events_after(&query, after, 1000).await.unwrap().is_empty());
    /// # });
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub async fn events_after(
        &self,
        query: &EventQuery,
        after: Option<EventKey>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let Some(plan) = EventPlan::new(query) else {
            return Ok(Vec::new());
        };
        let mut held = self.reader().await?;
        let mut conn = held.conn();
        let r = Read {
            bound: after.map(|k| ("<", to_micros(k.timestamp), k.id.as_u128())),
            descending: true,
            reversed: false,
        };
        keyset_events(&mut conn, &plan, &r, Arg::Int(i64::from(limit))).await
    }

    /// One page of a session's events, oldest first, read from `query.cursor`'s
    /// position, and the session's event count (from its row in `sessions`).
    pub async fn session_events_by_cursor(
        &self,
        query: &TimelineQuery,
    ) -> Result<KeysetPage<StoredEvent>, StoreError> {
        let mut held = self.snapshot().await?;
        let mut conn = held.conn();
        let session = Arg::Text(query.session_id.clone());
        let count: Option<(i64,)> = conn
            .fetch_optional(
                "SELECT event_count FROM sessions WHERE session_id = ?",
                std::slice::from_ref(&session),
            )
            .await?;
        let count = count.map_or(0, |(c,)| u64::try_from(c).unwrap_or(0));
        if count == 0 {
            return Ok(KeysetPage::empty(0));
        }
        let r = read(false, query.cursor.as_ref());
        let mut f = Filter::default();
        f.push("session_id = ?", session);
        if let Some((op, time, id)) = r.bound {
            let leading = Some(("session_id", query.session_id.clone()));
            push_bound(&mut f, conn.dialect(), leading, op, time, id);
        }
        let hint = match conn.dialect() {
            Dialect::Sqlite => " INDEXED BY events_session",
            Dialect::Postgres => "",
        };
        let o = if r.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {cols} FROM (SELECT id FROM events{hint}{w} \
             ORDER BY timestamp {o}, id {o} LIMIT ?) AS page \
             JOIN events AS e ON e.id = page.id ORDER BY e.timestamp {o}, e.id {o}",
            cols = super::rows::EVENT_COLUMNS,
            w = f.sql(),
        );
        let mut args = f.args;
        args.push(Read::limit(query.pagination.page_size));
        let rows: Vec<EventRow> = conn.fetch_all(&sql, &args).await?;
        let events = rows
            .into_iter()
            .map(StoredEvent::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(r.finish(count, events, query.pagination.page_size))
    }

    /// One page of the errors log, newest first, read from `query.cursor`'s position,
    /// and the total count of matches.
    pub async fn errors_by_cursor(
        &self,
        query: &ErrorQuery,
    ) -> Result<KeysetPage<ErrorRecord>, StoreError> {
        let start = query.time.start.map(to_micros);
        let end = query.time.end.map(to_micros);
        let mut held = self.snapshot().await?;
        let mut conn = held.conn();
        let count = count::count_errors(&mut conn, query).await?;
        let (from, mut f) = error_filter(conn.dialect(), query, start, end);
        let (time_col, id_col) = if query.code.is_some() {
            ("c.received_at", "c.error_id")
        } else {
            ("e.received_at", "e.id")
        };
        let r = read(true, query.cursor.as_ref());
        if let Some((op, time, id)) = r.bound {
            f.push_terms(
                format!("({time_col}, {id_col}) {op} (?, ?)"),
                [Arg::Int(time), Arg::Int(error_id_of(id))],
            );
        }
        let o = if r.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {ERROR_COLUMNS} FROM {from}{} ORDER BY {time_col} {o}, {id_col} {o} LIMIT ?",
            f.sql()
        );
        let mut args = f.args;
        args.push(Read::limit(query.pagination.page_size));
        let rows: Vec<ErrorRow> = conn.fetch_all(&sql, &args).await?;
        let records = rows
            .into_iter()
            .map(ErrorRecord::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(r.finish(count, records, query.pagination.page_size))
    }
}
