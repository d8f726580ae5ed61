//! An application tracking what visitors do: a few sessions, each viewing pages,
//! clicking a call to action and submitting a form. Then it shuts the client down and
//! prints the delivery report; it exits 1 when anything was not delivered.
//!
//! ```sh
//! EYE_API_KEY=... cargo run -p eye-examples --bin track
//! # With an outbox: events survive a crash or an outage; the next run delivers them.
//! EYE_OUTBOX_DIR=/tmp/eye-outbox EYE_API_KEY=... cargo run -p eye-examples --bin track
//! ```

use std::process::ExitCode;
use std::time::Duration;

use eye_core::Event;
use eye_examples::{Settings, print_report};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env();
    let client = settings.sender().build()?;
    println!("tracking to {}", settings.url);
    if let Some(dir) = &settings.outbox {
        let recovered = client.stats().recovered;
        println!(
            "outbox {} ({recovered} events left by a previous run)",
            dir.display()
        );
    }

    let host = "www.consumeraffairs.com";
    let run = chrono::Utc::now().format("%H%M%S");
    for visitor in 1..=3 {
        let session = format!("example-{run}-{visitor}");
        let events = [
            Event::page_view(&session, host, "/")?,
            Event::cta_click(&session, host, "/", "chat bubble")?,
            Event::page_view(&session, host, "/signup")?,
            Event::form_submit(
                &session,
                host,
                "/signup",
                serde_json::json!({"first_name": "John", "last_name": "Doe", "visitor": visitor}),
            )?,
        ];
        for event in events {
            let kind = event.event_type();
            let id = client.track(event)?;
            println!("tracked {kind:<28} session {session}  id {id}");
        }
    }

    let report = client.shutdown(Duration::from_secs(10)).await;
    print_report(&report);
    Ok(if report.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
