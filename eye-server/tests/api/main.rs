//! API tests: the real router on port 0 (or the real binary) over a fresh store per
//! test, on the default ack path (the journal; `ack_store` covers the other). The
//! store is a SQLite file, or a fresh PostgreSQL database with
//! `EYE_TEST_STORE=postgres` (see `helpers`). No mocks.

// Test helpers outside `#[test]` functions may unwrap too (see clippy.toml).
#![allow(clippy::unwrap_used)]

mod ack_store;
mod adversarial;
mod auth;
mod binary;
mod connections;
mod cross_site;
mod cursors;
mod error_bounds;
mod export;
mod failures;
mod helpers;
mod ingest;
mod journal_faults;
mod lifecycle;
mod limits;
mod probes;
mod publishable;
mod query;
mod rate_limits;
mod seed;
