//! Every counter the write path keeps, compared with a recount from the rows: what a
//! removal (erasure, retention) must leave exact. Each table must equal the recount
//! row for row, with no row left at zero.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::Store;
use crate::store::rows::hour_of;
use crate::store::tree::{bucket_of, fine_widths};

type Key = (String, String, String);

/// Asserts that sessions, session applications, `event_counts`, `event_hours`,
/// `event_buckets` and `error_hours` equal a recount from `events` and `errors`.
pub(crate) async fn assert_counters_exact(store: &Store) {
    let mut held = store.reader().await.unwrap();
    let mut conn = held.conn();
    let events: Vec<(String, String, String, String, i64)> = conn
        .fetch_all(
            "SELECT session_id, application, category, name, timestamp FROM events",
            &[],
        )
        .await
        .unwrap();

    let mut totals: BTreeMap<Key, i64> = BTreeMap::new();
    let mut hours: BTreeMap<(i64, Key), i64> = BTreeMap::new();
    let mut buckets: BTreeMap<(i64, i64, Key), i64> = BTreeMap::new();
    let mut sessions: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    let mut session_apps: BTreeSet<(String, String)> = BTreeSet::new();
    for (sid, app, cat, name, ts) in &events {
        let key = (app.clone(), cat.clone(), name.clone());
        *totals.entry(key.clone()).or_default() += 1;
        *hours.entry((hour_of(*ts), key.clone())).or_default() += 1;
        for &w in fine_widths() {
            *buckets
                .entry((w, bucket_of(*ts, w), key.clone()))
                .or_default() += 1;
        }
        let s = sessions.entry(sid.clone()).or_insert((*ts, *ts, 0));
        s.0 = s.0.min(*ts);
        s.1 = s.1.max(*ts);
        s.2 += 1;
        session_apps.insert((sid.clone(), app.clone()));
    }

    let stored: Vec<(String, String, String, i64)> = conn
        .fetch_all(
            "SELECT application, category, name, events FROM event_counts",
            &[],
        )
        .await
        .unwrap();
    let stored: BTreeMap<Key, i64> = stored
        .into_iter()
        .map(|(a, c, n, e)| ((a, c, n), e))
        .collect();
    assert_eq!(stored, totals, "event_counts");

    let stored: Vec<(i64, String, String, String, i64)> = conn
        .fetch_all(
            "SELECT hour, application, category, name, events FROM event_hours",
            &[],
        )
        .await
        .unwrap();
    let stored: BTreeMap<(i64, Key), i64> = stored
        .into_iter()
        .map(|(h, a, c, n, e)| ((h, (a, c, n)), e))
        .collect();
    assert_eq!(stored, hours, "event_hours");

    let stored: Vec<(i64, i64, String, String, String, i64)> = conn
        .fetch_all(
            "SELECT width, bucket, application, category, name, events FROM event_buckets",
            &[],
        )
        .await
        .unwrap();
    let stored: BTreeMap<(i64, i64, Key), i64> = stored
        .into_iter()
        .map(|(w, b, a, c, n, e)| ((w, b, (a, c, n)), e))
        .collect();
    assert_eq!(stored, buckets, "event_buckets");

    let stored: Vec<(String, i64, i64, i64)> = conn
        .fetch_all(
            "SELECT session_id, first_seen, last_seen, event_count FROM sessions",
            &[],
        )
        .await
        .unwrap();
    let stored: BTreeMap<String, (i64, i64, i64)> = stored
        .into_iter()
        .map(|(s, f, l, n)| (s, (f, l, n)))
        .collect();
    assert_eq!(stored, sessions, "sessions");

    let stored: Vec<(String, String)> = conn
        .fetch_all(
            "SELECT session_id, application FROM session_applications",
            &[],
        )
        .await
        .unwrap();
    let stored: BTreeSet<(String, String)> = stored.into_iter().collect();
    assert_eq!(stored, session_apps, "session_applications");

    let errors: Vec<(i64, String, i64, String)> = conn
        .fetch_all(
            "SELECT id, application, received_at, codes FROM errors",
            &[],
        )
        .await
        .unwrap();
    let mut error_hours: BTreeMap<(i64, String, String), i64> = BTreeMap::new();
    let mut error_codes: BTreeSet<(String, i64, i64)> = BTreeSet::new();
    for (id, app, at, codes) in &errors {
        let codes: Vec<String> = serde_json::from_str(codes).unwrap();
        for code in std::iter::once(String::new()).chain(codes.iter().cloned()) {
            *error_hours
                .entry((hour_of(*at), app.clone(), code))
                .or_default() += 1;
        }
        for code in codes {
            error_codes.insert((code, *at, *id));
        }
    }
    let stored: Vec<(i64, String, String, i64)> = conn
        .fetch_all(
            "SELECT hour, application, code, errors FROM error_hours",
            &[],
        )
        .await
        .unwrap();
    let stored: BTreeMap<(i64, String, String), i64> = stored
        .into_iter()
        .map(|(h, a, c, e)| ((h, a, c), e))
        .collect();
    assert_eq!(stored, error_hours, "error_hours");
    let stored: Vec<(String, i64, i64)> = conn
        .fetch_all("SELECT code, received_at, error_id FROM error_codes", &[])
        .await
        .unwrap();
    let stored: BTreeSet<(String, i64, i64)> = stored.into_iter().collect();
    assert_eq!(stored, error_codes, "error_codes");
}
