use eye_core::EventType;

use super::*;

conformance!(totals_and_hours_follow_the_stored_events,);

async fn totals_and_hours_follow_the_stored_events(store: TestDb) {
    let m = view("a", 0);
    store
        .write_batch(&[m.clone(), m, click("a", 10), submit("b", 3700, "crm")])
        .await
        .unwrap();
    let totals = store.totals_by_type().await.unwrap();
    let by: Vec<(EventType, u64)> = totals.iter().map(|c| (c.event_type, c.events)).collect();
    assert_eq!(
        by,
        [
            (EventType::PageView, 1),
            (EventType::CtaClick, 1),
            (EventType::FormSubmit, 1)
        ]
    );
    assert_eq!(store.total_events().await.unwrap(), 3);
    assert_eq!(store.total_sessions().await.unwrap(), 2);
    let hours = store.events_per_hour(t(0), t(7200), None).await.unwrap();
    let hours: Vec<_> = hours.iter().map(|h| (h.hour, h.events)).collect();
    assert_eq!(hours, [(t(0), 2), (t(3600), 1)]);
    let crm = store
        .events_per_hour(t(0), t(7200), Some("crm"))
        .await
        .unwrap();
    assert_eq!(crm.len(), 1);
    let newest = store.newest_sessions(1).await.unwrap();
    assert_eq!(newest[0].session_id, "b");
    assert!(store.store_size().await.unwrap().database_bytes > 0);
}
