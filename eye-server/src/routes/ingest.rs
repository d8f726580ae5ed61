//! `POST /events`: one event or a batch, validated at the edge, then queued.
//!
//! What reaches the queue is already parsed ([`eye_core::Event`]); the raw JSON of a
//! rejected event only travels to the errors log. The handler answers once the queue
//! says the messages are durable (appended to the journal by default, committed to the
//! store with `--ack-after store`, appended to the stream in Redis mode), so a 2xx is a
//! promise:
//!
//! - one valid event: `201` with an [`IngestResponse`] and `Location: /events/{id}`;
//! - one invalid event: `400 validation_failed` with every problem;
//! - a batch (JSON array of 1 to [`MAX_BATCH_EVENTS`]): `201` with one result per event
//!   when at least one was accepted, `400` with the same body when none was;
//! - the queue cannot take them: `503` with `Retry-After`, nothing accepted.
//!
//! For the browser tracker: a publishable key may come as `?key=` and its body as
//! `text/plain` (a CORS simple request); answers to a publishable key's own origins
//! carry the CORS grant, errors included, and `OPTIONS` answers preflights
//! (`crate::auth`'s `publishable` module has the rules).
//!
//! Clock skew: when the request says when it was sent (`?sent_at=` or `Eye-Sent-At`,
//! by the sender's clock), every event's timestamp is moved by the server's receive
//! time minus `sent_at` before validation, and the sender's own timestamp is kept as
//! `client_timestamp` ([`eye_core::ValidationContext::with_sent_at`]).

use std::io::Read;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use eye_core::{
    ErrorCode, Event, EventResult, FieldError, IngestResponse, MAX_BATCH_EVENTS, ValidationContext,
    ValidationErrors, truncate_to_micros,
};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::auth::{Caller, grant_cors, grant_preflight, record_application, request_origin};
use crate::error::ApiError;
use crate::message::{AcceptedEvent, Message, RejectedEvent};
use crate::state::AppState;
use crate::store::Scope;

/// `POST /events` and `POST /events/`, and their CORS preflights.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/events", post(create_events).options(preflight))
        .route("/events/", post(create_events).options(preflight))
}

/// The query parameters ingest reads (any other is ignored).
#[derive(Debug, Default, serde::Deserialize)]
struct IngestParams {
    /// A publishable key (a beacon cannot set `Authorization`).
    key: Option<String>,
    /// When the request was sent, by the sender's clock.
    sent_at: Option<String>,
}

impl IngestParams {
    fn of(uri: &Uri) -> Result<Self, ApiError> {
        if uri.query().is_none() {
            return Ok(Self::default());
        }
        Query::<Self>::try_from_uri(uri)
            .map(|Query(p)| p)
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// The header form of `sent_at`, for clients that would rather not touch the URL.
pub const SENT_AT_HEADER: &str = "eye-sent-at";

/// The request's send time by the sender's clock: `?sent_at=`, else `Eye-Sent-At`.
fn sent_at(params: &IngestParams, headers: &HeaderMap) -> Result<Option<DateTime<Utc>>, ApiError> {
    let text = match (&params.sent_at, headers.get(SENT_AT_HEADER)) {
        (Some(q), _) => q.as_str(),
        (None, Some(h)) => h
            .to_str()
            .map_err(|_| ApiError::InvalidSentAt("the header is not text".into()))?,
        (None, None) => return Ok(None),
    };
    eye_core::parse_timestamp(text.trim())
        .map(|t| Some(truncate_to_micros(t)))
        .ok_or_else(|| {
            let shown: String = text.chars().take(64).collect();
            ApiError::InvalidSentAt(format!("`{shown}` is not a timestamp"))
        })
}

/// Authenticates, ingests, and grants CORS to a publishable key's own origins on
/// whatever the answer is (a 429 or 400 included), so the tracker can read it.
async fn create_events(State(state): State<AppState>, request: Request) -> Response {
    // The request's own parts, not the `Method`, `Uri` and `HeaderMap` extractors:
    // those clone the header map and the URI for every request (issue 18).
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let params = match IngestParams::of(&uri) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let caller = match state
        .auth
        .authenticate(&method, &headers, params.key.as_deref(), Scope::Ingest)
        .await
    {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    record_application(&caller);
    let mut response = match ingest(&state, &caller, &params, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if caller.is_publishable()
        && let Some(origin) = request_origin(&headers)
    {
        // `authenticate` let the key in only from one of its origins.
        grant_cors(response.headers_mut(), &origin);
    }
    response
}

/// `OPTIONS /events`: a CORS preflight (a page posting `application/json` or with
/// `Eye-Sent-At`; the tracker's own requests are simple and need none). Granted only
/// for a publishable `?key=` from one of its origins; a `key` is checked as ingest
/// checks it (400, 401, 403), and without one the answer is a `204` without a grant,
/// so the browser blocks the request.
async fn preflight(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let asked = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .is_some_and(|m| m == "POST");
    let key = match IngestParams::of(&uri) {
        Ok(p) => p.key,
        Err(e) => return e.into_response(),
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    let Some(key) = key else {
        return response;
    };
    // A key is checked as ingest would check it (400 for a secret key, 401 unknown,
    // 403 from another origin), whether or not the request is a preflight.
    match state
        .auth
        .authenticate(&method, &headers, Some(&key), Scope::Ingest)
        .await
    {
        Ok(caller) => {
            if asked
                && caller.is_publishable()
                && let Some(origin) = request_origin(&headers)
            {
                grant_preflight(response.headers_mut(), &origin);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn ingest(
    state: &AppState,
    caller: &Caller,
    params: &IngestParams,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_content_type(headers, caller.is_publishable())?;
    let sent_at = sent_at(params, headers)?;
    let limit = state.config.http.max_body_bytes;
    let raw = read_body(body, headers, limit).await?;
    let now = truncate_to_micros(state.clock.now());
    let mut ctx =
        ValidationContext::at(now).with_max_clock_skew(state.config.ingest.max_clock_skew());
    if let Some(sent_at) = sent_at {
        ctx = ctx.with_sent_at(sent_at);
    }
    let edge = Edge {
        ctx,
        corrected: sent_at.is_some(),
        max_event_bytes: state.config.ingest.max_event_bytes,
        caller,
        now,
    };
    let parsed = match parse_body(&raw, &edge) {
        Ok(parsed) => parsed,
        Err(error) => {
            if let ApiError::MalformedJson(why) = &error {
                // Not an event at all, but the team monitors these too.
                let rejected = edge.rejected(
                    ValidationErrors::single(FieldError::new(
                        "",
                        ErrorCode::InvalidJson,
                        why.clone(),
                    )),
                    &String::from_utf8_lossy(&raw),
                );
                log_rejections(state, vec![Message::RejectedV1(rejected)]).await;
            }
            return Err(error);
        }
    };
    if let Some(rate) = caller.rate_limit {
        let events = match &parsed {
            Parsed::Single(_) => 1,
            Parsed::Batch(outcomes) => outcomes.len() as u64,
        };
        // Past the limit nothing of the request is queued, rejections included.
        if let Err(refused) = state.limiter.check(&caller.application, rate, events).await {
            return Err(ApiError::RateLimited {
                retry_after: refused.retry_after,
            });
        }
    }
    respond(state, parsed).await
}

/// What the edge needs to turn JSON into queue messages.
struct Edge<'a> {
    ctx: ValidationContext,
    /// Whether timestamps are corrected by `sent_at` (then each event keeps its
    /// sender's own timestamp as `client_timestamp`).
    corrected: bool,
    max_event_bytes: usize,
    caller: &'a Caller,
    now: DateTime<Utc>,
}

/// One event of the request, judged.
enum Outcome {
    Accepted(AcceptedEvent),
    Rejected(RejectedEvent, ValidationErrors),
}

/// The request, judged: one event, or a batch.
enum Parsed {
    Single(Outcome),
    Batch(Vec<Outcome>),
}

impl Edge<'_> {
    /// Judges one event given as JSON text: a valid one in one typed pass
    /// ([`Event::parse_valid`]), anything else through its JSON value, which explains
    /// every problem. `Err` when the text is not JSON at all. `json` is the event's
    /// own text (what the size limit and a rejection see), `text` what is parsed (the
    /// same, perhaps with whitespace around it).
    fn judge_text(&self, json: &str, text: &str) -> Result<Outcome, serde_json::Error> {
        if json.len() <= self.max_event_bytes
            && let Some(event) = Event::parse_valid(text, &self.ctx)
        {
            return Ok(self.accepted(event));
        }
        let value = serde_json::from_str::<Value>(text)?;
        Ok(self.judge(json, value))
    }

    /// Judges one event given as raw JSON text (already known to be valid JSON).
    fn judge(&self, json: &str, value: Value) -> Outcome {
        let result = if json.len() > self.max_event_bytes {
            Err(ValidationErrors::single(FieldError::new(
                "",
                ErrorCode::EventTooLarge,
                format!(
                    "event is {} bytes of JSON; at most {} are allowed",
                    json.len(),
                    self.max_event_bytes
                ),
            )))
        } else {
            // Moves a submitted form into the event instead of copying it.
            Event::parse_owned(value, &self.ctx)
        };
        match result {
            Ok(event) => self.accepted(event),
            Err(errors) => Outcome::Rejected(self.rejected(errors.clone(), json), errors),
        }
    }

    fn accepted(&self, event: Event) -> Outcome {
        Outcome::Accepted(AcceptedEvent {
            client_timestamp: self
                .corrected
                .then(|| self.ctx.client_time(event.timestamp())),
            id: event.id().unwrap_or_else(Uuid::now_v7),
            application: self.caller.application.clone(),
            received_at: self.now,
            event,
        })
    }

    fn rejected(&self, errors: ValidationErrors, payload: &str) -> RejectedEvent {
        RejectedEvent::new(
            self.caller.application.clone(),
            self.now,
            errors.into_vec(),
            payload,
        )
    }
}

/// Parses the body as one event (a JSON object) or a batch (a JSON array).
fn parse_body(raw: &[u8], edge: &Edge<'_>) -> Result<Parsed, ApiError> {
    // One UTF-8 check of the whole body; serde_json then reads its strings from a
    // `str` without checking each again (issue 18's profile: 2,500 instructions).
    let text = std::str::from_utf8(raw)
        .map_err(|e| ApiError::MalformedJson(format!("the body is not UTF-8: {e}")))?;
    let first = text.bytes().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err(ApiError::MalformedJson(
            "the body is empty; send one event object or an array of events".into(),
        )),
        Some(b'[') => {
            let items: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
            if items.is_empty() {
                return Err(ApiError::EmptyBatch);
            }
            if items.len() > MAX_BATCH_EVENTS {
                return Err(ApiError::BatchTooLarge {
                    len: items.len(),
                    max: MAX_BATCH_EVENTS,
                });
            }
            // Each item on its own: one that serde cannot hold as a value (nested too
            // deep, a number out of range) is rejected alone, not with the whole batch.
            let outcomes = items
                .into_iter()
                .map(|item| match edge.judge_text(item.get(), item.get()) {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        let errors = ValidationErrors::single(FieldError::new(
                            "",
                            ErrorCode::InvalidJson,
                            format!("malformed JSON: {e}"),
                        ));
                        Outcome::Rejected(edge.rejected(errors.clone(), item.get()), errors)
                    }
                })
                .collect();
            Ok(Parsed::Batch(outcomes))
        }
        Some(_) => edge
            .judge_text(text.trim(), text)
            .map(Parsed::Single)
            .map_err(|e| ApiError::MalformedJson(e.to_string())),
    }
}

/// Queues what was judged and answers.
async fn respond(state: &AppState, parsed: Parsed) -> Result<Response, ApiError> {
    match parsed {
        Parsed::Single(Outcome::Rejected(rejected, errors)) => {
            count(0, 1);
            log_rejections(state, vec![Message::RejectedV1(rejected)]).await;
            Err(ApiError::Validation(errors))
        }
        Parsed::Single(Outcome::Accepted(event)) => {
            let id = event.id;
            state.queue.enqueue(vec![Message::EventV1(event)]).await?;
            count(1, 0);
            let mut id_buffer = Uuid::encode_buffer();
            let id_text = id.hyphenated().encode_lower(&mut id_buffer);
            let mut response = (
                StatusCode::CREATED,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                one_accepted_body(id_text),
            )
                .into_response();
            // Not `format!`: its machinery cost more than the rest of the header work.
            if let Ok(location) = HeaderValue::from_str(&["/events/", id_text].concat()) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            Ok(response)
        }
        Parsed::Batch(outcomes) => {
            let mut messages = Vec::with_capacity(outcomes.len());
            let mut results = Vec::with_capacity(outcomes.len());
            for outcome in outcomes {
                match outcome {
                    Outcome::Accepted(event) => {
                        results.push(EventResult::Accepted { id: event.id });
                        messages.push(Message::EventV1(event));
                    }
                    Outcome::Rejected(rejected, errors) => {
                        results.push(EventResult::Rejected { errors });
                        messages.push(Message::RejectedV1(rejected));
                    }
                }
            }
            let accepted = results
                .iter()
                .filter(|r| matches!(r, EventResult::Accepted { .. }))
                .count();
            let rejected = results.len() - accepted;
            if accepted > 0 {
                // Accepted events and the batch's rejections go to the queue in one
                // enqueue, so they are acknowledged together.
                state.queue.enqueue(messages).await?;
            } else {
                log_rejections(state, messages).await;
            }
            count(accepted, rejected);
            let status = if accepted > 0 {
                StatusCode::CREATED
            } else {
                StatusCode::BAD_REQUEST
            };
            let body = IngestResponse {
                accepted,
                rejected,
                results,
            };
            Ok((status, axum::Json(body)).into_response())
        }
    }
}

/// The answer to one accepted event (its hyphenated id): the [`IngestResponse`] of it
/// as serde writes it (the unit test checks that), written directly, since it is the
/// ack path's commonest answer and serialising it cost ~2,500 instructions (issue 18).
fn one_accepted_body(id: &str) -> Vec<u8> {
    [
        r#"{"accepted":1,"rejected":0,"results":[{"status":"accepted","id":""#,
        id,
        r#""}]}"#,
    ]
    .concat()
    .into_bytes()
}

/// Records rejections in the errors log. The client's answer (400) does not depend on
/// it, so a failure is logged and counted rather than turned into a 503 (which would
/// make the client retry an event that can never be accepted).
async fn log_rejections(state: &AppState, messages: Vec<Message>) {
    let n = messages.len();
    if let Err(e) = state.queue.enqueue(messages).await {
        metrics::counter!(crate::metrics::names::ERRORS_LOG_DROPPED).increment(n as u64);
        tracing::warn!(error = %e, rejected = n, "could not record rejected events in the errors log");
    }
}

fn count(accepted: usize, rejected: usize) {
    use crate::metrics::{names, static_counter};
    if accepted > 0 {
        static_counter(names::INGEST_EVENTS, &[("outcome", "accepted")]).increment(accepted as u64);
    }
    if rejected > 0 {
        static_counter(names::INGEST_EVENTS, &[("outcome", "rejected")]).increment(rejected as u64);
    }
}

/// Accepts `application/json` and `application/*+json`, with any parameters, and a
/// missing `Content-Type`; from a publishable key also `text/plain` holding the same
/// JSON (what `sendBeacon` and a CORS simple request can send).
fn check_content_type(headers: &HeaderMap, publishable: bool) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let value = value.to_str().map_err(|_| ApiError::UnsupportedMediaType)?;
    let mime = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = mime == "application/json"
        || (mime.starts_with("application/") && mime.ends_with("+json"))
        || (publishable && mime == "text/plain");
    if json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// Reads the body, at most `limit` bytes on the wire and `limit` bytes after gzip
/// decompression (so a small gzip bomb cannot expand past it).
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    // Every `Content-Encoding` line: two `gzip` lines mean gzip twice, not once.
    let encoding = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(", ");
    let gzip = match encoding.as_str() {
        "" | "identity" => false,
        "gzip" | "x-gzip" => true,
        other => return Err(ApiError::UnsupportedEncoding(other.to_owned())),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| body_error(e, limit))?;
    if !gzip {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
    flate2::read::MultiGzDecoder::new(&raw[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::InvalidBody(format!("corrupt gzip: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(out.into())
}

fn body_error(error: axum::Error, limit: usize) -> ApiError {
    let inner = error.into_inner();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return ApiError::PayloadTooLarge { limit };
        }
        source = e.source();
    }
    ApiError::InvalidBody(inner.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_to_one_accepted_event_is_what_serde_writes() {
        for id in [Uuid::nil(), Uuid::max(), Uuid::now_v7()] {
            let serde = serde_json::to_vec(&IngestResponse {
                accepted: 1,
                rejected: 0,
                results: vec![EventResult::Accepted { id }],
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(one_accepted_body(&id.hyphenated().to_string())).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }

    #[test]
    fn json_content_types_are_accepted_others_refused() {
        let mut h = HeaderMap::new();
        assert!(check_content_type(&h, false).is_ok());
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/vnd.eye+json",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(check_content_type(&h, false).is_ok(), "{ok}");
        }
        for bad in ["text/plain", "application/x-www-form-urlencoded"] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(bad));
            assert!(check_content_type(&h, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_plain_is_json_only_for_publishable_keys() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain;charset=UTF-8"),
        );
        assert!(check_content_type(&h, true).is_ok());
        assert!(check_content_type(&h, false).is_err());
    }
}
