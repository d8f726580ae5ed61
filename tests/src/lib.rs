//! End-to-end tests of The Eye: the real eye-server router on `127.0.0.1:0` over a
//! fresh SQLite file, driven by the real eye-client. The tests live in
//! `tests/e2e/` (one binary); this library is empty.
//!
//! # Layout
//!
//! - `tests/e2e/main.rs`: the test binary's modules.
//! - `tests/e2e/helpers.rs`: `Server::start()`, restart on the same port, keys, clients.
//! - `tests/e2e/delivery.rs`: every tracked event stored exactly once, across a
//!   server restart; rejections reported with reasons; bad keys.
//! - `tests/e2e/queries.rs`: typed queries, page streams and error codes.
