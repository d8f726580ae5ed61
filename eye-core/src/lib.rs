//! The Eye's shared model: the validated event, the query model and the JSON Schema of
//! the wire format. Pure: no I/O, no async runtime, no network or database crates, so
//! the server, the SDK and WebAssembly frontends all build on the same definitions.
//!
//! Parse, don't validate: an [`Event`] can only exist if it passed every rule, and a
//! failed parse reports every problem at once, each with a field path, a stable
//! [`ErrorCode`] and a message.
//!
//! ```
//! use eye_core::{ErrorCode, Event, ValidationContext};
//!
//! let ctx = ValidationContext::system();
//! let ok = br#"{"session_id": "123", "category": "page_interaction", "name": "cta_click",
//!     "data": {"host": "www.consumeraffairs.com", "path": "/", "element": "chat bubble"},
//!     "timestamp": "2022-04-11T01:08:01.407119"}"#;
//! let event = Event::parse_json(ok, &ctx).unwrap();
//! assert_eq!(event.event_type().name(), "cta_click");
//!
//! // The original brief's spelling is rejected with a suggestion.
//! let near_miss = br#"{"session_id": "123", "category": "page interaction", "name": "pageview",
//!     "data": {"host": "www.consumeraffairs.com", "path": "/"},
//!     "timestamp": "2022-04-11T01:08:01"}"#;
//! let errors = Event::parse_json(near_miss, &ctx).unwrap_err();
//! let e = &errors.errors()[0];
//! assert_eq!(e.code, ErrorCode::UnknownEventType);
//! assert_eq!(e.suggestion.as_deref(), Some("page_interaction/page_view"));
//! ```
//!
//! # Layout
//!
//! - `error`: [`ErrorCode`], [`FieldError`], [`ValidationErrors`] (capped at
//!   [`MAX_ERRORS_PER_EVENT`] listed problems per event).
//! - `fields`: validated strings ([`SessionId`], [`Host`], [`UrlPath`], [`Element`]), each
//!   declaring its own JSON Schema from the constants its parser checks.
//! - `timestamp`: the accepted timestamp formats ([`parse_timestamp`],
//!   [`format_timestamp`]).
//! - `event`: [`Event`], [`EventType`], [`Payload`] and the per-type payloads.
//! - `parse`: wire JSON to [`Event`] with a [`ValidationContext`] (clock and skew):
//!   [`Event::parse_json`] (bytes, with the size limit), [`Event::parse_value`] and
//!   [`Event::parse_owned`].
//! - `direct`: [`Event::parse_valid`], one typed pass from JSON text to a valid
//!   event (no `Value`), which gives up on anything else so the general parser can
//!   explain it.
//! - `query`: [`EventQuery`], [`ErrorQuery`], [`Pagination`], [`Page`].
//! - `records`: API answers shared by server and SDK ([`StoredEvent`], [`Session`],
//!   [`ErrorRecord`], [`IngestResponse`], [`ErrorBody`]).
//! - `schema`: [`event_schema`], the JSON Schema of the wire format.

mod cursor;
mod direct;
mod error;
mod event;
mod fields;
mod parse;
mod query;
mod records;
mod schema;
mod timestamp;

pub use cursor::{
    CURSOR_PATTERN, Cursor, CursorError, CursorListing, CursorParam, Direction, filters_fingerprint,
};
pub use error::{ErrorCode, FieldError, MAX_ERRORS_PER_EVENT, ValidationErrors, cap_errors};
pub use event::{
    CtaClick, Event, EventType, Form, FormSubmit, MAX_EVENT_BYTES, MAX_FORM_DEPTH, PageView,
    Payload,
};
pub use fields::{Element, FieldProblem, Host, SessionId, UrlPath};
pub use parse::{EVENT_FIELDS, ValidationContext};
pub use query::{
    ErrorQuery, EventQuery, Page, PageLimits, Pagination, QueryError, TimeRange, TimelineQuery,
};
pub use records::{
    ErrorBody, ErrorDetail, ErrorRecord, EventResult, IngestResponse, Session, StoredEvent,
};
pub use schema::{RULES_OUTSIDE_SCHEMA, event_schema, event_schema_json};
pub use timestamp::{
    QUERY_TIME_PATTERN, format_timestamp, parse_timestamp, serde_micros, truncate_to_micros,
};

/// The largest batch `POST /events` accepts.
pub const MAX_BATCH_EVENTS: usize = 1000;
