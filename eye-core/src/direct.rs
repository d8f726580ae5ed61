//! The direct reading of a valid event: JSON text to [`Event`] in one pass, without
//! building a [`serde_json::Value`] first.
//!
//! Ingest's common case is a valid event, and the general parser
//! ([`Event::parse_owned`]) pays for what it needs to explain a bad one: a `Value` of
//! the whole event (every key and string copied), then a walk of it. This reading
//! borrows the strings from the input where it can and runs the same field parsers
//! ([`SessionId::parse`], [`Host::parse`], ...), but gives up at the first thing it
//! does not expect (an unknown or repeated key, a wrong type, a field a parser
//! refuses) and answers `None`: the caller then runs the general parser, which finds
//! and explains every problem. So it never decides that an event is invalid, and an
//! event it accepts is one the general parser accepts, equal field for field (the
//! `event_json` fuzz target and the `direct` tests check both).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::event::{CtaClick, Event, EventType, Form, FormSubmit, PageView, Payload};
use crate::fields::{Element, Host, SessionId, UrlPath};
use crate::parse::{ValidationContext, corrected, parse_id};
use crate::timestamp::parse_timestamp;

impl Event {
    /// Reads a **valid** event from its JSON text in one pass; `None` for anything
    /// else (invalid, or a shape this reading does not take, such as a repeated key),
    /// when [`Event::parse_owned`] of the text's value gives the answer and its errors.
    /// Checks every rule [`Event::parse_owned`] checks, under the same context, but
    /// not the size limit.
    ///
    /// ```
    /// use eye_core::{Event, ValidationContext};
    /// let ctx = ValidationContext::system();
    /// let json = r#"{"session_id": "s", "category": "page_interaction", "name": "page_view",
    ///     "data": {"host": "a.com", "path": "/"}, "timestamp": "2022-01-01T00:00:00Z"}"#;
    /// let event = Event::parse_valid(json, &ctx).unwrap();
    /// let value = serde_json::from_str(json).unwrap();
    /// assert_eq!(Event::parse_owned(value, &ctx), Ok(event));
    /// // Invalid: no answer here; the general parser says why.
    /// assert!(Event::parse_valid(r#"{"session_id": ""}"#, &ctx).is_none());
    /// ```
    pub fn parse_valid(json: &str, ctx: &ValidationContext) -> Option<Event> {
        let mut de = serde_json::Deserializer::from_str(json);
        let wire = de.deserialize_map(WireVisitor).ok()?;
        de.end().ok()?;
        wire.validate(ctx)
    }
}

/// A string borrowed from the input when it holds no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The keys of an event and of its `data`, decoded (escapes included) as the general
/// parser's map decodes them; `Other` for any other key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    SessionId,
    Category,
    Name,
    Data,
    Timestamp,
    Host,
    Path,
    Element,
    Form,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match s {
                    "id" => Key::Id,
                    "session_id" => Key::SessionId,
                    "category" => Key::Category,
                    "name" => Key::Name,
                    "data" => Key::Data,
                    "timestamp" => Key::Timestamp,
                    "host" => Key::Host,
                    "path" => Key::Path,
                    "element" => Key::Element,
                    "form" => Key::Form,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// Stops the reading: the general parser takes over.
fn give_up<E: de::Error>() -> E {
    E::custom("not read directly")
}

/// Sets a field once; a repeated key gives up (the general parser keeps the last).
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(give_up());
    }
    *slot = Some(value);
    Ok(())
}

/// The top level of an event, its strings not yet checked.
#[derive(Default)]
struct Wire<'a> {
    /// `Some(None)`: `"id": null`.
    id: Option<Option<Text<'a>>>,
    session_id: Option<Text<'a>>,
    category: Option<Text<'a>>,
    name: Option<Text<'a>>,
    data: Option<WireData<'a>>,
    timestamp: Option<Text<'a>>,
}

/// An event's `data`, its strings not yet checked.
#[derive(Default)]
struct WireData<'a> {
    host: Option<Text<'a>>,
    path: Option<Text<'a>>,
    element: Option<Text<'a>>,
    form: Option<Map<String, Value>>,
}

/// Only a JSON object: serde_json would also read a struct from an array.
struct WireVisitor;

impl<'de> Visitor<'de> for WireVisitor {
    type Value = Wire<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire<'de>, A::Error> {
        let mut wire = Wire::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => once(&mut wire.id, map.next_value()?)?,
                Key::SessionId => once(&mut wire.session_id, map.next_value()?)?,
                Key::Category => once(&mut wire.category, map.next_value()?)?,
                Key::Name => once(&mut wire.name, map.next_value()?)?,
                Key::Data => once(&mut wire.data, map.next_value_seed(DataSeed)?)?,
                Key::Timestamp => once(&mut wire.timestamp, map.next_value()?)?,
                _ => return Err(give_up()),
            }
        }
        Ok(wire)
    }
}

struct DataSeed;

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = WireData<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<WireData<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DataSeed {
    type Value = WireData<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a data object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireData<'de>, A::Error> {
        let mut data = WireData::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Host => once(&mut data.host, map.next_value()?)?,
                Key::Path => once(&mut data.path, map.next_value()?)?,
                Key::Element => once(&mut data.element, map.next_value()?)?,
                // A map, never `null`: the general parser refuses a null form.
                Key::Form => once(&mut data.form, map.next_value()?)?,
                _ => return Err(give_up()),
            }
        }
        Ok(data)
    }
}

impl Wire<'_> {
    /// The event, if every field is there and every rule holds.
    fn validate(self, ctx: &ValidationContext) -> Option<Event> {
        let id = match self.id {
            None | Some(None) => None,
            Some(Some(id)) => Some(parse_id(&id.0).ok()?),
        };
        let session_id = SessionId::parse(&self.session_id?.0).ok()?;
        let event_type = EventType::from_pair(&self.category?.0, &self.name?.0)?;
        let data = self.data?;
        let host = Host::parse(&data.host?.0).ok()?;
        let path = UrlPath::parse(&data.path?.0).ok()?;
        let payload = match (event_type, data.element, data.form) {
            (EventType::PageView, None, None) => Payload::PageView(PageView { host, path }),
            (EventType::CtaClick, Some(element), None) => Payload::CtaClick(CtaClick {
                host,
                path,
                element: Element::parse(&element.0).ok()?,
            }),
            (EventType::FormSubmit, None, Some(form)) => {
                Form::check_depth(&form).ok()?;
                Payload::FormSubmit(FormSubmit {
                    host,
                    path,
                    form: Form::from_checked(form),
                })
            }
            _ => return None,
        };
        let timestamp = corrected(parse_timestamp(&self.timestamp?.0), ctx)?;
        if timestamp > ctx.latest_accepted() {
            return None;
        }
        Some(Event {
            id,
            session_id,
            timestamp,
            payload,
        })
    }
}
