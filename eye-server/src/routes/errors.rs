//! `GET /errors`: the log of rejected events, newest first, filtered by time range
//! (`start_time`, `end_time`, on when they were received), `application` and `code`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use eye_core::{Cursor, CursorListing, ErrorQuery, ErrorRecord, Page};

use super::listing::Listing;
use crate::auth::QueryCaller;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /errors`.
pub fn router() -> Router<AppState> {
    Router::new().route("/errors", get(list_errors))
}

async fn list_errors(
    State(state): State<AppState>,
    _caller: QueryCaller,
    listing: Listing,
) -> Result<Json<Page<ErrorRecord>>, ApiError> {
    let query = ErrorQuery::from_pairs(listing.borrowed(), &state.config.query.limits())?;
    if query.cursor.is_some() {
        let page = state.store.errors_by_cursor(&query).await?;
        let filters = query.filters_fingerprint();
        return Ok(Json(listing.cursor_page(
            page,
            query.cursor.as_ref(),
            |d, e| {
                Cursor::new(
                    CursorListing::Errors,
                    d,
                    e.received_at.timestamp_micros(),
                    u128::try_from(e.id).unwrap_or(0),
                    filters,
                )
            },
        )));
    }
    let (count, errors) = state.store.query_errors(&query).await?;
    Ok(Json(listing.page(count, &query.pagination, errors)?))
}
