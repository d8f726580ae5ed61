//! How an [`EventQuery`] becomes SQL: which index serves it, its `WHERE` clause, and
//! how its total is counted without scanning the table.
//!
//! Every shape reads one index in its order and stops after the page:
//!
//! | filters (time range optional)   | index                |
//! |---------------------------------|----------------------|
//! | `session_id` (+ anything)       | `events_session`     |
//! | `name` (+ category, application)| `events_name`        |
//! | `category` (+ application)      | `events_category`    |
//! | `application`                   | `events_application` |
//! | none                            | `events_time`        |
//!
//! (On PostgreSQL, since `events` is partitioned by day, the last is the primary key
//! `(timestamp, id)` of each partition.)
//!
//! On SQLite each index is `(column, timestamp)` on a `WITHOUT ROWID` table, so its
//! entries are ordered by `(column, timestamp, id)`; on Postgres each index is
//! `(column, timestamp, id)` outright. Either way it is the page order, with no sort
//! step. SQLite is told the index (`INDEXED BY`); Postgres's planner finds it. A page is
//! found by skipping `OFFSET` entries in the index alone (a covering subquery that
//! selects only ids) and then fetching the page's rows by primary key, so a deep page
//! costs an index walk, not a table walk.

use std::borrow::Cow;

use eye_core::{EventQuery, EventType};

use super::conn::Dialect;
use super::rows::{HOUR_MICROS, hour_of, to_micros};

/// A value bound to a `?` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Text(String),
    /// Text or SQL `NULL`.
    OptText(Option<String>),
    Int(i64),
    Uuid(uuid::Uuid),
    Bytes(Vec<u8>),
}

/// A `WHERE` clause and its arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    terms: Vec<Cow<'static, str>>,
    pub args: Vec<Arg>,
}

impl Filter {
    /// Adds `term` (with one `?`) and its argument.
    pub fn push(&mut self, term: &'static str, arg: Arg) {
        self.terms.push(Cow::Borrowed(term));
        self.args.push(arg);
    }

    /// Adds a built `term` (with one `?`) and its argument.
    pub fn push_owned(&mut self, term: String, arg: Arg) {
        self.terms.push(Cow::Owned(term));
        self.args.push(arg);
    }

    /// Adds a built `term` with several `?` and their arguments, in order.
    pub fn push_terms(&mut self, term: String, args: impl IntoIterator<Item = Arg>) {
        self.terms.push(Cow::Owned(term));
        self.args.extend(args);
    }

    /// Appends `other`'s terms and arguments.
    pub fn extend(&mut self, other: Filter) {
        self.terms.extend(other.terms);
        self.args.extend(other.args);
    }

    /// ` WHERE a AND b`, or nothing.
    pub fn sql(&self) -> String {
        if self.terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.terms.join(" AND "))
        }
    }
}

/// An event query planned: which index serves it (named in SQLite's `INDEXED BY`;
/// Postgres's planner finds the same index by itself) and its filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventPlan {
    /// The index that serves it (`INDEXED BY`).
    pub index: &'static str,
    /// Session, type and application filters.
    pub filter_terms: Vec<(&'static str, String)>,
    /// Inclusive time bounds in microseconds.
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl EventPlan {
    /// Plans `query`, or `None` when nothing can match (a category and name that no
    /// event type has, so no stored event can have them).
    pub fn new(query: &EventQuery) -> Option<Self> {
        let mut terms: Vec<(&'static str, String)> = Vec::new();
        let category = query.category.as_deref();
        let name = query.name.as_deref();
        let types: Vec<EventType> = EventType::ALL
            .into_iter()
            .filter(|t| category.is_none_or(|c| t.category() == c))
            .filter(|t| name.is_none_or(|n| t.name() == n))
            .collect();
        if types.is_empty() {
            return None;
        }
        if let Some(s) = &query.session_id {
            terms.push(("session_id = ?", s.clone()));
        }
        if let Some(n) = name {
            terms.push(("name = ?", n.to_owned()));
        }
        if let Some(c) = category {
            // Redundant when every type with this name has this category: leaving it
            // out keeps the name index covering.
            let implied = name.is_some()
                && EventType::ALL
                    .into_iter()
                    .filter(|t| Some(t.name()) == name)
                    .all(|t| t.category() == c);
            if !implied {
                terms.push(("category = ?", c.to_owned()));
            }
        }
        if let Some(a) = &query.application {
            terms.push(("application = ?", a.clone()));
        }
        let index = match terms.first().map(|(t, _)| *t) {
            Some("session_id = ?") => "events_session",
            Some("name = ?") => "events_name",
            Some("category = ?") => "events_category",
            Some("application = ?") => "events_application",
            _ => "events_time",
        };
        Some(Self {
            index,
            filter_terms: terms,
            start: query.time.start.map(to_micros),
            end: query.time.end.map(to_micros),
        })
    }

    /// The `WHERE` clause for the whole query, restricted to `[start, end]`.
    pub fn filter_between(&self, start: Option<i64>, end: Option<i64>) -> Filter {
        let mut f = Filter::default();
        for (term, value) in &self.filter_terms {
            f.push(term, Arg::Text(value.clone()));
        }
        if let Some(s) = start {
            f.push("timestamp >= ?", Arg::Int(s));
        }
        if let Some(e) = end {
            f.push("timestamp <= ?", Arg::Int(e));
        }
        f
    }

    /// The `WHERE` clause of the query.
    pub fn filter(&self) -> Filter {
        self.filter_between(self.start, self.end)
    }

    /// `events`, with SQLite's index hint.
    fn events_from(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Sqlite => format!("events INDEXED BY {}", self.index),
            Dialect::Postgres => "events".to_owned(),
        }
    }

    /// The ids of one page, newest first, read from the index alone when it covers
    /// the filters. Binds: the filter's, then limit and offset.
    pub fn ids_sql(&self, dialect: Dialect) -> String {
        format!(
            "SELECT id FROM {from}{w} ORDER BY timestamp DESC, id DESC LIMIT ? OFFSET ?",
            from = self.events_from(dialect),
            w = self.filter().sql(),
        )
    }

    /// The SQL of one page, newest first: [`Self::ids_sql`], then the rows by primary
    /// key. Binds: the filter's, then limit and offset.
    pub fn page_sql(&self, dialect: Dialect) -> String {
        format!(
            "SELECT {cols} FROM ({ids}) AS page JOIN events AS e ON e.id = page.id \
             ORDER BY e.timestamp DESC, e.id DESC",
            cols = super::rows::EVENT_COLUMNS,
            ids = self.ids_sql(dialect),
        )
    }

    /// The SQL of one keyset page: the ids under `filter` (the plan's filter plus a
    /// `(timestamp, id)` bound) read from the plan's index in `(timestamp, id)` order,
    /// descending or not, then the rows by primary key in the same order. Binds:
    /// `filter`'s, then the limit.
    pub fn keyset_sql(&self, dialect: Dialect, descending: bool, filter: &Filter) -> String {
        let o = if descending { "DESC" } else { "ASC" };
        format!(
            "SELECT {cols} FROM (SELECT id FROM {from}{w} ORDER BY timestamp {o}, id {o} \
             LIMIT ?) AS page JOIN events AS e ON e.id = page.id \
             ORDER BY e.timestamp {o}, e.id {o}",
            cols = super::rows::EVENT_COLUMNS,
            from = self.events_from(dialect),
            w = filter.sql(),
        )
    }

    /// The SQL of a direct count over `[start, end]`. Binds: the filter's.
    pub fn count_sql(
        &self,
        dialect: Dialect,
        start: Option<i64>,
        end: Option<i64>,
    ) -> (String, Filter) {
        let f = self.filter_between(start, end);
        let sql = format!(
            "SELECT count(*) FROM {}{}",
            self.events_from(dialect),
            f.sql()
        );
        (sql, f)
    }

    /// True when the hourly counters cover every filter (no session filter).
    pub fn has_counters(&self) -> bool {
        !self
            .filter_terms
            .iter()
            .any(|(t, _)| *t == "session_id = ?")
    }

    /// The session id when the session is the only filter (no time range either): its
    /// count is the session row's counter.
    pub fn session_only(&self) -> Option<&str> {
        match self.filter_terms.as_slice() {
            [("session_id = ?", s)] if self.start.is_none() && self.end.is_none() => Some(s),
            _ => None,
        }
    }

    /// The counter-table `WHERE` clause for the application and type filters.
    pub fn counter_filter(&self) -> Filter {
        let mut f = Filter::default();
        for (term, value) in &self.filter_terms {
            f.push(term, Arg::Text(value.clone()));
        }
        f
    }
}

/// Splits an inclusive time range (either bound open) into the whole hours it covers,
/// counted from hourly counters, and the partial hours at its edges, counted from an
/// index; [`CountPlan::Direct`] when it covers no whole hour.
pub(crate) fn hour_split(start: Option<i64>, end: Option<i64>) -> CountPlan {
    if start.is_none() && end.is_none() {
        return CountPlan::Totals;
    }
    // Whole hours inside [start, end]: [first, last_exclusive).
    let first = start.map(|s| hour_of(s.saturating_add(HOUR_MICROS - 1)));
    let last_exclusive = end.map(|e| hour_of(e.saturating_add(1)));
    if let (Some(f), Some(l)) = (first, last_exclusive)
        && f >= l
    {
        return CountPlan::Direct;
    }
    CountPlan::Hours {
        first_hour: first,
        last_hour_exclusive: last_exclusive,
        head: first.map(|f| (start.unwrap_or_default(), f.saturating_mul(HOUR_MICROS) - 1)),
        tail: last_exclusive.map(|l| (l.saturating_mul(HOUR_MICROS), end.unwrap_or_default())),
    }
}

/// How a total is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CountPlan {
    /// `count(*)` over the plan's index range.
    Direct,
    /// A sum over `event_counts`.
    Totals,
    /// A sum over the whole hours of `event_hours` plus direct counts of the edges.
    Hours {
        first_hour: Option<i64>,
        last_hour_exclusive: Option<i64>,
        head: Option<(i64, i64)>,
        tail: Option<(i64, i64)>,
    },
}
