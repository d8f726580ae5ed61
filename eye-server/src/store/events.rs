//! Events, sessions and the errors log.

use eye_core::{ErrorQuery, ErrorRecord, EventQuery, Pagination, Session, SessionId, StoredEvent};
use uuid::Uuid;

use super::conn::Dialect;
use super::count;
use super::rows::{
    ERROR_COLUMNS, EVENT_COLUMNS, ErrorRow, EventRow, SessionRow, session_select, to_micros,
};
use super::sql::{Arg, EventPlan, Filter};
use super::{Store, StoreError};

/// What one [`Store::write_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Events newly stored.
    pub inserted: u64,
    /// Events whose id was already stored (a retry or a redelivery): not stored again.
    pub duplicates: u64,
    /// Rejected events newly recorded in the errors log.
    pub errors_logged: u64,
    /// Events of erased sessions, dropped (see [`Store::erase_session`]).
    pub suppressed: u64,
}

/// A row offset or limit as a SQL integer.
fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
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
        let mut held = self.snapshot().await?;
        let mut conn = held.conn();
        let count = count::count_events(&mut conn, &plan).await?;
        let p = &query.pagination;
        if count == 0 || p.offset() >= count {
            return Ok((count, Vec::new()));
        }
        let (plan, offset) = if p.offset() >= count::SEEK_FROM_OFFSET {
            count::seek(&mut conn, &plan, p.offset()).await?
        } else {
            (plan, p.offset())
        };
        let sql = plan.page_sql(conn.dialect());
        let mut args = plan.filter().args;
        args.extend([Arg::Int(i64::from(p.page_size)), Arg::Int(sql_int(offset))]);
        let rows: Vec<EventRow> = conn.fetch_all(&sql, &args).await?;
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
        let mut held = self.reader().await?;
        count::count_events(&mut held.conn(), &plan).await
    }

    /// One event by id.
    pub async fn get_event(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events AS e WHERE e.id = ?");
        let row: Option<EventRow> = self
            .reader()
            .await?
            .conn()
            .fetch_optional(&sql, &[Arg::Uuid(id)])
            .await?;
        row.map(StoredEvent::try_from).transpose()
    }

    /// One session's row. An id no event could carry (empty, too long, with a control
    /// character such as NUL, which PostgreSQL refuses in text) names no session, and
    /// is answered without asking the database.
    pub async fn get_session(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        if SessionId::parse(session_id).is_err() {
            return Ok(None);
        }
        let mut held = self.reader().await?;
        let mut conn = held.conn();
        let sql = format!("{} WHERE s.session_id = ?", session_select(conn.dialect()));
        let row: Option<SessionRow> = conn
            .fetch_optional(&sql, &[Arg::Text(session_id.to_owned())])
            .await?;
        row.map(Session::try_from).transpose()
    }

    /// One page of a session's events in the order they occurred (oldest first, ties
    /// by id), and the session's event count (none for an id no event could carry,
    /// as [`Store::get_session`]).
    pub async fn session_events(
        &self,
        session_id: &str,
        pagination: &Pagination,
    ) -> Result<(u64, Vec<StoredEvent>), StoreError> {
        if SessionId::parse(session_id).is_err() {
            return Ok((0, Vec::new()));
        }
        let mut held = self.snapshot().await?;
        let mut conn = held.conn();
        let count: Option<(i64,)> = conn
            .fetch_optional(
                "SELECT event_count FROM sessions WHERE session_id = ?",
                &[Arg::Text(session_id.to_owned())],
            )
            .await?;
        let count = count.map_or(0, |(c,)| u64::try_from(c).unwrap_or(0));
        if count == 0 || pagination.offset() >= count {
            return Ok((count, Vec::new()));
        }
        let sql = session_page_sql(conn.dialect());
        let rows: Vec<EventRow> = conn
            .fetch_all(
                &sql,
                &[
                    Arg::Text(session_id.to_owned()),
                    Arg::Int(i64::from(pagination.page_size)),
                    Arg::Int(sql_int(pagination.offset())),
                ],
            )
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
        let mut held = self.snapshot().await?;
        let mut conn = held.conn();
        let count = count::count_errors(&mut conn, query).await?;
        let p = &query.pagination;
        if count == 0 || p.offset() >= count {
            return Ok((count, Vec::new()));
        }
        let (sql, args) = errors_page_sql(conn.dialect(), query);
        let rows: Vec<ErrorRow> = conn.fetch_all(&sql, &args).await?;
        let records = rows
            .into_iter()
            .map(ErrorRecord::try_from)
            .collect::<Result<_, _>>()?;
        Ok((count, records))
    }
}

/// One page of a session's events, oldest first; bound: the session id, the page
/// size and the offset.
pub(crate) fn session_page_sql(dialect: Dialect) -> String {
    let hint = match dialect {
        Dialect::Sqlite => " INDEXED BY events_session",
        Dialect::Postgres => "",
    };
    format!(
        "SELECT {EVENT_COLUMNS} FROM (SELECT id FROM events{hint} \
         WHERE session_id = ? ORDER BY timestamp, id LIMIT ? OFFSET ?) AS page \
         JOIN events AS e ON e.id = page.id ORDER BY e.timestamp, e.id"
    )
}

/// One page of the errors log for `query`, newest first, and its bound arguments.
pub(crate) fn errors_page_sql(dialect: Dialect, query: &ErrorQuery) -> (String, Vec<Arg>) {
    let start = query.time.start.map(to_micros);
    let end = query.time.end.map(to_micros);
    let (from, filter) = error_filter(dialect, query, start, end);
    let order = if query.code.is_some() {
        "c.received_at DESC, c.error_id DESC"
    } else {
        "e.received_at DESC, e.id DESC"
    };
    let sql = format!(
        "SELECT {ERROR_COLUMNS} FROM {from}{} ORDER BY {order} LIMIT ? OFFSET ?",
        filter.sql()
    );
    let p = &query.pagination;
    let mut args = filter.args;
    args.extend([
        Arg::Int(i64::from(p.page_size)),
        Arg::Int(sql_int(p.offset())),
    ]);
    (sql, args)
}

/// The `FROM` and `WHERE` of an errors-log query, restricted to received times in
/// `[start, end]` (microseconds).
pub(crate) fn error_filter(
    dialect: Dialect,
    query: &ErrorQuery,
    start: Option<i64>,
    end: Option<i64>,
) -> (&'static str, Filter) {
    let mut f = Filter::default();
    let (from, time_col) = if let Some(code) = &query.code {
        f.push("c.code = ?", Arg::Text(code.clone()));
        (
            "error_codes AS c JOIN errors AS e ON e.id = c.error_id",
            "c.received_at",
        )
    } else if dialect == Dialect::Postgres {
        ("errors AS e", "e.received_at")
    } else if query.application.is_some() {
        ("errors AS e INDEXED BY errors_application", "e.received_at")
    } else {
        ("errors AS e INDEXED BY errors_time", "e.received_at")
    };
    if let Some(app) = &query.application {
        f.push("e.application = ?", Arg::Text(app.clone()));
    }
    if let Some(s) = start {
        f.push_owned(format!("{time_col} >= ?"), Arg::Int(s));
    }
    if let Some(e) = end {
        f.push_owned(format!("{time_col} <= ?"), Arg::Int(e));
    }
    (from, f)
}
