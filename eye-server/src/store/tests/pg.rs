//! PostgreSQL only: how opening fails, which of its errors are transient (each
//! caused for real on the test server), and the plans of the query shapes.

use eye_core::EventQuery;
use sqlx::{Connection, PgConnection};

use super::*;
use crate::store::StoreError;
use crate::store::conn::Dialect::Postgres;
use crate::store::sql::{Arg, EventPlan};

#[tokio::test]
async fn unreachable_server_is_a_transient_connect_error_naming_host_and_cause() {
    // Port 1 on loopback: nothing listens there, so the connection is refused.
    let err = Store::open("postgres://eye:secret@127.0.0.1:1/eye")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    assert!(text.contains("127.0.0.1:1/eye"), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(!text.contains("secret"), "{text}");
    assert!(err.is_transient(), "{text}");
}

#[tokio::test]
async fn malformed_url_is_an_invalid_url_error_not_a_panic() {
    let err = Store::open("postgres://eye@127.0.0.1:notaport/eye")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl(_)), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn missing_database_is_a_connect_error_naming_it_and_not_transient() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let url = super::harness::with_database(&db.url, "eye_no_such_database");
    let err = Store::open(&url).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    assert!(text.contains("eye_no_such_database"), "{text}");
    assert!(!err.is_transient(), "{text}");
}

/// Runs `sql` on `conn`, returning the error it must fail with, as the store's.
async fn fails(conn: &mut PgConnection, sql: &'static str) -> StoreError {
    sqlx::query(sql).execute(conn).await.unwrap_err().into()
}

#[tokio::test]
async fn postgres_errors_of_the_server_are_transient_and_of_the_data_are_not() {
    // Arrange
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let mut a = PgConnection::connect(&db.url).await.unwrap();
    let mut b = PgConnection::connect(&db.url).await.unwrap();
    for sql in [
        "CREATE TABLE t (k int PRIMARY KEY, v int NOT NULL)",
        "INSERT INTO t VALUES (1, 0), (2, 0)",
    ] {
        sqlx::query(sql).execute(&mut a).await.unwrap();
    }

    // A constraint: the data's fault.
    let unique = fails(&mut a, "INSERT INTO t VALUES (1, 0)").await;
    assert!(!unique.is_transient(), "{unique}");

    // Serialization failure (40001): a repeatable-read transaction updates a row
    // another committed since its snapshot.
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut a)
        .await
        .unwrap();
    sqlx::query("SELECT * FROM t")
        .execute(&mut a)
        .await
        .unwrap();
    sqlx::query("UPDATE t SET v = v + 1 WHERE k = 1")
        .execute(&mut b)
        .await
        .unwrap();
    let serialization = fails(&mut a, "UPDATE t SET v = 5 WHERE k = 1").await;
    sqlx::query("ROLLBACK").execute(&mut a).await.unwrap();
    assert!(
        serialization.to_string().contains("serialize"),
        "{serialization}"
    );
    assert!(serialization.is_transient(), "{serialization}");

    // Deadlock (40P01): two transactions lock two rows in opposite orders.
    for (conn, k) in [(&mut a, 1), (&mut b, 2)] {
        sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
        sqlx::query("UPDATE t SET v = v + 1 WHERE k = $1")
            .bind(k)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let (ra, rb) = tokio::join!(
        sqlx::query("UPDATE t SET v = v + 1 WHERE k = 2").execute(&mut a),
        sqlx::query("UPDATE t SET v = v + 1 WHERE k = 1").execute(&mut b),
    );
    let deadlock: StoreError = ra.err().or(rb.err()).expect("one is the victim").into();
    for conn in [&mut a, &mut b] {
        sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();
    }
    assert!(deadlock.to_string().contains("deadlock"), "{deadlock}");
    assert!(deadlock.is_transient(), "{deadlock}");

    // Admin shutdown (57P01) or a dropped connection: the server ended the session.
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut a)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&mut b)
        .await
        .unwrap();
    let terminated = fails(&mut a, "SELECT 1").await;
    assert!(terminated.is_transient(), "{terminated:?}");
}

/// The plan of `sql` with `args`, as text.
async fn explain(store: &Store, sql: &str, args: &[Arg]) -> String {
    let rows: Vec<(String,)> = store
        .reader()
        .await
        .unwrap()
        .conn()
        .fetch_all(&format!("EXPLAIN {sql}"), args)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(l,)| l)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn postgres_pages_read_an_index_in_order_without_sorting_or_scanning_events() {
    // Arrange: enough rows over enough sessions that the planner's statistics favour
    // the indexes, as they do on a real store.
    let Some(store) = TestDb::postgres().await else {
        return;
    };
    let batch: Vec<Message> = (0..20_000i64)
        .map(|i| {
            let session = format!("s{}", i % 500);
            match i % 3 {
                0 => view(&session, i * 3),
                1 => click(&session, i * 3),
                _ => submit(&session, i * 3, if i % 2 == 0 { "crm" } else { "shop" }),
            }
        })
        .collect();
    for chunk in batch.chunks(2000) {
        store.write_batch(chunk).await.unwrap();
    }
    store.exec("", "ANALYZE").await;
    let range = |q: EventQuery| q.start_time(t(1000)).end_time(t(50_000));
    let shapes = [
        EventQuery::new(),
        range(EventQuery::new()),
        EventQuery::new().session("s7"),
        range(EventQuery::new().session("s7")),
        EventQuery::new().category("page_interaction"),
        range(EventQuery::new().category("form_interaction")),
        EventQuery::new().name("cta_click"),
        EventQuery::new().application("crm"),
        range(EventQuery::new().application("shop")),
        EventQuery::new()
            .category("form_interaction")
            .application("shop"),
    ];
    for q in shapes {
        // Act
        let plan = EventPlan::new(&q).unwrap();
        let mut args = plan.filter().args;
        args.extend([Arg::Int(10), Arg::Int(100)]);
        let text = explain(&store, &plan.ids_sql(Postgres), &args).await;
        // Assert
        assert!(text.contains("Index"), "{q:?}:\n{text}");
        assert_no_rows_scanned(&store, &text).await;
        if q.session_id.is_some() {
            // A session's few rows may be fetched by a bitmap scan and sorted: the
            // planner's choice, and cheap at a session's size.
            assert!(uses_session_index(&text), "{q:?}:\n{text}");
        } else {
            // The partitions' ordered scans are merged (`Merge Append`), never sorted.
            assert!(!has_sort_node(&text), "{q:?}:\n{text}");
        }
    }
    let session_page = explain(
        &store,
        "SELECT id FROM events WHERE session_id = $1 ORDER BY timestamp, id LIMIT 10 OFFSET 5",
        &[Arg::Text("s9".into())],
    )
    .await;
    assert!(uses_session_index(&session_page), "{session_page}");
}

/// Fails if `plan` reads a table with rows by a sequential scan. The day partitions
/// the store created ahead are empty, and the planner reads an empty table by a
/// sequential scan of nothing, which costs nothing.
async fn assert_no_rows_scanned(store: &Store, plan: &str) {
    for line in plan.lines() {
        let Some((_, rest)) = line.split_once("Seq Scan on ") else {
            continue;
        };
        let table = rest.split_whitespace().next().unwrap();
        let rows = store
            .reader()
            .await
            .unwrap()
            .conn()
            .scalar(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap();
        assert_eq!(
            rows, 0,
            "a sequential scan of {table}, which has rows:\n{plan}"
        );
    }
}

/// Whether a plan has a node that sorts (a `Sort Key:` line of a `Merge Append` is
/// not one).
fn has_sort_node(plan: &str) -> bool {
    plan.lines().any(|l| {
        let node = l.trim_start().trim_start_matches("->").trim_start();
        node.starts_with("Sort  (") || node.starts_with("Incremental Sort  (")
    })
}

/// Whether a plan reads the session index: `events_session` itself or a partition's
/// copy of it (`events_legacy_session`, `events_p20261205_session_id_timestamp_id_idx`).
fn uses_session_index(plan: &str) -> bool {
    plan.contains("_session")
}

#[tokio::test]
async fn both_backends_answer_the_same_batch_with_byte_identical_json() {
    // Arrange: one batch with sub-millisecond timestamps, nested form data, several
    // sessions and applications, rejected events; written to each backend.
    let Some(pg) = TestDb::postgres().await else {
        return;
    };
    let lite = TestDb::sqlite().await;
    let mut batch = Vec::new();
    for i in 0..60i64 {
        let at = t(i * 500) + chrono::Duration::microseconds(i * 123_457);
        let session = format!("s{}", i % 4);
        let m = match i % 3 {
            0 => accepted(
                eye_core::Event::page_view(&session, "example.com", "/a").unwrap(),
                "shop",
                at,
            ),
            1 => click(&session, i * 500),
            _ => submit(&session, i * 500, if i % 2 == 0 { "crm" } else { "shop" }),
        };
        batch.push(m);
    }
    batch.push(rejected("crm", 7, &[eye_core::ErrorCode::InvalidHost]));
    for db in [&pg, &lite] {
        db.write_batch(&batch).await.unwrap();
    }
    let queries = [
        EventQuery::new().page_size(100),
        EventQuery::new().session("s1").page_size(7).page(2),
        EventQuery::new()
            .category("form_interaction")
            .start_time(t(3000)),
    ];
    // Act / Assert
    for q in &queries {
        let json = |r: (u64, Vec<eye_core::StoredEvent>)| serde_json::to_string(&r).unwrap();
        assert_eq!(
            json(pg.query_events(q).await.unwrap()),
            json(lite.query_events(q).await.unwrap()),
            "{q:?}"
        );
    }
    let session = |s: Option<eye_core::Session>| serde_json::to_string(&s).unwrap();
    assert_eq!(
        session(pg.get_session("s2").await.unwrap()),
        session(lite.get_session("s2").await.unwrap())
    );
    let errors = |r: (u64, Vec<eye_core::ErrorRecord>)| {
        // The errors log's row ids are each database's own.
        let r: Vec<_> =
            r.1.into_iter()
                .map(|e| (e.application, e.codes, e.payload))
                .collect();
        serde_json::to_string(&r).unwrap()
    };
    let q = eye_core::ErrorQuery::default();
    assert_eq!(
        errors(pg.query_errors(&q).await.unwrap()),
        errors(lite.query_errors(&q).await.unwrap())
    );
    let hours = |h: Vec<crate::store::HourCount>| serde_json::to_string(&h).unwrap();
    assert_eq!(
        hours(pg.events_per_hour(t(0), t(40_000), None).await.unwrap()),
        hours(lite.events_per_hour(t(0), t(40_000), None).await.unwrap())
    );
}

#[tokio::test]
async fn store_recovers_by_itself_after_the_server_drops_its_connections() {
    // Arrange: a store with open connections, then the server ends every session on
    // its database (as a restart or a failover does).
    let Some(store) = TestDb::postgres().await else {
        return;
    };
    store.write_batch(&[view("s", 1)]).await.unwrap();
    let database = store.url.rsplit('/').next().unwrap().to_owned();
    let mut admin = PgConnection::connect(&super::harness::with_database(&store.url, "postgres"))
        .await
        .unwrap();
    let killed: Vec<(bool,)> =
        sqlx::query_as("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(&database)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert!(!killed.is_empty());
    // Act: write again, retrying only what the store calls transient, a bounded
    // number of times.
    let m = click("s", 2);
    let mut failures = Vec::new();
    let mut outcome = None;
    for _ in 0..20 {
        match store.write_batch(std::slice::from_ref(&m)).await {
            Ok(o) => {
                outcome = Some(o);
                break;
            }
            Err(e) => {
                assert!(e.is_transient(), "{e:?}");
                failures.push(e.to_string());
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    // Assert
    let outcome = outcome.unwrap_or_else(|| panic!("never recovered: {failures:?}"));
    assert_eq!(outcome.inserted, 1, "{failures:?}");
    let (count, _) = store.query_events(&EventQuery::new()).await.unwrap();
    assert_eq!(count, 2);
}
