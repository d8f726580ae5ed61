use eye_core::{EventQuery, Pagination, StoredEvent};

use super::*;

conformance!(
    equal_timestamps_are_ordered_by_id_descending,
    unfiltered_query_lists_everything_newest_first,
    each_filter_alone_matches_exactly,
    filters_combine_and_counts_match_results,
    category_and_name_of_different_types_match_nothing,
    pages_partition_the_results_in_order_and_keep_the_total,
    session_timeline_is_oldest_first_and_paginated,
    count_events_and_query_events_match_the_fixture_for_every_shape,
    time_range_counts_are_exact_across_hour_edges,
);

/// A store with a known mix: sessions a/b, three types, two applications, spread over
/// several hours so time-range counts cross hour boundaries.
async fn fixture(store: TestDb) -> (TestDb, Vec<Message>) {
    let mut batch = Vec::new();
    for i in 0..30i64 {
        let secs = i * 1000; // 0 .. 29,000 s: about 8 hours
        let session = if i % 2 == 0 { "a" } else { "b" };
        batch.push(match i % 3 {
            0 => view(session, secs),
            1 => click(session, secs),
            _ => submit(session, secs, if i % 4 == 0 { "crm" } else { "shop" }),
        });
    }
    store.write_batch(&batch).await.unwrap();
    (store, batch)
}

/// Which stored events a query should match.
type Predicate = Box<dyn Fn(&AcceptedEvent) -> bool>;

/// The ids of the messages matching `pred`, newest first.
fn expected(batch: &[Message], pred: impl Fn(&AcceptedEvent) -> bool) -> Vec<Uuid> {
    let mut v: Vec<&AcceptedEvent> = batch
        .iter()
        .filter_map(|m| match m {
            Message::EventV1(e) if pred(e) => Some(e),
            _ => None,
        })
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse((e.event.timestamp(), e.id)));
    v.into_iter().map(|e| e.id).collect()
}

async fn ids(store: &Store, q: EventQuery) -> (u64, Vec<Uuid>) {
    let (count, events) = store.query_events(&q.page_size(1000)).await.unwrap();
    (count, events.iter().map(|e: &StoredEvent| e.id).collect())
}

async fn unfiltered_query_lists_everything_newest_first(store: TestDb) {
    let (store, batch) = fixture(store).await;
    let (count, got) = ids(&store, EventQuery::new()).await;
    assert_eq!(count, 30);
    assert_eq!(got, expected(&batch, |_| true));
}

async fn each_filter_alone_matches_exactly(store: TestDb) {
    let (store, batch) = fixture(store).await;
    let cases: Vec<(EventQuery, Predicate)> = vec![
        (
            EventQuery::new().session("a"),
            Box::new(|e| e.event.session_id().as_str() == "a"),
        ),
        (
            EventQuery::new().category("page_interaction"),
            Box::new(|e| e.event.event_type().category() == "page_interaction"),
        ),
        (
            EventQuery::new().name("cta_click"),
            Box::new(|e| e.event.event_type().name() == "cta_click"),
        ),
        (
            EventQuery::new().application("crm"),
            Box::new(|e| e.application == "crm"),
        ),
        (
            EventQuery::new().start_time(t(5500)),
            Box::new(|e| e.event.timestamp() >= t(5500)),
        ),
        (
            EventQuery::new().end_time(t(12_000)),
            Box::new(|e| e.event.timestamp() <= t(12_000)),
        ),
    ];
    for (q, pred) in cases {
        let want = expected(&batch, pred);
        assert!(!want.is_empty(), "{q:?} matches something");
        assert_eq!(
            ids(&store, q.clone()).await,
            (want.len() as u64, want),
            "{q:?}"
        );
    }
}

async fn filters_combine_and_counts_match_results(store: TestDb) {
    let (store, batch) = fixture(store).await;
    let q = EventQuery::new()
        .session("b")
        .category("page_interaction")
        .start_time(t(1000))
        .end_time(t(20_000));
    let want = expected(&batch, |e| {
        e.event.session_id().as_str() == "b"
            && e.event.event_type().category() == "page_interaction"
            && e.event.timestamp() >= t(1000)
            && e.event.timestamp() <= t(20_000)
    });
    assert_eq!(ids(&store, q).await, (want.len() as u64, want));

    let q = EventQuery::new()
        .category("form_interaction")
        .name("submit")
        .application("shop");
    let want = expected(&batch, |e| {
        e.event.event_type().name() == "submit" && e.application == "shop"
    });
    assert_eq!(ids(&store, q).await, (want.len() as u64, want));
}

async fn time_range_counts_are_exact_across_hour_edges(store: TestDb) {
    // Whole hours come from the hourly counters, the edges from the index: check many
    // ranges against a direct filter.
    let (store, batch) = fixture(store).await;
    for (s, e) in [
        (0, 29_000),
        (1, 28_999),
        (3599, 3600),
        (3600, 7199),
        (3600, 7200),
        (999, 14_401),
        (7200, 7200),
        (10_000, 10_000),
        (100, 200),
    ] {
        for app in [None, Some("crm")] {
            let mut q = EventQuery::new().start_time(t(s)).end_time(t(e));
            if let Some(a) = app {
                q = q.application(a);
            }
            let want = expected(&batch, |ev| {
                ev.event.timestamp() >= t(s)
                    && ev.event.timestamp() <= t(e)
                    && app.is_none_or(|a| ev.application == a)
            });
            assert_eq!(
                ids(&store, q).await,
                (want.len() as u64, want),
                "{s}..{e} {app:?}"
            );
        }
    }
}

async fn category_and_name_of_different_types_match_nothing(store: TestDb) {
    let (store, _) = fixture(store).await;
    let q = EventQuery::new()
        .category("form_interaction")
        .name("page_view");
    assert_eq!(ids(&store, q).await, (0, vec![]));
    let q = EventQuery::new().category("no_such_category");
    assert_eq!(ids(&store, q).await, (0, vec![]));
}

async fn pages_partition_the_results_in_order_and_keep_the_total(store: TestDb) {
    let (store, batch) = fixture(store).await;
    let all = expected(&batch, |_| true);
    let mut seen = Vec::new();
    for page in 1..=4 {
        let (count, events) = store
            .query_events(&EventQuery::new().page(page).page_size(8))
            .await
            .unwrap();
        assert_eq!(count, 30);
        assert_eq!(events.len(), if page < 4 { 8 } else { 6 });
        seen.extend(events.into_iter().map(|e| e.id));
    }
    assert_eq!(seen, all);
    let (count, past_end) = store
        .query_events(&EventQuery::new().page(5).page_size(8))
        .await
        .unwrap();
    assert_eq!((count, past_end.len()), (30, 0));
}

async fn equal_timestamps_are_ordered_by_id_descending(store: TestDb) {
    let batch: Vec<Message> = (0..5).map(|_| view("s", 7)).collect();
    store.write_batch(&batch).await.unwrap();
    let (_, got) = ids(&store, EventQuery::new()).await;
    let mut want: Vec<Uuid> = batch.iter().map(id_of).collect();
    want.sort_by(|a, b| b.cmp(a));
    assert_eq!(got, want);
}

async fn session_timeline_is_oldest_first_and_paginated(store: TestDb) {
    let (store, batch) = fixture(store).await;
    let mut want = expected(&batch, |e| e.event.session_id().as_str() == "a");
    want.reverse();
    let (count, page1) = store
        .session_events(
            "a",
            &Pagination {
                page: 1,
                page_size: 10,
            },
        )
        .await
        .unwrap();
    let (_, page2) = store
        .session_events(
            "a",
            &Pagination {
                page: 2,
                page_size: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(count, 15);
    let got: Vec<Uuid> = page1.iter().chain(&page2).map(|e| e.id).collect();
    assert_eq!(got, want);
    let (count, none) = store
        .session_events("nobody", &Pagination::default())
        .await
        .unwrap();
    assert_eq!((count, none.len()), (0, 0));
}

async fn count_events_and_query_events_match_the_fixture_for_every_shape(store: TestDb) {
    let (store, batch) = fixture(store).await;
    let queries = [
        EventQuery::new(),
        EventQuery::new().session("a").name("page_view"),
        EventQuery::new()
            .category("page_interaction")
            .application("shop"),
        EventQuery::new().start_time(t(3000)).end_time(t(25_000)),
        EventQuery::new()
            .start_time(t(7200))
            .category("form_interaction"),
        EventQuery::new().end_time(t(7200)).name("cta_click"),
        EventQuery::new()
            .category("form_interaction")
            .name("page_view"),
    ];
    for q in queries {
        // What the fixture holds, filtered here, not by the store.
        let want = expected(&batch, |e| matches(&q, e));
        let (count, events) = store
            .query_events(&q.clone().page_size(1000))
            .await
            .unwrap();
        let listed: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        assert_eq!((count, listed), (want.len() as u64, want.clone()), "{q:?}");
        assert_eq!(
            store.count_events(&q).await.unwrap(),
            want.len() as u64,
            "{q:?}"
        );
    }
}

/// Whether `e` matches every filter of `q`: the query's meaning, written out.
fn matches(q: &EventQuery, e: &AcceptedEvent) -> bool {
    let t = e.event.event_type();
    q.session_id
        .as_deref()
        .is_none_or(|s| e.event.session_id().as_str() == s)
        && q.category.as_deref().is_none_or(|c| t.category() == c)
        && q.name.as_deref().is_none_or(|n| t.name() == n)
        && q.application.as_deref().is_none_or(|a| e.application == a)
        && q.time.start.is_none_or(|s| e.event.timestamp() >= s)
        && q.time.end.is_none_or(|end| e.event.timestamp() <= end)
}
