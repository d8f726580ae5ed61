//! The Redis queue and workers against a real `redis-server`: `EYE_TEST_REDIS_URL` when
//! set, otherwise a private server per test on a free loopback port. Every test uses a
//! unique key prefix, so tests never collide even on a shared server.
#![allow(clippy::unwrap_used, missing_docs)]

mod e2e;
mod erase;
mod harness;
mod multinode;
mod pg_faults;
mod pipeline;
mod process;
mod queue;
mod worker;
