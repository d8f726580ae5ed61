//! Runnable examples of The Eye's SDK, one binary each:
//!
//! - `track`: an application sending page views, CTA clicks and form submits for a few
//!   sessions, then shutting down and printing its delivery report.
//! - `query`: an analyst listing a session's events, a category over a time range and
//!   the latest errors.
//! - `schema`: writing the JSON Schema file a frontend would validate against.
//! - `load`: sending many events from concurrent tasks and printing events per second.
//!
//! Each reads the server URL from `EYE_URL` (default `http://127.0.0.1:8000`) and the
//! key from `EYE_API_KEY`, and exits non-zero when anything it sent was not delivered.
//!
//! # Layout
//!
//! - this file: [`Settings`], the environment every example reads, and
//!   [`print_report`].
//! - `src/bin/*.rs`: one example each.

use eye_client::{DeliveryReport, EyeClient, EyeClientBuilder};

/// The server URL when `EYE_URL` is not set.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8000";

/// Where the server is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `EYE_URL`.
    pub url: String,
    /// `EYE_API_KEY`, if set.
    pub api_key: Option<String>,
}

impl Settings {
    /// Reads `EYE_URL` and `EYE_API_KEY`.
    pub fn from_env() -> Self {
        let url = std::env::var("EYE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        let api_key = std::env::var("EYE_API_KEY").ok().filter(|k| !k.is_empty());
        if api_key.is_none() {
            eprintln!(
                "note: EYE_API_KEY is not set; the server will answer 401 unless auth is off"
            );
        }
        Self { url, api_key }
    }

    /// A client builder for these settings.
    pub fn builder(&self) -> EyeClientBuilder {
        let b = EyeClient::builder(&self.url);
        match &self.api_key {
            Some(key) => b.api_key(key),
            None => b,
        }
    }
}

/// Prints a delivery report with the reasons of every rejection and failure listed.
pub fn print_report(report: &DeliveryReport) {
    println!("delivery report: {report}");
    for r in &report.rejections {
        println!("  rejected {}: {}", r.id(), r.errors);
    }
    for f in &report.failures {
        println!(
            "  failed {}: {}",
            f.event.id().unwrap_or_default(),
            f.reason
        );
    }
}
