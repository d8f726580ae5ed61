use eye_core::{EventQuery, Pagination};

use super::*;
use crate::store::conn::Dialect;

conformance!(
    same_id_written_twice_is_stored_once,
    same_id_twice_in_one_batch_is_stored_once_with_the_first_content,
    stored_event_reads_back_equal_to_what_was_written,
    unknown_id_reads_as_none,
    batch_is_atomic_when_a_later_statement_fails,
    batch_larger_than_one_insert_statement_is_written_whole,
    session_row_tracks_first_and_last_seen_count_and_applications,
    concurrent_writers_keep_session_counts_exact,
    empty_batch_writes_nothing,
    an_open_store_answers_ping_and_migrate_again,
    reopening_a_store_keeps_its_data,
    two_stores_on_one_database_write_concurrently_without_losing_events,
);

async fn same_id_written_twice_is_stored_once(store: TestDb) {
    // Arrange
    let m = view("s1", 0);
    // Act
    let first = store.write_batch(std::slice::from_ref(&m)).await.unwrap();
    let second = store.write_batch(std::slice::from_ref(&m)).await.unwrap();
    // Assert
    assert_eq!((first.inserted, first.duplicates), (1, 0));
    assert_eq!((second.inserted, second.duplicates), (0, 1));
    let (count, events) = store.query_events(&EventQuery::new()).await.unwrap();
    assert_eq!((count, events.len()), (1, 1));
    assert_eq!(
        store.get_session("s1").await.unwrap().unwrap().event_count,
        1
    );
}

async fn same_id_twice_in_one_batch_is_stored_once_with_the_first_content(store: TestDb) {
    let first = view("s1", 0);
    let Message::EventV1(mut copy) = view("s2", 5) else {
        unreachable!()
    };
    copy.id = id_of(&first);
    let outcome = store
        .write_batch(&[first.clone(), Message::EventV1(copy)])
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (1, 1));
    let stored = store.get_event(id_of(&first)).await.unwrap().unwrap();
    assert_eq!(stored.session_id.as_str(), "s1");
    assert!(store.get_session("s2").await.unwrap().is_none());
}

async fn stored_event_reads_back_equal_to_what_was_written(store: TestDb) {
    let Message::EventV1(mut with_client_time) = submit("s1", 42, "crm") else {
        unreachable!()
    };
    with_client_time.client_timestamp = Some(t(3600));
    let m = Message::EventV1(with_client_time);
    store.write_batch(std::slice::from_ref(&m)).await.unwrap();
    let Message::EventV1(src) = &m else {
        unreachable!()
    };
    let stored = store.get_event(src.id).await.unwrap().unwrap();
    assert_eq!(stored.id, src.id);
    assert_eq!(&stored.payload, src.event.payload());
    assert_eq!(stored.session_id, *src.event.session_id());
    assert_eq!(stored.timestamp, src.event.timestamp());
    assert_eq!(stored.application, "crm");
    assert_eq!(stored.received_at, src.received_at);
    assert_eq!(stored.client_timestamp, Some(t(3600)));
    // Without sent_at there is no client timestamp.
    let plain = view("s2", 1);
    store
        .write_batch(std::slice::from_ref(&plain))
        .await
        .unwrap();
    let stored = store.get_event(id_of(&plain)).await.unwrap().unwrap();
    assert_eq!(stored.client_timestamp, None);
}

async fn unknown_id_reads_as_none(store: TestDb) {
    assert!(store.get_event(Uuid::now_v7()).await.unwrap().is_none());
}

async fn batch_is_atomic_when_a_later_statement_fails(store: TestDb) {
    // Arrange: a trigger makes the errors-log insert fail after the events went in.
    store
        .exec(
            "CREATE TRIGGER fail_errors BEFORE INSERT ON errors \
             BEGIN SELECT RAISE(ABORT, 'boom'); END",
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'boom'; END $$",
        )
        .await;
    if store.dialect() == Dialect::Postgres {
        store
            .exec(
                "",
                "CREATE TRIGGER fail_errors BEFORE INSERT ON errors \
                 FOR EACH ROW EXECUTE FUNCTION boom()",
            )
            .await;
    }
    let batch = [
        view("s1", 0),
        click("s1", 1),
        rejected("shop", 2, &[ErrorCode::InvalidHost]),
    ];
    // Act
    let result = store.write_batch(&batch).await;
    // Assert: nothing of the batch is visible, and the writer still works.
    assert!(result.is_err());
    let (count, events) = store.query_events(&EventQuery::new()).await.unwrap();
    assert_eq!((count, events.len()), (0, 0));
    assert!(store.get_session("s1").await.unwrap().is_none());
    assert!(store.get_event(id_of(&batch[0])).await.unwrap().is_none());
    let ok = store.write_batch(&batch[..2]).await.unwrap();
    assert_eq!(ok.inserted, 2);
}

async fn batch_larger_than_one_insert_statement_is_written_whole(store: TestDb) {
    let batch: Vec<Message> = (0..1001).map(|i| view(&format!("s{}", i % 7), i)).collect();
    let outcome = store.write_batch(&batch).await.unwrap();
    assert_eq!(outcome.inserted, 1001);
    let again = store.write_batch(&batch).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 1001));
    let (count, _) = store.query_events(&EventQuery::new()).await.unwrap();
    assert_eq!(count, 1001);
}

async fn session_row_tracks_first_and_last_seen_count_and_applications(store: TestDb) {
    store
        .write_batch(&[view("s1", 50), submit("s1", 10, "crm")])
        .await
        .unwrap();
    store
        .write_batch(&[click("s1", 99), view("other", 0)])
        .await
        .unwrap();
    let s = store.get_session("s1").await.unwrap().unwrap();
    assert_eq!(s.session_id, "s1");
    assert_eq!(s.first_seen, t(10));
    assert_eq!(s.last_seen, t(99));
    assert_eq!(s.event_count, 3);
    assert_eq!(s.applications, vec!["crm".to_owned(), "shop".to_owned()]);
    assert!(store.get_session("nobody").await.unwrap().is_none());
}

async fn concurrent_writers_keep_session_counts_exact(store: TestDb) {
    // Arrange: 8 tasks each write 25 batches of 4 events of the same session.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..25 {
                let base = (w * 100 + b * 4) as i64;
                let batch: Vec<Message> = (0..4).map(|i| view("hot", base + i)).collect();
                store.write_batch(&batch).await.unwrap();
            }
        }));
    }
    // Act
    for t in tasks {
        t.await.unwrap();
    }
    // Assert
    let s = store.get_session("hot").await.unwrap().unwrap();
    assert_eq!(s.event_count, 800);
    assert_eq!(s.first_seen, t(0));
    assert_eq!(s.last_seen, t(7 * 100 + 24 * 4 + 3));
    let (count, _) = store
        .session_events("hot", &Pagination::default())
        .await
        .unwrap();
    assert_eq!(count, 800);
}

async fn empty_batch_writes_nothing(store: TestDb) {
    let outcome = store.write_batch(&[]).await.unwrap();
    assert_eq!(outcome, crate::store::WriteOutcome::default());
}

async fn an_open_store_answers_ping_and_migrate_again(store: TestDb) {
    store.ping().await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
}

async fn reopening_a_store_keeps_its_data(store: TestDb) {
    let m = view("s1", 0);
    store.write_batch(std::slice::from_ref(&m)).await.unwrap();
    store.close().await;
    let reopened = Store::open(&store.url).await.unwrap();
    assert!(reopened.get_event(id_of(&m)).await.unwrap().is_some());
    reopened.close().await;
}

#[tokio::test]
async fn in_memory_store_reads_its_own_writes() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let m = view("s1", 0);
    store.write_batch(std::slice::from_ref(&m)).await.unwrap();
    assert!(store.get_event(id_of(&m)).await.unwrap().is_some());
}

async fn two_stores_on_one_database_write_concurrently_without_losing_events(store: TestDb) {
    // Arrange: as a server and a Redis worker (two processes) would, open the same
    // database twice. On SQLite, BEGIN IMMEDIATE plus the busy timeout serialise
    // their writers; on Postgres they write at once.
    let a = store.store.clone();
    let b = Store::open(&store.url).await.unwrap();
    // Act
    let write = |store: Store, base: i64| {
        tokio::spawn(async move {
            for batch in 0..20 {
                let msgs: Vec<Message> = (0..50)
                    .map(|i| view("shared", base + batch * 50 + i))
                    .collect();
                store.write_batch(&msgs).await.unwrap();
            }
        })
    };
    let (ra, rb) = tokio::join!(write(a.clone(), 0), write(b.clone(), 10_000));
    ra.unwrap();
    rb.unwrap();
    // Assert: both see everything, and the session counted every event once.
    for store in [&a, &b] {
        let (count, _) = store.query_events(&EventQuery::new()).await.unwrap();
        assert_eq!(count, 2000);
        let s = store.get_session("shared").await.unwrap().unwrap();
        assert_eq!(s.event_count, 2000);
    }
}

#[tokio::test]
async fn store_failures_are_transient_and_data_failures_are_not() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("eye.db").display()))
        .await
        .unwrap();
    let pool = store.pool().unwrap();
    sqlx::query("CREATE TABLE t (x INTEGER UNIQUE)")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(pool)
        .await
        .unwrap();
    let missing_dir = dir.path().join("no-such-dir").join("eye.db");

    // Act
    let constraint: crate::store::StoreError = sqlx::query("INSERT INTO t VALUES (1)")
        .execute(pool)
        .await
        .unwrap_err()
        .into();
    let cannot_open = Store::open(&format!("sqlite://{}", missing_dir.display()))
        .await
        .unwrap_err();

    // Assert
    assert!(!constraint.is_transient(), "{constraint}");
    assert!(cannot_open.is_transient(), "{cannot_open}");
    assert!(crate::store::StoreError::Database(sqlx::Error::PoolTimedOut).is_transient());
    assert!(!crate::store::StoreError::Corrupt("bad row".into()).is_transient());
}

#[tokio::test]
async fn a_store_opened_with_synchronous_full_syncs_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("eye.db").display());
    let store = Store::open_with(&url, crate::store::Synchronous::Full)
        .await
        .unwrap();
    let (mode,): (i64,) = sqlx::query_as("PRAGMA synchronous")
        .fetch_one(super::harness::sqlite_writer(&store))
        .await
        .unwrap();
    assert_eq!(mode, 2, "FULL");
    let (mode,): (i64,) = sqlx::query_as("PRAGMA synchronous")
        .fetch_one(store.pool().unwrap())
        .await
        .unwrap();
    assert_eq!(mode, 2, "FULL on readers too");
}
