//! Four writers, as four worker processes would be: four [`Store`] handles on one
//! database, writing overlapping sessions with the same ids (redeliveries across
//! workers, and retries of whole batches), all at once. Every count the queries rely
//! on must equal what the set of distinct ids says.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use eye_core::{ErrorCode, ErrorQuery, Event, EventQuery, EventType};

use super::*;

conformance!(four_concurrent_writers_with_shared_ids_keep_every_count_exact);

/// Distinct events written by the four writers.
const EVENTS: usize = 2400;
/// Distinct rejected events.
const REJECTED: usize = 120;

/// The distinct messages: events over ~3 hours (dense in the first seconds so 10 ms
/// buckets are shared), 12 sessions, three applications, every type.
fn messages() -> Vec<Message> {
    let base = t(0).timestamp_micros();
    let mut out = Vec::new();
    for i in 0..EVENTS as i64 {
        let micros = if i % 3 == 0 {
            base + (i * 7919) % 2_000_000
        } else {
            base + (i * 104_729_003) % 10_800_000_000
        };
        let session = format!("s{}", i % 12);
        let app = ["shop", "crm", "blog"][(i % 7 % 3) as usize];
        let event = match i % 5 {
            0 | 1 => Event::page_view(&session, "example.com", "/").unwrap(),
            2 | 3 => Event::cta_click(&session, "example.com", "/", "bubble").unwrap(),
            _ => Event::form_submit(&session, "example.com", "/", serde_json::json!({"n": i}))
                .unwrap(),
        };
        out.push(accepted(
            event,
            app,
            DateTime::from_timestamp_micros(micros).unwrap(),
        ));
    }
    for i in 0..REJECTED as i64 {
        let codes = [ErrorCode::InvalidHost, ErrorCode::InvalidJson];
        out.push(rejected(
            ["shop", "crm"][(i % 2) as usize],
            i * 97,
            &codes[..(i % 2 + 1) as usize],
        ));
    }
    out
}

/// What writer `w` sends: about half of the messages (each message goes to one to
/// three writers), in batches cut at the same places for every writer, so the
/// writers race on the same ids at the same time, each batch in its writer's own
/// order (reversed for odd writers, so unsorted inserts would deadlock), every fifth
/// batch sent twice (a retry after an unanswered commit).
fn share(all: &[Message], w: usize) -> Vec<Vec<Message>> {
    let mut batches = Vec::new();
    for (n, chunk) in all.chunks(97).enumerate() {
        let mut mine: Vec<Message> = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| (n * 97 + i, m))
            .filter(|(i, _)| i % 4 == w || (i / 4 + w).is_multiple_of(3))
            .map(|(_, m)| m.clone())
            .collect();
        if w % 2 == 1 {
            mine.reverse();
        }
        batches.push(mine.clone());
        if n % 5 == w {
            batches.push(mine);
        }
    }
    batches
}

async fn four_concurrent_writers_with_shared_ids_keep_every_count_exact(store: TestDb) {
    // Arrange
    let all = messages();
    let mut writers = Vec::new();
    for _ in 0..4 {
        writers.push(Store::open(&store.url).await.unwrap());
    }
    let covered: BTreeSet<Uuid> = (0..4)
        .flat_map(|w| share(&all, w).into_iter().flatten())
        .map(|m| id_of(&m))
        .collect();
    assert_eq!(
        covered.len(),
        all.len(),
        "every message is written by someone"
    );

    // Act: four writers at once.
    let mut tasks = Vec::new();
    for (w, writer) in writers.iter().enumerate() {
        let writer = writer.clone();
        let batches = share(&all, w);
        tasks.push(tokio::spawn(async move {
            let (mut inserted, mut logged) = (0, 0);
            for batch in batches {
                let outcome = writer.write_batch(&batch).await.unwrap();
                inserted += outcome.inserted;
                logged += outcome.errors_logged;
            }
            (inserted, logged)
        }));
    }
    let (mut inserted, mut logged) = (0, 0);
    for t in tasks {
        let (i, l) = t.await.unwrap();
        inserted += i;
        logged += l;
    }

    // Assert: each id stored, and counted, once.
    let events: Vec<&AcceptedEvent> = all
        .iter()
        .filter_map(|m| match m {
            Message::EventV1(e) => Some(e),
            Message::RejectedV1(_) => None,
        })
        .collect();
    assert_eq!(inserted, EVENTS as u64);
    assert_eq!(logged, REJECTED as u64);
    let (count, _) = store.query_events(&EventQuery::new()).await.unwrap();
    assert_eq!(count, EVENTS as u64);
    assert_eq!(store.total_events().await.unwrap(), EVENTS as u64);
    let mut reader = store.reader().await.unwrap();
    let mut conn = reader.conn();
    assert_eq!(
        conn.scalar("SELECT count(*) FROM events", &[])
            .await
            .unwrap(),
        EVENTS as i64
    );

    // Sessions: count, first and last seen, applications.
    let mut sessions: BTreeMap<&str, Vec<&AcceptedEvent>> = BTreeMap::new();
    for e in &events {
        sessions
            .entry(e.event.session_id().as_str())
            .or_default()
            .push(e);
    }
    assert_eq!(store.total_sessions().await.unwrap(), sessions.len() as u64);
    for (sid, evs) in &sessions {
        let s = store.get_session(sid).await.unwrap().unwrap();
        assert_eq!(s.event_count, evs.len() as u64, "{sid}");
        let first = evs.iter().map(|e| e.event.timestamp()).min().unwrap();
        let last = evs.iter().map(|e| e.event.timestamp()).max().unwrap();
        assert_eq!((s.first_seen, s.last_seen), (first, last), "{sid}");
        let apps: BTreeSet<String> = evs.iter().map(|e| e.application.clone()).collect();
        assert_eq!(
            s.applications,
            apps.into_iter().collect::<Vec<_>>(),
            "{sid}"
        );
        let (n, _) = store
            .session_events(sid, &eye_core::Pagination::default())
            .await
            .unwrap();
        assert_eq!(n, evs.len() as u64, "{sid}");
    }

    // Per-type totals.
    let mut by_type: HashMap<EventType, u64> = HashMap::new();
    for e in &events {
        *by_type.entry(e.event.event_type()).or_default() += 1;
    }
    for tc in store.totals_by_type().await.unwrap() {
        assert_eq!(
            tc.events,
            by_type.get(&tc.event_type).copied().unwrap_or(0),
            "{:?}",
            tc.event_type
        );
    }

    // The counter tree: every level sums to every event.
    let hours = conn
        .scalar(
            "SELECT CAST(coalesce(sum(events), 0) AS BIGINT) FROM event_hours",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(hours, EVENTS as i64);
    let levels: Vec<(i64, i64)> = conn
        .fetch_all(
            "SELECT width, CAST(sum(events) AS BIGINT) FROM event_buckets GROUP BY width \
             ORDER BY width",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        levels,
        vec![
            (10_000, EVENTS as i64),
            (1_000_000, EVENTS as i64),
            (60_000_000, EVENTS as i64)
        ]
    );
    drop(reader);

    // count_events and query_events for several filters, against the distinct set.
    let at = |micros: i64| DateTime::from_timestamp_micros(t(0).timestamp_micros() + micros);
    let (r0, r1) = (at(1_234_567).unwrap(), at(7_654_321_987).unwrap());
    type Pred = Box<dyn Fn(&AcceptedEvent) -> bool>;
    let filters: Vec<(EventQuery, Pred)> = vec![
        (
            EventQuery::new().category("page_interaction"),
            Box::new(|e| e.event.event_type().category() == "page_interaction"),
        ),
        (
            EventQuery::new().name("submit").application("crm"),
            Box::new(|e| e.event.event_type().name() == "submit" && e.application == "crm"),
        ),
        (
            EventQuery::new().start_time(r0).end_time(r1),
            Box::new(move |e| e.event.timestamp() >= r0 && e.event.timestamp() <= r1),
        ),
        (
            EventQuery::new()
                .application("blog")
                .start_time(r0)
                .end_time(r1),
            Box::new(move |e| {
                e.application == "blog" && e.event.timestamp() >= r0 && e.event.timestamp() <= r1
            }),
        ),
        (
            EventQuery::new().session("s5").category("form_interaction"),
            Box::new(|e| {
                e.event.session_id().as_str() == "s5"
                    && e.event.event_type().category() == "form_interaction"
            }),
        ),
        (
            EventQuery::new().session("s7"),
            Box::new(|e| e.event.session_id().as_str() == "s7"),
        ),
    ];
    for (q, pred) in filters {
        let want = events.iter().filter(|e| pred(e)).count() as u64;
        assert!(want > 0, "{q:?}");
        assert_eq!(store.count_events(&q).await.unwrap(), want, "{q:?}");
        let (n, _) = store.query_events(&q).await.unwrap();
        assert_eq!(n, want, "{q:?}");
    }

    // The errors log and its counters.
    let (n, _) = store.query_errors(&ErrorQuery::default()).await.unwrap();
    assert_eq!(n, REJECTED as u64);
    let by_code = ErrorQuery {
        code: Some("invalid_json".into()),
        ..ErrorQuery::default()
    };
    let (n, _) = store.query_errors(&by_code).await.unwrap();
    assert_eq!(n, (REJECTED / 2) as u64);

    for w in writers {
        w.close().await;
    }
}
