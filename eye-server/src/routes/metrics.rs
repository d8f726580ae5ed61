//! `GET /metrics`: the Prometheus text format. Unauthenticated, like most exporters;
//! it carries counts, never event data.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics::gauge;

use crate::metrics::{install, names};
use crate::queue::Queue;
use crate::state::AppState;
use crate::store::Store;

/// `GET /metrics`.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics_handler))
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        render(state.queue.as_ref(), &state.store).await,
    )
}

/// Samples the gauges (the queue's backlog, the store's size, SQLite's memory, the
/// heap in use) and renders every metric in the Prometheus text format. Takes what it
/// reads, not the whole state.
pub async fn render(queue: &dyn Queue, store: &Store) -> String {
    let handle = install();
    match queue.backlog().await {
        Ok(n) => gauge!(names::QUEUE_BACKLOG).set(n as f64),
        Err(e) => tracing::warn!(error = %e, "cannot read the queue backlog for /metrics"),
    }
    if let Ok(size) = store.store_size().await {
        gauge!(names::STORE_BYTES).set(size.database_bytes as f64);
    }
    if let Some(bytes) = store.sqlite_memory_bytes() {
        gauge!(names::SQLITE_MEMORY_BYTES).set(bytes as f64);
    }
    if let Some(bytes) = crate::memory::heap_in_use() {
        gauge!(names::HEAP_IN_USE_BYTES).set(bytes as f64);
    }
    handle.render()
}
