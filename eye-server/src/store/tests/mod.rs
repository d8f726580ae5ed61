//! The store's conformance suite: every case is written once, as
//! `async fn case(store: TestDb)`, and [`conformance!`] runs it against both backends:
//! a real SQLite file in a temporary directory (`sqlite::case`) and a fresh database
//! on a real PostgreSQL (`postgres::case`), created for the test and dropped after it,
//! even when it fails. Tests of one backend's internals (SQLite's query plans and
//! page-cache release) are plain `#[tokio::test]`s.
//!
//! PostgreSQL is `EYE_TEST_DATABASE_URL` (a URL whose database the tests can connect
//! to and create databases from), or `postgres://postgres@127.0.0.1:5432/postgres`.
//! When it does not answer, the Postgres tests print why and pass, except under CI
//! (`CI` set to `true`), where they fail: CI must run them.
//!
//! - `harness`: the per-test SQLite file or Postgres database, and the macro.
//! - `writes`: idempotency, atomicity, sessions and counters.
//! - `cursors`: keyset pages and walks by cursor, with writes between pages.
//! - `concurrent`: four writers on one Postgres database racing on the same ids.
//! - `queries`: every filter, ordering, pagination and totals.
//! - `errors_log`: the errors log and its filters.
//! - `apps`: applications.
//! - `idle`: releasing the page caches of a quiet store (SQLite).
//! - `pg`: Postgres only: connect errors, transient errors, `EXPLAIN` of the shapes.
//! - `plans`: `EXPLAIN QUERY PLAN` of every query shape (SQLite), `EXPLAIN` of the
//!   main shapes on Postgres.
//! - `stats`: dashboard figures.
//! - `tree`: the counter tree's counts and deep-page seek against plain queries.
//! - `lifecycle`: erasure, the suppression list and retention, each followed by
//!   `recount`, which compares every counter with a recount from the rows.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod harness;

mod apps;
mod concurrent;
mod cursors;
mod deep_pages;
mod errors_log;
mod idle;
mod lifecycle;
mod partitions;
mod pg;
mod plans;
mod queries;
mod recount;
mod stats;
mod tree;
mod writes;

use chrono::{DateTime, Duration, TimeZone, Utc};
use eye_core::{ErrorCode, Event, FieldError};
use uuid::Uuid;

use super::Store;
use crate::message::{AcceptedEvent, Message, RejectedEvent};
pub(super) use harness::TestDb;

/// 2022-01-01T00:00:00Z plus `secs` seconds.
pub(super) fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(secs)
}

/// An accepted event message with a fresh UUIDv7 id.
pub(super) fn accepted(event: Event, application: &str, at: DateTime<Utc>) -> Message {
    Message::EventV1(AcceptedEvent {
        client_timestamp: None,
        id: Uuid::now_v7(),
        application: application.to_owned(),
        received_at: at,
        event: event.with_timestamp(at),
    })
}

/// A page view of `session` at `t(secs)` from application `shop`.
pub(super) fn view(session: &str, secs: i64) -> Message {
    accepted(
        Event::page_view(session, "example.com", "/").unwrap(),
        "shop",
        t(secs),
    )
}

/// A CTA click of `session` at `t(secs)` from application `shop`.
pub(super) fn click(session: &str, secs: i64) -> Message {
    accepted(
        Event::cta_click(session, "example.com", "/", "chat bubble").unwrap(),
        "shop",
        t(secs),
    )
}

/// A form submit of `session` at `t(secs)` from `application`.
pub(super) fn submit(session: &str, secs: i64, application: &str) -> Message {
    let form = serde_json::json!({"first_name": "John", "nested": {"a": [1, 2]}});
    accepted(
        Event::form_submit(session, "example.com", "/signup", form).unwrap(),
        application,
        t(secs),
    )
}

/// A rejected event with `codes` from `application` at `t(secs)`.
pub(super) fn rejected(application: &str, secs: i64, codes: &[ErrorCode]) -> Message {
    Message::RejectedV1(RejectedEvent {
        key: Uuid::now_v7(),
        application: application.to_owned(),
        received_at: t(secs),
        errors: codes
            .iter()
            .map(|c| FieldError::new("/x", *c, format!("bad: {}", c.as_str())))
            .collect(),
        payload: r#"{"session_id": 1}"#.to_owned(),
    })
}

/// The id of an event message.
pub(super) fn id_of(m: &Message) -> Uuid {
    match m {
        Message::EventV1(e) => e.id,
        Message::RejectedV1(r) => r.key,
    }
}

/// Every page of `page_size` from the seek threshold to the end of `q` equals the
/// same slice of `want` (the ids in the API's order), and every page's count is
/// `want`'s length.
async fn assert_deep_pages(store: &Store, q: &eye_core::EventQuery, want: &[Uuid], page_size: u32) {
    use crate::store::count::SEEK_FROM_OFFSET;
    assert!(want.len() as u64 > SEEK_FROM_OFFSET + 100, "{q:?}");
    let first_page = SEEK_FROM_OFFSET / u64::from(page_size) + 1;
    let mut got = Vec::new();
    for page in first_page.. {
        let (count, events) = store
            .query_events(&q.clone().page(page).page_size(page_size))
            .await
            .unwrap();
        assert_eq!(count, want.len() as u64, "{q:?}");
        if events.is_empty() {
            break;
        }
        got.extend(events.into_iter().map(|e| e.id));
    }
    let start = ((first_page - 1) * u64::from(page_size)) as usize;
    assert_eq!(got, want[start..], "{q:?}");
}
