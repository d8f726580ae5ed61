//! The rules of each field's value: `id`, `session_id`, `host`, `path`, `element` and
//! `form`, each pinning the error's path and code.

use eye_core::{ErrorCode, Event, MAX_FORM_DEPTH, Payload};
use serde_json::{Value, json};

use crate::helpers::{cta_click, ctx, form_submit, page_view, parse_ok, set, single_error};

#[test]
fn id_may_be_absent_null_or_a_hyphenated_uuid() {
    let absent = parse_ok(&page_view());
    let null = parse_ok(&set(page_view(), "/id", Value::Null));
    let upper = parse_ok(&set(
        page_view(),
        "/id",
        json!("0190A3F0-8C2E-7CC3-8D4E-2B1A3F5E6D7C"),
    ));

    assert_eq!(absent.id(), None);
    assert_eq!(null.id(), None);
    assert_eq!(
        upper.id().map(|u| u.to_string()).as_deref(),
        Some("0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c")
    );
}

#[test]
fn id_that_is_not_a_hyphenated_uuid_is_invalid_id() {
    for bad in [
        "",
        "42",
        "0190a3f08c2e7cc38d4e2b1a3f5e6d7c",
        "{0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c}",
        "urn:uuid:0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c",
        "0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7g",
        "0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7",
        // The nil UUID would make every later event with it a silent duplicate.
        "00000000-0000-0000-0000-000000000000",
    ] {
        let v = set(page_view(), "/id", json!(bad));

        assert_eq!(
            single_error(&v),
            ("/id".to_owned(), ErrorCode::InvalidId),
            "{bad}"
        );
    }
}

#[test]
fn session_id_of_1_to_128_printable_characters_is_accepted() {
    for ok in ["1", "abc-123_XYZ", "session with spaces", "séance ☕"] {
        parse_ok(&set(page_view(), "/session_id", json!(ok)));
    }
    parse_ok(&set(page_view(), "/session_id", json!("s".repeat(128))));
}

#[test]
fn session_id_empty_too_long_or_with_control_characters_is_invalid_session_id() {
    for bad in [
        String::new(),
        "s".repeat(129),
        "line\nbreak".to_owned(),
        "nul\u{0}".to_owned(),
        "del\u{7f}".to_owned(),
        "c1\u{9b}".to_owned(),
    ] {
        let v = set(page_view(), "/session_id", json!(bad));

        assert_eq!(
            single_error(&v),
            ("/session_id".to_owned(), ErrorCode::InvalidSessionId),
            "{bad:?}"
        );
    }
}

#[test]
fn host_names_ip_addresses_and_ports_are_accepted() {
    let long_name = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(long_name.len(), 253);
    for ok in [
        "www.consumeraffairs.com",
        "localhost",
        "localhost:8000",
        "10.0.0.1:65535",
        "xn--bcher-kva.example",
        "UPPER.Example.COM",
        long_name.as_str(),
    ] {
        parse_ok(&set(page_view(), "/data/host", json!(ok)));
    }
}

#[test]
fn host_that_is_not_a_host_name_with_port_is_invalid_host() {
    let too_long = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(62)
    );
    for bad in [
        "",
        "www.consumeraffairs.com/",
        "https://www.consumeraffairs.com",
        "bad host",
        "under_score.com",
        "-lead.com",
        "trail-.com",
        "a..b",
        "dot.",
        "host:",
        "host:0",
        "host:65536",
        "host:08000",
        "[::1]:8000",
        "bücher.example",
        too_long.as_str(),
    ] {
        let v = set(page_view(), "/data/host", json!(bad));

        assert_eq!(
            single_error(&v),
            ("/data/host".to_owned(), ErrorCode::InvalidHost),
            "{bad:?}"
        );
    }
}

#[test]
fn path_starting_with_slash_up_to_2048_characters_is_accepted() {
    for ok in [
        "/",
        "/pricing?plan=pro#faq",
        "/ünïcode/☕",
        &format!("/{}", "p".repeat(2047)),
    ] {
        parse_ok(&set(page_view(), "/data/path", json!(ok)));
    }
}

#[test]
fn path_without_leading_slash_or_too_long_is_invalid_path() {
    for bad in [
        String::new(),
        "pricing".to_owned(),
        "https://a.com/".to_owned(),
        format!("/{}", "p".repeat(2048)),
    ] {
        let v = set(page_view(), "/data/path", json!(bad));

        assert_eq!(
            single_error(&v),
            ("/data/path".to_owned(), ErrorCode::InvalidPath),
            "{bad:?}"
        );
    }
}

#[test]
fn element_of_1_to_256_characters_is_accepted_and_empty_or_longer_is_invalid_element() {
    parse_ok(&set(cta_click(), "/data/element", json!("é".repeat(256))));
    for bad in [String::new(), "e".repeat(257)] {
        let v = set(cta_click(), "/data/element", json!(bad));

        assert_eq!(
            single_error(&v),
            ("/data/element".to_owned(), ErrorCode::InvalidElement)
        );
    }
}

#[test]
fn form_may_be_any_json_object_including_empty() {
    for form in [
        json!({}),
        json!({"n": 1, "b": true, "x": null, "list": [1, "two", {"three": 3}]}),
        json!({"nested": {"deeper": {"deepest": "ok"}}}),
    ] {
        let event = parse_ok(&set(form_submit(), "/data/form", form.clone()));

        let Payload::FormSubmit(f) = event.payload() else {
            panic!("not a form submit");
        };
        assert_eq!(Value::Object(f.form.as_map().clone()), form);
    }
}

/// An object nested `levels` deep, alternating objects and arrays: level 1 is the
/// object itself.
fn nested(levels: usize) -> Value {
    let mut v = json!("leaf");
    for level in (1..=levels).rev() {
        v = if level % 2 == 0 {
            json!([v])
        } else {
            json!({"k": v})
        };
    }
    v
}

#[test]
fn form_nested_32_levels_is_accepted_and_33_is_form_too_deep() {
    parse_ok(&set(form_submit(), "/data/form", nested(MAX_FORM_DEPTH)));

    let v = set(form_submit(), "/data/form", nested(MAX_FORM_DEPTH + 1));

    assert_eq!(
        single_error(&v),
        ("/data/form".to_owned(), ErrorCode::FormTooDeep)
    );
}

#[test]
fn form_nested_beyond_the_json_parser_limit_is_rejected_without_panicking() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let json = format!(
        r#"{{"session_id": "s", "category": "form_interaction", "name": "submit",
            "data": {{"host": "a.com", "path": "/", "form": {{"x": {deep}}}}},
            "timestamp": "2022-01-01T00:00:00"}}"#
    );

    let err = Event::parse_json(json.as_bytes(), &ctx()).unwrap_err();

    assert_eq!(err.errors().len(), 1);
    assert_eq!(err.errors()[0].code, ErrorCode::InvalidJson, "{err}");
}
