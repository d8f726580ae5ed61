//! HTTP routes. Each file owns one resource and ends with its `router()`.

use axum::Router;

use crate::state::AppState;

/// The whole HTTP API, with its middleware (limits, timeouts, tracing, compression).
pub fn router(state: AppState) -> Router {
    let _ = &state;
    todo!("http helper")
}
