//! End-to-end: the real server and the real client.

#![allow(clippy::unwrap_used, missing_docs)]

mod delivery;
mod helpers;
mod queries;
