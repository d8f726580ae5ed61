//! `GET /sessions/{session_id}` (the session row),
//! `GET /sessions/{session_id}/events` (its events in the order they occurred) and
//! `DELETE /sessions/{session_id}` (erasing it for good, scope `admin`).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use eye_core::{Cursor, CursorListing, Page, Session, StoredEvent, TimelineQuery};

use super::listing::Listing;
use crate::auth::{AdminCaller, QueryCaller};
use crate::error::ApiError;
use crate::lifecycle::{DeadLetterPlaces, EraseError, Erasure};
use crate::state::AppState;

/// The session routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/sessions/{session_id}",
            get(get_session).delete(erase_session),
        )
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

/// Erases the session everywhere ([`crate::lifecycle::erase_session`]) and says how
/// many of each were removed; a session never seen answers zeros (and is suppressed
/// all the same).
async fn erase_session(
    State(state): State<AppState>,
    AdminCaller(caller): AdminCaller,
    Path(session_id): Path<String>,
) -> Result<Json<Erasure>, ApiError> {
    let places = DeadLetterPlaces::from_config(&state.config);
    let now = state.clock.now();
    match crate::lifecycle::erase_session(&state.store, &places, &session_id, now).await {
        Ok(erasure) => {
            tracing::info!(application = %caller.application, "erasure requested over HTTP");
            Ok(Json(erasure))
        }
        Err(EraseError::Store(e)) => Err(e.into()),
        Err(EraseError::DeadLetters(why)) => Err(ApiError::EraseIncomplete(why)),
    }
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
