//! Typed queries: events, one event, sessions and their timelines, the errors log.
//! Each query is a plain `async fn` on reqwest, so it runs on the caller's Tokio
//! runtime (unlike sending, which has its own thread).

use std::future::Future;

use eye_core::{
    ErrorBody, ErrorQuery, ErrorRecord, EventQuery, Page, Pagination, Session, StoredEvent,
};
use futures_util::{Stream, StreamExt, stream};
use reqwest::Url;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::EyeClient;
use crate::error::RequestError;

impl EyeClient {
    /// One page of events matching `query`, newest first (`GET /events`). Needs a key
    /// with the `query` scope.
    ///
    /// ```no_run
    /// # async fn demo(client: eye_client::EyeClient) -> Result<(), eye_client::RequestError> {
    /// use eye_core::EventQuery;
    /// let page = client.events(&EventQuery::new().session("abc123").page_size(50)).await?;
    /// println!("{} events in all; first page has {}", page.count, page.results.len());
    /// # Ok(()) }
    /// ```
    pub async fn events(&self, query: &EventQuery) -> Result<Page<StoredEvent>, RequestError> {
        self.get(&["events"], &query.to_pairs()).await
    }

    /// Every event matching `query`, following pages from `query`'s page on, as a
    /// stream. Pages are offsets: events stored while the stream runs can shift them.
    ///
    /// ```no_run
    /// # async fn demo(client: eye_client::EyeClient) -> Result<(), eye_client::RequestError> {
    /// use futures_util::TryStreamExt;
    /// let query = eye_core::EventQuery::new().category("form_interaction").page_size(500);
    /// let all: Vec<eye_core::StoredEvent> = client.events_stream(query).try_collect().await?;
    /// # Ok(()) }
    /// ```
    pub fn events_stream(
        &self,
        query: EventQuery,
    ) -> impl Stream<Item = Result<StoredEvent, RequestError>> + Send + 'static {
        let client = self.clone();
        let first = query.pagination.page;
        paged(first, move |page| {
            let client = client.clone();
            let q = query.clone().page(page);
            async move { client.events(&q).await }
        })
    }

    /// One event by id (`GET /events/{id}`).
    pub async fn event(&self, id: Uuid) -> Result<StoredEvent, RequestError> {
        self.get(&["events", &id.to_string()], &[]).await
    }

    /// A session's summary (`GET /sessions/{session_id}`).
    pub async fn session(&self, session_id: &str) -> Result<Session, RequestError> {
        self.get(&["sessions", session_id], &[]).await
    }

    /// One page of a session's events, oldest first
    /// (`GET /sessions/{session_id}/events`).
    pub async fn session_events(
        &self,
        session_id: &str,
        pagination: Pagination,
    ) -> Result<Page<StoredEvent>, RequestError> {
        let pairs = [
            ("page", pagination.page.to_string()),
            ("page_size", pagination.page_size.to_string()),
        ];
        self.get(&["sessions", session_id, "events"], &pairs).await
    }

    /// A session's whole timeline, oldest first, as a stream.
    pub fn session_timeline(
        &self,
        session_id: &str,
    ) -> impl Stream<Item = Result<StoredEvent, RequestError>> + Send + 'static {
        let client = self.clone();
        let session_id = session_id.to_owned();
        paged(1, move |page| {
            let client = client.clone();
            let session_id = session_id.clone();
            async move {
                let p = Pagination {
                    page,
                    page_size: 500,
                };
                client.session_events(&session_id, p).await
            }
        })
    }

    /// One page of the errors log, newest first (`GET /errors`).
    pub async fn errors(&self, query: &ErrorQuery) -> Result<Page<ErrorRecord>, RequestError> {
        self.get(&["errors"], &query.to_pairs()).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        pairs: &[(&'static str, String)],
    ) -> Result<T, RequestError> {
        let url = self.url(segments)?;
        let mut req = self.inner.http.get(url).query(pairs);
        if let Some(key) = &self.inner.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(RequestError::Transport)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(RequestError::Transport)?;
        if status.is_success() {
            serde_json::from_slice(&body).map_err(|e| RequestError::Decode(e.to_string()))
        } else {
            Err(api_error(status.as_u16(), &body))
        }
    }

    fn url(&self, segments: &[&str]) -> Result<Url, RequestError> {
        let mut url = self.inner.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| RequestError::Decode("the base URL cannot take a path".into()))?;
            path.pop_if_empty();
            // Each segment is percent-encoded, so a session id cannot change the path.
            path.extend(segments);
        }
        Ok(url)
    }
}

/// The typed error for a non-2xx answer.
fn api_error(status: u16, body: &[u8]) -> RequestError {
    if let Ok(b) = serde_json::from_slice::<ErrorBody>(body) {
        return RequestError::Api {
            status,
            code: b.error.code,
            message: b.error.message,
            details: b.error.details,
        };
    }
    // DRF's `{"detail": "Invalid page."}` without the error object.
    let detail = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned));
    let code = match (status, detail.as_deref()) {
        (404, Some("Invalid page.")) => "invalid_page".to_owned(),
        _ => format!("http_{status}"),
    };
    RequestError::Api {
        status,
        code,
        message: detail
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()),
        details: serde_json::Value::Null,
    }
}

/// Follows pages from `first` while the server names a next one; an error ends the
/// stream after being yielded.
fn paged<T, F, Fut>(first: u64, fetch: F) -> impl Stream<Item = Result<T, RequestError>>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<Page<T>, RequestError>>,
{
    stream::unfold((fetch, Some(first)), |(mut fetch, page)| async move {
        let page = page?;
        let (items, next) = match fetch(page).await {
            Ok(p) => {
                let next = (p.next.is_some() && !p.results.is_empty()).then_some(page + 1);
                (p.results.into_iter().map(Ok).collect::<Vec<_>>(), next)
            }
            Err(e) => (vec![Err(e)], None),
        };
        Some((stream::iter(items), (fetch, next)))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drf_invalid_page_body_gets_the_invalid_page_code() {
        let e = api_error(404, br#"{"detail": "Invalid page."}"#);
        assert_eq!(e.code(), Some("invalid_page"));
    }

    #[test]
    fn error_body_code_is_kept() {
        let body = br#"{"error": {"code": "invalid_query", "message": "end_time: bad",
            "details": {"parameter": "end_time"}}}"#;
        let e = api_error(400, body);
        assert_eq!(e.code(), Some("invalid_query"));
        assert_eq!(e.status(), Some(400));
    }

    #[test]
    fn session_ids_are_percent_encoded_as_one_segment() {
        let client = EyeClient::builder("http://127.0.0.1:9/api")
            .build()
            .unwrap();
        let url = client.url(&["sessions", "a/b?c", "events"]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/api/sessions/a%2Fb%3Fc/events"
        );
    }
}
