//! Validation reports every problem in one pass, in a stable order.

use eye_core::{ErrorCode, Event, ValidationErrors};
use serde_json::json;

use crate::helpers::{ctx, parse_err};

#[test]
fn every_problem_of_an_event_is_reported_at_once() {
    let v = json!({
        "id": "not-a-uuid",
        "session_id": "",
        "category": "page_interaction",
        "name": "cta_click",
        "data": {"host": "bad host", "path": "no-slash", "element": "", "colour": "red"},
        "timestamp": "2099-01-01T00:00:00Z",
        "extra": true
    });

    let errors = parse_err(&v);

    let got: Vec<_> = errors.iter().map(|e| (e.path.as_str(), e.code)).collect();
    assert_eq!(
        got,
        [
            ("/extra", ErrorCode::UnknownField),
            ("/id", ErrorCode::InvalidId),
            ("/session_id", ErrorCode::InvalidSessionId),
            ("/data/colour", ErrorCode::UnknownField),
            ("/data/host", ErrorCode::InvalidHost),
            ("/data/path", ErrorCode::InvalidPath),
            ("/data/element", ErrorCode::InvalidElement),
            ("/timestamp", ErrorCode::TimestampInFuture),
        ]
    );
}

#[test]
fn missing_and_wrong_typed_fields_are_all_reported() {
    let v = json!({"session_id": 7, "name": "page_view", "data": [], "timestamp": null});

    let errors = parse_err(&v);

    let got: Vec<_> = errors.iter().map(|e| (e.path.as_str(), e.code)).collect();
    assert_eq!(
        got,
        [
            ("/session_id", ErrorCode::WrongType),
            ("/category", ErrorCode::MissingField),
            ("/data", ErrorCode::WrongType),
            ("/timestamp", ErrorCode::WrongType),
        ]
    );
}

#[test]
fn an_empty_object_reports_each_required_field() {
    let errors = parse_err(&json!({}));

    let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/session_id", "/category", "/name", "/data", "/timestamp"]
    );
    assert!(errors.iter().all(|e| e.code == ErrorCode::MissingField));
}

#[test]
fn unknown_event_type_does_not_hide_the_other_fields_errors() {
    let v = json!({
        "session_id": "",
        "category": "page interaction",
        "name": "pageview",
        "data": {"host": "a.com", "path": "/"},
        "timestamp": "soon"
    });

    let codes: Vec<_> = parse_err(&v).into_iter().map(|e| e.code).collect();

    assert_eq!(
        codes,
        [
            ErrorCode::InvalidSessionId,
            ErrorCode::UnknownEventType,
            ErrorCode::InvalidTimestamp
        ]
    );
}

#[test]
fn errors_display_as_path_message_and_code_joined_by_semicolons() {
    let err = Event::parse_json(br#"{"session_id": "s"}"#, &ctx()).unwrap_err();

    let text = err.to_string();

    assert!(
        text.starts_with("/category: `category` is required (missing_field); "),
        "{text}"
    );
    assert_eq!(text.matches("(missing_field)").count(), 4, "{text}");
}

#[test]
fn validation_errors_serialise_as_a_plain_list() {
    let err = Event::parse_json(b"[]", &ctx()).unwrap_err();

    let json = serde_json::to_value(&err).unwrap();

    assert_eq!(
        json,
        json!([{"path": "", "code": "wrong_type", "message": "an event must be a JSON object, not an array"}])
    );
    let back: ValidationErrors = serde_json::from_value(json).unwrap();
    assert_eq!(back, err);
}

#[test]
fn validation_errors_are_never_empty() {
    assert!(ValidationErrors::from_vec(Vec::new()).is_none());
}

#[test]
fn problems_past_twenty_are_counted_in_one_too_many_errors_entry() {
    let mut v = json!({
        "session_id": "s",
        "category": "page_interaction",
        "name": "page_view",
        "data": {"host": "bad host", "path": "/"},
        "timestamp": "2022-01-01T00:00:00Z",
    });
    for i in 0..10_000 {
        v[format!("k{i}")] = json!(0);
    }

    let errors = Event::parse_value(&v, &ctx()).unwrap_err();

    let listed = errors.errors();
    assert_eq!(listed.len(), eye_core::MAX_ERRORS_PER_EVENT + 1);
    assert!(
        listed[..20]
            .iter()
            .all(|e| e.code == ErrorCode::UnknownField)
    );
    let summary = &listed[20];
    assert_eq!(
        (summary.path.as_str(), summary.code),
        ("", ErrorCode::TooManyErrors)
    );
    // 10,000 unknown keys and the host: 20 listed, the rest counted.
    assert_eq!(summary.omitted, Some(10_001 - 20));
    assert_eq!(errors.found(), 10_001);
}
