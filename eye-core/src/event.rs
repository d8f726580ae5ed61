//! The validated event: one enum variant per event type, each with its typed payload.

use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{ErrorCode, FieldError, ValidationErrors};
use crate::fields::{Element, Host, SessionId, UrlPath};
use crate::timestamp::{format_timestamp, truncate_to_micros};

/// The largest accepted event, as JSON bytes.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;

/// The deepest accepted nesting of objects and arrays inside `data.form`; the form
/// object itself is level 1.
pub const MAX_FORM_DEPTH: usize = 32;

/// The kinds of event The Eye accepts, identified on the wire by (category, name).
///
/// ```
/// use eye_core::EventType;
/// let t = EventType::from_pair("page_interaction", "cta_click").unwrap();
/// assert_eq!(t, EventType::CtaClick);
/// assert_eq!(t.to_string(), "page_interaction/cta_click");
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// `page_interaction` / `page_view`.
    PageView,
    /// `page_interaction` / `cta_click`.
    CtaClick,
    /// `form_interaction` / `submit`.
    FormSubmit,
}

impl EventType {
    /// Every event type, in a stable order.
    pub const ALL: [EventType; 3] = [Self::PageView, Self::CtaClick, Self::FormSubmit];

    /// The wire category.
    pub fn category(self) -> &'static str {
        match self {
            Self::PageView | Self::CtaClick => "page_interaction",
            Self::FormSubmit => "form_interaction",
        }
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::PageView => "page_view",
            Self::CtaClick => "cta_click",
            Self::FormSubmit => "submit",
        }
    }

    /// `category/name`, the form used in messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PageView => "page_interaction/page_view",
            Self::CtaClick => "page_interaction/cta_click",
            Self::FormSubmit => "form_interaction/submit",
        }
    }

    /// The type with exactly this category and name.
    pub fn from_pair(category: &str, name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.category() == category && t.name() == name)
    }

    /// The canonical type a misspelt pair most likely meant: the same letters and
    /// digits ignoring case, spaces, hyphens and underscores (`page interaction` /
    /// `pageview`), or failing that a name that only one type has.
    ///
    /// ```
    /// use eye_core::EventType;
    /// assert_eq!(EventType::suggest("page interaction", "pageview"), Some(EventType::PageView));
    /// assert_eq!(EventType::suggest("clicks", "cta_click"), Some(EventType::CtaClick));
    /// assert_eq!(EventType::suggest("video", "play"), None);
    /// ```
    pub fn suggest(category: &str, name: &str) -> Option<Self> {
        Self::same_letters(category, name).or_else(|| {
            let n = normalise(name);
            let mut by_name = Self::ALL.into_iter().filter(|t| normalise(t.name()) == n);
            match (by_name.next(), by_name.next()) {
                (Some(t), None) => Some(t),
                _ => None,
            }
        })
    }

    /// The type whose category and name have the same letters and digits as these,
    /// ignoring case and separators: a misspelling certain enough that the parser also
    /// checks the event's data against it.
    pub(crate) fn same_letters(category: &str, name: &str) -> Option<Self> {
        let (c, n) = (normalise(category), normalise(name));
        Self::ALL
            .into_iter()
            .find(|t| normalise(t.category()) == c && normalise(t.name()) == n)
    }

    /// The allowed data fields of this type, in wire order.
    pub fn data_fields(self) -> &'static [&'static str] {
        match self {
            Self::PageView => &["host", "path"],
            Self::CtaClick => &["host", "path", "element"],
            Self::FormSubmit => &["host", "path", "form"],
        }
    }
}

fn normalise(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `data` of a `page_interaction` / `page_view` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageView {
    /// Host the page was served from.
    pub host: Host,
    /// Path of the page.
    pub path: UrlPath,
}

/// `data` of a `page_interaction` / `cta_click` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CtaClick {
    /// Host the page was served from.
    pub host: Host,
    /// Path of the page.
    pub path: UrlPath,
    /// The call to action that was clicked.
    pub element: Element,
}

/// `data` of a `form_interaction` / `submit` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FormSubmit {
    /// Host the page was served from.
    pub host: Host,
    /// Path of the page.
    pub path: UrlPath,
    /// The submitted form: any JSON object.
    pub form: Form,
}

/// A submitted form: any JSON object, nested at most [`MAX_FORM_DEPTH`] levels.
///
/// ```
/// use eye_core::Form;
/// let form = Form::parse(serde_json::json!({"first_name": "John"})).unwrap();
/// assert_eq!(form.as_map()["first_name"], "John");
/// assert!(Form::parse(serde_json::json!(["not", "an", "object"])).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(extend("description" = "The submitted form: any JSON object."))]
pub struct Form(Map<String, Value>);

impl Form {
    /// Parses a form value.
    pub fn parse(value: Value) -> Result<Self, crate::fields::FieldProblem> {
        match value {
            Value::Object(map) => Self::from_map(map),
            other => Err(crate::fields::FieldProblem {
                code: ErrorCode::WrongType,
                message: format!("form must be a JSON object, not {}", json_type(&other)),
            }),
        }
    }

    /// Checks the nesting depth of an object.
    pub fn from_map(map: Map<String, Value>) -> Result<Self, crate::fields::FieldProblem> {
        Self::check_depth(&map)?;
        Ok(Self(map))
    }

    /// Checks the nesting depth without taking the map, so the parser can validate a
    /// borrowed form and copy it only once the whole event is known to be valid.
    pub(crate) fn check_depth(map: &Map<String, Value>) -> Result<(), crate::fields::FieldProblem> {
        if map.values().any(|v| deeper_than(v, MAX_FORM_DEPTH - 1)) {
            return Err(crate::fields::FieldProblem {
                code: ErrorCode::FormTooDeep,
                message: format!("form nests deeper than {MAX_FORM_DEPTH} levels"),
            });
        }
        Ok(())
    }

    /// A form whose depth was already checked.
    pub(crate) fn from_checked(map: Map<String, Value>) -> Self {
        Self(map)
    }

    /// The form's fields.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Consumes self, returning the fields.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

impl<'de> Deserialize<'de> for Form {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Form::parse(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// True when `v` holds containers nested more than `budget` levels deep. Recursion
/// stops at the budget, so hostile input costs at most `budget` frames.
fn deeper_than(v: &Value, budget: usize) -> bool {
    match v {
        Value::Object(m) => budget == 0 || m.values().any(|c| deeper_than(c, budget - 1)),
        Value::Array(a) => budget == 0 || a.iter().any(|c| deeper_than(c, budget - 1)),
        _ => false,
    }
}

/// The name of a JSON value's type, for messages.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The typed payload of an event; the variant is the event type. Serialises as the
/// wire `data` object.
///
/// ```
/// use eye_core::{Event, Payload};
/// let event = Event::cta_click("s1", "example.com", "/pricing", "buy").unwrap();
/// let payload = event.payload();
/// assert_eq!(payload.host().as_str(), "example.com");
/// assert!(matches!(payload, Payload::CtaClick(c) if c.element.as_str() == "buy"));
/// assert_eq!(payload.to_value(),
///     serde_json::json!({"host": "example.com", "path": "/pricing", "element": "buy"}));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Payload {
    /// `page_interaction` / `page_view`.
    PageView(PageView),
    /// `page_interaction` / `cta_click`.
    CtaClick(CtaClick),
    /// `form_interaction` / `submit`.
    FormSubmit(FormSubmit),
}

impl Payload {
    /// The event type this payload belongs to.
    pub fn event_type(&self) -> EventType {
        match self {
            Self::PageView(_) => EventType::PageView,
            Self::CtaClick(_) => EventType::CtaClick,
            Self::FormSubmit(_) => EventType::FormSubmit,
        }
    }

    /// The host, which every type has.
    pub fn host(&self) -> &Host {
        match self {
            Self::PageView(p) => &p.host,
            Self::CtaClick(p) => &p.host,
            Self::FormSubmit(p) => &p.host,
        }
    }

    /// The path, which every type has.
    pub fn path(&self) -> &UrlPath {
        match self {
            Self::PageView(p) => &p.path,
            Self::CtaClick(p) => &p.path,
            Self::FormSubmit(p) => &p.path,
        }
    }

    /// The payload as the JSON `data` object.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A valid event. It can only be built by parsing ([`Event::parse_json`],
/// [`Event::parse_value`], `serde::Deserialize`) or from already-valid parts, so
/// holding one proves it passed every rule.
///
/// ```
/// use eye_core::{Event, EventType, ValidationContext};
/// let json = br#"{"session_id": "123", "category": "page_interaction", "name": "page_view",
///     "data": {"host": "www.consumeraffairs.com", "path": "/"},
///     "timestamp": "2022-01-01 00:00:00.000000"}"#;
/// let event = Event::parse_json(json, &ValidationContext::system()).unwrap();
/// assert_eq!(event.event_type(), EventType::PageView);
/// assert_eq!(event.session_id().as_str(), "123");
///
/// let out = serde_json::to_value(&event).unwrap();
/// assert_eq!(out["timestamp"], "2022-01-01T00:00:00.000000Z");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub(crate) id: Option<Uuid>,
    pub(crate) session_id: SessionId,
    pub(crate) timestamp: DateTime<Utc>,
    pub(crate) payload: Payload,
}

impl Event {
    /// An event from valid parts, timestamped now (truncated to microseconds), with no
    /// id yet.
    pub fn new(session_id: SessionId, payload: Payload) -> Self {
        Self {
            id: None,
            session_id,
            timestamp: truncate_to_micros(Utc::now()),
            payload,
        }
    }

    /// A page view, timestamped now. Every invalid argument is reported.
    ///
    /// ```
    /// let e = eye_core::Event::page_view("s1", "example.com", "/").unwrap();
    /// assert_eq!(e.event_type().name(), "page_view");
    /// let err = eye_core::Event::page_view("", "bad host", "nope").unwrap_err();
    /// assert_eq!(err.errors().len(), 3);
    /// ```
    pub fn page_view(session_id: &str, host: &str, path: &str) -> Result<Self, ValidationErrors> {
        let mut c = Checks::default();
        let (s, h, p) = (c.session(session_id), c.host(host), c.path(path));
        c.finish()?;
        let (Some(s), Some(host), Some(path)) = (s, h, p) else {
            unreachable!("no errors means every part parsed")
        };
        Ok(Self::new(s, Payload::PageView(PageView { host, path })))
    }

    /// A click on a call to action, timestamped now.
    ///
    /// ```
    /// let e = eye_core::Event::cta_click("s1", "example.com", "/", "chat bubble").unwrap();
    /// assert_eq!(e.event_type().name(), "cta_click");
    /// ```
    pub fn cta_click(
        session_id: &str,
        host: &str,
        path: &str,
        element: &str,
    ) -> Result<Self, ValidationErrors> {
        let mut c = Checks::default();
        let (s, h, p) = (c.session(session_id), c.host(host), c.path(path));
        let e = c.field("/data/element", Element::parse(element));
        c.finish()?;
        let (Some(s), Some(host), Some(path), Some(element)) = (s, h, p, e) else {
            unreachable!("no errors means every part parsed")
        };
        Ok(Self::new(
            s,
            Payload::CtaClick(CtaClick {
                host,
                path,
                element,
            }),
        ))
    }

    /// A form submission, timestamped now. `form` must be a JSON object.
    ///
    /// ```
    /// let form = serde_json::json!({"first_name": "John", "last_name": "Doe"});
    /// let e = eye_core::Event::form_submit("s1", "example.com", "/signup", form).unwrap();
    /// assert_eq!(e.event_type().category(), "form_interaction");
    /// ```
    pub fn form_submit(
        session_id: &str,
        host: &str,
        path: &str,
        form: Value,
    ) -> Result<Self, ValidationErrors> {
        let mut c = Checks::default();
        let (s, h, p) = (c.session(session_id), c.host(host), c.path(path));
        let f = c.field("/data/form", Form::parse(form));
        c.finish()?;
        let (Some(s), Some(host), Some(path), Some(form)) = (s, h, p, f) else {
            unreachable!("no errors means every part parsed")
        };
        Ok(Self::new(
            s,
            Payload::FormSubmit(FormSubmit { host, path, form }),
        ))
    }

    /// Sets the idempotency id. Two deliveries with the same id are stored once.
    #[must_use]
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets when the interaction happened (truncated to microseconds). The server
    /// rejects instants further in the future than its allowed clock skew.
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: DateTime<Utc>) -> Self {
        self.timestamp = truncate_to_micros(timestamp);
        self
    }

    /// The idempotency id, when the sender set one.
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }

    /// The session.
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    /// When the interaction happened, in UTC, to the microsecond.
    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }

    /// The typed payload.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// The event type.
    pub fn event_type(&self) -> EventType {
        self.payload.event_type()
    }

    /// Splits the event into its parts.
    pub fn into_parts(self) -> (Option<Uuid>, SessionId, DateTime<Utc>, Payload) {
        (self.id, self.session_id, self.timestamp, self.payload)
    }
}

/// Collects problems while building an event from loose arguments.
#[derive(Default)]
struct Checks(Vec<FieldError>);

impl Checks {
    fn field<T>(&mut self, path: &str, r: Result<T, crate::fields::FieldProblem>) -> Option<T> {
        r.map_err(|p| self.0.push(FieldError::new(path, p.code, p.message)))
            .ok()
    }
    fn session(&mut self, s: &str) -> Option<SessionId> {
        self.field("/session_id", SessionId::parse(s))
    }
    fn host(&mut self, s: &str) -> Option<Host> {
        self.field("/data/host", Host::parse(s))
    }
    fn path(&mut self, s: &str) -> Option<UrlPath> {
        self.field("/data/path", UrlPath::parse(s))
    }
    fn finish(self) -> Result<(), ValidationErrors> {
        ValidationErrors::from_vec(self.0).map_or(Ok(()), Err)
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.event_type();
        let mut m = s.serialize_map(None)?;
        if let Some(id) = &self.id {
            m.serialize_entry("id", id)?;
        }
        m.serialize_entry("session_id", &self.session_id)?;
        m.serialize_entry("category", t.category())?;
        m.serialize_entry("name", t.name())?;
        m.serialize_entry("data", &self.payload)?;
        m.serialize_entry("timestamp", &format_timestamp(&self.timestamp))?;
        m.end()
    }
}

/// Deserialising checks every rule but the clock's
/// ([`crate::ValidationContext::any_time`]): it reads back events that were accepted
/// already (queue messages, spools, stored copies), and an accepted event must not
/// become undecodable because the reader's clock or clock skew differs from the
/// acceptor's. To judge input, with the future-timestamp rule, use
/// [`Event::parse_json`], [`Event::parse_value`] or [`Event::parse_owned`] with a
/// [`crate::ValidationContext`].
impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Event::parse_owned(v, &crate::ValidationContext::any_time())
            .map_err(serde::de::Error::custom)
    }
}
