//! `GET /healthz` (the process answers) and `GET /readyz` (the queue and the store
//! answer, and the server is not shutting down). Neither needs a key.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::AppState;

/// The probes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let queue = state.queue.kind();
    let ready = match state.queue.ready().await {
        Ok(()) => state.store.ping().await.map_err(|e| format!("store: {e}")),
        Err(e) => Err(e.to_string()),
    };
    match ready {
        Ok(()) => {
            let backlog = state.queue.backlog().await.unwrap_or(0);
            (
                StatusCode::OK,
                Json(json!({ "status": "ready", "queue": queue, "backlog": backlog })),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "queue": queue })),
            )
        }
    }
}
