//! Validation errors: every problem found in one pass, each with a field path, a stable
//! machine code and a human message.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A stable, machine-readable reason why an event was rejected.
///
/// The serialised form (`snake_case`) is part of the HTTP contract: SDKs and dashboards
/// match on it, so variants are only ever added, never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The input is not JSON, or not a JSON object where one is required.
    InvalidJson,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type (a number where a string belongs, ...).
    WrongType,
    /// A field that the format does not define.
    UnknownField,
    /// The (category, name) pair is not one of the known event types.
    UnknownEventType,
    /// `id` is not a hyphenated UUID.
    InvalidId,
    /// `session_id` is empty, too long or holds control characters.
    InvalidSessionId,
    /// `data.host` is not a host name with an optional port.
    InvalidHost,
    /// `data.path` does not start with `/` or is too long.
    InvalidPath,
    /// `data.element` is empty or too long.
    InvalidElement,
    /// `data.form` nests deeper than allowed.
    FormTooDeep,
    /// `timestamp` is in none of the accepted formats, or names no real instant.
    InvalidTimestamp,
    /// `timestamp` lies further in the future than the allowed clock skew.
    TimestampInFuture,
    /// The event's JSON is larger than [`crate::MAX_EVENT_BYTES`].
    EventTooLarge,
    /// A queued message could not be decoded, or could not be stored after repeated
    /// deliveries; it was moved to the dead-letter stream (Redis queue).
    DeadLettered,
}

impl ErrorCode {
    /// The code as it appears on the wire, for logs and metric labels.
    ///
    /// ```
    /// assert_eq!(eye_core::ErrorCode::TimestampInFuture.as_str(), "timestamp_in_future");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::UnknownField => "unknown_field",
            Self::UnknownEventType => "unknown_event_type",
            Self::InvalidId => "invalid_id",
            Self::InvalidSessionId => "invalid_session_id",
            Self::InvalidHost => "invalid_host",
            Self::InvalidPath => "invalid_path",
            Self::InvalidElement => "invalid_element",
            Self::FormTooDeep => "form_too_deep",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::TimestampInFuture => "timestamp_in_future",
            Self::EventTooLarge => "event_too_large",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one field of an event.
///
/// ```
/// use eye_core::{ErrorCode, FieldError};
/// let e = FieldError::new("/data/host", ErrorCode::InvalidHost, "host must not be empty");
/// assert_eq!(
///     serde_json::to_value(&e).unwrap(),
///     serde_json::json!({"path": "/data/host", "code": "invalid_host",
///                        "message": "host must not be empty"}),
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldError {
    /// JSON-pointer-like path of the offending field, e.g. `/data/host`; `""` is the
    /// whole event.
    pub path: String,
    /// Stable machine code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// For an unknown event type that is a near miss: the canonical
    /// `category/name` pair the sender probably meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

impl FieldError {
    /// A new error without a suggestion.
    pub fn new(path: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            code,
            message: message.into(),
            suggestion: None,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {} ({})", self.message, self.code)
    }
}

/// Every problem found while parsing one event. Never empty.
///
/// Serialises as a plain list of [`FieldError`]s; displays as `path: message (code)`
/// joined by `; `, which is what logs and CLI output show.
///
/// ```
/// use eye_core::{ErrorCode, Event, ValidationContext};
/// let json = br#"{"session_id": "", "category": "page_interaction", "name": "page_view",
///     "data": {"host": "a.com", "path": "/"}, "timestamp": "yesterday"}"#;
/// let errors = Event::parse_json(json, &ValidationContext::system()).unwrap_err();
/// assert!(errors.has_code(ErrorCode::InvalidTimestamp));
/// let paths: Vec<_> = errors.errors().iter().map(|e| e.path.as_str()).collect();
/// assert_eq!(paths, ["/session_id", "/timestamp"]);
/// assert!(errors.to_string().starts_with("/session_id: session_id must not be empty (invalid_session_id); "));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[serde(transparent)]
pub struct ValidationErrors(Vec<FieldError>);

impl ValidationErrors {
    /// Wraps a list of errors; returns `None` when the list is empty, so a
    /// `ValidationErrors` value always carries at least one error.
    pub fn from_vec(errors: Vec<FieldError>) -> Option<Self> {
        (!errors.is_empty()).then_some(Self(errors))
    }

    /// A single error.
    pub fn single(error: FieldError) -> Self {
        Self(vec![error])
    }

    /// The errors, in the order they were found.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Consumes self, returning the errors.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    /// True when some error has this code.
    pub fn has_code(&self, code: ErrorCode) -> bool {
        self.0.iter().any(|e| e.code == code)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl IntoIterator for ValidationErrors {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
