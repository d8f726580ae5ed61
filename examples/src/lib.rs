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
//! `track` and `load` keep their events in an outbox on disk when `EYE_OUTBOX_DIR`
//! names a directory: run one with the server down, then again with it up, and the
//! second run delivers the first one's events too.
//!
//! # Layout
//!
//! - this file: [`Settings`], the environment every example reads, and
//!   [`print_report`].
//! - `src/bin/*.rs`: one example each.

use std::path::PathBuf;

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
    /// `EYE_OUTBOX_DIR`, if set: where the sending examples keep their outbox.
    pub outbox: Option<PathBuf>,
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
        let outbox = std::env::var_os("EYE_OUTBOX_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        Self {
            url,
            api_key,
            outbox,
        }
    }

    /// A builder for an example that sends events: [`Self::builder`], with the outbox
    /// when `EYE_OUTBOX_DIR` is set.
    pub fn sender(&self) -> EyeClientBuilder {
        match &self.outbox {
            Some(dir) => self.builder().outbox(dir),
            None => self.builder(),
        }
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
