//! `GET /events/export`: every event matching the filters of `GET /events`, streamed
//! as NDJSON (the default) or CSV ([`crate::export`]).
//!
//! The first page is read before the answer starts, so a store that fails at once
//! gets the usual JSON error (503 when busy or unreachable, 500 otherwise). Then the
//! body streams one chunk per page of 1,000 events, read only as fast as the client
//! takes them: memory stays flat whatever the export's size. Compression applies as
//! to every answer (`Accept-Encoding: gzip`).
//!
//! A store failure after the answer started cannot change its status: the body ends
//! with an error instead, so hyper cuts the chunked transfer off without its final
//! chunk (and closes the connection), and the client sees a broken transfer, never a
//! short export that looks complete. The failure is logged.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;

use super::listing::Listing;
use crate::auth::QueryCaller;
use crate::error::ApiError;
use crate::export::{Export, ExportError, ExportRequest};
use crate::state::AppState;

/// `GET /events/export`.
pub fn router() -> Router<AppState> {
    Router::new().route("/events/export", get(export_events))
}

/// Streams the export; see the module docs.
async fn export_events(
    State(state): State<AppState>,
    _caller: QueryCaller,
    listing: Listing,
) -> Result<Response, ApiError> {
    let request = ExportRequest::from_pairs(listing.borrowed(), &state.config.query.limits())?;
    let format = request.format;
    let mut export = Export::new(state.store.clone(), request.query, format);
    let first = export.next_chunk().await.map_err(api_error)?;
    let first = futures_util::stream::iter(
        first
            .filter(|c| !c.is_empty())
            .map(|c| Ok::<_, std::io::Error>(Bytes::from(c))),
    );
    let rest = futures_util::stream::unfold(Some(export), |export| async move {
        let mut export = export?;
        match export.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(Bytes::from(chunk)), Some(export))),
            Ok(None) => {
                tracing::debug!(events = export.events(), "export complete");
                None
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    events = export.events(),
                    "export failed after its answer started: the transfer is cut off"
                );
                Some((Err(std::io::Error::other("export failed")), None))
            }
        }
    });
    let filename = format!(
        "attachment; filename=\"events-{}.{}\"",
        state.clock.now().format("%Y%m%dT%H%M%SZ"),
        format.extension()
    );
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        ),
        (
            header::CONTENT_DISPOSITION,
            HeaderValue::try_from(filename).map_err(|e| ApiError::Internal(e.to_string()))?,
        ),
        // The same URL exports different events from one minute to the next.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    Ok((headers, Body::from_stream(first.chain(rest).fuse())).into_response())
}

fn api_error(e: ExportError) -> ApiError {
    match e {
        ExportError::Store(e) => e.into(),
        ExportError::Encode(e) => ApiError::Internal(e),
        ExportError::Io(e) => ApiError::Internal(e.to_string()),
    }
}
