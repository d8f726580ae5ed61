//! Deep pages are found through the hourly counters (`seek`); they must be exactly the
//! pages that skipping `OFFSET` rows one by one gives.

use eye_core::EventQuery;

use super::*;

conformance!(
    deep_pages_equal_offset_pages_for_every_counter_shape,
    seek_leaves_less_than_an_hour_of_events_to_skip,
);

/// (timestamp, id, category, application) of a stored event.
type Row = (DateTime<Utc>, Uuid, &'static str, &'static str);

/// Which rows a query should match.
type Pred = Box<dyn Fn(&Row) -> bool>;

/// 3,000 events over about 42 hours, in a scrambled order, with several at the same
/// instant, of every type and two applications.
async fn many(store: TestDb) -> (TestDb, Vec<Row>) {
    let mut batch = Vec::new();
    for i in 0..3000i64 {
        let secs = (i * 7919) % 150_000 / 3 * 3; // scrambled, with collisions
        let m = match i % 5 {
            0 | 1 => view("s", secs),
            2 | 3 => click("s", secs),
            _ => submit("s", secs, if i % 2 == 0 { "crm" } else { "shop" }),
        };
        batch.push(m);
    }
    store.write_batch(&batch).await.unwrap();
    let rows = batch
        .iter()
        .map(|m| match m {
            Message::EventV1(e) => (
                e.event.timestamp(),
                e.id,
                e.event.event_type().category(),
                e.application.as_str(),
            ),
            Message::RejectedV1(_) => unreachable!(),
        })
        .map(|(t, id, c, a)| (t, id, c, if a == "crm" { "crm" } else { "shop" }))
        .collect();
    (store, rows)
}

async fn deep_pages_equal_offset_pages_for_every_counter_shape(store: TestDb) {
    // Arrange
    let (store, rows) = many(store).await;
    let range = (t(10_000), t(140_000 + 1234));
    let shapes: Vec<(EventQuery, Pred)> = vec![
        (EventQuery::new(), Box::new(|_| true)),
        (
            EventQuery::new().category("page_interaction"),
            Box::new(|r| r.2 == "page_interaction"),
        ),
        (
            EventQuery::new().start_time(range.0).end_time(range.1),
            Box::new(move |r| r.0 >= range.0 && r.0 <= range.1),
        ),
        (
            EventQuery::new().start_time(t(1801)),
            Box::new(|r| r.0 >= t(1801)),
        ),
        (
            EventQuery::new().end_time(t(149_999)).application("shop"),
            Box::new(|r| r.0 <= t(149_999) && r.3 == "shop"),
        ),
    ];
    for (q, pred) in shapes {
        let mut want: Vec<_> = rows.iter().filter(|r| pred(r)).collect();
        want.sort_by_key(|r| std::cmp::Reverse((r.0, r.1)));
        let want: Vec<Uuid> = want.into_iter().map(|r| r.1).collect();
        assert_deep_pages(&store, &q, &want, 13).await;
    }
}

async fn seek_leaves_less_than_an_hour_of_events_to_skip(store: TestDb) {
    // Arrange: about 71 events per hour.
    let (store, _) = many(store).await;
    let plan = crate::store::sql::EventPlan::new(&EventQuery::new()).unwrap();
    let mut held = store.reader().await.unwrap();
    // Act
    let (narrowed, offset) = crate::store::count::seek(&mut held.conn(), &plan, 2500)
        .await
        .unwrap();
    // Assert
    assert!(narrowed.end.is_some());
    assert!(offset < 100, "offset {offset}");
}
