//! `Event::parse_valid`, the one-pass reading of a valid event: it reads every valid
//! event the general parser reads, to the same event, and nothing else.

use chrono::Duration;
use eye_core::{Event, ValidationContext};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::{ctx, now, set, valid_events};
use crate::{mutations, strategies};

/// The general parser's answer for this text, when it is JSON.
fn general(
    text: &str,
    ctx: &ValidationContext,
) -> Option<Result<Event, eye_core::ValidationErrors>> {
    let value: Value = serde_json::from_str(text).ok()?;
    Some(Event::parse_owned(value, ctx))
}

/// Reads `text` directly, and checks that the general parser gives the same event.
fn direct(text: &str, ctx: &ValidationContext) -> Option<Event> {
    let event = Event::parse_valid(text, ctx)?;
    assert_eq!(general(text, ctx), Some(Ok(event.clone())), "{text}");
    Some(event)
}

#[test]
fn each_valid_event_is_read_directly() {
    for v in valid_events() {
        let text = v.to_string();
        assert!(direct(&text, &ctx()).is_some(), "{text}");
        // Whitespace around it and between tokens, as a client may send it.
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        assert!(direct(&format!("\n {pretty} \t\n"), &ctx()).is_some());
    }
}

#[test]
fn a_null_id_is_no_id_and_escaped_strings_are_decoded() {
    let v = set(valid_events()[0].clone(), "/id", Value::Null);
    let event = direct(&v.to_string(), &ctx()).unwrap();
    assert_eq!(event.id(), None);

    // Escapes in keys and values (the reader cannot borrow these).
    let text = r#"{"sess\u0069on_id": "a\"b\\c\u00e9", "category": "page_interaction",
        "name": "page_view", "data": {"host": "a.com", "path": "/x\/y"},
        "timestamp": "2022-04-11T01:08:01Z"}"#;
    let event = direct(text, &ctx()).unwrap();
    assert_eq!(event.session_id().as_str(), "a\"b\\c\u{e9}");
}

#[test]
fn a_sent_at_correction_applies_as_in_the_general_parser() {
    // The sender's clock is an hour fast: its "now + 30 min" is 30 min ago here.
    let ctx = ValidationContext::at(now()).with_sent_at(now() + Duration::hours(1));
    let stamp = (now() + Duration::minutes(30)).to_rfc3339();
    let v = set(valid_events()[0].clone(), "/timestamp", json!(stamp));
    let event = direct(&v.to_string(), &ctx).unwrap();
    assert_eq!(event.timestamp(), now() - Duration::minutes(30));
    // Without the correction it is in the future: not read directly, refused by both.
    assert!(Event::parse_valid(&v.to_string(), &crate::helpers::ctx()).is_none());
    assert!(
        general(&v.to_string(), &crate::helpers::ctx())
            .unwrap()
            .is_err()
    );
}

#[test]
fn shapes_the_direct_reading_leaves_to_the_general_parser() {
    let [page_view, cta_click, form_submit] = valid_events();
    let pv = page_view.to_string();
    let no_brace = pv.trim_start_matches('{').trim_end_matches('}');
    let cases = [
        // A repeated key: the general parser keeps the last one and accepts it.
        (format!(r#"{{"session_id": "first", {no_brace}}}"#), true),
        // Arrays, where serde would read a struct from a sequence.
        (
            r#"["s", "page_interaction", "page_view"]"#.to_owned(),
            false,
        ),
        (
            set(page_view.clone(), "/data", json!(["a.com", "/"])).to_string(),
            false,
        ),
        // A null where a string or an object must be.
        (
            set(page_view.clone(), "/session_id", Value::Null).to_string(),
            false,
        ),
        (
            set(form_submit.clone(), "/data/form", Value::Null).to_string(),
            false,
        ),
        (
            set(cta_click.clone(), "/data/element", Value::Null).to_string(),
            false,
        ),
        // A field of another type's data.
        (
            set(page_view.clone(), "/data/element", json!("x")).to_string(),
            false,
        ),
        (
            set(page_view.clone(), "/data/form", json!({})).to_string(),
            false,
        ),
        (
            set(cta_click.clone(), "/data/form", json!({})).to_string(),
            false,
        ),
        // Not one JSON value.
        (format!("{pv} {pv}"), false),
        (format!("{pv} x"), false),
    ];
    for (text, general_accepts) in cases {
        assert!(Event::parse_valid(&text, &ctx()).is_none(), "{text}");
        let answer = general(&text, &ctx());
        assert_eq!(
            answer.as_ref().is_some_and(Result::is_ok),
            general_accepts,
            "{text}: {answer:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_valid_event_is_read_directly_as_the_general_parser_reads_it(
        v in strategies::valid_event(),
    ) {
        prop_assert!(direct(&v.to_string(), &ctx()).is_some());
    }

    #[test]
    fn an_event_with_a_broken_rule_is_never_read_directly(
        v in strategies::valid_event(),
        m in mutations::mutation(),
    ) {
        let (broken, _) = m.apply(v);
        prop_assert!(Event::parse_valid(&broken.to_string(), &ctx()).is_none(), "{}", broken);
    }

    #[test]
    fn what_is_read_directly_the_general_parser_reads_the_same(
        v in strategies::valid_event(),
        index in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        // One byte changed: mostly invalid, sometimes another valid event.
        let mut bytes = v.to_string().into_bytes();
        let i = index.index(bytes.len());
        bytes[i] = byte;
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = direct(text, &ctx());
        }
    }
}
