//! An analyst's questions: the events of one session (its timeline), every page
//! interaction of the last 24 hours, and the latest rejected events. Needs a key with
//! the `query` scope.
//!
//! ```sh
//! EYE_API_KEY=... cargo run -p eye-examples --bin query [SESSION_ID]
//! ```
//!
//! Without a session id it picks the session of the newest event.

use chrono::{Duration, Utc};
use eye_client::EyeClient;
use eye_core::{ErrorQuery, EventQuery, StoredEvent};
use eye_examples::Settings;
use futures_util::TryStreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    let client = settings.builder().build()?;

    let session = match std::env::args().nth(1) {
        Some(s) => s,
        None => {
            let newest = client.events(&EventQuery::new().page_size(1)).await?;
            match newest.results.first() {
                Some(e) => e.session_id.as_str().to_owned(),
                None => {
                    println!("no events stored yet: run the `track` example first");
                    return Ok(());
                }
            }
        }
    };
    session_timeline(&client, &session).await?;
    last_day_of_page_interactions(&client).await?;
    latest_errors(&client).await?;
    Ok(())
}

async fn session_timeline(client: &EyeClient, session: &str) -> anyhow::Result<()> {
    let events: Vec<StoredEvent> = client.session_timeline(session).try_collect().await?;
    println!("session {session}: {} events, oldest first", events.len());
    for e in &events {
        print_event(e);
    }
    Ok(())
}

async fn last_day_of_page_interactions(client: &EyeClient) -> anyhow::Result<()> {
    let now = Utc::now();
    let query = EventQuery::new()
        .category("page_interaction")
        .start_time(now - Duration::hours(24))
        .end_time(now)
        .page_size(10);
    let page = client.events(&query).await?;
    println!(
        "\npage_interaction events in the last 24 h: {} (newest {} shown)",
        page.count,
        page.results.len()
    );
    for e in &page.results {
        print_event(e);
    }
    Ok(())
}

async fn latest_errors(client: &EyeClient) -> anyhow::Result<()> {
    let mut query = ErrorQuery::default();
    query.pagination.page_size = 5;
    let page = client.errors(&query).await?;
    println!(
        "\nrejected events: {} (latest {} shown)",
        page.count,
        page.results.len()
    );
    for e in &page.results {
        println!(
            "  {}  {:<12} {}",
            eye_core::format_timestamp(&e.received_at),
            e.application,
            e.codes.join(",")
        );
    }
    Ok(())
}

fn print_event(e: &StoredEvent) {
    println!(
        "  {}  {:<28} {}{}  ({})",
        eye_core::format_timestamp(&e.timestamp),
        e.event_type().as_str(),
        e.payload.host().as_str(),
        e.payload.path().as_str(),
        e.application
    );
}
