//! API tests: the real router on port 0 (or the real binary) over a fresh SQLite file
//! per test. No mocks.

// Test helpers outside `#[test]` functions may unwrap too (see clippy.toml).
#![allow(clippy::unwrap_used)]

mod adversarial;
mod auth;
mod binary;
mod connections;
mod cross_site;
mod cursors;
mod error_bounds;
mod failures;
mod helpers;
mod ingest;
mod journal_faults;
mod limits;
mod probes;
mod query;
mod rate_limits;
mod seed;
