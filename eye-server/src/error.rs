//! The API's one error type. 4xx bodies are precise and machine-readable
//! (`{"error": {"code", "message", "details"}}`); 5xx bodies are opaque and the cause is
//! logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use eye_core::{ErrorBody, ErrorDetail, QueryError, ValidationErrors};
use serde_json::{Value, json};

use crate::queue::QueueError;
use crate::store::{Scope, StoreError};

/// Seconds a client is told to wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A single event failed validation (400 `validation_failed`, details: the errors).
    #[error("event failed validation")]
    Validation(ValidationErrors),
    /// The body is not valid JSON, or not the expected shape (400 `malformed_json`).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The body is not `application/json` (415).
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The body (after decompression) is over the limit (413 `payload_too_large`).
    #[error("payload too large")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A batch holds more events than allowed (413 `batch_too_large`, split it).
    #[error("batch too large")]
    BatchTooLarge {
        /// Events sent.
        len: usize,
        /// Events allowed.
        max: usize,
    },
    /// The body cannot be read or decoded, e.g. corrupt gzip (400 `invalid_body`).
    #[error("invalid body: {0}")]
    InvalidBody(String),
    /// A `Content-Encoding` other than `gzip` or `identity` (415
    /// `unsupported_encoding`).
    #[error("unsupported content encoding {0:?}")]
    UnsupportedEncoding(String),
    /// The request took longer than the configured timeout (408 `timeout`).
    #[error("request timed out")]
    Timeout,
    /// The route exists but not with this method (405 `method_not_allowed`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A request the framework refused before a handler ran, e.g. a path parameter
    /// that is not UTF-8 (400 `bad_request`, the framework's explanation as message).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// An empty batch (400 `empty_batch`).
    #[error("empty batch")]
    EmptyBatch,
    /// Malformed query parameters (400 `invalid_query`).
    #[error("invalid query: {0}")]
    Query(QueryError),
    /// A page past the end or a malformed page number: 404 `{"detail": "Invalid page."}`
    /// as DRF answers, plus the usual error object.
    #[error("invalid page")]
    InvalidPage,
    /// No such resource (404 `not_found`).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Missing or unknown API key (401 with `WWW-Authenticate`).
    #[error("unauthorized")]
    Unauthorized,
    /// The key lacks the scope (403 `forbidden`).
    #[error("forbidden: needs scope {0:?}")]
    Forbidden(Scope),
    /// Basic credentials on a request another site made the browser send (403
    /// `cross_site_request`): the browser attached its cached key on its own.
    #[error("cross-site request with Basic credentials")]
    CrossSiteRequest,
    /// An API key in the URL that is not a publishable key (400 `secret_key_in_url`):
    /// URLs end up in logs, so only public keys may travel in them.
    #[error("secret key in the URL")]
    SecretKeyInUrl,
    /// A publishable key on a route other than ingest (403 `publishable_key`).
    #[error("publishable key used to read")]
    PublishableKey,
    /// A publishable key from a page whose origin its application does not list, or
    /// from a request without `Origin` (403 `origin_not_allowed`).
    #[error("origin not allowed for this publishable key")]
    OriginNotAllowed,
    /// A `sent_at` query parameter or `Eye-Sent-At` header that is not a timestamp
    /// (400 `invalid_sent_at`).
    #[error("invalid sent_at: {0}")]
    InvalidSentAt(String),
    /// The queue cannot take events now, or the store is busy or unreachable (503 with
    /// `Retry-After`): retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The application's rate limit refused the request (429 `rate_limited` with
    /// `Retry-After`); nothing of it was stored.
    #[error("rate limited")]
    RateLimited {
        /// How long until the request would fit.
        retry_after: std::time::Duration,
    },
    /// An erasure removed the session from the store (and suppressed it) but could not
    /// reach its dead letters (503 `erase_incomplete` with `Retry-After`): send the
    /// same request again.
    #[error("erasure incomplete: {0}")]
    EraseIncomplete(String),
    /// Anything else (500, opaque body, cause logged).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        if e.is_invalid_page() {
            ApiError::InvalidPage
        } else {
            ApiError::Query(e)
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    /// A store that is busy, locked or unreachable ([`StoreError::is_transient`]) is a
    /// 503 with `Retry-After`: the same request can succeed in a moment. Anything else
    /// is a 500.
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            ApiError::Unavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_)
            | Self::MalformedJson(_)
            | Self::InvalidBody(_)
            | Self::BadRequest(_)
            | Self::EmptyBatch
            | Self::SecretKeyInUrl
            | Self::InvalidSentAt(_)
            | Self::Query(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType | Self::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } | Self::BatchTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::InvalidPage | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_)
            | Self::CrossSiteRequest
            | Self::PublishableKey
            | Self::OriginNotAllowed => StatusCode::FORBIDDEN,
            Self::Unavailable(_) | Self::EraseIncomplete(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation_failed",
            Self::MalformedJson(_) => "malformed_json",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidBody(_) => "invalid_body",
            Self::BadRequest(_) => "bad_request",
            Self::UnsupportedEncoding(_) => "unsupported_encoding",
            Self::Timeout => "timeout",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BatchTooLarge { .. } => "batch_too_large",
            Self::EmptyBatch => "empty_batch",
            Self::Query(_) => "invalid_query",
            Self::InvalidPage => "invalid_page",
            Self::NotFound(_) => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::CrossSiteRequest => "cross_site_request",
            Self::SecretKeyInUrl => "secret_key_in_url",
            Self::PublishableKey => "publishable_key",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::InvalidSentAt(_) => "invalid_sent_at",
            Self::Unavailable(_) => "unavailable",
            Self::EraseIncomplete(_) => "erase_incomplete",
            Self::RateLimited { .. } => "rate_limited",
            Self::Internal(_) => "internal",
        }
    }

    fn message_and_details(&self) -> (String, Value) {
        match self {
            Self::Validation(errors) => (
                format!("the event has {} problem(s)", errors.found()),
                json!({ "errors": errors }),
            ),
            Self::MalformedJson(why) => (format!("request body is not valid JSON: {why}"), Value::Null),
            Self::UnsupportedMediaType => (
                "send the body as `Content-Type: application/json`".into(),
                Value::Null,
            ),
            Self::PayloadTooLarge { limit } => (
                format!("request body is larger than {limit} bytes (after decompression)"),
                json!({ "limit": limit }),
            ),
            Self::BatchTooLarge { len, max } => (
                format!("a batch holds at most {max} events; this one has {len}: split it"),
                json!({ "len": len, "max": max }),
            ),
            Self::InvalidBody(why) => (format!("cannot read the request body: {why}"), Value::Null),
            Self::BadRequest(why) => (why.clone(), Value::Null),
            Self::UnsupportedEncoding(enc) => (
                format!("Content-Encoding `{enc}` is not supported; send `gzip` or no encoding"),
                json!({ "supported": ["gzip", "identity"] }),
            ),
            Self::Timeout => (
                "the request took too long; if it was an ingest, retry it with the same event ids"
                    .into(),
                Value::Null,
            ),
            Self::MethodNotAllowed => (
                "this route does not answer that method; see the `Allow` header".into(),
                Value::Null,
            ),
            Self::EmptyBatch => ("the batch is empty".into(), Value::Null),
            Self::Query(e) => (
                e.message.clone(),
                json!({ "parameter": e.parameter, "code": e.code }),
            ),
            Self::InvalidPage => ("Invalid page.".into(), Value::Null),
            Self::NotFound(what) => (format!("{what} not found"), Value::Null),
            Self::Unauthorized => (
                "a valid API key is required: `Authorization: Bearer <key>` or HTTP Basic with the key as password".into(),
                Value::Null,
            ),
            Self::Forbidden(scope) => (
                format!("this API key lacks the `{}` scope", match scope {
                    Scope::Ingest => "ingest",
                    Scope::Query => "query",
                    Scope::Admin => "admin",
                }),
                Value::Null,
            ),
            Self::CrossSiteRequest => (
                "a request from another site may not use the browser's Basic credentials; \
                 send an `Authorization: Bearer` key"
                    .into(),
                Value::Null,
            ),
            Self::SecretKeyInUrl => (
                "only publishable keys (`eye_pk_...`) are accepted in the URL: a URL ends up \
                 in logs, so send a secret key as `Authorization: Bearer <key>` (and create a \
                 new one: this one may have leaked)"
                    .into(),
                Value::Null,
            ),
            Self::PublishableKey => (
                "a publishable key can only send events (`POST /events`) from its \
                 application's origins; reading needs a secret key with the `query` scope"
                    .into(),
                Value::Null,
            ),
            Self::OriginNotAllowed => (
                "this publishable key only takes events from pages of its application's \
                 origins (`Origin` header); see `eye-server apps list`"
                    .into(),
                Value::Null,
            ),
            Self::InvalidSentAt(why) => (
                format!(
                    "`sent_at` (or `Eye-Sent-At`) must be the time the request was sent, \
                     RFC 3339 such as `2022-04-11T01:08:01.407Z`: {why}"
                ),
                Value::Null,
            ),
            Self::Unavailable(_) => (
                "The Eye cannot take events right now; nothing was accepted, retry later".into(),
                Value::Null,
            ),
            Self::RateLimited { retry_after } => (
                "this application's rate limit is reached; nothing was accepted, retry after \
                 `Retry-After` seconds with the same event ids"
                    .into(),
                json!({ "retry_after_ms": u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX) }),
            ),
            Self::EraseIncomplete(_) => (
                "the session is erased from the store, not yet from the dead letters; send \
                 the same request again"
                    .into(),
                Value::Null,
            ),
            Self::Internal(_) => ("internal error".into(), Value::Null),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(cause) => tracing::error!(%cause, "internal error"),
            Self::Unavailable(cause) | Self::EraseIncomplete(cause) => {
                tracing::warn!(%cause, "answering 503")
            }
            _ => {}
        }
        let (message, details) = self.message_and_details();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
                details,
            },
        };
        let mut value = serde_json::to_value(&body).unwrap_or(Value::Null);
        if matches!(self, Self::InvalidPage) {
            value["detail"] = Value::from("Invalid page.");
        }
        let mut response = (status, Json(value)).into_response();
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized => {
                // Basic first so a browser prompts for the key; SDKs use Bearer.
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="the-eye", charset="UTF-8""#),
                );
                headers.append(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="the-eye""#),
                );
            }
            Self::Unavailable(_) | Self::EraseIncomplete(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            Self::RateLimited { retry_after } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            _ => {}
        }
        response
    }
}
