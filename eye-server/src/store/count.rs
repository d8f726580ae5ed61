//! Totals without scanning `events` or the errors log, and the deep-page seek: both
//! read the counters that the write path keeps in the same transaction as the rows.

use eye_core::ErrorQuery;

use super::StoreError;
use super::conn::Conn;
use super::events::error_filter;
use super::rows::to_micros;
use super::sql::{Arg, CountPlan, EventPlan, Filter, hour_split};
use super::tree;

/// Counts the events `plan` matches without scanning the table: a session's counter
/// when the session is the only filter, the totals without a time filter, the
/// counter tree (see `tree`) with one, and the session index for other session
/// queries (a session's events are few).
pub(crate) async fn count_events(conn: &mut Conn<'_>, plan: &EventPlan) -> Result<u64, StoreError> {
    let total = if let Some(session) = plan.session_only() {
        conn.scalar(
            "SELECT coalesce((SELECT event_count FROM sessions WHERE session_id = ?), 0)",
            &[Arg::Text(session.to_owned())],
        )
        .await?
    } else if !plan.has_counters() {
        tree::count_rows(conn, plan, plan.start, plan.end).await?
    } else if plan.start.is_none() && plan.end.is_none() {
        let f = plan.counter_filter();
        let sql = format!(
            "SELECT CAST(coalesce(sum(events), 0) AS BIGINT) FROM event_counts{}",
            f.sql()
        );
        conn.scalar(&sql, &f.args).await?
    } else {
        tree::count_range(conn, plan, plan.start, plan.end).await?
    };
    Ok(u64::try_from(total).unwrap_or(0))
}

/// From this offset on, a page is found by [`seek`] rather than by skipping index
/// entries one by one.
pub(crate) const SEEK_FROM_OFFSET: u64 = 2_000;

/// Narrows a deep page to the 10 ms bucket it starts in, using the counter tree (see
/// `tree::seek`): returns the narrowed plan (same filters, an earlier `end`) and the
/// offset within it, which is less than one bucket's events instead of up to the whole
/// table. The counters are written in the same transactions as the events and read in
/// the same snapshot, so the result is exact.
///
/// A session filter is not in the counters; such queries are returned unchanged (a
/// session's events are few).
pub(crate) async fn seek(
    conn: &mut Conn<'_>,
    plan: &EventPlan,
    offset: u64,
) -> Result<(EventPlan, u64), StoreError> {
    if !plan.has_counters() {
        return Ok((plan.clone(), offset));
    }
    match tree::seek(conn, plan, offset).await? {
        Some((end, within)) => {
            let mut narrowed = plan.clone();
            narrowed.end = end;
            Ok((narrowed, within))
        }
        None => Ok((plan.clone(), offset)),
    }
}

/// Counts the errors-log entries `query` matches: from `error_hours` for whole hours
/// (every hour when there is no time filter) plus the partial hours at the edges of a
/// time range from the index.
pub(crate) async fn count_errors(
    conn: &mut Conn<'_>,
    query: &ErrorQuery,
) -> Result<u64, StoreError> {
    let start = query.time.start.map(to_micros);
    let end = query.time.end.map(to_micros);
    let counters = |first: Option<i64>, last_exclusive: Option<i64>| {
        let mut f = Filter::default();
        f.push(
            "code = ?",
            Arg::Text(query.code.clone().unwrap_or_default()),
        );
        if let Some(a) = &query.application {
            f.push("application = ?", Arg::Text(a.clone()));
        }
        within_hours(f, first, last_exclusive)
    };
    let total = match hour_split(start, end) {
        CountPlan::Direct => count_errors_direct(conn, query, start, end).await?,
        CountPlan::Totals => sum_error_hours(conn, &counters(None, None)).await?,
        CountPlan::Hours {
            first_hour,
            last_hour_exclusive,
            head,
            tail,
        } => {
            let mut n = sum_error_hours(conn, &counters(first_hour, last_hour_exclusive)).await?;
            for (s, e) in [head, tail].into_iter().flatten() {
                if s <= e {
                    n += count_errors_direct(conn, query, Some(s), Some(e)).await?;
                }
            }
            n
        }
    };
    Ok(u64::try_from(total).unwrap_or(0))
}

async fn sum_error_hours(conn: &mut Conn<'_>, f: &Filter) -> Result<i64, StoreError> {
    let sql = format!(
        "SELECT CAST(coalesce(sum(errors), 0) AS BIGINT) FROM error_hours{}",
        f.sql()
    );
    conn.scalar(&sql, &f.args).await
}

/// `count(*)` of the errors log over its index, restricted to `[start, end]`.
async fn count_errors_direct(
    conn: &mut Conn<'_>,
    query: &ErrorQuery,
    start: Option<i64>,
    end: Option<i64>,
) -> Result<i64, StoreError> {
    let (from, f) = error_filter(conn.dialect(), query, start, end);
    let sql = format!("SELECT count(*) FROM {from}{}", f.sql());
    conn.scalar(&sql, &f.args).await
}

/// A counters filter narrowed to the hours from `first` up to, not including, `end`
/// (either bound open).
fn within_hours(mut f: Filter, first: Option<i64>, end: Option<i64>) -> Filter {
    if let Some(h) = first {
        f.push("hour >= ?", Arg::Int(h));
    }
    if let Some(h) = end {
        f.push("hour < ?", Arg::Int(h));
    }
    f
}
