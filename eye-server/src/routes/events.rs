//! `GET /events` (filtered, paginated, newest first) and `GET /events/{id}`.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use eye_core::{Cursor, CursorListing, EventQuery, Page, StoredEvent};
use uuid::Uuid;

use super::listing::Listing;
use crate::auth::QueryCaller;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /events`, `GET /events/` and `GET /events/{id}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events", get(list_events))
        .route("/events/", get(list_events))
        .route("/events/{id}", get(get_event))
}

/// The seed's filters (`session_id`, `category`, `start_time`, `end_time`) in any
/// combination, plus `name` and `application`; `page` and `page_size`, or `cursor`.
async fn list_events(
    State(state): State<AppState>,
    _caller: QueryCaller,
    listing: Listing,
) -> Result<Json<Page<StoredEvent>>, ApiError> {
    let query = EventQuery::from_pairs(listing.borrowed(), &state.config.query.limits())?;
    if query.cursor.is_some() {
        let page = state.store.events_by_cursor(&query).await?;
        let filters = query.filters_fingerprint();
        return Ok(Json(listing.cursor_page(
            page,
            query.cursor.as_ref(),
            |d, e| {
                Cursor::new(
                    CursorListing::Events,
                    d,
                    e.timestamp.timestamp_micros(),
                    e.id.as_u128(),
                    filters,
                )
            },
        )));
    }
    let (count, events) = state.store.query_events(&query).await?;
    Ok(Json(listing.page(count, &query.pagination, events)?))
}

/// One event by id; an id that is not a UUID cannot exist, so it is a 404 too.
async fn get_event(
    State(state): State<AppState>,
    _caller: QueryCaller,
    Path(id): Path<String>,
) -> Result<Json<StoredEvent>, ApiError> {
    let id = Uuid::try_parse(&id).map_err(|_| ApiError::NotFound("event"))?;
    state
        .store
        .get_event(id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("event"))
}
