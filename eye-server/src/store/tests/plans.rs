//! Every query shape reads an index, never the whole table, and never sorts the
//! matches: checked with `EXPLAIN QUERY PLAN` on the SQL the store runs.

use eye_core::EventQuery;

use super::*;
use crate::store::conn::Dialect::Sqlite;
use crate::store::sql::{Arg, EventPlan};

/// The plan's detail lines.
async fn explain(store: &Store, sql: &str, args: &[Arg], extra_ints: usize) -> Vec<String> {
    let mut args = args.to_vec();
    args.extend(std::iter::repeat_n(Arg::Int(10), extra_ints));
    let rows: Vec<(i64, i64, i64, String)> = store
        .reader()
        .await
        .unwrap()
        .conn()
        .fetch_all(&format!("EXPLAIN QUERY PLAN {sql}"), &args)
        .await
        .unwrap();
    rows.into_iter().map(|r| r.3).collect()
}

/// No line reads a table without an index.
fn assert_no_table_scan(plan: &[String], what: &str) {
    for line in plan {
        let reads_table = line.starts_with("SCAN events")
            || line.starts_with("SCAN e ")
            || line == "SCAN e"
            || line.starts_with("SEARCH events")
            || line.starts_with("SEARCH e ")
            || line.starts_with("SCAN errors")
            || line.starts_with("SCAN sessions");
        assert!(
            !reads_table || line.contains("INDEX") || line.contains("PRIMARY KEY"),
            "{what}: `{line}` reads a table without an index: {plan:?}"
        );
    }
}

fn shapes() -> Vec<(EventQuery, &'static str)> {
    let range = |q: EventQuery| q.start_time(t(0)).end_time(t(86_400));
    vec![
        (EventQuery::new(), "events_time"),
        (range(EventQuery::new()), "events_time"),
        (EventQuery::new().session("s"), "events_session"),
        (range(EventQuery::new().session("s")), "events_session"),
        (
            EventQuery::new().session("s").category("page_interaction"),
            "events_session",
        ),
        (
            EventQuery::new().category("page_interaction"),
            "events_category",
        ),
        (
            range(EventQuery::new().category("page_interaction")),
            "events_category",
        ),
        (EventQuery::new().name("page_view"), "events_name"),
        (
            EventQuery::new()
                .category("page_interaction")
                .name("page_view"),
            "events_name",
        ),
        (EventQuery::new().application("shop"), "events_application"),
        (
            range(EventQuery::new().application("shop")),
            "events_application",
        ),
        (
            EventQuery::new()
                .category("form_interaction")
                .application("shop"),
            "events_category",
        ),
    ]
}

#[tokio::test]
async fn every_event_page_reads_one_index_in_order() {
    let store = TestDb::sqlite().await;
    for (q, index) in shapes() {
        let plan = EventPlan::new(&q).unwrap();
        assert_eq!(plan.index, index, "{q:?}");
        let ids = explain(&store, &plan.ids_sql(Sqlite), &plan.filter().args, 2).await;
        assert_eq!(ids.len(), 1, "{q:?}: {ids:?}");
        assert!(ids[0].contains(&format!("INDEX {index}")), "{q:?}: {ids:?}");
        let only_index_filters =
            q.application.is_none() || q.session_id.is_some() || index == "events_application";
        let only_index_filters =
            only_index_filters && !(q.session_id.is_some() && q.category.is_some());
        if only_index_filters {
            assert!(ids[0].contains("COVERING INDEX"), "{q:?}: {ids:?}");
        }
        let page = explain(&store, &plan.page_sql(Sqlite), &plan.filter().args, 2).await;
        assert_no_table_scan(&page, &format!("{q:?}"));
        assert!(
            page.iter()
                .any(|l| l.contains("SEARCH e USING PRIMARY KEY")),
            "{q:?}: {page:?}"
        );
    }
}

#[tokio::test]
async fn every_keyset_page_seeks_its_index_to_the_cursor_in_order() {
    // A page from a cursor must start at the cursor's (timestamp, id) in the index, not
    // at its timestamp: with many events at one instant, that is the difference between
    // a page and a walk over the instant.
    let store = TestDb::sqlite().await;
    for (q, index) in shapes() {
        let plan = EventPlan::new(&q).unwrap();
        for (op, descending) in [("<", true), (">", false)] {
            let f = crate::store::keyset::bounded_filter(&plan, Sqlite, (op, 5, 7));
            let sql = plan.keyset_sql(Sqlite, descending, &f);
            let lines = explain(&store, &sql, &f.args, 1).await;
            let what = format!("{q:?} {op}");
            assert!(
                lines.iter().any(|l| l.contains(&format!("INDEX {index}"))
                    && l.contains(&format!("(timestamp,id){op}(?,?)"))),
                "{what}: {lines:?}"
            );
            // The ids come out of the index in order; only the page's own rows (at most
            // page_size + 1) may be sorted after the join.
            let inner = lines.iter().take_while(|l| !l.starts_with("SCAN page"));
            assert!(
                !inner.clone().any(|l| l.contains("TEMP B-TREE")),
                "{what}: {lines:?}"
            );
            assert_no_table_scan(&lines, &what);
        }
    }
}

#[tokio::test]
async fn every_direct_count_reads_one_index() {
    let store = TestDb::sqlite().await;
    for (q, index) in shapes() {
        let plan = EventPlan::new(&q).unwrap();
        let (sql, f) = plan.count_sql(Sqlite, Some(0), Some(1));
        let lines = explain(&store, &sql, &f.args, 0).await;
        assert!(
            lines[0].contains(&format!("INDEX {index}")),
            "{q:?}: {lines:?}"
        );
    }
}

#[tokio::test]
async fn session_and_errors_queries_use_their_indexes() {
    let store = TestDb::sqlite().await;
    let cases = [
        (
            "SELECT id FROM events INDEXED BY events_session WHERE session_id = ? \
             ORDER BY timestamp, id LIMIT ? OFFSET ?",
            "COVERING INDEX events_session",
        ),
        (
            "SELECT e.id FROM errors AS e INDEXED BY errors_time ORDER BY e.received_at DESC, \
             e.id DESC LIMIT ? OFFSET ?",
            "INDEX errors_time",
        ),
        (
            "SELECT e.id FROM errors AS e INDEXED BY errors_application WHERE e.application = ? \
             ORDER BY e.received_at DESC, e.id DESC LIMIT ? OFFSET ?",
            "INDEX errors_application",
        ),
        (
            "SELECT e.id FROM error_codes AS c JOIN errors AS e ON e.id = c.error_id \
             WHERE c.code = ? ORDER BY c.received_at DESC, c.error_id DESC LIMIT ? OFFSET ?",
            "SEARCH c USING PRIMARY KEY (code=?)",
        ),
    ];
    for (sql, want) in cases {
        let n = sql.matches('?').count();
        let lines = explain(&store, sql, &[], n).await;
        assert!(lines.iter().any(|l| l.contains(want)), "{sql}: {lines:?}");
        assert!(
            !lines.iter().any(|l| l.contains("TEMP B-TREE")),
            "{sql}: {lines:?}"
        );
        assert_no_table_scan(&lines, sql);
    }
}

#[tokio::test]
async fn hourly_counters_are_read_newest_hour_first_without_sorting() {
    // The deep-page seek stops after the hour it needs only if the hours come out of
    // the primary key in order, not out of a sort of every hour.
    let store = TestDb::sqlite().await;
    for sql in [
        "SELECT hour, sum(events) FROM event_hours GROUP BY hour ORDER BY hour DESC LIMIT 128",
        "SELECT hour, sum(events) FROM event_hours WHERE category = ? AND hour < ? \
         GROUP BY hour ORDER BY hour DESC LIMIT 128",
        "SELECT bucket, sum(events) FROM event_buckets WHERE width = ? AND category = ? \
         AND bucket >= ? AND bucket < ? GROUP BY bucket ORDER BY bucket DESC LIMIT 128",
    ] {
        let n = sql.matches('?').count();
        let lines = explain(&store, sql, &[], n).await;
        assert!(
            !lines.iter().any(|l| l.contains("TEMP B-TREE")),
            "{sql}: {lines:?}"
        );
        if sql.contains("width = ?") {
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("SEARCH") && l.contains("PRIMARY KEY")),
                "{sql}: {lines:?}"
            );
        }
    }
}
