//! `GET /errors`: the log of rejected events, newest first, filtered by time range
//! (`start_time`, `end_time`, on when they were received), `application` and `code`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use eye_core::{ErrorQuery, ErrorRecord, Page};

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
    let (count, errors) = state.store.query_errors(&query).await?;
    Ok(Json(listing.page(count, &query.pagination, errors)?))
}
