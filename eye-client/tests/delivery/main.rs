//! The sender against a scripted HTTP server: the faults the real eye-server cannot
//! be made to produce on demand (5xx, 429 with Retry-After, 413, refused connections,
//! slow answers, blanket 400/401/403), and the buffer, flush, shutdown and drop
//! lifecycle.

#![allow(clippy::unwrap_used)]

mod faults;
mod lifecycle;
mod scripted;
