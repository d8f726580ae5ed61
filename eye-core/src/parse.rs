//! Parsing wire JSON into an [`Event`], collecting every problem in one pass.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{ErrorCode, FieldError, MAX_ERRORS_PER_EVENT, ValidationErrors};
use crate::event::{
    CtaClick, Event, EventType, Form, FormSubmit, MAX_EVENT_BYTES, PageView, Payload, json_type,
};
use crate::fields::{Element, FieldProblem, Host, SessionId, UrlPath};
use crate::timestamp::parse_timestamp;

/// The fields an event may have at the top level.
pub const EVENT_FIELDS: [&str; 6] = ["id", "session_id", "category", "name", "data", "timestamp"];

/// What validation depends on besides the input: the current time, how far in the
/// future a timestamp may be (clock skew between the sender and The Eye), and the
/// sender's clock offset when it said when it sent the request. Injected so tests are
/// deterministic.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use eye_core::{ErrorCode, Event, ValidationContext};
/// let now = Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap();
/// let ctx = ValidationContext::at(now);
/// let json = br#"{"session_id": "s", "category": "page_interaction", "name": "page_view",
///     "data": {"host": "a.com", "path": "/"}, "timestamp": "2022-01-01T00:10:00Z"}"#;
/// let err = Event::parse_json(json, &ctx).unwrap_err();
/// assert!(err.has_code(ErrorCode::TimestampInFuture));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationContext {
    now: DateTime<Utc>,
    max_clock_skew: Duration,
    clock_offset: Duration,
}

impl ValidationContext {
    /// The default allowed clock skew: 5 minutes.
    pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

    /// Validation as of `now`, with the default clock skew.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now,
            max_clock_skew: Self::DEFAULT_MAX_CLOCK_SKEW,
            clock_offset: Duration::zero(),
        }
    }

    /// Validation as of the system clock, with the default clock skew.
    pub fn system() -> Self {
        Self::at(Utc::now())
    }

    /// Validation by every rule but the clock's: no timestamp is in the future. For
    /// reading back an event that was accepted already (a queue message, a spool, a
    /// stored copy), which must stay an event whatever the reader's clock says: the
    /// server that accepted it may allow more skew than the default, and a worker's
    /// clock may be behind the API node's. What [`Event`]'s `Deserialize` uses.
    ///
    /// ```
    /// use eye_core::{Event, ValidationContext};
    /// let json = br#"{"session_id": "s", "category": "page_interaction", "name": "page_view",
    ///     "data": {"host": "a.com", "path": "/"}, "timestamp": "2999-01-01T00:00:00Z"}"#;
    /// assert!(Event::parse_json(json, &ValidationContext::system()).is_err());
    /// assert!(Event::parse_json(json, &ValidationContext::any_time()).is_ok());
    /// ```
    pub fn any_time() -> Self {
        Self::at(Utc::now()).with_max_clock_skew(Duration::MAX)
    }

    /// Sets how far in the future a timestamp may be.
    #[must_use]
    pub fn with_max_clock_skew(mut self, skew: Duration) -> Self {
        self.max_clock_skew = skew;
        self
    }

    /// Corrects the sender's clock: the request says it was sent at `sent_at` by the
    /// sender's clock, and it is validated at [`Self::now`] by the server's, so every
    /// timestamp is moved by `now - sent_at` before it is checked (as PostHog, Segment
    /// and Snowplow do with their `sent_at`). A browser whose clock is an hour fast
    /// then has its events stored at the server's time of the interaction instead of
    /// rejected as `timestamp_in_future`. The sender's own timestamp is
    /// [`Self::client_time`] of the corrected one.
    ///
    /// ```
    /// use chrono::{Duration, TimeZone, Utc};
    /// use eye_core::{Event, ValidationContext};
    /// let now = Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap();
    /// // The browser's clock is 2 hours fast: it sent at 02:00 by its clock.
    /// let ctx = ValidationContext::at(now).with_sent_at(now + Duration::hours(2));
    /// let json = br#"{"session_id": "s", "category": "page_interaction", "name": "page_view",
    ///     "data": {"host": "a.com", "path": "/"}, "timestamp": "2022-01-01T01:59:59Z"}"#;
    /// let event = Event::parse_json(json, &ctx).unwrap();
    /// assert_eq!(event.timestamp(), Utc.with_ymd_and_hms(2021, 12, 31, 23, 59, 59).unwrap());
    /// assert_eq!(ctx.client_time(event.timestamp()),
    ///            Utc.with_ymd_and_hms(2022, 1, 1, 1, 59, 59).unwrap());
    /// ```
    #[must_use]
    pub fn with_sent_at(mut self, sent_at: DateTime<Utc>) -> Self {
        self.clock_offset = self.now.signed_duration_since(sent_at);
        self
    }

    /// How much is added to every timestamp: the server's clock minus the sender's
    /// (zero unless [`Self::with_sent_at`] was called).
    pub fn clock_offset(&self) -> Duration {
        self.clock_offset
    }

    /// The sender's own timestamp of an event whose timestamp was corrected here.
    pub fn client_time(&self, corrected: DateTime<Utc>) -> DateTime<Utc> {
        corrected
            .checked_sub_signed(self.clock_offset)
            .unwrap_or(corrected)
    }

    /// The instant validation runs at.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// How far in the future a timestamp may be.
    ///
    /// ```
    /// let ctx = eye_core::ValidationContext::system();
    /// assert_eq!(ctx.max_clock_skew(), chrono::Duration::minutes(5));
    /// ```
    pub fn max_clock_skew(&self) -> Duration {
        self.max_clock_skew
    }

    /// The latest timestamp accepted.
    pub fn latest_accepted(&self) -> DateTime<Utc> {
        // A skew too large to add means no timestamp is too far in the future.
        self.now
            .checked_add_signed(self.max_clock_skew)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl Event {
    /// Parses one event from JSON bytes: checks the size limit, the JSON syntax, then
    /// every rule of [`Event::parse_value`].
    pub fn parse_json(json: &[u8], ctx: &ValidationContext) -> Result<Event, ValidationErrors> {
        if json.len() > MAX_EVENT_BYTES {
            return Err(ValidationErrors::single(FieldError::new(
                "",
                ErrorCode::EventTooLarge,
                format!(
                    "event is {} bytes of JSON; at most {MAX_EVENT_BYTES} are allowed",
                    json.len()
                ),
            )));
        }
        // A valid event in one typed pass; anything else through the general parser,
        // which explains it.
        if let Some(event) = std::str::from_utf8(json)
            .ok()
            .and_then(|text| Event::parse_valid(text, ctx))
        {
            return Ok(event);
        }
        let value: Value = serde_json::from_slice(json).map_err(|e| {
            ValidationErrors::single(FieldError::new(
                "",
                ErrorCode::InvalidJson,
                format!("malformed JSON: {e}"),
            ))
        })?;
        Event::parse_owned(value, ctx)
    }

    /// Parses one event from a JSON value, reporting every problem found. Does not check
    /// the size limit (the value no longer has a size); [`Event::parse_json`] does.
    ///
    /// ```
    /// use eye_core::{Event, ValidationContext};
    /// let v = serde_json::json!({"session_id": "s", "category": "page_interaction",
    ///     "name": "page_view", "data": {"host": "a.com", "path": "/"},
    ///     "timestamp": "2022-01-01T00:00:00Z"});
    /// assert!(Event::parse_value(&v, &ValidationContext::system()).is_ok());
    /// ```
    pub fn parse_value(value: &Value, ctx: &ValidationContext) -> Result<Event, ValidationErrors> {
        let mut event = validate_without_form(value, ctx)?;
        fill_form(&mut event.payload, || {
            let form = value.pointer("/data/form").and_then(Value::as_object);
            form.cloned().unwrap_or_default()
        });
        Ok(event)
    }

    /// Like [`Event::parse_value`], but takes the value so a submitted form is moved
    /// into the event instead of copied: the cheaper call when the caller no longer
    /// needs the JSON.
    ///
    /// ```
    /// use eye_core::{Event, ValidationContext};
    /// let v = serde_json::json!({"session_id": "s", "category": "form_interaction",
    ///     "name": "submit", "data": {"host": "a.com", "path": "/", "form": {"q": 1}},
    ///     "timestamp": "2022-01-01T00:00:00Z"});
    /// let event = Event::parse_owned(v, &ValidationContext::system()).unwrap();
    /// assert_eq!(event.event_type().name(), "submit");
    /// ```
    pub fn parse_owned(
        mut value: Value,
        ctx: &ValidationContext,
    ) -> Result<Event, ValidationErrors> {
        let mut event = validate_without_form(&value, ctx)?;
        fill_form(&mut event.payload, || {
            match value.pointer_mut("/data/form").map(Value::take) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            }
        });
        Ok(event)
    }
}

/// Puts the submitted form into a payload that passed validation. Validation checks
/// the form by reference and leaves an empty placeholder, so the form is copied (or
/// moved) once, and only for a valid event.
fn fill_form(payload: &mut Payload, form: impl FnOnce() -> Map<String, Value>) {
    if let Payload::FormSubmit(f) = payload {
        f.form = Form::from_checked(form());
    }
}

/// Checks every rule; a form submit comes back with an empty form for [`fill_form`].
fn validate_without_form(
    value: &Value,
    ctx: &ValidationContext,
) -> Result<Event, ValidationErrors> {
    let Some(obj) = value.as_object() else {
        return Err(ValidationErrors::single(FieldError::new(
            "",
            ErrorCode::WrongType,
            format!("an event must be a JSON object, not {}", json_type(value)),
        )));
    };
    let mut c = Collector::default();
    c.unknown_fields("", obj, &EVENT_FIELDS);

    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => c.field("/id", parse_id(s)),
        Some(other) => c.wrong_type("/id", "a UUID string", other),
    };
    let session_id = c
        .string(obj, "", "session_id")
        .and_then(|s| c.field("/session_id", SessionId::parse(s)));
    let category = c.string(obj, "", "category");
    let name = c.string(obj, "", "name");
    let event_type = match (category, name) {
        (Some(cat), Some(name)) => c.event_type(cat, name),
        _ => None,
    };
    let data = match obj.get("data") {
        None => c.missing("/data"),
        Some(Value::Object(m)) => Some(m),
        Some(other) => c.wrong_type("/data", "an object", other),
    };
    // A misspelt pair (`page interaction`/`pageview`) still gets its data checked
    // against the type it spells, so the sender sees every problem in one answer.
    let data_type = event_type.or_else(|| EventType::same_letters(category?, name?));
    let payload = match (data_type, data) {
        (Some(t), Some(data)) => c.payload(t, data),
        _ => None,
    };
    let timestamp =
        c.string(obj, "", "timestamp")
            .and_then(|s| {
                match corrected(parse_timestamp(s), ctx) {
            None => c.push(
                "/timestamp",
                ErrorCode::InvalidTimestamp,
                format!(
                    "`{}` is not a timestamp: use RFC 3339 (`2022-04-11T01:08:01.407119Z`), \
                     ISO 8601 without offset (UTC) or `2022-04-11 01:08:01.407119`",
                    truncate_for_message(s)
                ),
            ),
            Some(t) if t > ctx.latest_accepted() => c.push(
                "/timestamp",
                ErrorCode::TimestampInFuture,
                if ctx.clock_offset.is_zero() {
                    format!(
                        "timestamp {} is in the future (now {}, allowed clock skew {} s)",
                        crate::format_timestamp(&t),
                        crate::format_timestamp(&ctx.now()),
                        ctx.max_clock_skew.num_seconds()
                    )
                } else {
                    format!(
                        "timestamp {} is in the future (corrected by the request's sent_at to {}; \
                         now {}, allowed clock skew {} s)",
                        crate::format_timestamp(&ctx.client_time(t)),
                        crate::format_timestamp(&t),
                        crate::format_timestamp(&ctx.now()),
                        ctx.max_clock_skew.num_seconds()
                    )
                },
            ),
            Some(t) => Some(t),
        }
            });

    if let Some(errors) = c.finish() {
        return Err(errors);
    }
    match (session_id, payload, timestamp) {
        (Some(session_id), Some(payload), Some(timestamp)) => Ok(Event {
            id,
            session_id,
            timestamp,
            payload,
        }),
        _ => unreachable!("every missing part recorded an error"),
    }
}

/// A parsed timestamp moved by the context's clock offset; `None` when it did not
/// parse or the correction leaves chrono's range.
pub(crate) fn corrected(
    t: Option<DateTime<Utc>>,
    ctx: &ValidationContext,
) -> Option<DateTime<Utc>> {
    t?.checked_add_signed(ctx.clock_offset)
}

impl Payload {
    /// Parses the `data` of an event whose (category, name) is already known, without a
    /// clock: what a reader of stored events needs.
    pub fn from_parts(
        category: &str,
        name: &str,
        data: &Value,
    ) -> Result<Payload, ValidationErrors> {
        let mut c = Collector::default();
        let payload = match (c.event_type(category, name), data) {
            (Some(t), Value::Object(m)) => c.payload(t, m),
            (_, Value::Object(_)) => None,
            (_, other) => c.wrong_type("/data", "an object", other),
        };
        match (c.finish(), payload) {
            (Some(errors), _) => Err(errors),
            (None, Some(mut p)) => {
                fill_form(&mut p, || {
                    let form = data.get("form").and_then(Value::as_object);
                    form.cloned().unwrap_or_default()
                });
                Ok(p)
            }
            (None, None) => unreachable!("no payload means an error was recorded"),
        }
    }
}

pub(crate) fn parse_id(s: &str) -> Result<Uuid, FieldProblem> {
    // Only the hyphenated form, which is also what the schema's pattern allows.
    let hyphenated = s.len() == 36 && s.as_bytes()[8] == b'-';
    match Uuid::try_parse(s) {
        Ok(id) if id.is_nil() && hyphenated => Err(FieldProblem {
            code: ErrorCode::InvalidId,
            message: "id must not be the nil UUID: it is an idempotency key, so every event \
                      sent with it after the first would be dropped as a duplicate"
                .to_owned(),
        }),
        Ok(id) if hyphenated => Ok(id),
        _ => Err(FieldProblem {
            code: ErrorCode::InvalidId,
            message: format!(
                "id `{}` is not a hyphenated UUID such as `0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c`",
                truncate_for_message(s)
            ),
        }),
    }
}

/// Keeps error messages bounded when the offending value is huge.
fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Escapes a key for use in a JSON pointer (RFC 6901).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Accumulates errors. Each helper records its problem and returns `None` on failure so
/// parsing continues and every problem is found. Past [`MAX_ERRORS_PER_EVENT`] it only
/// counts them: an event of 10,000 unknown keys costs a counter, not 10,000 messages.
#[derive(Default)]
struct Collector {
    errors: Vec<FieldError>,
    omitted: u64,
}

impl Collector {
    fn is_full(&self) -> bool {
        self.errors.len() >= MAX_ERRORS_PER_EVENT
    }

    /// Records one problem, built only while there is room for it.
    fn record(&mut self, error: impl FnOnce() -> FieldError) {
        if self.is_full() {
            self.omitted += 1;
        } else {
            self.errors.push(error());
        }
    }

    /// The problems found, if any.
    fn finish(self) -> Option<ValidationErrors> {
        ValidationErrors::capped(self.errors, self.omitted)
    }

    fn push<T>(&mut self, path: &str, code: ErrorCode, message: String) -> Option<T> {
        self.record(|| FieldError::new(path, code, message));
        None
    }

    fn missing<T>(&mut self, path: &str) -> Option<T> {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.push(
            path,
            ErrorCode::MissingField,
            format!("`{name}` is required"),
        )
    }

    fn wrong_type<T>(&mut self, path: &str, expected: &str, got: &Value) -> Option<T> {
        let name = path.rsplit('/').next().unwrap_or(path);
        self.push(
            path,
            ErrorCode::WrongType,
            format!("`{name}` must be {expected}, not {}", json_type(got)),
        )
    }

    fn field<T>(&mut self, path: &str, r: Result<T, FieldProblem>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(p) => self.push(path, p.code, p.message),
        }
    }

    fn unknown_fields(&mut self, parent: &str, obj: &Map<String, Value>, allowed: &[&str]) {
        for key in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
            self.record(|| {
                FieldError::new(
                    format!("{parent}/{}", pointer_token(key)),
                    ErrorCode::UnknownField,
                    format!(
                        "unknown field `{}`; allowed: {}",
                        truncate_for_message(key),
                        allowed.join(", ")
                    ),
                )
            });
        }
    }

    fn string<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        parent: &str,
        key: &str,
    ) -> Option<&'v str> {
        // The path is only built for an error: a valid event allocates none.
        match obj.get(key) {
            Some(Value::String(s)) => Some(s),
            None => self.missing(&format!("{parent}/{key}")),
            Some(other) => self.wrong_type(&format!("{parent}/{key}"), "a string", other),
        }
    }

    fn event_type(&mut self, category: &str, name: &str) -> Option<EventType> {
        if let Some(t) = EventType::from_pair(category, name) {
            return Some(t);
        }
        let known_category = EventType::ALL.iter().any(|t| t.category() == category);
        let path = if known_category { "/name" } else { "/category" };
        let allowed: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        let suggestion = EventType::suggest(category, name);
        let mut message = format!(
            "unknown event type `{}`/`{}`; allowed (category/name): {}",
            truncate_for_message(category),
            truncate_for_message(name),
            allowed.join(", ")
        );
        if let Some(s) = suggestion {
            message.push_str(&format!(
                "; did you mean category `{}` and name `{}`?",
                s.category(),
                s.name()
            ));
        }
        self.record(|| FieldError {
            suggestion: suggestion.map(|s| s.as_str().to_owned()),
            ..FieldError::new(path, ErrorCode::UnknownEventType, message)
        });
        None
    }

    fn payload(&mut self, t: EventType, data: &Map<String, Value>) -> Option<Payload> {
        self.unknown_fields("/data", data, t.data_fields());
        let host = self
            .string(data, "/data", "host")
            .and_then(|s| self.field("/data/host", Host::parse(s)));
        let path = self
            .string(data, "/data", "path")
            .and_then(|s| self.field("/data/path", UrlPath::parse(s)));
        match t {
            EventType::PageView => Some(Payload::PageView(PageView {
                host: host?,
                path: path?,
            })),
            EventType::CtaClick => {
                let element = self
                    .string(data, "/data", "element")
                    .and_then(|s| self.field("/data/element", Element::parse(s)));
                Some(Payload::CtaClick(CtaClick {
                    host: host?,
                    path: path?,
                    element: element?,
                }))
            }
            EventType::FormSubmit => {
                let form = match data.get("form") {
                    None => self.missing("/data/form"),
                    Some(Value::Object(m)) => self
                        .field("/data/form", Form::check_depth(m))
                        .map(|()| Form::from_checked(Map::new())),
                    Some(other) => self.wrong_type("/data/form", "an object", other),
                };
                Some(Payload::FormSubmit(FormSubmit {
                    host: host?,
                    path: path?,
                    form: form?,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_is_quoted_in_a_message_up_to_64_characters() {
        let long = "é".repeat(100);
        assert_eq!(truncate_for_message(&long), format!("{}…", "é".repeat(64)));
        assert_eq!(truncate_for_message("short"), "short");
    }
}
