//! The sender against the real eye-server (in-process, on a fresh SQLite file) for
//! everything it can produce: delivery, the buffer, flush, shutdown and drop
//! lifecycle, 413 splits, per-event rejections, 401 and 403; against no server at all
//! for an outage; and against a scripted wiremock stub only for the faults the real
//! server cannot be made to produce on demand (a single 503 or 500, 429 with a fixed
//! Retry-After, slow answers, malformed 2xx answers), each marked "A stub:".

#![allow(clippy::unwrap_used)]

mod faults;
mod lifecycle;
mod real;
mod scripted;
