//! Typed queries against the real server.

use std::time::Duration;

use eye_core::{EventQuery, EventType, Pagination, StoredEvent};
use futures_util::TryStreamExt;

use crate::helpers::{Server, eventually};

/// Tracks `n` events of session `session`, alternating page views and CTA clicks,
/// one millisecond apart, and waits for delivery.
async fn seed(server: &Server, session: &str, n: usize) {
    let client = server.client().build().unwrap();
    let start = chrono::Utc::now() - chrono::Duration::seconds(10);
    for i in 0..n {
        let e = if i % 2 == 0 {
            eye_core::Event::page_view(session, "shop.example", "/").unwrap()
        } else {
            eye_core::Event::cta_click(session, "shop.example", "/", "buy").unwrap()
        };
        let at = start + chrono::Duration::milliseconds(i as i64);
        client.track(e.with_timestamp(at)).unwrap();
    }
    let report = client.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_complete(), "{report}");
    // Delivered means journaled: wait until the session's events are readable.
    let query = EventQuery::new().session(session).page_size(1);
    eventually(&format!("{n} events of {session} stored"), || async {
        let page = client_for(server).events(&query).await.ok()?;
        (page.count == n as u64).then_some(())
    })
    .await;
}

fn client_for(server: &Server) -> eye_client::EyeClient {
    server.client().build().unwrap()
}

#[tokio::test]
async fn filters_and_pages_come_back_typed() {
    let server = Server::start().await;
    seed(&server, "alice", 25).await;
    seed(&server, "bob", 4).await;
    let client = server.client().build().unwrap();

    let alice = client
        .events(&EventQuery::new().session("alice").page_size(10))
        .await
        .unwrap();
    let clicks = client
        .events(&EventQuery::new().event_type(EventType::CtaClick))
        .await
        .unwrap();

    assert_eq!((alice.count, alice.results.len()), (25, 10));
    assert!(alice.next.is_some());
    assert!(
        alice
            .results
            .windows(2)
            .all(|w| w[0].timestamp >= w[1].timestamp),
        "newest first"
    );
    assert_eq!(clicks.count, 12 + 2);
    assert!(
        clicks
            .results
            .iter()
            .all(|e| e.event_type() == EventType::CtaClick)
    );
}

#[tokio::test]
async fn streams_follow_every_page() {
    let server = Server::start().await;
    seed(&server, "carol", 23).await;
    let client = server.client().build().unwrap();

    let all: Vec<StoredEvent> = client
        .events_stream(EventQuery::new().session("carol").page_size(5))
        .try_collect()
        .await
        .unwrap();
    let timeline: Vec<StoredEvent> = client
        .session_timeline("carol")
        .try_collect()
        .await
        .unwrap();

    let exported: Vec<StoredEvent> = client
        .export(&EventQuery::new().session("carol").page_size(5))
        .try_collect()
        .await
        .unwrap();

    assert_eq!(all.len(), 23);
    assert_eq!(exported, all, "the export is the cursor walk");
    assert_eq!(timeline.len(), 23);
    assert!(
        timeline
            .windows(2)
            .all(|w| w[0].timestamp <= w[1].timestamp),
        "oldest first"
    );
    let session = client.session("carol").await.unwrap();
    assert_eq!(session.event_count, 23);
    assert_eq!(session.applications, vec!["e2e".to_owned()]);
    let second = client
        .session_events(
            "carol",
            Pagination {
                page: 2,
                page_size: 20,
            },
        )
        .await
        .unwrap();
    assert_eq!(second.results.len(), 3);
}

#[tokio::test]
async fn query_errors_carry_the_servers_code() {
    let server = Server::start().await;
    seed(&server, "dave", 2).await;
    let client = server.client().build().unwrap();

    let past_end = client
        .events(&EventQuery::new().page(99))
        .await
        .unwrap_err();
    let unknown = client.session("nobody").await.unwrap_err();
    let ingest_only = server.create_key("shop", "ingest");
    let forbidden = server
        .client()
        .api_key(ingest_only)
        .build()
        .unwrap()
        .events(&EventQuery::new())
        .await
        .unwrap_err();
    let unauthorized = server
        .client()
        .api_key("eye_nope")
        .build()
        .unwrap()
        .events(&EventQuery::new())
        .await
        .unwrap_err();

    assert_eq!(
        (past_end.status(), past_end.code()),
        (Some(404), Some("invalid_page"))
    );
    assert_eq!(unknown.code(), Some("not_found"));
    assert_eq!(forbidden.code(), Some("forbidden"));
    assert_eq!(unauthorized.code(), Some("unauthorized"));
    assert!(forbidden.is_auth() && unauthorized.is_auth());
}

#[tokio::test]
async fn a_streams_error_ends_it() {
    let server = Server::start().await;
    let client = server.client().build().unwrap();

    let result: Result<Vec<StoredEvent>, _> = client.session_timeline("ghost").try_collect().await;

    assert_eq!(result.unwrap_err().code(), Some("not_found"));
}
