//! Test support, compiled for the crate's tests and with the `test-util` feature: a
//! throwaway PostgreSQL database per test, as zero2prod's `spawn_app` makes one, and
//! [`assert_stored_once`], the one "stored exactly once" check every suite shares.
//!
//! The server is `EYE_TEST_DATABASE_URL` (a URL whose database the tests can connect
//! to and create databases from), or `postgres://postgres@127.0.0.1:5432/postgres`.
//! When it does not answer, [`PgDatabase::create`] prints why and returns `None`, so a
//! test can skip, except under CI (`CI=true`), where it panics: CI must run them.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use super::Store;
use super::tree::WIDTHS;

/// Where the Postgres tests create their databases, unless `EYE_TEST_DATABASE_URL`
/// names another server.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test on the test Postgres server, dropped (with
/// `WITH (FORCE)`, on a fresh connection from a thread of its own) when this value
/// is dropped: at the end of the test, or while a failing test unwinds.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// The new database's URL.
    pub url: String,
}

impl PgDatabase {
    /// Creates `eye_test_<random>`; `None` (with the reason printed) when no
    /// Postgres answers outside CI. Panics when none answers under CI.
    pub async fn create() -> Option<Self> {
        let admin_url =
            std::env::var("EYE_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
        let mut admin = match PgConnection::connect(&admin_url).await {
            Ok(c) => c,
            Err(e) => {
                let why = format!("PostgreSQL at {} does not answer: {e}", redact(&admin_url));
                if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                    panic!("{why}; CI is set, so the Postgres tests must run");
                }
                eprintln!("skipping a Postgres test: {why}");
                return None;
            }
        };
        let name = format!("eye_test_{}", uuid::Uuid::new_v4().simple());
        if let Err(e) = sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
        {
            panic!("CREATE DATABASE {name} on {}: {e}", redact(&admin_url));
        }
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // A thread with its own runtime: this may run inside the test's runtime
        // (which cannot block on a future) or while it unwinds.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(AssertSqlSafe(sql))
                    .execute(&mut admin)
                    .await
                    .ok()?;
                let _ = admin.close().await;
                Some(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// `url` with its database (the path) replaced by `database`, query kept.
pub fn with_database(url: &str, database: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest[path_start..]
        .find('?')
        .map_or("", |q| &rest[path_start + q..]);
    format!(
        "{}{}/{database}{query}",
        &url[..authority_start],
        &rest[..path_start]
    )
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Asserts that the store holds each of its events once by every measure a double
/// store would break, and returns their ids, for the caller to compare with the ids
/// it was acknowledged (`assert_eq!(assert_stored_once(&store).await, acked)`).
///
/// Counting rows could not fail: `events.id` is the primary key, so a second store of
/// an id adds no row. What it would break are the figures the write path keeps beside
/// the rows, in the same transaction, from the rows it inserted: so this compares,
/// in one snapshot, the rows of `events` with
///
/// - the per-application, per-type counters (`event_counts`: the dashboard totals,
///   unfiltered and type-filtered counts),
/// - the time-bucket counters (`event_hours` and every level of `event_buckets`:
///   counts of a time range, the deep-page seek, events per hour),
/// - each session's `event_count`, `first_seen` and `last_seen`, and its
///   applications,
///
/// and then reads the dashboard's own figures ([`Store::total_events`],
/// [`Store::totals_by_type`]) and [`Store::count_events`] of every type.
///
/// Call it once nothing is being written (after the queue drained): a write landing
/// between the snapshot and the dashboard reads would fail it.
///
/// # Panics
///
/// On the first disagreement, naming it; when the store cannot be read.
pub async fn assert_stored_once(store: &Store) -> HashSet<Uuid> {
    type Kind = (String, String, String); // application, category, name
    let mut held = store.snapshot().await.expect("a read snapshot");
    let mut conn = held.conn();
    let rows: Vec<(Uuid, String, String, String, String, i64)> = conn
        .fetch_all(
            "SELECT id, application, session_id, category, name, \
             CAST(timestamp AS BIGINT) FROM events",
            &[],
        )
        .await
        .expect("read events");
    let ids: HashSet<Uuid> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids.len(), rows.len(), "an event id has two rows");

    // What the counters must say, from the rows.
    let mut kinds: BTreeMap<Kind, i64> = BTreeMap::new();
    let mut buckets: BTreeMap<(i64, i64, Kind), i64> = BTreeMap::new();
    let mut sessions: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    let mut session_apps: BTreeSet<(String, String)> = BTreeSet::new();
    for (_, app, session, category, name, ts) in &rows {
        let kind = (app.clone(), category.clone(), name.clone());
        *kinds.entry(kind.clone()).or_default() += 1;
        for &width in &WIDTHS {
            *buckets
                .entry((width, ts.div_euclid(width), kind.clone()))
                .or_default() += 1;
        }
        let s = sessions.entry(session.clone()).or_insert((*ts, *ts, 0));
        (s.0, s.1, s.2) = (s.0.min(*ts), s.1.max(*ts), s.2 + 1);
        session_apps.insert((session.clone(), app.clone()));
    }

    let counted: Vec<(String, String, String, i64)> = conn
        .fetch_all(
            "SELECT application, category, name, CAST(events AS BIGINT) FROM event_counts \
             WHERE events <> 0",
            &[],
        )
        .await
        .expect("read event_counts");
    let counted: BTreeMap<Kind, i64> = counted
        .into_iter()
        .map(|(a, c, n, e)| ((a, c, n), e))
        .collect();
    assert_eq!(
        counted, kinds,
        "event_counts (application, category, name) disagree with the rows"
    );

    let hours: Vec<(i64, String, String, String, i64)> = conn
        .fetch_all(
            "SELECT CAST(hour AS BIGINT), application, category, name, \
             CAST(events AS BIGINT) FROM event_hours WHERE events <> 0",
            &[],
        )
        .await
        .expect("read event_hours");
    let mut in_buckets: BTreeMap<(i64, i64, Kind), i64> = hours
        .into_iter()
        .map(|(h, a, c, n, e)| ((WIDTHS[0], h, (a, c, n)), e))
        .collect();
    let lower: Vec<(i64, i64, String, String, String, i64)> = conn
        .fetch_all(
            "SELECT CAST(width AS BIGINT), CAST(bucket AS BIGINT), application, category, \
             name, CAST(events AS BIGINT) FROM event_buckets WHERE events <> 0",
            &[],
        )
        .await
        .expect("read event_buckets");
    in_buckets.extend(
        lower
            .into_iter()
            .map(|(w, b, a, c, n, e)| ((w, b, (a, c, n)), e)),
    );
    for &width in &WIDTHS {
        let level = |m: &BTreeMap<(i64, i64, Kind), i64>| {
            m.iter()
                .filter(|((w, _, _), _)| *w == width)
                .map(|(k, v)| (k.clone(), *v))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            level(&in_buckets),
            level(&buckets),
            "the time-bucket counters {width} µs wide disagree with the rows"
        );
    }

    let stored_sessions: Vec<(String, i64, i64, i64)> = conn
        .fetch_all(
            "SELECT session_id, CAST(first_seen AS BIGINT), CAST(last_seen AS BIGINT), \
             CAST(event_count AS BIGINT) FROM sessions",
            &[],
        )
        .await
        .expect("read sessions");
    let stored_sessions: BTreeMap<String, (i64, i64, i64)> = stored_sessions
        .into_iter()
        .map(|(s, first, last, n)| (s, (first, last, n)))
        .collect();
    for (session, expected) in &sessions {
        assert_eq!(
            stored_sessions.get(session),
            Some(expected),
            "session {session}: (first_seen, last_seen, event_count) disagree with its rows"
        );
    }
    assert_eq!(
        stored_sessions.len(),
        sessions.len(),
        "sessions without events"
    );
    let apps: Vec<(String, String)> = conn
        .fetch_all(
            "SELECT session_id, application FROM session_applications",
            &[],
        )
        .await
        .expect("read session_applications");
    assert_eq!(
        apps.into_iter().collect::<BTreeSet<_>>(),
        session_apps,
        "session applications disagree with the rows"
    );
    drop(held);

    // The dashboard's and the count queries' own readings of those counters.
    let n = rows.len() as u64;
    assert_eq!(
        store.total_events().await.expect("total"),
        n,
        "dashboard total"
    );
    let all = store
        .count_events(&eye_core::EventQuery::new())
        .await
        .expect("count");
    assert_eq!(all, n, "count of every event");
    for t in store.totals_by_type().await.expect("totals by type") {
        let in_rows = rows
            .iter()
            .filter(|r| r.3 == t.event_type.category() && r.4 == t.event_type.name())
            .count() as u64;
        assert_eq!(t.events, in_rows, "dashboard total of {:?}", t.event_type);
        let q = eye_core::EventQuery::new().event_type(t.event_type);
        let counted = store.count_events(&q).await.expect("count by type");
        assert_eq!(counted, in_rows, "count of {:?}", t.event_type);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_keeps_server_and_options() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u@h/db");
    }
}
