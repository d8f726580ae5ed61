//! Integration tests of eye-core's public API, in one test binary.
//!
//! Each module owns one area: the event rules and their error codes, timestamps,
//! near-miss suggestions, reporting every error at once, the query model, the seed's
//! examples, the JSON Schema (snapshot and agreement with the parser), round trips,
//! and the crate's dependency rule.

// Helpers may unwrap like tests do (clippy.toml): a panic is a failed test with its message.
#![allow(clippy::unwrap_used)]

mod all_errors;
mod dependencies;
mod direct;
mod event_rules;
mod field_rules;
mod helpers;
mod mutations;
mod query;
mod roundtrip;
mod schema_agreement;
mod schema_snapshot;
mod seed;
mod strategies;
mod suggestions;
mod timestamps;
