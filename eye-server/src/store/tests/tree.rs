//! The counter tree: counts of any time range and deep pages under every filter
//! combination equal what a plain `count(*)` and a plain `OFFSET` query give on the
//! same data, including data dense enough that thousands of events share a second.

use eye_core::{Event, EventQuery};

use super::*;
use crate::store::count::seek;
use crate::store::sql::{Arg, EventPlan};
use crate::store::tree::{Piece, WIDTHS, pieces};

conformance!(
    counts_equal_a_plain_count_for_every_filter_and_range,
    counts_of_arbitrary_ranges_equal_a_plain_count,
    seek_finds_the_same_rows_as_a_plain_offset_for_every_filter_and_range,
    deep_pages_of_dense_data_equal_offset_pages,
    seek_leaves_at_most_one_10_ms_bucket_of_events_to_skip,
);

/// Microseconds of `t(1000)`, the start of the dense data.
fn base() -> i64 {
    t(1000).timestamp_micros()
}

fn at(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap()
}

/// 4,000 events of every type, two applications and three sessions: most within 3 s
/// (often several per 10 ms, some at the same microsecond, some exactly on bucket
/// edges), the rest over 10 minutes and over 14 hours.
async fn dense(store: TestDb) -> TestDb {
    let mut batch = Vec::new();
    for i in 0..4000i64 {
        let micros = match i % 10 {
            0..=5 => base() + (i * 7919) % 3_000_000 / 137 * 137,
            // Exactly on 10 ms boundaries, where an off-by-one at a bucket edge shows.
            6 => base() + i / 10 % 300 * 10_000,
            7 | 8 => base() + (i * 104_729) % 600_000_000,
            _ => base() + (i * 1_299_709) % 50_000 * 1_000_000,
        };
        let session = ["a", "b", "c"][(i % 3) as usize];
        let app = if i % 4 == 0 { "crm" } else { "shop" };
        let event = match i % 5 {
            0 | 1 => Event::page_view(session, "example.com", "/").unwrap(),
            2 | 3 => Event::cta_click(session, "example.com", "/", "bubble").unwrap(),
            _ => Event::form_submit(session, "example.com", "/", serde_json::json!({"a": 1}))
                .unwrap(),
        };
        batch.push(accepted(event, app, at(micros)));
    }
    // Several transactions, so the counters are added up across commits.
    for chunk in batch.chunks(700) {
        store.write_batch(chunk).await.unwrap();
    }
    store
}

/// The `WHERE` of `q` written out plainly, without the store's planner.
fn plain_where(q: &EventQuery) -> (String, Vec<Arg>) {
    let mut terms = vec!["1 = 1".to_owned()];
    let mut args = Vec::new();
    for (col, v) in [
        ("session_id", &q.session_id),
        ("category", &q.category),
        ("name", &q.name),
        ("application", &q.application),
    ] {
        if let Some(v) = v {
            terms.push(format!("{col} = ?"));
            args.push(Arg::Text(v.clone()));
        }
    }
    if let Some(s) = q.time.start {
        terms.push("timestamp >= ?".to_owned());
        args.push(Arg::Int(s.timestamp_micros()));
    }
    if let Some(e) = q.time.end {
        terms.push("timestamp <= ?".to_owned());
        args.push(Arg::Int(e.timestamp_micros()));
    }
    (terms.join(" AND "), args)
}

/// Every matching id, newest first, by a plain query.
async fn plain_ids(store: &Store, q: &EventQuery) -> Vec<Uuid> {
    plain_page(store, q, i64::MAX, 0).await
}

/// A plain `LIMIT ? OFFSET ?` page.
async fn plain_page(store: &Store, q: &EventQuery, limit: i64, offset: i64) -> Vec<Uuid> {
    let (w, args) = plain_where(q);
    let sql = format!(
        "SELECT id FROM events WHERE {w} ORDER BY timestamp DESC, id DESC LIMIT ? OFFSET ?"
    );
    let mut args = args;
    args.extend([Arg::Int(limit), Arg::Int(offset)]);
    let rows: Vec<(Uuid,)> = store
        .reader()
        .await
        .unwrap()
        .conn()
        .fetch_all(&sql, &args)
        .await
        .unwrap();
    rows.into_iter().map(|(id,)| id).collect()
}

/// Every filter combination the API allows, with and without time ranges whose edges
/// fall inside a 10 ms bucket, a second, a minute and an hour.
fn shapes() -> Vec<EventQuery> {
    let filters = [
        EventQuery::new(),
        EventQuery::new().category("page_interaction"),
        EventQuery::new().category("form_interaction"),
        EventQuery::new().name("cta_click"),
        EventQuery::new().application("crm"),
        EventQuery::new()
            .category("page_interaction")
            .application("shop"),
        EventQuery::new().name("page_view").application("shop"),
        EventQuery::new()
            .category("page_interaction")
            .name("page_view"),
        EventQuery::new().session("b"),
        EventQuery::new().session("b").category("page_interaction"),
        EventQuery::new().session("a").application("crm"),
    ];
    let ranges: [(Option<i64>, Option<i64>); 6] = [
        (None, None),
        // Inside the dense 3 s, edges mid-10 ms.
        (Some(base() + 123_457), Some(base() + 2_404_321)),
        // Edges mid-minute, spanning minutes.
        (Some(base() + 45_500_001), Some(base() + 333_333_333)),
        // Open at either end, the other mid-hour.
        (None, Some(base() + 7_777_777_777)),
        (Some(base() + 1_500_004), None),
        // Whole hours.
        (Some(0), Some(base() / HOUR * HOUR + 5 * HOUR - 1)),
    ];
    let mut out = Vec::new();
    for f in &filters {
        for (s, e) in ranges {
            let mut q = f.clone();
            if let Some(s) = s {
                q = q.start_time(at(s));
            }
            if let Some(e) = e {
                q = q.end_time(at(e));
            }
            out.push(q);
        }
    }
    out
}

const HOUR: i64 = 3_600_000_000;

async fn counts_equal_a_plain_count_for_every_filter_and_range(store: TestDb) {
    // Arrange
    let store = dense(store).await;
    for q in shapes() {
        let want = plain_ids(&store, &q).await.len() as u64;
        // Act
        let counted = store.count_events(&q).await.unwrap();
        let (listed, _) = store.query_events(&q).await.unwrap();
        // Assert
        assert_eq!((counted, listed), (want, want), "{q:?}");
    }
}

async fn counts_of_arbitrary_ranges_equal_a_plain_count(store: TestDb) {
    // Arrange: ranges from a few microseconds to hours, at arbitrary alignments.
    let store = dense(store).await;
    let q0 = EventQuery::new().category("page_interaction");
    let mut x = 12_345i64;
    for i in 0..60 {
        x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
        let start = base() - 5_000_000 + x % 4_000_000;
        let len = [7, 9_999, 10_000, 640_001, 61_000_000, 9 * HOUR][i % 6] + x % 977;
        let q = q0.clone().start_time(at(start)).end_time(at(start + len));
        let want = plain_ids(&store, &q).await.len() as u64;
        // Act
        let got = store.count_events(&q).await.unwrap();
        // Assert
        assert_eq!(got, want, "{q:?}");
    }
}

async fn seek_finds_the_same_rows_as_a_plain_offset_for_every_filter_and_range(store: TestDb) {
    // Arrange
    let store = dense(store).await;
    let mut held = store.reader().await.unwrap();
    let mut conn = held.conn();
    for q in shapes() {
        let plan = EventPlan::new(&q).unwrap();
        let n = plain_ids(&store, &q).await.len() as u64;
        let mut offsets: Vec<u64> = (0..n).step_by(97).collect();
        offsets.extend([n.saturating_sub(1), n.saturating_sub(3)]);
        for offset in offsets.into_iter().filter(|o| *o < n) {
            // Act: seek, then the store's page SQL on the narrowed plan.
            let (narrowed, within) = seek(&mut conn, &plan, offset).await.unwrap();
            let sql = narrowed.ids_sql(conn.dialect());
            let mut args = narrowed.filter().args;
            args.extend([Arg::Int(5), Arg::Int(i64::try_from(within).unwrap())]);
            let rows: Vec<(Uuid,)> = conn.fetch_all(&sql, &args).await.unwrap();
            let got: Vec<Uuid> = rows.into_iter().map(|(id,)| id).collect();
            // Assert
            let want = plain_page(&store, &q, 5, i64::try_from(offset).unwrap()).await;
            assert_eq!(got, want, "{q:?} at offset {offset}");
        }
    }
}

async fn deep_pages_of_dense_data_equal_offset_pages(store: TestDb) {
    // Arrange
    let store = dense(store).await;
    for q in [
        EventQuery::new(),
        EventQuery::new().application("shop"),
        EventQuery::new().start_time(at(base() + 1)),
    ] {
        let want = plain_ids(&store, &q).await;
        assert_deep_pages(&store, &q, &want, 11).await;
    }
}

async fn seek_leaves_at_most_one_10_ms_bucket_of_events_to_skip(store: TestDb) {
    // Arrange: 2,800 events within 3 s, so whole seconds hold about 900.
    let store = dense(store).await;
    let mut held = store.reader().await.unwrap();
    let mut conn = held.conn();
    let most_in_10_ms = conn
        .scalar(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM events GROUP BY timestamp / 10000) \
             AS per_bucket",
            &[],
        )
        .await
        .unwrap();
    let plan = EventPlan::new(&EventQuery::new()).unwrap();
    for offset in (0..3900).step_by(131) {
        // Act
        let (_, within) = seek(&mut conn, &plan, offset).await.unwrap();
        // Assert
        assert!(
            within < u64::try_from(most_in_10_ms).unwrap(),
            "offset {offset} leaves {within} to skip"
        );
    }
}

#[test]
fn pieces_cover_a_range_exactly_oldest_first() {
    let mut x = 99i64;
    for _ in 0..500 {
        x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
        let start = 1_600_000_000_000_000 + x * 1_013;
        let end = start + (x % 7) * [1, 10_007, 3_000_001, 70_000_000_123][(x % 4) as usize];
        for (s, e) in [
            (Some(start), Some(end)),
            (None, Some(end)),
            (Some(start), None),
        ] {
            let ps = pieces(s, e);
            // Each piece as an inclusive range of microseconds (None: open).
            let spans: Vec<(Option<i64>, Option<i64>)> = ps
                .iter()
                .map(|p| match *p {
                    Piece::Buckets {
                        level,
                        first,
                        last_exclusive,
                    } => (
                        first.map(|f| f * WIDTHS[level]),
                        last_exclusive.map(|l| l * WIDTHS[level] - 1),
                    ),
                    Piece::Rows { start, end } => {
                        if let (Some(a), Some(b)) = (start, end) {
                            assert!(b - a < 2 * WIDTHS[3], "{p:?}");
                        }
                        (start, end)
                    }
                })
                .collect();
            assert_eq!(spans.first().unwrap().0, s, "{ps:?}");
            assert_eq!(spans.last().unwrap().1, e, "{ps:?}");
            for w in spans.windows(2) {
                assert_eq!(w[1].0, w[0].1.map(|hi| hi + 1), "{ps:?}");
            }
            assert!(ps.len() <= 2 * WIDTHS.len() + 1, "{ps:?}");
        }
    }
}

#[tokio::test]
async fn migration_backfill_equals_the_counters_the_write_path_keeps() {
    // Arrange: SQLite's migration 0003 added the buckets to existing data.
    let store = dense(TestDb::sqlite().await).await;
    let pool = store.pool().unwrap();
    let read = "SELECT width, bucket, application, category, name, events FROM event_buckets \
                ORDER BY 1, 2, 3, 4, 5";
    type BucketRow = (i64, i64, String, String, String, i64);
    let kept: Vec<BucketRow> = sqlx::query_as(read).fetch_all(pool).await.unwrap();
    let migration = include_str!("../../../migrations/sqlite/0003_event_buckets.sql");
    let backfill = &migration[migration.find("INSERT INTO event_buckets").unwrap()..];
    // Act
    sqlx::query("DELETE FROM event_buckets")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(backfill.to_owned()))
        .execute(pool)
        .await
        .unwrap();
    // Assert
    let rebuilt: Vec<BucketRow> = sqlx::query_as(read).fetch_all(pool).await.unwrap();
    assert!(kept.len() > 1000, "{}", kept.len());
    assert_eq!(rebuilt, kept);
}
