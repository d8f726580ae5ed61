//! The seed's examples, verbatim. The seed is the HTTP contract The Eye keeps.

use eye_core::{ErrorCode, Event, EventQuery, EventType, PageLimits, format_timestamp};

use crate::helpers::ctx;

/// The seed's three `data` snippets, copied as written (each ends with the `,` that
/// separates it from the next field).
const SEED_PAGE_VIEW: &str = r#""data": {
  "host": "www.consumeraffairs.com",
  "path": "/",
},"#;
const SEED_CTA_CLICK: &str = r#""data": {
  "host": "www.consumeraffairs.com",
  "path": "/",
  "element": "chat bubble"
},"#;
const SEED_FORM_SUBMIT: &str = r#""data": {
  "host": "www.consumeraffairs.com",
  "path": "/",
  "form": {
    "first_name": "John",
    "last_name": "Doe"
  }
},"#;

/// The body of the seed's `curl -X POST /events` example.
const SEED_CURL_BODY: &str = r#"{"session_id": "123", "category": "page_interaction", "name": "page_view", "data": {"host": "www.consumeraffairs.com", "path": "/"}, "timestamp": "2022-01-01 00:00:00.000000"}"#;

/// An event around one of the seed's `data` snippets.
fn event_with(category: &str, name: &str, data_snippet: &str) -> String {
    format!(
        r#"{{"session_id": "123", "category": "{category}", "name": "{name}",
{data_snippet}
"timestamp": "2022-04-11T01:08:01.407119"}}"#
    )
}

#[test]
fn seed_curl_example_is_accepted() {
    let event = Event::parse_json(SEED_CURL_BODY.as_bytes(), &ctx()).unwrap();

    assert_eq!(event.event_type(), EventType::PageView);
    assert_eq!(event.session_id().as_str(), "123");
    assert_eq!(
        format_timestamp(&event.timestamp()),
        "2022-01-01T00:00:00.000000Z"
    );
}

/// The seed's page_view snippet has a trailing comma after `"path": "/"`. That is not
/// JSON (nor did the seed's Django JSON parser accept it), so it is rejected as
/// invalid_json, with a message that says where; without the comma it is accepted.
#[test]
fn seed_page_view_snippet_with_its_trailing_comma_is_invalid_json() {
    let verbatim = event_with("page_interaction", "page_view", SEED_PAGE_VIEW);

    let err = Event::parse_json(verbatim.as_bytes(), &ctx()).unwrap_err();

    assert_eq!(err.errors().len(), 1);
    assert_eq!(err.errors()[0].code, ErrorCode::InvalidJson);
    assert!(err.errors()[0].message.contains("trailing comma"), "{err}");
    let fixed = verbatim.replace(r#""path": "/","#, r#""path": "/""#);
    let event = Event::parse_json(fixed.as_bytes(), &ctx()).unwrap();
    assert_eq!(event.event_type(), EventType::PageView);
}

#[test]
fn seed_cta_click_snippet_is_accepted() {
    let json = event_with("page_interaction", "cta_click", SEED_CTA_CLICK);

    let event = Event::parse_json(json.as_bytes(), &ctx()).unwrap();

    assert_eq!(event.event_type(), EventType::CtaClick);
    assert_eq!(
        serde_json::to_value(event.payload()).unwrap(),
        serde_json::json!({"host": "www.consumeraffairs.com", "path": "/", "element": "chat bubble"})
    );
}

#[test]
fn seed_form_submit_snippet_is_accepted() {
    let json = event_with("form_interaction", "submit", SEED_FORM_SUBMIT);

    let event = Event::parse_json(json.as_bytes(), &ctx()).unwrap();

    assert_eq!(event.event_type(), EventType::FormSubmit);
    assert_eq!(
        serde_json::to_value(event.payload()).unwrap()["form"],
        serde_json::json!({"first_name": "John", "last_name": "Doe"})
    );
}

#[test]
fn seed_timestamp_examples_are_the_same_instant() {
    for ts in ["2022-04-11T01:08:01.407119", "2022-04-11 01:08:01.407119"] {
        let json = SEED_CURL_BODY.replace("2022-01-01 00:00:00.000000", ts);

        let event = Event::parse_json(json.as_bytes(), &ctx()).unwrap();

        assert_eq!(
            format_timestamp(&event.timestamp()),
            "2022-04-11T01:08:01.407119Z"
        );
    }
}

#[test]
fn seed_snippet_data_under_another_pair_is_rejected() {
    let json = event_with("page_interaction", "page_view", SEED_CTA_CLICK);

    let err = Event::parse_json(json.as_bytes(), &ctx()).unwrap_err();

    assert_eq!(err.errors()[0].path, "/data/element");
    assert_eq!(err.errors()[0].code, ErrorCode::UnknownField);
}

#[test]
fn original_brief_example_is_rejected_with_the_canonical_pair_suggested() {
    let json = SEED_CURL_BODY
        .replace("\"page_interaction\"", "\"page interaction\"")
        .replace("\"page_view\"", "\"pageview\"");

    let err = Event::parse_json(json.as_bytes(), &ctx()).unwrap_err();

    assert_eq!(err.errors().len(), 1);
    assert_eq!(err.errors()[0].code, ErrorCode::UnknownEventType);
    assert_eq!(
        err.errors()[0].suggestion.as_deref(),
        Some("page_interaction/page_view")
    );
}

#[test]
fn seed_query_examples_parse() {
    let limits = PageLimits::default();
    let cases: [&[(&str, &str)]; 6] = [
        &[],
        &[("page", "2")],
        &[("session_id", "abc123")],
        &[("category", "name")],
        &[("start_time", "2022-01-01"), ("end_time", "2022-02-01")],
        &[
            ("session_id", "abc123"),
            ("category", "name"),
            ("start_time", "2022-01-01"),
            ("end_time", "2022-02-01"),
        ],
    ];
    for pairs in cases {
        EventQuery::from_pairs(pairs.iter().copied(), &limits)
            .unwrap_or_else(|e| panic!("{pairs:?}: {e}"));
    }
    let all = EventQuery::from_pairs(cases[5].iter().copied(), &limits).unwrap();
    assert_eq!(all.session_id.as_deref(), Some("abc123"));
    assert_eq!(all.category.as_deref(), Some("name"));
    assert_eq!(all.pagination.page, 1);
}
