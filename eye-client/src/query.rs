//! Typed queries: events, one event, sessions and their timelines, the errors log,
//! and the export.
//! Each query is a plain `async fn` on reqwest, so it runs on the caller's Tokio
//! runtime (unlike sending, which has its own thread).

use std::future::Future;

use eye_core::{
    Cursor, CursorParam, ErrorBody, ErrorQuery, ErrorRecord, EventQuery, Page, Pagination, Session,
    StoredEvent, TimelineQuery,
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

    /// Every event matching `query`, newest first, as a stream: a walk by cursor from
    /// `query.cursor` (the first page when unset; `query`'s page number is not used),
    /// `query`'s page size at a time. Each page costs the server the same at any
    /// depth, and events stored while the stream runs never shift it: no event is
    /// yielded twice, and every event stored before the stream started is yielded.
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
        let first = query.cursor.unwrap_or(CursorParam::First);
        walked(first, move |at| {
            let client = client.clone();
            let q = query.clone().cursor(at);
            async move { client.events(&q).await }
        })
    }

    /// The whole errors log matching `query`, newest first, as a stream walked by
    /// cursor (see [`EyeClient::events_stream`]).
    pub fn errors_stream(
        &self,
        query: ErrorQuery,
    ) -> impl Stream<Item = Result<ErrorRecord, RequestError>> + Send + 'static {
        let client = self.clone();
        let first = query.cursor.unwrap_or(CursorParam::First);
        walked(first, move |at| {
            let client = client.clone();
            let mut q = query.clone();
            q.cursor = Some(at);
            async move { client.errors(&q).await }
        })
    }

    /// Every event matching `query`'s filters, newest first, from one streamed
    /// `GET /events/export` (NDJSON): a single request however many events match,
    /// the server reading them 1,000 at a time, each event parsed as its line
    /// arrives. `query`'s paging is not used. The same events in the same order as
    /// [`EyeClient::events_stream`], in far fewer round trips. A transfer the server
    /// cuts off (its store failed mid-way) ends the stream with an error, never early
    /// without one; an error ends the stream after being yielded.
    ///
    /// ```no_run
    /// # async fn demo(client: eye_client::EyeClient) -> Result<(), eye_client::RequestError> {
    /// use futures_util::TryStreamExt;
    /// let query = eye_core::EventQuery::new().application("shop");
    /// let mut events = std::pin::pin!(client.export(&query));
    /// while let Some(event) = events.try_next().await? {
    ///     println!("{} {}", event.timestamp, event.event_type());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn export(
        &self,
        query: &EventQuery,
    ) -> impl Stream<Item = Result<StoredEvent, RequestError>> + Send + 'static {
        // The server refuses paging parameters on an export.
        let pairs: Vec<(&'static str, String)> = query
            .to_pairs()
            .into_iter()
            .filter(|(k, _)| !matches!(*k, "page" | "page_size" | "cursor"))
            .collect();
        let start = ExportRead {
            client: self.clone(),
            pairs,
            response: None,
            pending: Vec::new(),
        };
        stream::unfold(Some(start), |state| async move {
            let mut state = state?;
            let response = match state.response.as_mut() {
                Some(r) => r,
                None => match state.client.open(&["events", "export"], &state.pairs).await {
                    Ok(r) => state.response.insert(r),
                    Err(e) => return Some((vec![Err(e)], None)),
                },
            };
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    state.pending.extend_from_slice(&bytes);
                    let events = complete_lines(&mut state.pending);
                    let failed = events.iter().any(Result::is_err);
                    Some((events, (!failed).then_some(state)))
                }
                Ok(None) if state.pending.is_empty() => None,
                Ok(None) => Some((
                    vec![Err(RequestError::Decode(
                        "the export ended inside a line".into(),
                    ))],
                    None,
                )),
                Err(e) => Some((vec![Err(RequestError::Transport(e))], None)),
            }
        })
        .flat_map(stream::iter)
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

    /// One page of a session's events, oldest first, by page number or by cursor
    /// (`GET /sessions/{session_id}/events`).
    pub async fn timeline(&self, query: &TimelineQuery) -> Result<Page<StoredEvent>, RequestError> {
        self.get(
            &["sessions", &query.session_id, "events"],
            &query.to_pairs(),
        )
        .await
    }

    /// A session's whole timeline, oldest first, as a stream walked by cursor, 500
    /// events a page: events the session gets while the stream runs are yielded too
    /// (they come last), none twice.
    pub fn session_timeline(
        &self,
        session_id: &str,
    ) -> impl Stream<Item = Result<StoredEvent, RequestError>> + Send + 'static {
        let client = self.clone();
        let session_id = session_id.to_owned();
        walked(CursorParam::First, move |at| {
            let client = client.clone();
            let q = TimelineQuery {
                session_id: session_id.clone(),
                pagination: Pagination {
                    page: 1,
                    page_size: 500,
                },
                cursor: Some(at),
            };
            async move { client.timeline(&q).await }
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
        let resp = self.open(segments, pairs).await?;
        let body = resp.bytes().await.map_err(RequestError::Transport)?;
        serde_json::from_slice(&body).map_err(|e| RequestError::Decode(e.to_string()))
    }

    /// Sends a `GET` and returns the response of a 2xx, its body unread; the typed
    /// error of anything else.
    async fn open(
        &self,
        segments: &[&str],
        pairs: &[(&'static str, String)],
    ) -> Result<reqwest::Response, RequestError> {
        let url = self.url(segments)?;
        let mut req = self.inner.http.get(url).query(pairs);
        if let Some(key) = &self.inner.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(RequestError::Transport)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.map_err(RequestError::Transport)?;
        Err(api_error(status.as_u16(), &body))
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

/// An export being read: the request's parameters, its response once sent, and the
/// bytes of a line not yet complete.
struct ExportRead {
    client: EyeClient,
    pairs: Vec<(&'static str, String)>,
    response: Option<reqwest::Response>,
    pending: Vec<u8>,
}

/// Takes every complete line out of `pending`, each parsed as an event.
fn complete_lines(pending: &mut Vec<u8>) -> Vec<Result<StoredEvent, RequestError>> {
    let Some(end) = pending.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    let rest = pending.split_off(end + 1);
    let lines = std::mem::replace(pending, rest);
    lines
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).map_err(|e| RequestError::Decode(e.to_string())))
        .collect()
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

/// Follows `next` cursors from `first` while the server names one; an error ends the
/// stream after being yielded.
fn walked<T, F, Fut>(first: CursorParam, fetch: F) -> impl Stream<Item = Result<T, RequestError>>
where
    F: FnMut(CursorParam) -> Fut,
    Fut: Future<Output = Result<Page<T>, RequestError>>,
{
    stream::unfold((fetch, Some(first)), |(mut fetch, at)| async move {
        let at = at?;
        let (items, next) = match fetch(at).await {
            Ok(p) => match next_cursor(p.next.as_deref()) {
                Ok(next) => (p.results.into_iter().map(Ok).collect::<Vec<_>>(), next),
                Err(e) => (vec![Err(e)], None),
            },
            Err(e) => (vec![Err(e)], None),
        };
        Some((stream::iter(items), (fetch, next)))
    })
    .flatten()
}

/// The cursor of a `next` link, if there is one. Only the `cursor` parameter is
/// taken from the link: the request goes to the client's own base URL, whatever host
/// the server named.
fn next_cursor(next: Option<&str>) -> Result<Option<CursorParam>, RequestError> {
    let Some(next) = next else {
        return Ok(None);
    };
    let bad = || RequestError::Decode(format!("the next link has no valid cursor: {next}"));
    let url = Url::parse(next).map_err(|_| bad())?;
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(bad)?;
    Cursor::decode(&token)
        .map(|c| Some(CursorParam::At(c)))
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_gives_its_cursor_and_no_link_ends_the_walk() {
        let c = Cursor::new(
            eye_core::CursorListing::Events,
            eye_core::Direction::Next,
            1,
            2,
            3,
        );
        let link = format!("http://h/events?category=a&cursor={}", c.encode());
        assert_eq!(next_cursor(Some(&link)).unwrap(), Some(CursorParam::At(c)));
        assert_eq!(next_cursor(None).unwrap(), None);
        assert!(next_cursor(Some("http://h/events?page=2")).is_err());
    }

    #[test]
    fn export_lines_are_taken_whole_and_the_rest_kept_for_the_next_chunk() {
        let event = r#"{"id":"0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c","session_id":"s1","category":"page_interaction","name":"page_view","data":{"host":"a.com","path":"/"},"timestamp":"2022-01-01T00:00:00.000000Z","application":"shop","received_at":"2022-01-01T00:00:01.000000Z"}"#;
        let mut pending = format!("{event}\n{event}\n{}", &event[..10]).into_bytes();
        let events = complete_lines(&mut pending);
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(Result::is_ok));
        assert_eq!(pending, &event.as_bytes()[..10]);
        assert!(complete_lines(&mut pending).is_empty());
    }

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
