//! JSON Schema export of the wire format, derived from the same types that validate it.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings, json_schema};
use serde::Deserialize;

use crate::event::{CtaClick, FormSubmit, PageView};
use crate::fields::SessionId;
use crate::timestamp::TIMESTAMP_PATTERN;

/// Rules of [`crate::Event::parse_json`] that a JSON Schema cannot express. Everything
/// else the parser checks, the schema checks too, and the reverse; a test proves it.
pub const RULES_OUTSIDE_SCHEMA: [&str; 4] = [
    "timestamp_in_future: a timestamp later than now plus the allowed clock skew (needs a clock)",
    "invalid_timestamp: a timestamp whose UTC instant falls outside the years 0000 to 9999, such as 0000-01-01T00:00:00+01:00 (the pattern checks the calendar, not offsets)",
    "event_too_large: more than 32 KiB of JSON (a schema sees values, not bytes)",
    "form_too_deep: data.form nested more than 32 levels",
];

macro_rules! const_string {
    ($name:ident, $value:literal) => {
        struct $name;
        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"type": "string", "const": $value})
            }
        }
    };
}

const_string!(PageInteraction, "page_interaction");
const_string!(FormInteraction, "form_interaction");
const_string!(PageViewName, "page_view");
const_string!(CtaClickName, "cta_click");
const_string!(SubmitName, "submit");

/// An event timestamp in one of the accepted formats.
struct Timestamp;

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "When the interaction happened: RFC 3339 with offset (`T` and `Z` in either case), ISO 8601 without offset (taken as UTC), or `YYYY-MM-DD HH:MM:SS.ffffff`; 0 to 9 fractional digits, kept to microseconds. Must not be later than the server's clock plus its allowed skew (5 minutes by default).",
            "type": "string",
            "pattern": TIMESTAMP_PATTERN
        })
    }
}

/// The idempotency key: a hyphenated UUID.
struct EventId;

impl JsonSchema for EventId {
    fn schema_name() -> Cow<'static, str> {
        "EventId".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Idempotency key chosen by the sender (a UUID, v7 recommended; not the nil UUID, which would make every event a duplicate of the first); assigned by the server when absent or null.",
            "type": ["string", "null"],
            "pattern": "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
            "not": {"const": "00000000-0000-0000-0000-000000000000"}
        })
    }
}

macro_rules! wire_event {
    ($(#[$meta:meta])* $name:ident, $category:literal, $event_name:literal, $data:ty) => {
        $(#[$meta])*
        #[derive(Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct $name {
            #[serde(default)]
            #[schemars(with = "EventId")]
            id: Option<String>,
            session_id: SessionId,
            #[schemars(with = $category)]
            category: String,
            #[schemars(with = $event_name)]
            name: String,
            data: $data,
            #[schemars(with = "Timestamp")]
            timestamp: String,
        }
    };
}

wire_event!(
    /// A page view.
    PageViewEvent, "PageInteraction", "PageViewName", PageView
);
wire_event!(
    /// A click on a call to action.
    CtaClickEvent, "PageInteraction", "CtaClickName", CtaClick
);
wire_event!(
    /// A form submission.
    FormSubmitEvent, "FormInteraction", "SubmitName", FormSubmit
);

/// One event of any type.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
#[schemars(rename = "Event")]
enum WireEvent {
    PageView(PageViewEvent),
    CtaClick(CtaClickEvent),
    FormSubmit(FormSubmitEvent),
}

/// The JSON Schema (draft 2020-12) of one event on the wire: one `oneOf` branch per
/// event type, with `const` category and name. Frontends validate with it before they
/// send. See [`RULES_OUTSIDE_SCHEMA`] for what only the server can check.
///
/// ```
/// let schema = eye_core::event_schema();
/// let branches = schema.get("oneOf").and_then(|v| v.as_array()).unwrap();
/// assert_eq!(branches.len(), 3);
/// ```
pub fn event_schema() -> Schema {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<WireEvent>();
    // The branches are mutually exclusive (distinct const pairs), so `oneOf` states
    // the intent exactly where schemars writes `anyOf` for untagged enums.
    if let Some(obj) = schema.as_object_mut() {
        if let Some(branches) = obj.remove("anyOf") {
            obj.insert("oneOf".into(), branches);
        }
        obj.insert("title".into(), "The Eye event".into());
    }
    schema
}

/// The event schema as pretty JSON with a trailing newline: what `eye-server schema`
/// prints and the committed snapshot (`eye-core/schema/event.schema.json`) holds.
///
/// ```
/// let text = eye_core::event_schema_json();
/// assert!(text.ends_with("}\n"));
/// let value: serde_json::Value = serde_json::from_str(&text).unwrap();
/// assert_eq!(value["$schema"], "https://json-schema.org/draft/2020-12/schema");
/// ```
pub fn event_schema_json() -> String {
    let mut s = serde_json::to_string_pretty(&event_schema()).unwrap_or_default();
    s.push('\n');
    s
}
