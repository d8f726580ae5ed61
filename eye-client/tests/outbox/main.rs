//! The outbox on disk, end to end: a killed application's events delivered once by the
//! next client through the real server (started in-process on `127.0.0.1:0` over a
//! fresh SQLite file), outages, the byte and age bounds, the directory lock and a torn
//! record.
//!
//! The "killed application" is this test binary run again as a child process (see
//! [`crash::child_application`]): it tracks into an outbox with no server listening,
//! and the parent SIGKILLs it once every event is on disk.

#![allow(clippy::unwrap_used)]

mod bounds;
mod crash;
mod helpers;
mod integrity;
mod outage;
