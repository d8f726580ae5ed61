//! Totals without scanning `events`, and the deep-page seek: both read the counters
//! that the write path keeps in the same transaction as the events.

use sqlx::{AssertSqlSafe, SqliteConnection};

use eye_core::ErrorQuery;

use super::StoreError;
use super::events::{bind_as, bind_scalar, error_filter};
use super::rows::{HOUR_MICROS, hour_of, to_micros};
use super::sql::{Arg, CountPlan, EventPlan, Filter, hour_split};

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
            let f = within_hours(plan.counter_filter(), first_hour, last_hour_exclusive);
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
        let f = within_hours(plan.counter_filter(), first_full, upper);
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

/// Counts the errors-log entries `query` matches: from `error_hours` for whole hours
/// (every hour when there is no time filter) plus the partial hours at the edges of a
/// time range from the index.
pub(crate) async fn count_errors(
    conn: &mut SqliteConnection,
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

async fn sum_error_hours(conn: &mut SqliteConnection, f: &Filter) -> Result<i64, StoreError> {
    let sql = format!(
        "SELECT coalesce(sum(errors), 0) FROM error_hours{}",
        f.sql()
    );
    Ok(
        bind_scalar(sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql)), &f.args)
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// `count(*)` of the errors log over its index, restricted to `[start, end]`.
async fn count_errors_direct(
    conn: &mut SqliteConnection,
    query: &ErrorQuery,
    start: Option<i64>,
    end: Option<i64>,
) -> Result<i64, StoreError> {
    let (from, f) = error_filter(query, start, end);
    let sql = format!("SELECT count(*) FROM {from}{}", f.sql());
    Ok(
        bind_scalar(sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql)), &f.args)
            .fetch_one(&mut *conn)
            .await?,
    )
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
