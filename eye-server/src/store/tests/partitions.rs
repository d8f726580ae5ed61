//! PostgreSQL only: `events` by UTC day. Days created ahead, a day dropped whole (its
//! share of sessions, counters and ids taken off exactly, with writers at work), the
//! retention pass dropping whole days, and the migration of a store that has events.

use chrono::{DateTime, Duration, Utc};
use eye_core::Event;
use uuid::Uuid;

use super::recount::assert_counters_exact;
use super::*;
use crate::config::{DaysArg, RetentionConfig};
use crate::store::postgres::PgStore;
use crate::store::postgres::partitions::{DAY_MICROS, day_of, partition_name};
use crate::store::{Backend, Retention};

fn pg(store: &Store) -> &PgStore {
    match &store.backend {
        Backend::Postgres(p) => p,
        Backend::Sqlite(_) => panic!("not a PostgreSQL store"),
    }
}

/// The instant `secs` seconds into the UTC day starting at `day` (microseconds).
fn at(day: i64, secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(day).unwrap() + Duration::seconds(secs)
}

fn page_view(session: &str, app: &str, when: DateTime<Utc>) -> Message {
    accepted(
        Event::page_view(session, "example.com", "/").unwrap(),
        app,
        when,
    )
}

/// The start of the day `n` days after today (UTC).
fn day_after_today(n: i64) -> i64 {
    day_of(Utc::now().timestamp_micros()) + n * DAY_MICROS
}

/// A fresh PostgreSQL store with the partitions of the days 3 and 4 days from today
/// (past the days created ahead, so only these tests' events are in them), and the
/// starts of those two days.
async fn with_two_days() -> Option<(TestDb, i64, i64)> {
    let db = TestDb::postgres().await?;
    let (d0, d1) = (day_after_today(3), day_after_today(4));
    pg(&db).create_days(&[d0, d1]).await.unwrap();
    Some((db, d0, d1))
}

async fn scalar(store: &Store, sql: &str) -> i64 {
    store
        .reader()
        .await
        .unwrap()
        .conn()
        .scalar(sql, &[])
        .await
        .unwrap()
}

/// The partition that holds the event `id`.
async fn partition_of(store: &Store, id: Uuid) -> String {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT tableoid::regclass::text FROM events WHERE id = $1")
            .bind(id)
            .fetch_all(store.pg_pool().unwrap())
            .await
            .unwrap();
    rows.into_iter().next().unwrap().0
}

#[tokio::test]
async fn opening_a_store_creates_the_days_ahead_and_an_event_lands_in_its_day() {
    // Arrange
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    // Act
    let days = pg(&db).day_partitions().await.unwrap();
    let m = page_view("s", "shop", Utc::now());
    db.write_batch(std::slice::from_ref(&m)).await.unwrap();
    // Assert: today and two days ahead (yesterday is in the legacy range of a store
    // created today).
    assert_eq!(
        days,
        vec![day_after_today(0), day_after_today(1), day_after_today(2)]
    );
    assert_eq!(
        partition_of(&db, id_of(&m)).await,
        partition_name(day_after_today(0))
    );
    // An event of a day outside the window kept ahead goes to the default partition.
    let far = page_view("s", "shop", at(day_after_today(30), 5));
    db.write_batch(std::slice::from_ref(&far)).await.unwrap();
    assert_eq!(partition_of(&db, id_of(&far)).await, "events_default");
    assert_counters_exact(&db).await;
}

#[tokio::test]
async fn a_dropped_day_takes_its_share_of_sessions_counters_and_ids_with_it() {
    // Arrange: two days; session `both` spans them, `old` is only in the first.
    let Some((db, d0, d1)) = with_two_days().await else {
        return;
    };
    let old_view = page_view("old", "shop", at(d0, 10));
    let batch = vec![
        page_view("both", "shop", at(d0, 100)),
        submit_at("both", "crm", at(d0, 200)),
        accepted(
            Event::cta_click("both", "example.com", "/", "buy").unwrap(),
            "shop",
            at(d1, 50),
        ),
        old_view.clone(),
        page_view("old", "shop", at(d0, 20)),
        submit_at("old", "crm", at(d0, 3599)),
        page_view("new", "shop", at(d1, 10)),
        rejected("crm", 7, &[eye_core::ErrorCode::InvalidHost]),
    ];
    db.write_batch(&batch).await.unwrap();
    assert_counters_exact(&db).await;

    // Act
    let removed = db.drop_days_before(at(d1, 0)).await.unwrap();

    // Assert
    assert_eq!(removed, 5);
    let gone = format!(
        "SELECT count(*) FROM pg_class WHERE relname = '{}'",
        partition_name(d0)
    );
    assert_eq!(scalar(&db, &gone).await, 0, "the partition is dropped");
    assert!(pg(&db).day_partitions().await.unwrap().contains(&d1));
    assert!(db.get_session("old").await.unwrap().is_none());
    let both = db.get_session("both").await.unwrap().unwrap();
    assert_eq!(both.event_count, 1);
    assert_eq!(both.first_seen, at(d1, 50));
    assert_eq!(both.last_seen, at(d1, 50));
    assert_eq!(both.applications, vec!["shop".to_owned()]);
    assert_eq!(db.get_session("new").await.unwrap().unwrap().event_count, 1);
    assert_counters_exact(&db).await;
    assert_eq!(scalar(&db, "SELECT count(*) FROM event_ids").await, 2);
    assert_eq!(scalar(&db, "SELECT count(*) FROM errors").await, 1);
    // Its ids are forgotten with it, as a deleted row's were: an event of that day
    // sent again is stored again and counted (in the day's partition, created again
    // since the day is inside the window kept ahead).
    let outcome = db
        .write_batch(std::slice::from_ref(&old_view))
        .await
        .unwrap();
    assert_eq!(outcome.inserted, 1);
    assert_eq!(
        partition_of(&db, id_of(&old_view)).await,
        partition_name(d0)
    );
    assert_counters_exact(&db).await;
}

fn submit_at(session: &str, app: &str, when: DateTime<Utc>) -> Message {
    accepted(
        Event::form_submit(
            session,
            "example.com",
            "/signup",
            serde_json::json!({"first_name": "Ada"}),
        )
        .unwrap(),
        app,
        when,
    )
}

#[tokio::test]
async fn writers_racing_a_day_drop_leave_every_counter_exact() {
    // Arrange: a day of 3,000 events over 60 sessions, some of which go on today.
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let d0 = day_after_today(3);
    pg(&db).create_days(&[d0]).await.unwrap();
    let batch: Vec<Message> = (0..3000)
        .map(|i| page_view(&format!("s{}", i % 60), "shop", at(d0, i)))
        .collect();
    for chunk in batch.chunks(500) {
        db.write_batch(chunk).await.unwrap();
    }
    // Act: writers add to the same day and to today while the day is dropped.
    let writer = {
        let store = db.store.clone();
        tokio::spawn(async move {
            let mut written = 0;
            for round in 0..30i64 {
                let batch: Vec<Message> = (0..40i64)
                    .map(|i| {
                        let session = format!("s{}", i % 60);
                        if i % 2 == 0 {
                            page_view(&session, "shop", at(d0, 4000 + round * 40 + i))
                        } else {
                            page_view(&session, "crm", Utc::now())
                        }
                    })
                    .collect();
                written += store.write_batch(&batch).await.unwrap().inserted;
            }
            written
        })
    };
    let mut removed = 0;
    for _ in 0..3 {
        removed += pg(&db).drop_day(d0).await.unwrap();
        tokio::task::yield_now().await;
    }
    let written = writer.await.unwrap();
    // A last drop takes what the writers put in the day after the first drops.
    let stragglers_in_day = pg(&db).drop_day(d0).await.unwrap();

    // Assert
    assert_eq!(written, 1200);
    let left = scalar(&db, "SELECT count(*) FROM events").await;
    assert_eq!(
        left as u64 + removed + stragglers_in_day,
        3000 + written,
        "every event is either left or was counted as removed once"
    );
    assert_counters_exact(&db).await;
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM event_ids").await,
        left,
        "an id is kept exactly for each event kept"
    );
}

#[tokio::test]
async fn retention_on_postgres_drops_the_days_every_application_has_passed() {
    // Arrange: `shop` and `crm` events on two days; 10 days of retention.
    let Some((db, d0, d1)) = with_two_days().await else {
        return;
    };
    let early_d1 = page_view("a", "shop", at(d1, 3600));
    db.write_batch(&[
        page_view("a", "shop", at(d0, 3600)),
        page_view("b", "crm", at(d0, 7200)),
        early_d1.clone(),
        page_view("b", "crm", at(d1, 13 * 3600)),
    ])
    .await
    .unwrap();
    crate::auth::create_app_with_key(&db, "crm", crate::store::Scopes::ALL)
        .await
        .unwrap();
    let config = RetentionConfig {
        retention_days: Some(10),
        errors_retention_days: DaysArg(None),
        retention_interval_secs: 600,
        retention_batch: 1000,
    };
    // Noon of d1, ten days later: the exact cutoff is in the middle of d1.
    let now = at(d1, 12 * 3600) + Duration::days(10);

    // Act
    let first = crate::lifecycle::retention_pass(&db, &config, now, &|| false)
        .await
        .unwrap();

    // Assert: d0 went whole; d1 stays whole, even its event older than the exact
    // cutoff (whole days only); no row of d1 was deleted.
    assert_eq!(first.events, 2);
    assert!(!pg(&db).day_partitions().await.unwrap().contains(&d0));
    assert_eq!(scalar(&db, "SELECT count(*) FROM events").await, 2);
    assert_eq!(
        partition_of(&db, id_of(&early_d1)).await,
        partition_name(d1)
    );
    assert_counters_exact(&db).await;

    // Arrange: `crm` keeps its events forever, so d1 cannot go whole any more.
    db.set_retention("crm", Retention::Forever).await.unwrap();
    let later = at(d1 + DAY_MICROS, 12 * 3600) + Duration::days(10);

    // Act
    let second = crate::lifecycle::retention_pass(&db, &config, later, &|| false)
        .await
        .unwrap();

    // Assert: `shop`'s event of d1 is deleted as a row, `crm`'s stays with its day.
    assert_eq!(second.events, 1);
    assert!(pg(&db).day_partitions().await.unwrap().contains(&d1));
    assert_eq!(scalar(&db, "SELECT count(*) FROM events").await, 1);
    assert_counters_exact(&db).await;
}

#[tokio::test]
async fn migrating_a_store_with_events_keeps_them_and_stores_each_id_once() {
    // Arrange: a database at the schema before the partitions, with two events.
    let Some(db) = crate::store::testing::PgDatabase::create().await else {
        return;
    };
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let mut before = sqlx::migrate!("./migrations/postgres");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 6)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    let old: Vec<Uuid> = vec![Uuid::now_v7(), Uuid::now_v7()];
    for (i, id) in old.iter().enumerate() {
        sqlx::query(
            "INSERT INTO events (id, application, session_id, category, name, data, \
             timestamp, received_at) VALUES ($1, 'shop', 's', 'page_interaction', \
             'page_view', '{}', $2, $2)",
        )
        .bind(id)
        .bind(t(i as i64 * 10).timestamp_micros())
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    // Act
    let store = Store::open(&db.url).await.unwrap();

    // Assert: the rows are in the legacy partition, their ids in the guard.
    assert_eq!(partition_of(&store, old[0]).await, "events_legacy");
    assert_eq!(scalar(&store, "SELECT count(*) FROM event_ids").await, 2);
    let again = Message::EventV1(crate::message::AcceptedEvent {
        id: old[1],
        application: "shop".into(),
        received_at: t(10),
        client_timestamp: None,
        event: Event::page_view("s", "example.com", "/")
            .unwrap()
            .with_timestamp(t(10)),
    });
    let outcome = store.write_batch(&[again]).await.unwrap();
    assert_eq!((outcome.inserted, outcome.duplicates), (0, 1));
    let new = page_view("s", "shop", Utc::now());
    store.write_batch(std::slice::from_ref(&new)).await.unwrap();
    assert_eq!(
        partition_of(&store, id_of(&new)).await,
        partition_name(day_after_today(0))
    );
    store.close().await;
}
