//! `GET /events/export` and `eye-server export`: every matching event, the same as a
//! whole `GET /events?cursor=` walk, as NDJSON or CSV, compressed on request, cut off
//! (never short) when the store fails mid-way, and byte for byte the same from the
//! command line.

use std::io::Read;

use chrono::{DateTime, Duration, Utc};
use eye_server::export::CSV_COLUMNS;
use eye_server::store::Scopes;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error, create_key, spawn_app};

/// Events at one instant: more than one export page (1,000), so the page boundary
/// falls between events with identical timestamps.
const SAME_INSTANT: usize = 1_100;
/// Events at distinct instants, after those.
const SPREAD: usize = 250;

/// Event `i` of the fixture: the three types in turn, three sessions, tricky forms.
fn event(i: usize, timestamp: DateTime<Utc>) -> Value {
    let session = format!("s{}", i % 3);
    let ts = eye_core::format_timestamp(&timestamp);
    match i % 3 {
        0 => json!({"id": Uuid::new_v4(), "session_id": session,
            "category": "page_interaction", "name": "page_view",
            "data": {"host": "a.com", "path": format!("/p/{i}")}, "timestamp": ts}),
        1 => json!({"id": Uuid::new_v4(), "session_id": session,
            "category": "page_interaction", "name": "cta_click",
            "data": {"host": "a.com", "path": "/", "element": format!("buy, \"now\" {i}")},
            "timestamp": ts}),
        _ => json!({"id": Uuid::new_v4(), "session_id": session,
            "category": "form_interaction", "name": "submit",
            "data": {"host": "a.com", "path": "/signup", "form": {
                "note": format!("a, \"b\"\nc\r\n{i}"), "name": "Zoë 漢字 🙂", "list": [1, null, {"x": true}]}},
            "timestamp": ts}),
    }
}

fn base_time() -> DateTime<Utc> {
    "2022-01-01T00:00:00Z".parse().unwrap()
}

/// Ingests the fixture: [`SAME_INSTANT`] events at one instant, [`SPREAD`] a second
/// apart after it, and 30 more from a second application, `other`.
async fn fill(app: &TestApp) {
    let t0 = base_time();
    let events: Vec<Value> = (0..SAME_INSTANT)
        .map(|i| event(i, t0))
        .chain((0..SPREAD).map(|i| event(i, t0 + Duration::seconds(i as i64 + 1))))
        .collect();
    for batch in events.chunks(500) {
        app.ingest(&Value::Array(batch.to_vec())).await;
    }
    let other = create_key(&app.state.store, "other", Scopes::INGEST_ONLY).await;
    let batch: Vec<Value> = (0..30)
        .map(|i| event(i, t0 + Duration::milliseconds(i as i64 * 7 + 3)))
        .collect();
    let response = app.post_events_with_key(&other, &Value::Array(batch)).await;
    assert_eq!(response.status().as_u16(), 201);
    app.settled().await;
}

/// Every event of a whole `GET /events` walk by cursor, 1,000 a page.
async fn walk(app: &TestApp, filters: &str) -> Vec<Value> {
    let mut url = format!("/events?{filters}{}page_size=1000&cursor=", sep(filters));
    let mut events = Vec::new();
    loop {
        let page = app.get_json(&url, 200).await;
        events.extend(page["results"].as_array().unwrap().iter().cloned());
        let Some(next) = page["next"].as_str() else {
            return events;
        };
        url = next.strip_prefix(app.base.as_str()).unwrap().to_owned();
    }
}

fn sep(query: &str) -> &'static str {
    if query.is_empty() { "" } else { "&" }
}

/// `GET /events/export?query` with the app's key, asserting 200; the body.
async fn export(app: &TestApp, query: &str) -> Vec<u8> {
    let response = app.get(&format!("/events/export?{query}")).await;
    assert_eq!(response.status().as_u16(), 200, "export?{query}");
    response.bytes().await.expect("a complete body").to_vec()
}

fn ndjson(body: &[u8]) -> Vec<Value> {
    std::str::from_utf8(body)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn csv_rows(body: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(body);
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// The CSV cells an event's JSON should give, in [`CSV_COLUMNS`] order.
fn expected_cells(event: &Value) -> Vec<String> {
    CSV_COLUMNS
        .iter()
        .map(|column| {
            let value = match column.strip_prefix("data.") {
                Some(field) => &event["data"][field],
                None => &event[*column],
            };
            match value {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }
        })
        .collect()
}

/// The filter combinations the comparisons run over.
const FILTERS: [&str; 7] = [
    "",
    "session_id=s1",
    "category=page_interaction",
    "name=submit&session_id=s2",
    "application=other",
    "start_time=2022-01-01T00:00:00Z&end_time=2022-01-01T00:01:00Z",
    "category=form_interaction&start_time=2022-01-01T00:00:00.000001Z",
];

#[tokio::test]
async fn ndjson_export_is_a_whole_cursor_walk_for_every_filter() {
    // Arrange
    let app = spawn_app().await;
    fill(&app).await;
    for filters in FILTERS {
        // Act
        let body = export(&app, filters).await;
        // Assert: the same events, in the same order, each the same JSON object.
        let walked = walk(&app, filters).await;
        assert!(!walked.is_empty(), "{filters} matches nothing");
        assert_eq!(ndjson(&body), walked, "{filters}");
    }
    // The unfiltered export crosses the page boundary inside one instant.
    let all = walk(&app, "").await;
    assert_eq!(all.len(), SAME_INSTANT + SPREAD + 30);
    let unique: std::collections::HashSet<&Value> = all.iter().map(|e| &e["id"]).collect();
    assert_eq!(unique.len(), all.len());
}

#[tokio::test]
async fn ndjson_lines_are_exactly_the_listings_json() {
    // Arrange
    let app = spawn_app().await;
    app.ingest(&Value::Array(
        (0..3).map(|i| event(i, base_time())).collect(),
    ))
    .await;
    app.settled().await;
    // Act
    let body = export(&app, "format=ndjson").await;
    // Assert: byte for byte the JSON text of each listed event, one per line.
    let page = app
        .get("/events?page_size=1000")
        .await
        .text()
        .await
        .unwrap();
    #[derive(serde::Deserialize)]
    struct RawPage {
        results: Vec<Box<serde_json::value::RawValue>>,
    }
    let page: RawPage = serde_json::from_str(&page).unwrap();
    let expected: String = page
        .results
        .iter()
        .map(|e| format!("{}\n", e.get()))
        .collect();
    assert_eq!(String::from_utf8(body).unwrap(), expected);
}

#[tokio::test]
async fn csv_export_parses_back_to_the_listed_events() {
    // Arrange
    let app = spawn_app().await;
    fill(&app).await;
    for filters in [
        "",
        "name=submit",
        "session_id=s0&start_time=2022-01-01T00:00:01Z",
    ] {
        // Act
        let body = export(&app, &format!("format=csv{}{filters}", sep(filters))).await;
        // Assert
        let (header, rows) = csv_rows(&body);
        assert_eq!(header, CSV_COLUMNS);
        let walked = walk(&app, filters).await;
        let expected: Vec<Vec<String>> = walked.iter().map(expected_cells).collect();
        assert_eq!(rows, expected, "{filters}");
    }
}

#[tokio::test]
async fn csv_keeps_commas_quotes_newlines_and_unicode_of_a_form() {
    // Arrange
    let app = spawn_app().await;
    let form = json!({"comment": "one, two; \"three\"\nfour\r\nfive", "name": "Zoë 漢字 🙂",
                      "nested": {"a": [1, 2.5, null, "x,y"]}});
    app.ingest(
        &json!({"session_id": "s,\"1\"", "category": "form_interaction",
        "name": "submit", "data": {"host": "a.com", "path": "/f?x=1,2", "form": form},
        "timestamp": "2022-01-01T00:00:00Z"}),
    )
    .await;
    app.settled().await;
    // Act
    let body = export(&app, "format=csv").await;
    // Assert
    let (header, rows) = csv_rows(&body);
    let cell = |name: &str| rows[0][header.iter().position(|h| h == name).unwrap()].clone();
    assert_eq!(rows.len(), 1);
    assert_eq!(cell("session_id"), "s,\"1\"");
    assert_eq!(cell("data.path"), "/f?x=1,2");
    assert_eq!(cell("data.element"), "");
    assert_eq!(cell("client_timestamp"), "");
    let parsed: Value = serde_json::from_str(&cell("data.form")).unwrap();
    assert_eq!(parsed, form);
}

#[tokio::test]
async fn gzip_export_decodes_to_the_same_bytes() {
    // Arrange
    let app = spawn_app().await;
    fill(&app).await;
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    for format in ["ndjson", "csv"] {
        let plain = export(&app, &format!("format={format}")).await;
        // Act
        let response = raw
            .get(format!("{}/events/export?format={format}", app.base))
            .bearer_auth(&app.key)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        // Assert
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["content-encoding"], "gzip", "{format}");
        let compressed = response.bytes().await.unwrap();
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(
            compressed.len() < plain.len() / 3,
            "{format} barely compressed"
        );
        assert_eq!(decoded, plain, "{format}");
    }
}

#[tokio::test]
async fn export_answers_are_attachments_of_their_format() {
    let app = spawn_app().await;
    for (format, content_type, extension) in [
        ("", "application/x-ndjson", ".ndjson"),
        ("csv", "text/csv; charset=utf-8", ".csv"),
    ] {
        let response = app.get(&format!("/events/export?format={format}")).await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["content-type"], content_type);
        let disposition = response.headers()["content-disposition"].to_str().unwrap();
        assert!(
            disposition.starts_with("attachment; filename=\"events-")
                && disposition.ends_with(&format!("{extension}\"")),
            "{disposition}"
        );
    }
}

#[tokio::test]
async fn empty_export_is_only_the_csv_header_or_an_empty_body() {
    // Arrange
    let app = spawn_app().await;
    app.ingest(&event(0, base_time())).await;
    app.settled().await;
    // Act
    let csv = export(&app, "format=csv&session_id=nobody").await;
    let ndjson = export(&app, "session_id=nobody").await;
    let impossible = export(&app, "category=form_interaction&name=page_view").await;
    // Assert
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        format!("{}\n", CSV_COLUMNS.join(","))
    );
    assert!(ndjson.is_empty());
    assert!(impossible.is_empty());
}

#[tokio::test]
async fn export_needs_a_key_with_the_query_scope() {
    let app = spawn_app().await;
    let ingest_only = create_key(&app.state.store, "sender", Scopes::INGEST_ONLY).await;

    let anonymous = app
        .http
        .get(format!("{}/events/export", app.base))
        .send()
        .await
        .unwrap();
    let forbidden = app.get_with_key("/events/export", &ingest_only).await;

    assert_eq!(anonymous.status().as_u16(), 401);
    assert_error(&anonymous.json().await.unwrap(), "unauthorized");
    assert_eq!(forbidden.status().as_u16(), 403);
    assert_error(&forbidden.json().await.unwrap(), "forbidden");
}

#[tokio::test]
async fn bad_format_filters_and_paging_parameters_are_400_invalid_query() {
    let app = spawn_app().await;
    for (query, parameter, code) in [
        ("format=xml", "format", "invalid_format"),
        ("format=csv&format=csv", "format", "repeated_parameter"),
        ("end_time=last%20tuesday", "end_time", "invalid_time"),
        (
            "start_time=2022-02-01&end_time=2022-01-01",
            "start_time",
            "invalid_time_range",
        ),
        (
            "session_id=a&session_id=b",
            "session_id",
            "repeated_parameter",
        ),
        ("page=2", "page", "unsupported_parameter"),
        ("page_size=10", "page_size", "unsupported_parameter"),
        ("cursor=abc", "cursor", "unsupported_parameter"),
    ] {
        let response = app.get(&format!("/events/export?{query}")).await;
        assert_eq!(response.status().as_u16(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_error(&body, "invalid_query");
        assert_eq!(body["error"]["details"]["parameter"], parameter, "{query}");
        assert_eq!(body["error"]["details"]["code"], code, "{query}");
    }
}

/// Runs one statement on the server's own store, whichever the backend; `id` is
/// bound to its one placeholder when given.
async fn execute(app: &TestApp, sqlite: &str, postgres: &str, id: Option<Uuid>) {
    let store = &app.state.store;
    if let Some(pool) = store.pool() {
        let q = sqlx::query(sqlx::AssertSqlSafe(sqlite.to_owned()));
        let q = match id {
            Some(id) => q.bind(id),
            None => q,
        };
        q.execute(pool).await.unwrap();
    } else {
        let pool = store.pg_pool().expect("a SQLite or PostgreSQL store");
        let q = sqlx::query(sqlx::AssertSqlSafe(postgres.to_owned()));
        let q = match id {
            Some(id) => q.bind(id),
            None => q,
        };
        q.execute(pool).await.unwrap();
    }
}

#[tokio::test]
async fn store_failure_before_the_first_page_is_the_usual_json_error() {
    let app = spawn_app().await;
    app.ingest(&event(0, base_time())).await;
    app.settled().await;
    let rename = "ALTER TABLE events RENAME TO events_gone";
    execute(&app, rename, rename, None).await;

    let response = app.get("/events/export?format=csv").await;

    assert_eq!(response.status().as_u16(), 500);
    let text = response.text().await.unwrap();
    assert_error(&serde_json::from_str(&text).unwrap(), "internal");
    assert!(
        !text.to_lowercase().contains("sql"),
        "internals leaked: {text}"
    );
}

/// Makes the oldest event unreadable (its `data` is no longer JSON): with more than
/// one page of events, the export fails after its first page.
async fn corrupt_oldest(app: &TestApp) {
    let oldest = walk(app, "").await.last().unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    execute(
        app,
        "UPDATE events SET data = 'not json' WHERE id = ?",
        "UPDATE events SET data = 'not json' WHERE id = $1",
        Some(oldest),
    )
    .await;
}

#[tokio::test]
async fn store_failure_after_the_first_page_cuts_the_transfer_off() {
    // Arrange: the oldest event, on the second page, cannot be read.
    let app = spawn_app().await;
    fill(&app).await;
    corrupt_oldest(&app).await;
    for format in ["ndjson", "csv"] {
        // Act
        let sent = app
            .http
            .get(format!("{}/events/export?format={format}", app.base))
            .bearer_auth(&app.key)
            .send()
            .await;
        // Assert: a broken transfer, never a short export that ends normally. The
        // connection is closed at the failure: the client sees a 200 whose body
        // fails, or (when hyper had not yet flushed the head with the first page)
        // an incomplete message.
        let outcome = match sent {
            Err(e) => Err(e),
            Ok(response) => {
                assert_eq!(response.status().as_u16(), 200);
                response.bytes().await.map(drop)
            }
        };
        assert!(
            outcome.is_err(),
            "{format}: a failed export looked complete"
        );
    }
}

#[tokio::test]
async fn export_subcommand_writes_the_file_the_http_export_answers() {
    // Arrange
    let app = spawn_app().await;
    fill(&app).await;
    let dir = tempfile::tempdir().unwrap();
    for (format, filters) in [("csv", "category=page_interaction"), ("ndjson", "")] {
        let file = dir.path().join(format!("out.{format}"));
        let mut args = vec![
            "export".to_owned(),
            "--format".into(),
            format.into(),
            "--output".into(),
            file.display().to_string(),
            "--database-url".into(),
            app.database_url.clone(),
        ];
        for pair in filters.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap();
            args.push(format!("--{}", k.replace('_', "-")));
            args.push(v.to_owned());
        }
        // Act
        let output = crate::binary::run(
            dir.path(),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        // Assert
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(output.stdout.is_empty());
        let http = export(&app, &format!("format={format}{}{filters}", sep(filters))).await;
        assert_eq!(std::fs::read(&file).unwrap(), http, "{format} {filters}");
        let events = if format == "csv" {
            csv_rows(&http).1.len()
        } else {
            ndjson(&http).len()
        };
        assert!(
            stderr.contains(&format!("export: {events} events")),
            "{stderr}"
        );
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");
}

#[tokio::test]
async fn failed_export_subcommand_leaves_no_file() {
    // Arrange
    let app = spawn_app().await;
    fill(&app).await;
    corrupt_oldest(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.ndjson");
    std::fs::write(&file, "an earlier export\n").unwrap();
    // Act
    let output = crate::binary::run(
        dir.path(),
        &[
            "export",
            "--output",
            &file.display().to_string(),
            "--database-url",
            &app.database_url,
        ],
    );
    // Assert: a failure, the earlier file as it was, and no partial file beside it.
    assert!(!output.status.success());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "an earlier export\n"
    );
    let entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        entries.iter().all(|n| !n.contains("partial")),
        "left behind: {entries:?}"
    );
}
