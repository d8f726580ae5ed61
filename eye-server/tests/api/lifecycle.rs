//! The data lifecycle through the real binary: `DELETE /sessions/{id}` and
//! `eye-server erase` (store, errors log, the journal's dead letters, and the events
//! that arrive after the erasure), retention of events (`--retention-days`, per
//! application with `apps set-retention`) and of the errors log (30 days by default),
//! on SQLite and on PostgreSQL. After each, the counters must equal a recount.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use eye_core::{ErrorCode, Event, EventQuery, FieldError};
use eye_server::message::{AcceptedEvent, Message, RejectedEvent};
use eye_server::store::Store;
use serde_json::{Value, json};
use tempfile::TempDir;
use uuid::Uuid;

use crate::binary::{Server, create_key, database_url, run, stdout};
use crate::helpers::page_view;

const BIN: &str = env!("CARGO_BIN_EXE_eye-server");

/// Polls `check` every 50 ms for up to 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Client {
    http: reqwest::Client,
    key: String,
}

impl Client {
    fn new(key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            key: key.to_owned(),
        }
    }

    async fn post(&self, url: String, body: &Value) -> u16 {
        self.http
            .post(url)
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn get(&self, url: String) -> (u16, Value) {
        self.send(self.http.get(url)).await
    }

    async fn delete(&self, url: String) -> (u16, Value) {
        self.send(self.http.delete(url)).await
    }

    /// Sends with this client's key: the status and the JSON body (null if none).
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let r = request.bearer_auth(&self.key).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn event(id: Uuid, session: &str, timestamp: &str) -> Value {
    let mut e = page_view(session, timestamp);
    e["id"] = json!(id);
    e
}

/// The counters (what totals, the dashboard and deep pages read) equal a recount of
/// the rows: totals by type, per-application totals, the hours and every bucket
/// level, and each session's count, first and last seen.
async fn assert_counters_match_a_recount(store: &Store) {
    let pool = store.pool().expect("SQLite");
    assert_recount(RecountConn::Sqlite(pool), store).await;
}

enum RecountConn<'a> {
    Sqlite(&'a sqlx::SqlitePool),
    Postgres(&'a sqlx::PgPool),
}

async fn pairs(conn: &RecountConn<'_>, sql: &str) -> Vec<(String, i64)> {
    match conn {
        RecountConn::Sqlite(p) => sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(*p)
            .await
            .unwrap(),
        RecountConn::Postgres(p) => sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(*p)
            .await
            .unwrap(),
    }
}

async fn assert_recount(conn: RecountConn<'_>, store: &Store) {
    // Every counter table, summed per (application/type/level), against the rows.
    let checks = [
        (
            "SELECT application || '/' || category || '/' || name, CAST(sum(events) AS BIGINT) \
             FROM event_counts GROUP BY 1 HAVING sum(events) <> 0 ORDER BY 1",
            "SELECT application || '/' || category || '/' || name, CAST(count(*) AS BIGINT) \
             FROM events GROUP BY 1 ORDER BY 1",
        ),
        (
            "SELECT CAST(hour AS TEXT), CAST(sum(events) AS BIGINT) FROM event_hours \
             GROUP BY hour HAVING sum(events) <> 0 ORDER BY hour",
            "SELECT CAST(timestamp / 3600000000 AS TEXT), CAST(count(*) AS BIGINT) FROM events \
             GROUP BY timestamp / 3600000000 ORDER BY timestamp / 3600000000",
        ),
        (
            "SELECT CAST(width AS TEXT), CAST(sum(events) AS BIGINT) FROM event_buckets \
             GROUP BY width ORDER BY width",
            "SELECT w, CAST(count(*) AS BIGINT) FROM events, \
             (SELECT '10000' AS w UNION ALL SELECT '1000000' UNION ALL SELECT '60000000') AS ws \
             GROUP BY w ORDER BY w",
        ),
        (
            "SELECT session_id, event_count FROM sessions ORDER BY session_id",
            "SELECT session_id, CAST(count(*) AS BIGINT) FROM events GROUP BY session_id \
             ORDER BY session_id",
        ),
        (
            "SELECT session_id || '@' || CAST(first_seen AS TEXT) || '-' || \
             CAST(last_seen AS TEXT), event_count FROM sessions ORDER BY 1",
            "SELECT session_id || '@' || CAST(min(timestamp) AS TEXT) || '-' || \
             CAST(max(timestamp) AS TEXT), CAST(count(*) AS BIGINT) FROM events \
             GROUP BY session_id ORDER BY 1",
        ),
        (
            "SELECT CAST(hour AS TEXT) || '/' || application, CAST(sum(errors) AS BIGINT) \
             FROM error_hours WHERE code = '' GROUP BY 1 ORDER BY 1",
            "SELECT CAST(received_at / 3600000000 AS TEXT) || '/' || application, \
             CAST(count(*) AS BIGINT) FROM errors GROUP BY 1 ORDER BY 1",
        ),
    ];
    for (counters, rows) in checks {
        assert_eq!(
            pairs(&conn, counters).await,
            pairs(&conn, rows).await,
            "{counters}"
        );
    }
    let (count, _) = store.query_events(&EventQuery::new()).await.unwrap();
    let plain = pairs(&conn, "SELECT 'all', CAST(count(*) AS BIGINT) FROM events").await;
    assert_eq!(count as i64, plain[0].1);
    assert_eq!(store.total_events().await.unwrap(), count);
}

/// A line of the journal's dead-letter file holding an event of `session`, as the
/// store task writes it.
fn dead_letter_line(session: &str) -> String {
    let message = Message::EventV1(AcceptedEvent {
        id: Uuid::now_v7(),
        application: "shop".into(),
        received_at: Utc::now(),
        client_timestamp: None,
        event: Event::page_view(session, "example.com", "/").unwrap(),
    });
    json!({"reason": "refused", "message": serde_json::to_string(&message).unwrap()}).to_string()
}

fn journal_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("eye.db.journal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_over_http_removes_everything_and_drops_the_sessions_late_events() {
    // Arrange: a server on its default journal, events of `gone` and of `kept`, one
    // rejected event of `gone`, and a dead letter of each.
    let dir = TempDir::new().unwrap();
    let admin = Client::new(&create_key(dir.path(), "ops", "all"));
    let reader = Client::new(&create_key(dir.path(), "analytics", "query"));
    let server = Server::start(dir.path(), &[]);
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let gone: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| event(*id, "gone", &format!("2026-01-01T10:00:0{i}Z")))
        .collect();
    let mut batch = gone.clone();
    batch.push(page_view("kept", "2026-01-01T10:00:00Z"));
    batch.push(page_view("kept", "2026-01-01T10:00:01Z"));
    let mut invalid = page_view("gone", "2026-01-01T10:00:05Z");
    invalid["data"]["host"] = json!("not a host");
    batch.push(invalid);
    assert_eq!(admin.post(server.url("/events"), &json!(batch)).await, 201);
    eventually("the batch stored", || async {
        reader.get(server.url("/sessions/kept")).await.1["event_count"] == 2
            && reader.get(server.url("/sessions/gone")).await.1["event_count"] == 3
    })
    .await;
    let dead = journal_dir(dir.path()).join("dead-letters.jsonl");
    std::fs::write(
        &dead,
        format!(
            "{}\n{}\n",
            dead_letter_line("gone"),
            dead_letter_line("kept")
        ),
    )
    .unwrap();

    // Act: the admin scope is needed.
    let (refused, body) = reader.delete(server.url("/sessions/gone")).await;
    let (status, erased) = admin.delete(server.url("/sessions/gone")).await;

    // Assert
    assert_eq!(refused, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(status, 200, "{erased}");
    assert_eq!(
        erased["removed"],
        json!({"events": 3, "sessions": 1, "errors": 1, "dead_letters": 1})
    );
    assert_eq!(erased["session_id"], "gone");
    assert!(
        erased["suppressed_until"]
            .as_str()
            .unwrap()
            .starts_with("20")
    );
    assert_eq!(reader.get(server.url("/sessions/gone")).await.0, 404);
    let (_, page) = reader.get(server.url("/events?session_id=gone")).await;
    assert_eq!(page["count"], 0);
    let (_, errors) = reader.get(server.url("/errors")).await;
    assert_eq!(errors["count"], 0, "{errors}");
    let left = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(left.lines().count(), 1);
    assert!(left.contains("kept") && !left.contains("gone"), "{left}");

    // The client retries the same events, sends a new one, then a marker: the
    // journal stores in order, so once the marker is readable the rest was handled.
    let mut late = gone.clone();
    late.push(page_view("gone", "2026-01-01T11:00:00Z"));
    assert_eq!(admin.post(server.url("/events"), &json!(late)).await, 201);
    assert_eq!(
        admin
            .post(
                server.url("/events"),
                &page_view("marker", "2026-01-01T12:00:00Z")
            )
            .await,
        201
    );
    eventually("the marker stored", || async {
        reader.get(server.url("/sessions/marker")).await.0 == 200
    })
    .await;
    assert_eq!(reader.get(server.url("/sessions/gone")).await.0, 404);
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("eye_events_suppressed_total 4"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("suppressed"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    server.stop();

    let store = Store::open(&database_url(dir.path())).await.unwrap();
    assert_eq!(store.total_events().await.unwrap(), 3);
    assert_counters_match_a_recount(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_command_removes_a_session_and_prints_what_it_removed() {
    // Arrange: events stored by a server, which is then stopped.
    let dir = TempDir::new().unwrap();
    let key = Client::new(&create_key(dir.path(), "shop", "all"));
    let server = Server::start(dir.path(), &[]);
    let batch = json!([
        page_view("gone", "2026-02-01T00:00:00Z"),
        page_view("gone", "2026-02-01T00:00:00.005Z"),
        page_view("kept", "2026-02-01T00:00:00.001Z"),
    ]);
    assert_eq!(key.post(server.url("/events"), &batch).await, 201);
    eventually("the batch stored", || async {
        key.get(server.url("/events")).await.1["count"] == 3
    })
    .await;
    server.stop();
    std::fs::write(
        journal_dir(dir.path()).join("dead-letters.jsonl"),
        format!("{}\n", dead_letter_line("gone")),
    )
    .unwrap();

    // Act
    let output = run(dir.path(), &["erase", "--session", "gone"]);
    let again = run(dir.path(), &["erase", "--session", "gone"]);

    // Assert
    assert!(output.status.success(), "{output:?}");
    let erased: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        erased["removed"],
        json!({"events": 2, "sessions": 1, "errors": 0, "dead_letters": 1})
    );
    let again: Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(
        again["removed"],
        json!({"events": 0, "sessions": 0, "errors": 0, "dead_letters": 0})
    );
    let store = Store::open(&database_url(dir.path())).await.unwrap();
    assert!(store.get_session("gone").await.unwrap().is_none());
    assert!(store.is_erased("gone").await.unwrap());
    assert_counters_match_a_recount(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_events_at_start_per_application_and_keeps_counters_exact() {
    // Arrange: `shop` follows --retention-days, `crm` keeps its events forever,
    // `blog` keeps them 400 days.
    let dir = TempDir::new().unwrap();
    let shop = Client::new(&create_key(dir.path(), "shop", "all"));
    let crm = Client::new(&create_key(dir.path(), "crm", "ingest"));
    let blog = Client::new(&create_key(dir.path(), "blog", "ingest"));
    for (app, retention) in [("crm", "forever"), ("blog", "400")] {
        let out = run(dir.path(), &["apps", "set-retention", app, retention]);
        assert!(out.status.success(), "{out:?}");
    }
    let list = stdout(&run(dir.path(), &["apps", "list"]));
    assert!(
        list.contains("crm\tingest\tactive\tunlimited\tretention forever"),
        "{list}"
    );
    assert!(
        list.contains("blog\tingest\tactive\tunlimited\tretention 400d"),
        "{list}"
    );
    assert!(
        list.contains("shop\tingest,query,admin\tactive\tunlimited\tretention default"),
        "{list}"
    );
    let bad = run(dir.path(), &["apps", "set-retention", "crm", "0"]);
    assert!(!bad.status.success());

    let now = Utc::now();
    let days_ago = |d: i64| (now - chrono::Duration::days(d)).to_rfc3339();
    let server = Server::start(dir.path(), &[]);
    for client in [&shop, &crm, &blog] {
        let batch = json!([
            page_view("s1", &days_ago(800)),
            page_view("s1", &days_ago(100)),
            page_view("s1", &days_ago(2)),
            page_view("s2", &days_ago(90)),
            page_view("s3", &days_ago(1)),
        ]);
        assert_eq!(client.post(server.url("/events"), &batch).await, 201);
    }
    eventually("every event stored", || async {
        shop.get(server.url("/events")).await.1["count"] == 15
    })
    .await;
    server.stop();

    // Act: a restart with a 30-day retention runs a pass at start.
    let server = Server::start(
        dir.path(),
        &["--retention-days", "30", "--retention-batch", "2"],
    );

    // Assert: shop keeps 2 events, crm 5, blog 4 (the 800-day-old one goes).
    eventually("the old events deleted", || async {
        shop.get(server.url("/events")).await.1["count"] == 11
    })
    .await;
    let count = |app: &'static str| {
        let url = server.url(&format!("/events?application={app}"));
        let shop = &shop;
        async move { shop.get(url).await.1["count"].as_u64().unwrap() }
    };
    assert_eq!(
        (count("shop").await, count("crm").await, count("blog").await),
        (2, 5, 4)
    );
    // s2 is left with crm's and blog's events; s1's first event is now blog's.
    let (_, s1) = shop.get(server.url("/sessions/s1")).await;
    assert_eq!(s1["event_count"], 6);
    assert_eq!(s1["applications"], json!(["blog", "crm", "shop"]));
    let first_seen = chrono::DateTime::parse_from_rfc3339(s1["first_seen"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    assert!(first_seen > now - chrono::Duration::days(801), "{s1}");
    assert!(first_seen < now - chrono::Duration::days(799), "{s1}");
    let (_, s2) = shop.get(server.url("/sessions/s2")).await;
    assert_eq!(s2["applications"], json!(["blog", "crm"]));
    server.stop();
    let store = Store::open(&database_url(dir.path())).await.unwrap();
    assert_counters_match_a_recount(&store).await;
    store.close().await;
}

/// Writes rejected events received `days` ago straight into the store.
async fn log_errors_received(store: &Store, days: &[i64]) {
    let messages: Vec<Message> = days
        .iter()
        .map(|d| {
            let mut r = RejectedEvent::new(
                "shop".into(),
                Utc::now() - chrono::Duration::days(*d),
                vec![FieldError::new("/data/host", ErrorCode::InvalidHost, "bad")],
                r#"{"session_id":"x"}"#,
            );
            r.key = Uuid::now_v7();
            Message::RejectedV1(r)
        })
        .collect();
    store.write_batch(&messages).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_errors_log_keeps_30_days_by_default_and_a_flag_changes_it() {
    for (flags, left) in [
        (&[][..], 2u64),
        (&["--errors-retention-days", "3"][..], 1),
        (&["--errors-retention-days", "none"][..], 4),
    ] {
        // Arrange
        let dir = TempDir::new().unwrap();
        let key = Client::new(&create_key(dir.path(), "shop", "query"));
        let store = Store::open(&database_url(dir.path())).await.unwrap();
        log_errors_received(&store, &[400, 31, 29, 1]).await;
        // An event older than the 1-day retention below, so the pass deletes
        // something and logs its one line when it is over.
        let old = Message::EventV1(AcceptedEvent {
            id: Uuid::now_v7(),
            application: "shop".into(),
            received_at: Utc::now(),
            client_timestamp: None,
            event: Event::page_view("s", "example.com", "/")
                .unwrap()
                .with_timestamp(Utc::now() - chrono::Duration::days(5)),
        });
        store.write_batch(&[old]).await.unwrap();
        store.close().await;

        // Act
        let mut args = vec!["--retention-days", "1"];
        args.extend_from_slice(flags);
        let server = Server::start(dir.path(), &args);
        eventually("the pass", || async {
            server.stderr_text().contains("retention pass")
        })
        .await;
        assert_eq!(key.get(server.url("/events")).await.1["count"], 0);

        // Assert
        let (_, errors) = key.get(server.url("/errors")).await;
        assert_eq!(errors["count"], left, "{flags:?}: {errors}");
        server.stop();
        let store = Store::open(&database_url(dir.path())).await.unwrap();
        assert_counters_match_a_recount(&store).await;
        store.close().await;
    }
}

#[test]
fn zero_days_of_retention_is_refused_at_start() {
    let dir = TempDir::new().unwrap();
    for flag in ["--retention-days", "--errors-retention-days"] {
        let out = run(dir.path(), &["serve", flag, "0"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{err}");
    }
}

/// PostgreSQL through the binary: `serve` with retention, then `erase`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_retention_and_the_erase_command_keep_counters_exact() {
    let Some(db) = eye_server::store::testing::PgDatabase::create().await else {
        return;
    };
    // Arrange: old and recent events of two sessions, written by the library.
    let store = Store::open(&db.url).await.unwrap();
    let now = Utc::now();
    let messages: Vec<Message> = (0..40)
        .map(|i| {
            let session = if i % 2 == 0 { "gone" } else { "kept" };
            let at = now - chrono::Duration::days(if i % 4 < 2 { 60 } else { 1 })
                + chrono::Duration::milliseconds(i);
            Message::EventV1(AcceptedEvent {
                id: Uuid::now_v7(),
                application: "shop".into(),
                received_at: now,
                client_timestamp: None,
                event: Event::page_view(session, "example.com", "/")
                    .unwrap()
                    .with_timestamp(at),
            })
        })
        .collect();
    store.write_batch(&messages).await.unwrap();
    let dir = TempDir::new().unwrap();
    let key = {
        let k =
            eye_server::auth::create_app_with_key(&store, "ops", eye_server::store::Scopes::ALL)
                .await
                .unwrap();
        Client::new(&k)
    };

    // Act: retention at start, then erase.
    let server = Server::start(
        dir.path(),
        &[
            "--database-url",
            &db.url,
            "--retention-days",
            "30",
            "--retention-batch",
            "3",
        ],
    );
    eventually("the old events deleted", || async {
        key.get(server.url("/events")).await.1["count"] == 20
    })
    .await;
    server.stop();
    let erase = std::process::Command::new(BIN)
        .args(["erase", "--session", "gone"])
        .current_dir(dir.path())
        .env("EYE_DATABASE_URL", &db.url)
        .env("EYE_LOG", "warn")
        .output()
        .unwrap();

    // Assert
    assert!(erase.status.success(), "{erase:?}");
    let erased: Value = serde_json::from_slice(&erase.stdout).unwrap();
    assert_eq!(erased["removed"]["events"], 10, "{erased}");
    assert!(store.get_session("gone").await.unwrap().is_none());
    assert_eq!(
        store
            .get_session("kept")
            .await
            .unwrap()
            .unwrap()
            .event_count,
        10
    );
    let pool = store.pg_pool().unwrap().clone();
    assert_recount(RecountConn::Postgres(&pool), &store).await;
    store.close().await;
}

#[tokio::test]
async fn erasing_needs_the_admin_scope_which_older_keys_do_not_gain() {
    // Arrange: an admin-only key, and a key stored as `--scope all` was before the
    // admin scope existed.
    let app = crate::helpers::spawn_app().await;
    let store = &app.state.store;
    let admin =
        crate::helpers::create_key(store, "ops", eye_server::store::Scopes::ADMIN_ONLY).await;
    let old = crate::helpers::create_key(store, "old", eye_server::store::Scopes::ALL).await;
    let demote = "UPDATE applications SET scopes = 'ingest,query' WHERE name = 'old'";
    match (store.pool(), store.pg_pool()) {
        (Some(pool), _) => sqlx::query(demote).execute(pool).await.map(drop),
        (None, Some(pool)) => sqlx::query(demote).execute(pool).await.map(drop),
        (None, None) => panic!("a store with neither pool"),
    }
    .unwrap();
    let (admin, old) = (Client::new(&admin), Client::new(&old));
    let url = format!("{}/sessions/abc", app.base);

    // Act
    let (old_status, old_body) = old.delete(url.clone()).await;
    let (read_status, _) = admin.get(format!("{}/events", app.base)).await;
    let (status, body) = admin.delete(url).await;

    // Assert
    assert_eq!(old_status, 403, "{old_body}");
    assert!(
        old_body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`admin`"),
        "{old_body}"
    );
    assert_eq!(read_status, 403);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["removed"],
        json!({"events": 0, "sessions": 0, "errors": 0, "dead_letters": 0})
    );
    assert_eq!(old.get(format!("{}/events", app.base)).await.0, 200);
    app.stop().await;
}
