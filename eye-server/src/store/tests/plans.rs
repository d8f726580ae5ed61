//! Every query shape reads an index, never the whole table, and never sorts the
//! matches: checked with `EXPLAIN QUERY PLAN` on the SQL the store runs.

use eye_core::{ErrorQuery, EventQuery, Pagination};

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
    // The store's own SQL (the functions its queries call), with its own arguments.
    let store = TestDb::sqlite().await;
    let page = Pagination::default();
    let session = crate::store::events::session_page_sql(Sqlite);
    let session_args = [
        Arg::Text("s".into()),
        Arg::Int(i64::from(page.page_size)),
        Arg::Int(0),
    ];
    let lines = explain(&store, &session, &session_args, 0).await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("COVERING INDEX events_session")),
        "{session}: {lines:?}"
    );
    // The session's matches come out of the index in order; only the page itself
    // (at most `page_size` rows, after the join) is sorted.
    let page_read = lines.iter().position(|l| l == "SCAN page");
    assert!(
        page_read.is_some_and(|at| !lines[..at].iter().any(|l| l.contains("TEMP B-TREE"))),
        "{lines:?}"
    );
    assert_no_table_scan(&lines, &session);

    let errors = [
        (ErrorQuery::default(), "INDEX errors_time"),
        (
            ErrorQuery {
                application: Some("shop".into()),
                ..ErrorQuery::default()
            },
            "INDEX errors_application",
        ),
        (
            ErrorQuery {
                code: Some("invalid_host".into()),
                ..ErrorQuery::default()
            },
            "SEARCH c USING PRIMARY KEY (code=?)",
        ),
    ];
    for (query, want) in errors {
        let (sql, args) = crate::store::events::errors_page_sql(Sqlite, &query);
        let lines = explain(&store, &sql, &args, 0).await;
        assert!(lines.iter().any(|l| l.contains(want)), "{sql}: {lines:?}");
        assert!(
            !lines.iter().any(|l| l.contains("TEMP B-TREE")),
            "{sql}: {lines:?}"
        );
        assert_no_table_scan(&lines, &sql);
    }
}

#[tokio::test]
async fn hourly_counters_are_read_newest_hour_first_without_sorting() {
    // The deep-page seek stops after the hour it needs only if the hours come out of
    // the primary key in order, not out of a sort of every hour: the seek's own reads,
    // at every level, for every query shape.
    let store = TestDb::sqlite().await;
    for (q, _) in shapes() {
        let plan = EventPlan::new(&q).unwrap();
        if !plan.has_counters() {
            continue; // a session's pages come from its index, not the counters
        }
        for level in 0..crate::store::tree::WIDTHS.len() {
            for (first, last) in [(None, None), (Some(0), Some(1_000_000))] {
                let (sql, f) = crate::store::tree::buckets_sql(Sqlite, &plan, level, first, last);
                let lines = explain(&store, &sql, &f.args, 0).await;
                assert!(
                    !lines.iter().any(|l| l.contains("TEMP B-TREE")),
                    "{q:?} level {level}: {sql}: {lines:?}"
                );
                if level > 0 {
                    assert!(
                        lines
                            .iter()
                            .any(|l| l.contains("SEARCH") && l.contains("PRIMARY KEY")),
                        "{q:?} level {level}: {sql}: {lines:?}"
                    );
                }
            }
        }
    }
}
