//! The client's error types: one per operation family.

use std::fmt;

/// Why [`crate::EyeClient::track`] did not take an event. Either way the event was
/// dropped and counted in [`crate::Stats::dropped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// The buffer is full: the server is slower than the application or unreachable.
    #[error("the event buffer is full; the event was dropped")]
    BufferFull,
    /// The client was shut down.
    #[error("the client is shut down; the event was dropped")]
    Closed,
}

/// Why [`crate::EyeClientBuilder::build`] refused its settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The base URL does not parse or is not `http`/`https`.
    #[error("invalid base URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The setting's name.
        setting: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    /// The background thread or its runtime could not be started.
    #[error("cannot start the background sender: {0}")]
    Worker(#[source] std::io::Error),
    /// Another client (in this process or another) owns the outbox directory. Only
    /// one may, so that two never deliver or delete the same segments.
    #[error("the outbox `{}` is in use by another client", dir.display())]
    OutboxLocked {
        /// The directory.
        dir: std::path::PathBuf,
    },
    /// The outbox directory cannot be created, locked or read.
    #[error("cannot open the outbox `{}`: {source}", dir.display())]
    Outbox {
        /// The directory.
        dir: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a query failed. A server answer carries the server's stable error code
/// (`invalid_query`, `invalid_page`, `not_found`, `unauthorized`, `forbidden`, ...).
///
/// ```
/// use eye_client::RequestError;
/// let e = RequestError::Api {
///     status: 404,
///     code: "not_found".into(),
///     message: "session not found".into(),
///     details: serde_json::Value::Null,
/// };
/// assert_eq!(e.code(), Some("not_found"));
/// assert!(e.is_not_found());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The server answered with an error.
    #[error("the server answered {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's stable machine code.
        code: String,
        /// The server's explanation.
        message: String,
        /// Structured details (for example the offending query parameter).
        details: serde_json::Value,
    },
    /// The request did not get an answer (connection refused, timeout, ...).
    #[error("the request failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// The server answered 2xx with a body this client does not understand.
    #[error("unexpected response body: {0}")]
    Decode(String),
}

impl RequestError {
    /// The server's error code, when the server answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for a 404 (no such event or session, or a page past the end).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True for a 401 or 403: the key is missing, unknown, revoked or lacks the
    /// `query` scope.
    pub fn is_auth(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }
}

/// Why the client gave up on an event without the server storing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailureReason {
    /// The server refused the whole request and retrying cannot help (400 without
    /// per-event results, 401, 403, 404, 415, ...).
    #[error("refused with {status} {code}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's error code.
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// Every retry failed (server down, 5xx, 429, timeouts).
    #[error("gave up after {attempts} attempts; last error: {last_error}")]
    RetriesExhausted {
        /// Requests made.
        attempts: u32,
        /// The last problem seen.
        last_error: String,
    },
    /// The server answered, but not with one ingest result per event: a 2xx whose body
    /// is not the Eye's (a wrong base URL, a captive portal, a proxy's page), too few
    /// or too many results, or a result accepting another event's id. Not retried: it
    /// is most likely a misconfiguration. The event may or may not have been stored.
    #[error("unexpected response (HTTP {status}): {detail}")]
    UnexpectedResponse {
        /// HTTP status.
        status: u16,
        /// What was wrong with the answer.
        detail: String,
    },
    /// The event alone is larger than the server's body limit (413 for one event).
    #[error("the event alone is larger than the server accepts")]
    TooLarge,
    /// The batch could not be encoded.
    #[error("cannot encode the batch: {0}")]
    Encode(String),
}

/// A short description of a transport error: its kind and innermost cause.
pub(crate) struct Brief<'a>(pub &'a reqwest::Error);

impl fmt::Display for Brief<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        let kind = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connection failed"
        } else if e.is_body() || e.is_decode() {
            "body error"
        } else {
            "request error"
        };
        // The innermost cause says the most ("Connection refused", ...).
        let mut cause: &dyn std::error::Error = e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        write!(f, "{kind}: {cause}")
    }
}
