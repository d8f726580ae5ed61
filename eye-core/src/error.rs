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
    /// Not a problem of its own: the event had more than
    /// [`MAX_ERRORS_PER_EVENT`] problems and this entry stands for the rest
    /// ([`FieldError::omitted`] says how many).
    TooManyErrors,
}

impl ErrorCode {
    /// Every code, in declaration order: for documentation, dashboards' filter lists
    /// and tests that go over each. A test checks it against the variants the JSON
    /// Schema derive sees, so a new variant cannot be left out.
    ///
    /// ```
    /// use eye_core::ErrorCode;
    /// assert!(ErrorCode::ALL.contains(&ErrorCode::TimestampInFuture));
    /// ```
    pub const ALL: [ErrorCode; 16] = [
        Self::InvalidJson,
        Self::MissingField,
        Self::WrongType,
        Self::UnknownField,
        Self::UnknownEventType,
        Self::InvalidId,
        Self::InvalidSessionId,
        Self::InvalidHost,
        Self::InvalidPath,
        Self::InvalidElement,
        Self::FormTooDeep,
        Self::InvalidTimestamp,
        Self::TimestampInFuture,
        Self::EventTooLarge,
        Self::DeadLettered,
        Self::TooManyErrors,
    ];

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
            Self::TooManyErrors => "too_many_errors",
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
    /// Only on the [`ErrorCode::TooManyErrors`] entry: how many problems were found
    /// but not listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omitted: Option<u64>,
}

impl FieldError {
    /// A new error without a suggestion.
    pub fn new(path: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            code,
            message: message.into(),
            suggestion: None,
            omitted: None,
        }
    }

    /// The entry that ends a capped list: `omitted` more problems were found. Its path
    /// is the whole event (`""`).
    ///
    /// ```
    /// use eye_core::{ErrorCode, FieldError};
    /// let e = FieldError::too_many(9_980);
    /// assert_eq!(e.code, ErrorCode::TooManyErrors);
    /// assert_eq!(e.omitted, Some(9_980));
    /// assert_eq!(e.path, "");
    /// ```
    pub fn too_many(omitted: u64) -> Self {
        Self {
            omitted: Some(omitted),
            ..Self::new(
                "",
                ErrorCode::TooManyErrors,
                format!(
                    "{omitted} more problem(s) not listed: only the first \
                     {MAX_ERRORS_PER_EVENT} of an event are reported"
                ),
            )
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

/// Most problems listed for one event; the rest are counted in one
/// [`ErrorCode::TooManyErrors`] entry, so an answer (and an errors-log row) stays a
/// few kilobytes whatever the event holds: one unknown key costs about 8 bytes to
/// send and a hundred to report.
pub const MAX_ERRORS_PER_EVENT: usize = 20;

/// Caps a list of problems at [`MAX_ERRORS_PER_EVENT`], then one
/// [`FieldError::too_many`] entry counting the rest (those it replaces, plus
/// `already_omitted` found and never collected). Idempotent: a capped list comes back
/// unchanged.
///
/// ```
/// use eye_core::{ErrorCode, FieldError, MAX_ERRORS_PER_EVENT, cap_errors};
/// let many = vec![FieldError::new("/x", ErrorCode::UnknownField, "unknown"); 50];
/// let capped = cap_errors(many, 0);
/// assert_eq!(capped.len(), MAX_ERRORS_PER_EVENT + 1);
/// assert_eq!(capped[MAX_ERRORS_PER_EVENT].omitted, Some(30));
/// assert_eq!(cap_errors(capped.clone(), 0), capped);
/// ```
pub fn cap_errors(mut errors: Vec<FieldError>, already_omitted: u64) -> Vec<FieldError> {
    let mut omitted = already_omitted;
    if let Some(last) = errors.last()
        && last.code == ErrorCode::TooManyErrors
    {
        omitted += last.omitted.unwrap_or(0);
        errors.pop();
    }
    if errors.len() > MAX_ERRORS_PER_EVENT {
        omitted += (errors.len() - MAX_ERRORS_PER_EVENT) as u64;
        errors.truncate(MAX_ERRORS_PER_EVENT);
    }
    if omitted > 0 {
        errors.push(FieldError::too_many(omitted));
    }
    errors
}

/// Every problem found while parsing one event (at most [`MAX_ERRORS_PER_EVENT`] of
/// them listed, then a count of the rest). Never empty.
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
    /// Wraps a list of errors, capped by [`cap_errors`]; returns `None` when the list
    /// is empty, so a `ValidationErrors` value always carries at least one error.
    pub fn from_vec(errors: Vec<FieldError>) -> Option<Self> {
        Self::capped(errors, 0)
    }

    /// [`Self::from_vec`] for a collector that stopped collecting at the cap and
    /// counted `omitted` further problems.
    pub(crate) fn capped(errors: Vec<FieldError>, omitted: u64) -> Option<Self> {
        (!errors.is_empty()).then(|| Self(cap_errors(errors, omitted)))
    }

    /// A single error.
    pub fn single(error: FieldError) -> Self {
        Self(vec![error])
    }

    /// The errors, in the order they were found (the last one may be the
    /// [`ErrorCode::TooManyErrors`] summary).
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// How many problems were found, the unlisted ones included.
    ///
    /// ```
    /// use eye_core::{ErrorCode, FieldError, ValidationErrors};
    /// let many = vec![FieldError::new("/x", ErrorCode::UnknownField, "unknown"); 50];
    /// let errors = ValidationErrors::from_vec(many).unwrap();
    /// assert_eq!((errors.errors().len(), errors.found()), (21, 50));
    /// ```
    pub fn found(&self) -> u64 {
        self.0
            .iter()
            .map(|e| match e.code {
                ErrorCode::TooManyErrors => e.omitted.unwrap_or(0),
                _ => 1,
            })
            .sum()
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
