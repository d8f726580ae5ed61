//! Invalid events for the agreement tests: one broken rule each, with the code the
//! parser must answer; and timestamps built from parts that may be out of range.

use chrono::NaiveDate;
use eye_core::{EVENT_FIELDS, ErrorCode};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::retype;
use crate::strategies;

/// One way to break a valid event, and the code the parser must answer with.
#[derive(Debug, Clone)]
pub enum Mutation {
    Remove(&'static str),
    UnknownTopField(String),
    UnknownDataField(String),
    WrongType(&'static str, Value),
    SessionId(String),
    Host(String),
    Path(String),
    Element(String),
    Id(String),
    Timestamp(String),
    EventType(String, String),
    FormNotObject(Value),
}

impl Mutation {
    pub fn apply(&self, mut v: Value) -> (Value, ErrorCode) {
        let code = match self {
            Self::Remove(field) => {
                match field.strip_prefix("data/") {
                    Some(f) => v["data"].as_object_mut().unwrap().remove(f),
                    None => v.as_object_mut().unwrap().remove(*field),
                };
                ErrorCode::MissingField
            }
            Self::UnknownTopField(k) => {
                v[k.as_str()] = json!(1);
                ErrorCode::UnknownField
            }
            Self::UnknownDataField(k) => {
                v["data"][k.as_str()] = json!("x");
                ErrorCode::UnknownField
            }
            Self::WrongType(field, value) => {
                match field.strip_prefix("data/") {
                    Some(f) => v["data"][f] = value.clone(),
                    None => v[*field] = value.clone(),
                }
                ErrorCode::WrongType
            }
            Self::SessionId(s) => {
                v["session_id"] = json!(s);
                ErrorCode::InvalidSessionId
            }
            Self::Host(s) => {
                v["data"]["host"] = json!(s);
                ErrorCode::InvalidHost
            }
            Self::Path(s) => {
                v["data"]["path"] = json!(s);
                ErrorCode::InvalidPath
            }
            Self::Element(s) => {
                retype(&mut v, "page_interaction", "cta_click");
                v["data"]["element"] = json!(s);
                ErrorCode::InvalidElement
            }
            Self::Id(s) => {
                v["id"] = json!(s);
                ErrorCode::InvalidId
            }
            Self::Timestamp(s) => {
                v["timestamp"] = json!(s);
                ErrorCode::InvalidTimestamp
            }
            Self::EventType(c, n) => {
                v["category"] = json!(c);
                v["name"] = json!(n);
                ErrorCode::UnknownEventType
            }
            Self::FormNotObject(f) => {
                retype(&mut v, "form_interaction", "submit");
                v["data"]["form"] = f.clone();
                ErrorCode::WrongType
            }
        };
        (v, code)
    }
}

fn bad_session_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{129,140}",
        "[a-z]{0,5}[\\x00-\\x1f\\x7f-\\x{9f}][a-z]{0,5}",
    ]
}

fn bad_host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        strategies::host().prop_map(|h| format!("{h} x")),
        strategies::host().prop_map(|h| format!("-{h}")),
        strategies::host().prop_map(|h| format!("{h}.")),
        strategies::host().prop_map(|h| format!("{h}/")),
        strategies::host().prop_map(|h| format!("_{h}")),
        strategies::host().prop_map(|h| format!("https://{h}")),
        "[a-z]{64,70}",
        "[a-z]{1,10}:(0|0[0-9]{1,4}|6553[6-9]|[7-9][0-9]{4}|[0-9]{6,7})",
        "[a-z]{60}(\\.[a-z]{60}){4}",
    ]
}

fn bad_path() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[^/].{0,50}", "/[a-z]{2048,2060}"]
}

fn bad_element() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), ".{257,270}"]
}

fn bad_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{32}",
        "[0-9a-z]{0,40}",
        strategies::uuid().prop_map(|u| format!("{{{u}}}")),
        strategies::uuid().prop_map(|u| format!("urn:uuid:{u}")),
        strategies::uuid().prop_map(|u| u.replacen('-', "", 1)),
    ]
    .prop_filter("not a UUID", |s| {
        !(s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4)
            || uuid::Uuid::try_parse(s).is_err()
    })
}

fn bad_timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        strategies::timestamp().prop_map(|t| t.replacen(['T', ' '], "_", 1)),
        strategies::timestamp().prop_map(|t| t[..16].to_owned()),
        strategies::timestamp().prop_map(|t| t[..10].to_owned()),
        strategies::timestamp().prop_map(|t| format!("{}.1234567890", &t[..19])),
        strategies::timestamp().prop_map(|t| format!("{}+0100", &t[..19])),
        strategies::timestamp().prop_map(|t| format!("{} ", t)),
        "[0-9]{4}-(1[3-9]|00)-[0-2][1-9]T00:00:00",
        "[0-9]{4}-0[1-9]-[0-2][1-9]T(2[4-9]|[3-9][0-9]):00:00",
        "[a-z ]{0,20}",
    ]
}

fn bad_pair() -> impl Strategy<Value = (String, String)> {
    ("[a-z_ ]{0,20}", "[a-z_ ]{0,20}").prop_filter("not a known pair", |(c, n)| {
        eye_core::EventType::from_pair(c, n).is_none()
    })
}

fn unknown_key(allowed: &'static [&'static str]) -> impl Strategy<Value = String> {
    "[a-z_]{1,12}".prop_filter("unknown", move |k| !allowed.contains(&k.as_str()))
}

/// The fields every event needs, as paths (`data/host` is `host` inside `data`).
const REQUIRED_FIELDS: [&str; 7] = [
    "session_id",
    "category",
    "name",
    "data",
    "timestamp",
    "data/host",
    "data/path",
];

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let wrong = prop_oneof![
        Just(json!(1)),
        Just(json!(true)),
        Just(json!([])),
        Just(json!(null))
    ];
    prop_oneof![
        prop::sample::select(REQUIRED_FIELDS.to_vec()).prop_map(Mutation::Remove),
        unknown_key(&EVENT_FIELDS).prop_map(Mutation::UnknownTopField),
        unknown_key(&["host", "path", "element", "form"]).prop_map(Mutation::UnknownDataField),
        (
            prop::sample::select(REQUIRED_FIELDS.to_vec()),
            wrong.clone()
        )
            .prop_filter("null is a missing value only for id", |(_, v)| !v.is_null())
            .prop_map(|(f, v)| Mutation::WrongType(f, v)),
        bad_session_id().prop_map(Mutation::SessionId),
        bad_host().prop_map(Mutation::Host),
        bad_path().prop_map(Mutation::Path),
        bad_element().prop_map(Mutation::Element),
        bad_id().prop_map(Mutation::Id),
        bad_timestamp().prop_map(Mutation::Timestamp),
        bad_pair().prop_map(|(c, n)| Mutation::EventType(c, n)),
        prop_oneof![
            Just(json!([])),
            Just(json!("a=1")),
            Just(json!(3)),
            Just(json!(null))
        ]
        .prop_map(Mutation::FormNotObject),
    ]
}

/// A timestamp assembled from parts that may each be out of range, with its verdict
/// under the calendar (which only the parser checks).
pub fn timestamp_parts() -> impl Strategy<Value = (String, bool)> {
    (
        1000i32..=2021,
        0u32..=13,
        0u32..=32,
        0u32..=24,
        0u32..=60,
        0u32..=60,
        "(\\.[0-9]{0,10})?",
        prop::sample::select(vec!["T", " ", "t", "_", "x"]),
        prop_oneof![
            Just(String::new()),
            Just("Z".to_owned()),
            Just("z".to_owned()),
            (
                prop::sample::select(vec!["+", "-"]),
                0u32..=24,
                0u32..=60,
                prop::sample::select(vec![":", ""])
            )
                .prop_map(|(s, h, m, colon)| format!("{s}{h:02}{colon}{m:02}")),
        ],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, sep, off)| {
            let in_calendar = NaiveDate::from_ymd_opt(y, mo, d).is_some();
            (
                format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}"),
                in_calendar,
            )
        })
}
