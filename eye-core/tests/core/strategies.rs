//! proptest strategies: valid events of every type, and values for each field drawn
//! from a wider space that holds both valid and invalid ones.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// A valid session id: 1 to 128 characters, none of them a control character.
pub fn session_id() -> impl Strategy<Value = String> {
    "[^\\p{Cc}]{1,128}"
}

/// A valid host: one to three DNS labels and an optional port.
pub fn host() -> impl Strategy<Value = String> {
    let label = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    (
        prop::collection::vec(label, 1..=3),
        prop::option::of(1u32..=65535),
    )
        .prop_map(|(labels, port)| {
            let name = labels.join(".");
            match port {
                Some(p) => format!("{name}:{p}"),
                None => name,
            }
        })
}

/// A valid path: `/` then up to 300 characters of anything.
pub fn path() -> impl Strategy<Value = String> {
    "(?s)/.{0,300}"
}

/// A valid element: 1 to 256 characters of anything.
pub fn element() -> impl Strategy<Value = String> {
    "(?s).{1,256}"
}

/// A valid timestamp, in the past of the tests' clock, in any accepted format.
pub fn timestamp() -> impl Strategy<Value = String> {
    (
        1000u32..=2021,
        1u32..=12,
        1u32..=28,
        0u32..=23,
        0u32..=59,
        0u32..=59,
        "[0-9]{0,9}",
        prop::sample::select(vec!['T', ' ']),
        offset(),
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, sep, off)| {
            let frac = if frac.is_empty() {
                frac
            } else {
                format!(".{frac}")
            };
            format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{off}")
        })
}

/// No offset, `Z`, or `±HH:MM`.
fn offset() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("Z".to_owned()),
        (prop::sample::select(vec!['+', '-']), 0u32..=23, 0u32..=59)
            .prop_map(|(sign, h, m)| format!("{sign}{h:02}:{m:02}")),
    ]
}

/// A hyphenated UUID in either case.
pub fn uuid() -> impl Strategy<Value = String> {
    (
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        any::<bool>(),
    )
        .prop_map(|(u, upper)| if upper { u.to_uppercase() } else { u })
}

/// Any JSON value, nested a few levels.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any JSON object: what `data.form` may hold.
pub fn form() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(".{0,10}", json_value(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// The `category`, `name` and `data` of a valid event of any type.
fn typed_data() -> impl Strategy<Value = (&'static str, &'static str, Value)> {
    prop_oneof![
        (host(), path()).prop_map(|(h, p)| (
            "page_interaction",
            "page_view",
            json!({"host": h, "path": p})
        )),
        (host(), path(), element()).prop_map(|(h, p, e)| (
            "page_interaction",
            "cta_click",
            json!({"host": h, "path": p, "element": e})
        )),
        (host(), path(), form()).prop_map(|(h, p, f)| (
            "form_interaction",
            "submit",
            json!({"host": h, "path": p, "form": f})
        )),
    ]
}

/// A valid event of any type, with or without an id (absent, null or a UUID).
pub fn valid_event() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            uuid().prop_map(|u| Some(json!(u)))
        ],
        session_id(),
        typed_data(),
        timestamp(),
    )
        .prop_map(|(id, session_id, (category, name, data), timestamp)| {
            let mut v = json!({
                "session_id": session_id,
                "category": category,
                "name": name,
                "data": data,
                "timestamp": timestamp,
            });
            if let Some(id) = id {
                v["id"] = id;
            }
            v
        })
}
