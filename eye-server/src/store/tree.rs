//! The counter tree: events per bucket of event time at four widths (hour, minute,
//! second, 10 ms), by application and type, written in the same transaction as the
//! events. Together they answer, without walking the events index:
//!
//! - the count of any time range: whole buckets at the coarsest width that fits, finer
//!   widths at the edges, and `count(*)` only over the partial 10 ms at each edge;
//! - the deep-page seek: newest bucket first, whole buckets are skipped by their
//!   count, then the same inside the bucket the page starts in, one width finer each
//!   time, so the `OFFSET` left to skip is at most the events of one 10 ms bucket.
//!
//! Hours are `event_hours` (also read by the dashboard); the finer widths are rows of
//! `event_buckets` keyed by their width in microseconds.

use super::StoreError;
use super::conn::{Conn, Dialect};
use super::rows::HOUR_MICROS;
use super::sql::{Arg, EventPlan, Filter};

/// Bucket widths in microseconds, coarsest first. Each divides the one before, so a
/// bucket is the disjoint union of the buckets one level finer inside it. Hours come
/// from `event_hours`, the rest from `event_buckets`.
pub(crate) const WIDTHS: [i64; 4] = [HOUR_MICROS, 60_000_000, 1_000_000, 10_000];

/// The widths stored in `event_buckets`.
pub(crate) fn fine_widths() -> &'static [i64] {
    &WIDTHS[1..]
}

/// The bucket of an instant at `width` (floor division: instants before 1970 work).
pub(crate) fn bucket_of(micros: i64, width: i64) -> i64 {
    micros.div_euclid(width)
}

/// Bucket rows read per round trip while seeking: more than the buckets of one parent
/// at every width below the hour (at most 100). On Postgres a round trip costs a
/// network hop rather than a function call, so it reads more hours at once: a deep
/// page over months of data then costs one read of the hours, not one per 128.
fn buckets_per_read(dialect: Dialect) -> i64 {
    match dialect {
        Dialect::Sqlite => 128,
        Dialect::Postgres => 2048,
    }
}

/// `SELECT` of the per-bucket sums at `level` under `filter`, plus its bound
/// arguments: the bucket column, the table, and the filter with the width first.
fn level_source(level: usize, filter: Filter) -> (&'static str, &'static str, Filter) {
    if level == 0 {
        ("hour", "event_hours", filter)
    } else {
        let mut f = Filter::default();
        f.push("width = ?", Arg::Int(WIDTHS[level]));
        f.extend(filter);
        ("bucket", "event_buckets", f)
    }
}

/// `filter` restricted to buckets in `[first, last_exclusive)` (either bound open).
fn within(mut f: Filter, column: &str, first: Option<i64>, last_exclusive: Option<i64>) -> Filter {
    if let Some(b) = first {
        f.push_owned(format!("{column} >= ?"), Arg::Int(b));
    }
    if let Some(b) = last_exclusive {
        f.push_owned(format!("{column} < ?"), Arg::Int(b));
    }
    f
}

/// The first bucket at `width` wholly at or after `start`.
fn first_whole(start: i64, width: i64) -> i64 {
    bucket_of(start.saturating_add(width - 1), width)
}

/// The bucket after the last one wholly at or before `end`.
fn end_whole(end: i64, width: i64) -> i64 {
    bucket_of(end.saturating_add(1), width)
}

/// One part of a time range, counted one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Whole buckets `[first, last_exclusive)` at `WIDTHS[level]`, from the counters.
    Buckets {
        level: usize,
        first: Option<i64>,
        last_exclusive: Option<i64>,
    },
    /// Events in `[start, end]` counted from the index (less than 10 ms of them).
    Rows {
        start: Option<i64>,
        end: Option<i64>,
    },
}

/// Splits the inclusive range `[start, end]` (either bound open) into the fewest
/// pieces, oldest first: whole buckets at the coarsest width that fits, finer widths
/// toward the edges, and rows only within the partial 10 ms at each edge.
pub(crate) fn pieces(start: Option<i64>, end: Option<i64>) -> Vec<Piece> {
    let mut out = Vec::new();
    split(start, end, 0, &mut out);
    out
}

fn split(start: Option<i64>, end: Option<i64>, level: usize, out: &mut Vec<Piece>) {
    let Some(&width) = WIDTHS.get(level) else {
        out.push(Piece::Rows { start, end });
        return;
    };
    let first = start.map(|s| first_whole(s, width));
    let last_exclusive = end.map(|e| end_whole(e, width));
    if let (Some(f), Some(l)) = (first, last_exclusive)
        && f >= l
    {
        // No whole bucket at this width: the range lies within one or two of them.
        return split(start, end, level + 1, out);
    }
    if let (Some(s), Some(f)) = (start, first)
        && s < f.saturating_mul(width)
    {
        split(Some(s), Some(f.saturating_mul(width) - 1), level + 1, out);
    }
    out.push(Piece::Buckets {
        level,
        first,
        last_exclusive,
    });
    if let (Some(e), Some(l)) = (end, last_exclusive)
        && l.saturating_mul(width) <= e
    {
        split(Some(l.saturating_mul(width)), Some(e), level + 1, out);
    }
}

/// Counts the events `plan` matches in `[start, end]` in one statement: a sum of the
/// counters of every whole bucket piece and `count(*)` of the edge rows.
pub(crate) async fn count_range(
    conn: &mut Conn<'_>,
    plan: &EventPlan,
    start: Option<i64>,
    end: Option<i64>,
) -> Result<i64, StoreError> {
    let mut parts = Vec::new();
    let mut args = Vec::new();
    for piece in pieces(start, end) {
        let (sql, f) = match piece {
            Piece::Buckets {
                level,
                first,
                last_exclusive,
            } => {
                let (column, table, f) = level_source(level, plan.counter_filter());
                let f = within(f, column, first, last_exclusive);
                (
                    format!(
                        "(SELECT CAST(coalesce(sum(events), 0) AS BIGINT) FROM {table}{})",
                        f.sql()
                    ),
                    f,
                )
            }
            Piece::Rows { start, end } => {
                let (sql, f) = plan.count_sql(conn.dialect(), start, end);
                (format!("({sql})"), f)
            }
        };
        parts.push(sql);
        args.extend(f.args);
    }
    let sql = format!("SELECT {}", parts.join(" + "));
    conn.scalar(&sql, &args).await
}

/// A part of the range still to walk while seeking, newest parts on top of the stack.
#[derive(Debug, Clone, Copy)]
enum Todo {
    /// The events in `[start, end]`, to split at `WIDTHS[level]`; `known` is their
    /// count when the counters gave it.
    Range {
        start: Option<i64>,
        end: Option<i64>,
        level: usize,
        known: Option<u64>,
    },
    /// Whole buckets `[first, last_exclusive)` at `WIDTHS[level]`, not read yet.
    Buckets {
        level: usize,
        first: Option<i64>,
        last_exclusive: Option<i64>,
    },
}

/// Finds where the row at `offset` (newest first) of `plan` lies: returns an `end` at
/// or below the plan's, and the offset of that row among the plan's rows up to that
/// `end`, which is less than the events of one 10 ms bucket (or of the partial bucket
/// at an edge). `None` when the plan has fewer rows.
///
/// Walks the counter tree newest first. Pieces newer than the row are skipped by
/// their count; the piece holding it is split one width finer, down to 10 ms.
pub(crate) async fn seek(
    conn: &mut Conn<'_>,
    plan: &EventPlan,
    mut offset: u64,
) -> Result<Option<(Option<i64>, u64)>, StoreError> {
    let mut stack = vec![Todo::Range {
        start: plan.start,
        end: plan.end,
        level: 0,
        known: None,
    }];
    while let Some(todo) = stack.pop() {
        match todo {
            Todo::Range {
                start,
                end,
                level,
                known,
            } => {
                if let Some(n) = known
                    && offset >= n
                {
                    offset -= n;
                    continue;
                }
                let Some(&width) = WIDTHS.get(level) else {
                    let n = match known {
                        Some(n) => n,
                        None => {
                            u64::try_from(count_rows(conn, plan, start, end).await?).unwrap_or(0)
                        }
                    };
                    if offset < n {
                        return Ok(Some((end, offset)));
                    }
                    offset -= n;
                    continue;
                };
                let first = start.map(|s| first_whole(s, width));
                let last_exclusive = end.map(|e| end_whole(e, width));
                if let (Some(f), Some(l)) = (first, last_exclusive)
                    && f >= l
                {
                    stack.push(Todo::Range {
                        start,
                        end,
                        level: level + 1,
                        known,
                    });
                    continue;
                }
                // Pushed oldest first, so the newest piece is walked first.
                if let (Some(s), Some(f)) = (start, first)
                    && s < f.saturating_mul(width)
                {
                    stack.push(Todo::Range {
                        start: Some(s),
                        end: Some(f.saturating_mul(width) - 1),
                        level: level + 1,
                        known: None,
                    });
                }
                stack.push(Todo::Buckets {
                    level,
                    first,
                    last_exclusive,
                });
                if let (Some(e), Some(l)) = (end, last_exclusive)
                    && l.saturating_mul(width) <= e
                {
                    stack.push(Todo::Range {
                        start: Some(l.saturating_mul(width)),
                        end: Some(e),
                        level: level + 1,
                        known: None,
                    });
                }
            }
            Todo::Buckets {
                level,
                first,
                last_exclusive,
            } => {
                let width = WIDTHS[level];
                let per_read = buckets_per_read(conn.dialect());
                let (sql, f) = buckets_sql(conn.dialect(), plan, level, first, last_exclusive);
                let rows: Vec<(i64, i64)> = conn.fetch_all(&sql, &f.args).await?;
                if rows.len() as i64 == per_read
                    && let Some(&(oldest, _)) = rows.last()
                {
                    stack.push(Todo::Buckets {
                        level,
                        first,
                        last_exclusive: Some(oldest),
                    });
                }
                for &(bucket, n) in rows.iter().rev() {
                    let start = bucket.saturating_mul(width);
                    stack.push(Todo::Range {
                        start: Some(start),
                        end: Some(start.saturating_add(width - 1)),
                        level: level + 1,
                        known: Some(u64::try_from(n).unwrap_or(0)),
                    });
                }
            }
        }
    }
    Ok(None)
}

/// The seek's read of the per-bucket sums of `plan` at `level` in
/// `[first, last_exclusive)`, newest bucket first, one page of
/// [`buckets_per_read`]; and its filter (the bound arguments).
pub(crate) fn buckets_sql(
    dialect: Dialect,
    plan: &EventPlan,
    level: usize,
    first: Option<i64>,
    last_exclusive: Option<i64>,
) -> (String, Filter) {
    let (column, table, f) = level_source(level, plan.counter_filter());
    let f = within(f, column, first, last_exclusive);
    let per_read = buckets_per_read(dialect);
    let sql = format!(
        "SELECT {column}, CAST(sum(events) AS BIGINT) FROM {table}{} \
         GROUP BY {column} ORDER BY {column} DESC LIMIT {per_read}",
        f.sql()
    );
    (sql, f)
}

/// `count(*)` over the plan's index, restricted to `[start, end]`.
pub(crate) async fn count_rows(
    conn: &mut Conn<'_>,
    plan: &EventPlan,
    start: Option<i64>,
    end: Option<i64>,
) -> Result<i64, StoreError> {
    let (sql, f) = plan.count_sql(conn.dialect(), start, end);
    conn.scalar(&sql, &f.args).await
}
