//! Near misses of the (category, name) pair get the canonical pair suggested.

use eye_core::{ErrorCode, EventType};
use serde_json::json;

use crate::helpers::{page_view, parse_err, set};

/// The single unknown_event_type error for this (category, name).
fn unknown_type(category: &str, name: &str) -> eye_core::FieldError {
    let v = set(
        set(page_view(), "/category", json!(category)),
        "/name",
        json!(name),
    );
    let errors = parse_err(&v);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].code, ErrorCode::UnknownEventType);
    errors[0].clone()
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

#[test]
fn case_spaces_and_hyphens_are_ignored_when_suggesting() {
    let cases = [
        ("Page-Interaction", "Page View", EventType::PageView),
        ("PAGE_INTERACTION", "CTA-click", EventType::CtaClick),
        ("page interaction", "ctaclick", EventType::CtaClick),
        ("formInteraction", "Submit", EventType::FormSubmit),
        ("form interaction", "submit", EventType::FormSubmit),
    ];
    for (category, name, want) in cases {
        let e = unknown_type(category, name);

        assert_eq!(
            e.suggestion.as_deref(),
            Some(want.as_str()),
            "{category}/{name}"
        );
    }
}

#[test]
fn a_name_only_one_type_has_is_suggested_under_any_category() {
    let cases = [
        ("clicks", "cta_click", EventType::CtaClick),
        ("page_interaction", "submit", EventType::FormSubmit),
        ("form_interaction", "page_view", EventType::PageView),
        ("web", "pageView", EventType::PageView),
    ];
    for (category, name, want) in cases {
        let e = unknown_type(category, name);

        assert_eq!(
            e.suggestion.as_deref(),
            Some(want.as_str()),
            "{category}/{name}"
        );
    }
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
