//! Keyset pages: a walk by cursor lists exactly what the page-number query lists, in
//! the same order, also when every event shares one timestamp, and sees every event
//! once while events are written between its pages.

use eye_core::{
    Cursor, CursorListing, CursorParam, Direction, ErrorCode, ErrorQuery, EventQuery, StoredEvent,
    TimelineQuery,
};

use super::*;
use crate::store::KeysetPage;

conformance!(
    cursor_walk_over_identical_timestamps_lists_every_event_once_in_order,
    cursor_walk_with_concurrent_inserts_sees_every_event_once,
    previous_cursors_walk_back_to_the_first_page,
    filters_keep_their_meaning_across_a_cursor_walk,
    session_timeline_walk_by_cursor_is_oldest_first_and_sees_appended_events,
    errors_log_walk_by_cursor_matches_the_page_number_listing,
);

/// `m` with a random (UUIDv4) id, so that events written later interleave with the
/// stored ones in `(timestamp, id)` order instead of all sorting after them.
fn random_id(mut m: Message) -> Message {
    if let Message::EventV1(e) = &mut m {
        e.id = Uuid::new_v4();
    }
    m
}

/// `n` page views of `session` (cycling through `sessions` when given) at `t(secs)`.
fn same_instant(n: usize, secs: i64) -> Vec<Message> {
    (0..n)
        .map(|i| match i % 3 {
            0 => random_id(view("s", secs)),
            1 => random_id(click("t", secs)),
            _ => random_id(submit("s", secs, if i % 2 == 0 { "crm" } else { "shop" })),
        })
        .collect()
}

fn cursor(listing: CursorListing, direction: Direction, e: &StoredEvent) -> CursorParam {
    CursorParam::At(Cursor::new(
        listing,
        direction,
        e.timestamp.timestamp_micros(),
        e.id.as_u128(),
        0,
    ))
}

/// Walks `q` by cursor from its first page to the end, calling `between` after each
/// page; returns the ids in the order seen and the number of pages.
async fn walk<F, Fut>(store: &Store, q: &EventQuery, page_size: u32, mut between: F) -> Vec<Uuid>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut at = CursorParam::First;
    let mut seen = Vec::new();
    for page_no in 0.. {
        let KeysetPage { results, more, .. } = store
            .events_by_cursor(&q.clone().page_size(page_size).cursor(at))
            .await
            .unwrap();
        assert!(results.len() <= page_size as usize);
        seen.extend(results.iter().map(|e| e.id));
        let Some(last) = results.last().filter(|_| more) else {
            break;
        };
        at = cursor(CursorListing::Events, Direction::Next, last);
        between(page_no).await;
        assert!(page_no < 100_000, "the walk does not end");
    }
    seen
}

/// Every page of `q` by page number, concatenated.
async fn by_page_number(store: &Store, q: &EventQuery) -> Vec<Uuid> {
    let (_, events) = store
        .query_events(&q.clone().page_size(1000))
        .await
        .unwrap();
    events.into_iter().map(|e| e.id).collect()
}

async fn cursor_walk_over_identical_timestamps_lists_every_event_once_in_order(store: TestDb) {
    // Arrange: 700 events at one instant, and a few on each side.
    let mut batch = same_instant(700, 100);
    batch.extend(same_instant(5, 99));
    batch.extend(same_instant(5, 101));
    store.write_batch(&batch).await.unwrap();
    let want = by_page_number(&store, &EventQuery::new()).await;
    assert_eq!(want.len(), 710);
    for page_size in [1, 7, 100, 709, 710, 1000] {
        // Act
        let got = walk(&store, &EventQuery::new(), page_size, |_| async {}).await;
        // Assert
        assert_eq!(got, want, "page size {page_size}");
    }
}

async fn cursor_walk_with_concurrent_inserts_sees_every_event_once(store: TestDb) {
    // Arrange: 600 events at one instant.
    let batch = same_instant(600, 100);
    store.write_batch(&batch).await.unwrap();
    let before: std::collections::HashSet<Uuid> = batch.iter().map(id_of).collect();
    // Act: walk 25 at a time; after each page write 10 more at the same instant (their
    // random ids land before and after the walk's position), one older and one newer.
    let written = std::sync::Mutex::new(Vec::new());
    let store_ref = &store.store;
    let seen = walk(store_ref, &EventQuery::new(), 25, |page| {
        let mut more = same_instant(10, 100);
        more.push(random_id(view("s", 50)));
        more.push(random_id(view("s", 150 + page as i64)));
        written.lock().unwrap().extend(more.iter().map(id_of));
        async move {
            store_ref.write_batch(&more).await.unwrap();
        }
    })
    .await;
    // Assert: no event twice, every event stored before the walk seen, and the walk in
    // strictly descending (timestamp, id) order.
    let unique: std::collections::HashSet<Uuid> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event was seen twice");
    assert!(
        before.is_subset(&unique),
        "an event stored before the walk was skipped"
    );
    let written = written.into_inner().unwrap();
    assert!(written.len() >= 230);
    let stored = by_page_number(&store, &EventQuery::new()).await;
    let order: Vec<Uuid> = stored
        .into_iter()
        .filter(|id| unique.contains(id))
        .collect();
    assert_eq!(seen, order, "the walk left the listing's order");
}

async fn previous_cursors_walk_back_to_the_first_page(store: TestDb) {
    // Arrange
    store.write_batch(&same_instant(95, 100)).await.unwrap();
    let want = by_page_number(&store, &EventQuery::new()).await;
    // Act: forward to the last page, then back by `previous` cursors.
    let q = EventQuery::new().page_size(10);
    let mut page = store
        .events_by_cursor(&q.clone().cursor(CursorParam::First))
        .await
        .unwrap();
    while page.more {
        let last = page.results.last().unwrap();
        page = store
            .events_by_cursor(&q.clone().cursor(cursor(
                CursorListing::Events,
                Direction::Next,
                last,
            )))
            .await
            .unwrap();
    }
    assert_eq!(page.results.len(), 5);
    let mut back = vec![page.results.iter().map(|e| e.id).collect::<Vec<_>>()];
    loop {
        let first = page.results.first().unwrap();
        page = store
            .events_by_cursor(&q.clone().cursor(cursor(
                CursorListing::Events,
                Direction::Previous,
                first,
            )))
            .await
            .unwrap();
        back.push(page.results.iter().map(|e| e.id).collect());
        if !page.more {
            break;
        }
    }
    // Assert: the pages read backward are the forward pages, in reverse.
    back.reverse();
    assert_eq!(back.len(), 10);
    assert!(back[..9].iter().all(|p| p.len() == 10));
    assert_eq!(back.concat(), want);
}

async fn filters_keep_their_meaning_across_a_cursor_walk(store: TestDb) {
    // Arrange: two instants, plus events every 100 s.
    let mut batch = same_instant(300, 1000);
    batch.extend(same_instant(300, 2000));
    for i in 0..60 {
        batch.push(random_id(view(if i % 2 == 0 { "s" } else { "u" }, i * 100)));
    }
    store.write_batch(&batch).await.unwrap();
    let shapes = [
        EventQuery::new().category("page_interaction"),
        EventQuery::new().name("submit").application("crm"),
        EventQuery::new().session("s"),
        EventQuery::new().session("s").category("form_interaction"),
        EventQuery::new().application("shop"),
        EventQuery::new().start_time(t(1000)).end_time(t(1999)),
        EventQuery::new()
            .category("page_interaction")
            .start_time(t(1500)),
    ];
    for q in shapes {
        // Act
        let got = walk(&store, &q, 37, |_| async {}).await;
        // Assert
        let want = by_page_number(&store, &q).await;
        assert!(!want.is_empty(), "{q:?}");
        assert_eq!(got, want, "{q:?}");
    }
    // A cursor outside the time range (only a hand-made one can be) still keeps it.
    let range = EventQuery::new().start_time(t(1000)).end_time(t(1999));
    let want = by_page_number(&store, &range).await;
    let outside = |secs: i64, direction| {
        CursorParam::At(Cursor::new(
            CursorListing::Events,
            direction,
            t(secs).timestamp_micros(),
            0,
            0,
        ))
    };
    let after_end = store
        .events_by_cursor(
            &range
                .clone()
                .page_size(1000)
                .cursor(outside(5000, Direction::Next)),
        )
        .await
        .unwrap();
    assert_eq!(
        after_end.results.iter().map(|e| e.id).collect::<Vec<_>>(),
        want
    );
    let before_start = store
        .events_by_cursor(
            &range
                .clone()
                .page_size(1000)
                .cursor(outside(0, Direction::Previous)),
        )
        .await
        .unwrap();
    assert_eq!(
        before_start
            .results
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        want
    );
}

async fn session_timeline_walk_by_cursor_is_oldest_first_and_sees_appended_events(store: TestDb) {
    // Arrange: 120 events of session `s` at one instant, 80 later ones.
    let mut batch: Vec<Message> = (0..120).map(|_| random_id(view("s", 10))).collect();
    batch.extend((0..80).map(|i| random_id(click("s", 20 + i))));
    store.write_batch(&batch).await.unwrap();
    let (_, first_200) = store
        .session_events(
            "s",
            &eye_core::Pagination {
                page: 1,
                page_size: 1000,
            },
        )
        .await
        .unwrap();
    // Act: walk 9 at a time, appending one newer event per page.
    let mut q = TimelineQuery {
        session_id: "s".into(),
        pagination: eye_core::Pagination {
            page: 1,
            page_size: 9,
        },
        cursor: Some(CursorParam::First),
    };
    let mut seen: Vec<Uuid> = Vec::new();
    let mut appended = Vec::new();
    for i in 0..1000 {
        let page = store.session_events_by_cursor(&q).await.unwrap();
        seen.extend(page.results.iter().map(|e| e.id));
        let Some(last) = page.results.last().filter(|_| page.more) else {
            break;
        };
        q.cursor = Some(cursor(CursorListing::SessionEvents, Direction::Next, last));
        if i < 30 {
            let m = random_id(view("s", 1000 + i));
            appended.push(id_of(&m));
            store.write_batch(&[m]).await.unwrap();
        }
    }
    // Assert: oldest first, every event once, the appended ones at the end.
    let mut want: Vec<Uuid> = first_200.iter().map(|e| e.id).collect();
    want.extend(appended);
    assert_eq!(seen, want);
}

async fn errors_log_walk_by_cursor_matches_the_page_number_listing(store: TestDb) {
    // Arrange: 90 entries at one instant, 30 at others, two codes, two applications.
    let mut batch = Vec::new();
    for i in 0..120i64 {
        let secs = if i < 90 { 500 } else { i * 10 };
        let codes: &[ErrorCode] = if i % 2 == 0 {
            &[ErrorCode::TimestampInFuture]
        } else {
            &[ErrorCode::MissingField]
        };
        batch.push(rejected(
            if i % 3 == 0 { "crm" } else { "shop" },
            secs,
            codes,
        ));
    }
    store.write_batch(&batch).await.unwrap();
    for q in [
        ErrorQuery::default(),
        ErrorQuery {
            code: Some("timestamp_in_future".into()),
            ..ErrorQuery::default()
        },
        ErrorQuery {
            application: Some("crm".into()),
            ..ErrorQuery::default()
        },
    ] {
        let mut all = q.clone();
        all.pagination.page_size = 1000;
        let (count, want) = store.query_errors(&all).await.unwrap();
        let want: Vec<i64> = want.iter().map(|e| e.id).collect();
        // Act
        let mut walking = q.clone();
        walking.pagination.page_size = 11;
        walking.cursor = Some(CursorParam::First);
        let mut seen = Vec::new();
        loop {
            let page = store.errors_by_cursor(&walking).await.unwrap();
            assert_eq!(page.count, count);
            seen.extend(page.results.iter().map(|e| e.id));
            let Some(last) = page.results.last().filter(|_| page.more) else {
                break;
            };
            walking.cursor = Some(CursorParam::At(Cursor::new(
                CursorListing::Errors,
                Direction::Next,
                last.received_at.timestamp_micros(),
                u128::try_from(last.id).unwrap(),
                0,
            )));
        }
        // Assert
        assert_eq!(seen, want, "{q:?}");
    }
}
