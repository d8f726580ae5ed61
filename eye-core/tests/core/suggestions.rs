//! Near misses of the (category, name) pair get the canonical pair suggested.

use eye_core::{ErrorCode, EventType};
use serde_json::json;

use crate::helpers::{form_submit, page_view, parse_err, set};

/// The single unknown_event_type error for this (category, name). The page view's data
/// may bring other errors when the pair spells another type; they are left out here.
fn unknown_type(category: &str, name: &str) -> eye_core::FieldError {
    let v = set(
        set(page_view(), "/category", json!(category)),
        "/name",
        json!(name),
    );
    let errors = parse_err(&v);
    let mut unknown = errors
        .iter()
        .filter(|e| e.code == ErrorCode::UnknownEventType);
    let (Some(e), None) = (unknown.next(), unknown.next()) else {
        panic!("expected one unknown_event_type error, got {errors:?}");
    };
    e.clone()
}

#[test]
fn original_brief_spelling_page_interaction_pageview_suggests_page_view() {
    let e = unknown_type("page interaction", "pageview");

    assert_eq!(e.suggestion.as_deref(), Some("page_interaction/page_view"));
    assert_eq!(e.path, "/category");
    assert!(
        e.message
            .contains("did you mean category `page_interaction` and name `page_view`?"),
        "{}",
        e.message
    );
}

/// Each unknown `(category, name)` is answered with the suggestion of `want`.
fn assert_suggested(cases: &[(&str, &str, EventType)]) {
    for &(category, name, want) in cases {
        let e = unknown_type(category, name);

        assert_eq!(
            e.suggestion.as_deref(),
            Some(want.as_str()),
            "{category}/{name}"
        );
    }
}

#[test]
fn case_spaces_and_hyphens_are_ignored_when_suggesting() {
    let cases = [
        ("Page-Interaction", "Page View", EventType::PageView),
        ("PAGE_INTERACTION", "CTA-click", EventType::CtaClick),
        ("page interaction", "ctaclick", EventType::CtaClick),
        ("formInteraction", "Submit", EventType::FormSubmit),
        ("form interaction", "submit", EventType::FormSubmit),
    ];
    assert_suggested(&cases);
}

#[test]
fn a_name_only_one_type_has_is_suggested_under_any_category() {
    let cases = [
        ("clicks", "cta_click", EventType::CtaClick),
        ("page_interaction", "submit", EventType::FormSubmit),
        ("form_interaction", "page_view", EventType::PageView),
        ("web", "pageView", EventType::PageView),
    ];
    assert_suggested(&cases);
}

#[test]
fn unrelated_pair_gets_no_suggestion_but_the_allowed_list() {
    let e = unknown_type("video", "play");

    assert_eq!(e.suggestion, None);
    assert!(!e.message.contains("did you mean"), "{}", e.message);
    assert!(
        e.message.contains(
            "page_interaction/page_view, page_interaction/cta_click, form_interaction/submit"
        ),
        "{}",
        e.message
    );
}

#[test]
fn suggestion_is_serialised_only_when_present() {
    let with = unknown_type("page interaction", "pageview");
    let without = unknown_type("video", "play");

    assert_eq!(
        serde_json::to_value(&with).unwrap()["suggestion"],
        "page_interaction/page_view"
    );
    assert!(
        serde_json::to_value(&without)
            .unwrap()
            .get("suggestion")
            .is_none()
    );
}

#[test]
fn event_type_suggest_and_from_pair_agree_on_exact_pairs() {
    for t in EventType::ALL {
        assert_eq!(EventType::from_pair(t.category(), t.name()), Some(t));
        assert_eq!(EventType::suggest(t.category(), t.name()), Some(t));
    }
    assert_eq!(EventType::from_pair("page interaction", "pageview"), None);
}

#[test]
fn near_miss_data_is_checked_against_the_suggested_type_so_every_problem_is_reported() {
    let v = json!({
        "session_id": "s",
        "category": "page interaction",
        "name": "ctaclick",
        "data": {"host": "bad host", "path": "/"},
        "timestamp": "2022-04-11T01:08:01"
    });

    let errors = parse_err(&v);

    let got: Vec<_> = errors.iter().map(|e| (e.path.as_str(), e.code)).collect();
    assert_eq!(
        got,
        [
            ("/category", ErrorCode::UnknownEventType),
            ("/data/host", ErrorCode::InvalidHost),
            ("/data/element", ErrorCode::MissingField),
        ]
    );
}

#[test]
fn data_of_an_unrelated_pair_is_not_checked_against_a_guess() {
    let mut v = set(page_view(), "/data/host", json!("bad host"));
    v["category"] = json!("video");
    v["name"] = json!("play");

    let errors = parse_err(&v);

    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].code, ErrorCode::UnknownEventType);
}

#[test]
fn data_is_not_checked_against_a_guess_made_from_the_name_alone() {
    // `page_view` is suggested (only one type has that name), but the data is not
    // checked against it: the form may well be what was meant.
    let v = set(form_submit(), "/name", json!("page_view"));

    let errors = parse_err(&v);

    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].suggestion.as_deref(),
        Some("page_interaction/page_view")
    );
}
