//! Erasure, the suppression list and retention: what they remove, that every counter
//! stays equal to a recount after them (`recount`), and that an erasure racing
//! writers leaves nothing of the session behind.

use eye_core::{ErrorCode, ErrorQuery, EventQuery, Pagination};

use super::recount::assert_counters_exact;
use super::*;
use crate::store::{ERASED_KEPT_DAYS, Erased, Retention};

conformance!(
    erasing_a_session_removes_its_events_session_counters_and_errors,
    events_of_an_erased_session_that_arrive_later_are_not_stored,
    suppression_ends_after_its_lifetime,
    erasure_racing_writers_leaves_nothing_of_the_session,
    retention_deletes_old_events_in_batches_and_keeps_every_counter_exact,
    errors_retention_deletes_old_entries_with_their_counters,
    application_retention_is_stored_and_listed,
);

/// A rejected event from `shop` at `t(secs)` whose logged payload is `payload`.
fn rejected_with(secs: i64, payload: &str) -> Message {
    Message::RejectedV1(RejectedEvent {
        key: Uuid::now_v7(),
        application: "shop".into(),
        received_at: t(secs),
        errors: vec![FieldError::new("/x", ErrorCode::InvalidHost, "bad")],
        payload: payload.into(),
    })
}

/// Events of `session` and of others, sharing hours, seconds and 10 ms buckets.
fn mixed(session: &str, n: i64) -> Vec<Message> {
    let mut out = Vec::new();
    for i in 0..n {
        let secs = i * 37 % 9000;
        out.push(view(session, secs));
        out.push(click("other", secs));
        out.push(submit(
            session,
            secs + 1,
            if i % 2 == 0 { "shop" } else { "crm" },
        ));
        out.push(view(&format!("s{}", i % 5), secs + 2));
    }
    out
}

async fn erasing_a_session_removes_its_events_session_counters_and_errors(store: TestDb) {
    // Arrange
    store.write_batch(&mixed("gone", 60)).await.unwrap();
    store
        .write_batch(&[
            rejected_with(10, r#"{"session_id":"gone","category":"x"}"#),
            rejected_with(20, r#"{"type":"event.v1","event":{"session_id":"gone"}}"#),
            // Cut at the payload cap: not JSON, but the id is there as a string.
            rejected_with(30, r#"{"session_id":"gone","data":{"form":{"a":"#),
            // The id in another member, and another session: kept.
            rejected_with(40, r#"{"session_id":"kept","name":"gone"}"#),
            rejected_with(50, r#"{"session_id":"gonero"}"#),
        ])
        .await
        .unwrap();
    let before = store.total_events().await.unwrap();

    // Act
    let erased = store.erase_session("gone", t(100_000)).await.unwrap();

    // Assert
    assert_eq!(
        erased,
        Erased {
            events: 120,
            sessions: 1,
            errors: 3
        }
    );
    assert!(store.get_session("gone").await.unwrap().is_none());
    let (n, page) = store
        .query_events(&EventQuery::new().session("gone"))
        .await
        .unwrap();
    assert_eq!((n, page.len()), (0, 0));
    assert_eq!(store.total_events().await.unwrap(), before - 120);
    let (n, _) = store.query_events(&EventQuery::new()).await.unwrap();
    assert_eq!(n, before - 120);
    assert_eq!(
        store
            .get_session("other")
            .await
            .unwrap()
            .unwrap()
            .event_count,
        60
    );
    let (n, left) = store.query_errors(&ErrorQuery::default()).await.unwrap();
    assert_eq!(n, 2);
    assert!(
        left.iter()
            .all(|r| !r.payload.contains(r#""session_id":"gone""#))
    );
    assert_counters_exact(&store).await;

    // Erasing again finds nothing more and keeps the session suppressed.
    let again = store.erase_session("gone", t(100_001)).await.unwrap();
    assert_eq!(again, Erased::default());
    assert!(store.is_erased("gone").await.unwrap());
}

async fn events_of_an_erased_session_that_arrive_later_are_not_stored(store: TestDb) {
    // Arrange: one event stored, then the session erased.
    let first = view("gone", 1);
    store
        .write_batch(std::slice::from_ref(&first))
        .await
        .unwrap();
    store.erase_session("gone", t(10)).await.unwrap();

    // Act: a retry of the stored event, new events of it, and another session's.
    let outcome = store
        .write_batch(&[first, view("gone", 2), click("gone", 3), view("kept", 4)])
        .await
        .unwrap();

    // Assert
    assert_eq!(
        (outcome.inserted, outcome.suppressed, outcome.duplicates),
        (1, 3, 0)
    );
    assert!(store.get_session("gone").await.unwrap().is_none());
    assert_eq!(store.total_events().await.unwrap(), 1);
    assert_counters_exact(&store).await;
}

async fn suppression_ends_after_its_lifetime(store: TestDb) {
    let erased_at = t(0);
    store.erase_session("gone", erased_at).await.unwrap();
    let almost = erased_at + Duration::days(ERASED_KEPT_DAYS) - Duration::seconds(1);
    assert_eq!(store.purge_erased(almost).await.unwrap(), 0);
    assert_eq!(
        store
            .write_batch(&[view("gone", 5)])
            .await
            .unwrap()
            .suppressed,
        1
    );

    let after = erased_at + Duration::days(ERASED_KEPT_DAYS) + Duration::seconds(1);
    assert_eq!(store.purge_erased(after).await.unwrap(), 1);
    assert!(!store.is_erased("gone").await.unwrap());
    let outcome = store.write_batch(&[view("gone", 6)]).await.unwrap();
    assert_eq!((outcome.inserted, outcome.suppressed), (1, 0));
}

async fn erasure_racing_writers_leaves_nothing_of_the_session(store: TestDb) {
    // Four writers (as four workers would be) write batches that all hold events of
    // the victim, while the victim is erased in the middle of them, three times over.
    for round in 0..3 {
        let victim = format!("victim{round}");
        let mut writers = Vec::new();
        for w in 0..4 {
            let writer = Store::open(&store.url).await.unwrap();
            let victim = victim.clone();
            writers.push(tokio::spawn(async move {
                for b in 0..12 {
                    let mut batch = Vec::new();
                    for i in 0..25 {
                        let secs = (w * 1000 + b * 25 + i) % 7200;
                        batch.push(view(&victim, secs));
                        batch.push(click(&format!("bystander{}", i % 3), secs));
                    }
                    writer.write_batch(&batch).await.unwrap();
                }
                writer.close().await;
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(5 * (round + 1))).await;
        store.erase_session(&victim, t(10_000)).await.unwrap();
        for w in writers {
            w.await.unwrap();
        }
        let (n, _) = store
            .query_events(&EventQuery::new().session(&victim))
            .await
            .unwrap();
        assert_eq!(n, 0, "{victim}");
        let mut held = store.reader().await.unwrap();
        let left = held
            .conn()
            .scalar(
                "SELECT count(*) FROM events WHERE session_id = ?",
                &[crate::store::sql::Arg::Text(victim.clone())],
            )
            .await
            .unwrap();
        assert_eq!(left, 0, "{victim}");
        drop(held);
        assert!(store.get_session(&victim).await.unwrap().is_none());
    }
    assert_counters_exact(&store).await;
}

async fn retention_deletes_old_events_in_batches_and_keeps_every_counter_exact(store: TestDb) {
    // Arrange: shop and crm events over 5 hours, sessions spanning the cutoff.
    let mut batch = Vec::new();
    for i in 0..1500i64 {
        let secs = i * 12 + i % 7;
        let session = format!("s{}", i % 40);
        batch.push(view(&session, secs));
        batch.push(submit(&session, secs, "crm"));
    }
    for chunk in batch.chunks(500) {
        store.write_batch(chunk).await.unwrap();
    }
    let cutoff = t(9_000) + Duration::microseconds(123_457);
    let shop_old = EventQuery::new()
        .application("shop")
        .end_time(cutoff - Duration::microseconds(1));
    let (old, _) = store.query_events(&shop_old).await.unwrap();
    assert!(old > 500, "{old}");
    let total = store.total_events().await.unwrap();

    // Act: batches of 100 until one comes back short.
    let mut deleted = 0;
    loop {
        let n = store.expire_events("shop", cutoff, 100).await.unwrap();
        assert!(n <= 100);
        deleted += n;
        if n < 100 {
            break;
        }
    }

    // Assert
    assert_eq!(deleted, old);
    assert_eq!(store.query_events(&shop_old).await.unwrap().0, 0);
    assert_eq!(store.total_events().await.unwrap(), total - old);
    let crm = EventQuery::new().application("crm");
    assert_eq!(store.query_events(&crm).await.unwrap().0, 1500);
    // A session keeps its crm events; its first shop event now is after the cutoff.
    let s = store.get_session("s0").await.unwrap().unwrap();
    assert_eq!(s.first_seen, t(0));
    assert_eq!(s.applications, vec!["crm".to_owned(), "shop".to_owned()]);
    assert_counters_exact(&store).await;

    // crm too: sessions left without events are deleted, the rest shrink.
    while store.expire_events("crm", cutoff, 1000).await.unwrap() == 1000 {}
    let s = store.get_session("s0").await.unwrap().unwrap();
    assert!(s.first_seen >= cutoff, "{s:?}");
    let (n, events) = store
        .session_events("s0", &Pagination::default())
        .await
        .unwrap();
    assert_eq!(n, s.event_count);
    assert!(events.iter().all(|e| e.timestamp >= cutoff));
    assert_counters_exact(&store).await;
    while store.expire_events("shop", t(100_000), 1000).await.unwrap() == 1000 {}
    while store.expire_events("crm", t(100_000), 1000).await.unwrap() == 1000 {}
    assert_eq!(store.total_sessions().await.unwrap(), 0);
    assert_counters_exact(&store).await;
}

async fn errors_retention_deletes_old_entries_with_their_counters(store: TestDb) {
    let mut batch = Vec::new();
    for i in 0..50 {
        let codes: &[ErrorCode] = if i % 2 == 0 {
            &[ErrorCode::InvalidHost]
        } else {
            &[ErrorCode::InvalidHost, ErrorCode::TimestampInFuture]
        };
        batch.push(rejected(["shop", "crm"][i % 2], i as i64 * 400, codes));
    }
    store.write_batch(&batch).await.unwrap();
    let cutoff = t(10_000);
    let mut deleted = 0;
    loop {
        let n = store.expire_errors(cutoff, 7).await.unwrap();
        deleted += n;
        if n < 7 {
            break;
        }
    }
    assert_eq!(deleted, 25);
    let (n, left) = store.query_errors(&ErrorQuery::default()).await.unwrap();
    assert_eq!(n, 25);
    assert!(left.iter().all(|r| r.received_at >= cutoff));
    let future = ErrorQuery {
        code: Some("timestamp_in_future".into()),
        ..ErrorQuery::default()
    };
    assert_eq!(store.query_errors(&future).await.unwrap().0, 13);
    assert_counters_exact(&store).await;
}

async fn application_retention_is_stored_and_listed(store: TestDb) {
    crate::auth::create_app_with_key(&store, "shop", crate::store::Scopes::ALL)
        .await
        .unwrap();
    let get = || async {
        store
            .find_app_by_name("shop")
            .await
            .unwrap()
            .unwrap()
            .retention
    };
    assert_eq!(get().await, Retention::Default);
    store
        .set_retention("shop", Retention::Days(7))
        .await
        .unwrap();
    assert_eq!(get().await, Retention::Days(7));
    store
        .set_retention("shop", Retention::Forever)
        .await
        .unwrap();
    assert_eq!(get().await, Retention::Forever);
    store
        .set_retention("shop", Retention::Default)
        .await
        .unwrap();
    assert_eq!(get().await, Retention::Default);
    assert!(matches!(
        store.set_retention("nope", Retention::Forever).await,
        Err(crate::store::StoreError::AppNotFound(_))
    ));
}

/// SQLite gives the pages retention freed back to the file system, a few at a time.
#[tokio::test]
async fn sqlite_gives_freed_pages_back_after_retention() {
    let db = TestDb::sqlite().await;
    let mut batch = Vec::new();
    for i in 0..3000 {
        batch.push(submit(&format!("s{i}"), i, "shop"));
    }
    db.write_batch(&batch).await.unwrap();
    let pages = |db: &TestDb| {
        let pool = db.pool().unwrap().clone();
        async move {
            let (n,): (i64,) = sqlx::query_as("PRAGMA page_count")
                .fetch_one(&pool)
                .await
                .unwrap();
            n
        }
    };
    let full = pages(&db).await;
    while db.expire_events("shop", t(100_000), 500).await.unwrap() == 500 {}
    let mut rounds = 0;
    while db.reclaim_space(64).await.unwrap() > 0 {
        rounds += 1;
        assert!(rounds < 10_000);
    }
    assert!(rounds > 1, "freed in several small steps");
    let after = pages(&db).await;
    assert!(after * 2 < full, "{after} pages of {full} left");
    assert_counters_exact(&db).await;
}
