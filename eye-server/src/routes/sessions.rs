//! `GET /sessions/{session_id}` (the session row) and
//! `GET /sessions/{session_id}/events` (its events in the order they occurred).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use eye_core::{Cursor, CursorListing, Page, Session, StoredEvent, TimelineQuery};

use super::listing::Listing;
use crate::auth::QueryCaller;
use crate::error::ApiError;
use crate::state::AppState;

/// The session routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions/{session_id}", get(get_session))
        .route("/sessions/{session_id}/events", get(session_events))
}

async fn get_session(
    State(state): State<AppState>,
    _caller: QueryCaller,
    Path(session_id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    state
        .store
        .get_session(&session_id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("session"))
}

/// Oldest first, by page number or by cursor; an unknown session is a 404.
async fn session_events(
    State(state): State<AppState>,
    _caller: QueryCaller,
    Path(session_id): Path<String>,
    listing: Listing,
) -> Result<Json<Page<StoredEvent>>, ApiError> {
    let query = TimelineQuery::from_pairs(
        &session_id,
        listing.borrowed(),
        &state.config.query.limits(),
    )?;
    if query.cursor.is_some() {
        let page = state.store.session_events_by_cursor(&query).await?;
        if page.count == 0 && state.store.get_session(&session_id).await?.is_none() {
            return Err(ApiError::NotFound("session"));
        }
        let filters = query.filters_fingerprint();
        return Ok(Json(listing.cursor_page(
            page,
            query.cursor.as_ref(),
            |d, e| {
                Cursor::new(
                    CursorListing::SessionEvents,
                    d,
                    e.timestamp.timestamp_micros(),
                    e.id.as_u128(),
                    filters,
                )
            },
        )));
    }
    let pagination = query.pagination;
    let (count, events) = state.store.session_events(&session_id, &pagination).await?;
    if count == 0 && state.store.get_session(&session_id).await?.is_none() {
        return Err(ApiError::NotFound("session"));
    }
    Ok(Json(listing.page(count, &pagination, events)?))
}
