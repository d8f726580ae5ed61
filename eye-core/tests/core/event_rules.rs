//! The structure rules of an event: JSON syntax, required and typed fields, unknown
//! fields, the event type, the size limit and the error codes; each pinning the
//! error's path and code. Field value rules are in `field_rules`.

use eye_core::{ErrorCode, Event, EventType, MAX_EVENT_BYTES, Payload};
use serde_json::json;

use crate::helpers::{
    cta_click, ctx, form_submit, page_view, parse_err, parse_ok, remove, set, single_error,
    valid_events,
};

#[test]
fn each_valid_event_parses_to_its_typed_payload() {
    let [pv, cta, form] = valid_events().map(|v| parse_ok(&v));

    assert!(matches!(pv.payload(), Payload::PageView(p) if p.path.as_str() == "/"));
    assert!(matches!(cta.payload(), Payload::CtaClick(p) if p.element.as_str() == "chat bubble"));
    let Payload::FormSubmit(f) = form.payload() else {
        panic!("{form:?} should be a form submit");
    };
    assert_eq!(f.form.as_map()["first_name"], "John");
    assert_eq!(form.event_type(), EventType::FormSubmit);
    assert_eq!(pv.payload().host().as_str(), "www.consumeraffairs.com");
}

#[test]
fn malformed_json_is_invalid_json_at_the_root() {
    let err = Event::parse_json(br#"{"session_id": "#, &ctx()).unwrap_err();

    assert_eq!(err.errors().len(), 1);
    assert_eq!(err.errors()[0].code, ErrorCode::InvalidJson);
    assert_eq!(err.errors()[0].path, "");
}

#[test]
fn non_object_event_is_wrong_type_at_the_root() {
    for v in [json!([]), json!("event"), json!(1), json!(null)] {
        assert_eq!(
            single_error(&v),
            (String::new(), ErrorCode::WrongType),
            "{v}"
        );
    }
}

#[test]
fn every_missing_top_level_field_is_missing_field() {
    for field in ["session_id", "category", "name", "data", "timestamp"] {
        let v = remove(page_view(), &format!("/{field}"));

        assert_eq!(
            single_error(&v),
            (format!("/{field}"), ErrorCode::MissingField),
            "{field}"
        );
    }
}

#[test]
fn every_missing_data_field_is_missing_field() {
    let cases = [
        (page_view(), "/data/host"),
        (page_view(), "/data/path"),
        (cta_click(), "/data/element"),
        (form_submit(), "/data/form"),
    ];
    for (event, pointer) in cases {
        let v = remove(event, pointer);

        assert_eq!(
            single_error(&v),
            (pointer.to_owned(), ErrorCode::MissingField)
        );
    }
}

#[test]
fn every_wrong_typed_field_is_wrong_type() {
    let cases = [
        (page_view(), "/session_id", json!(123)),
        (page_view(), "/category", json!(["page_interaction"])),
        (page_view(), "/name", json!(null)),
        (page_view(), "/data", json!("host=a.com")),
        (page_view(), "/timestamp", json!(1_649_639_281)),
        (page_view(), "/id", json!(42)),
        (page_view(), "/data/host", json!(true)),
        (page_view(), "/data/path", json!({"p": "/"})),
        (cta_click(), "/data/element", json!(7)),
        (form_submit(), "/data/form", json!("first_name=John")),
        (form_submit(), "/data/form", json!([{"first_name": "John"}])),
    ];
    for (event, pointer, value) in cases {
        let v = set(event, pointer, value);

        assert_eq!(
            single_error(&v),
            (pointer.to_owned(), ErrorCode::WrongType),
            "{v}"
        );
    }
}

#[test]
fn unknown_top_level_field_is_unknown_field_and_lists_the_allowed_ones() {
    let v = set(page_view(), "/user_agent", json!("curl"));

    let errors = parse_err(&v);

    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "/user_agent");
    assert_eq!(errors[0].code, ErrorCode::UnknownField);
    assert!(
        errors[0].message.contains("session_id"),
        "{}",
        errors[0].message
    );
}

#[test]
fn unknown_data_field_is_unknown_field_for_every_type() {
    let cases = [
        (page_view(), "/data/element"),
        (cta_click(), "/data/form"),
        (form_submit(), "/data/element"),
        (form_submit(), "/data/referrer"),
    ];
    for (event, pointer) in cases {
        let v = set(event, pointer, json!("x"));

        assert_eq!(
            single_error(&v),
            (pointer.to_owned(), ErrorCode::UnknownField)
        );
    }
}

#[test]
fn unknown_field_path_escapes_slash_and_tilde_as_json_pointer() {
    let mut v = page_view();
    v["data"]["a/b~c"] = json!(1);

    assert_eq!(
        single_error(&v),
        ("/data/a~1b~0c".to_owned(), ErrorCode::UnknownField)
    );
}

#[test]
fn unknown_event_type_lists_every_allowed_pair() {
    let v = set(page_view(), "/name", json!("scroll"));

    let errors = parse_err(&v);

    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code, ErrorCode::UnknownEventType);
    assert_eq!(
        errors[0].path, "/name",
        "the category is known, the name is not"
    );
    for t in EventType::ALL {
        assert!(
            errors[0].message.contains(t.as_str()),
            "{}",
            errors[0].message
        );
    }
    assert_eq!(errors[0].suggestion, None);
}

#[test]
fn unknown_category_points_at_category() {
    let v = set(page_view(), "/category", json!("video_interaction"));

    assert_eq!(
        single_error(&v),
        ("/category".to_owned(), ErrorCode::UnknownEventType)
    );
}

#[test]
fn known_category_and_name_of_different_types_is_unknown_event_type() {
    let v = set(form_submit(), "/name", json!("page_view"));

    assert_eq!(
        single_error(&v),
        ("/name".to_owned(), ErrorCode::UnknownEventType)
    );
}

/// A form event whose JSON is exactly `bytes` long.
fn form_event_of_size(bytes: usize) -> Vec<u8> {
    let base = serde_json::to_vec(&set(form_submit(), "/data/form", json!({"pad": ""}))).unwrap();
    let pad = bytes - base.len();
    serde_json::to_vec(&set(
        form_submit(),
        "/data/form",
        json!({"pad": "x".repeat(pad)}),
    ))
    .unwrap()
}

#[test]
fn event_of_exactly_32_kib_is_accepted_and_one_byte_more_is_event_too_large() {
    let at_limit = form_event_of_size(MAX_EVENT_BYTES);
    assert_eq!(at_limit.len(), MAX_EVENT_BYTES);
    Event::parse_json(&at_limit, &ctx()).unwrap();

    let over = form_event_of_size(MAX_EVENT_BYTES + 1);
    let err = Event::parse_json(&over, &ctx()).unwrap_err();

    assert_eq!(err.errors().len(), 1);
    assert_eq!(err.errors()[0].code, ErrorCode::EventTooLarge);
    assert_eq!(err.errors()[0].path, "");
}

#[test]
fn every_error_code_serialises_as_its_stable_snake_case_name() {
    let codes = [
        (ErrorCode::InvalidJson, "invalid_json"),
        (ErrorCode::MissingField, "missing_field"),
        (ErrorCode::WrongType, "wrong_type"),
        (ErrorCode::UnknownField, "unknown_field"),
        (ErrorCode::UnknownEventType, "unknown_event_type"),
        (ErrorCode::InvalidId, "invalid_id"),
        (ErrorCode::InvalidSessionId, "invalid_session_id"),
        (ErrorCode::InvalidHost, "invalid_host"),
        (ErrorCode::InvalidPath, "invalid_path"),
        (ErrorCode::InvalidElement, "invalid_element"),
        (ErrorCode::FormTooDeep, "form_too_deep"),
        (ErrorCode::InvalidTimestamp, "invalid_timestamp"),
        (ErrorCode::TimestampInFuture, "timestamp_in_future"),
        (ErrorCode::EventTooLarge, "event_too_large"),
        (ErrorCode::DeadLettered, "dead_lettered"),
        (ErrorCode::TooManyErrors, "too_many_errors"),
    ];
    // The table pins each name; it must cover every code there is.
    assert_eq!(
        codes.map(|(code, _)| code),
        ErrorCode::ALL,
        "a code is missing from this table"
    );
    for (code, wire) in codes {
        assert_eq!(serde_json::to_value(code).unwrap(), json!(wire));
        assert_eq!(code.as_str(), wire);
        assert_eq!(code.to_string(), wire);
        assert_eq!(
            serde_json::from_value::<ErrorCode>(json!(wire)).unwrap(),
            code
        );
    }
}

#[test]
fn error_code_all_lists_every_variant_the_schema_derive_sees() {
    // The JSON Schema is derived from the enum itself, so it names every variant.
    let schema = schemars::schema_for!(ErrorCode).to_value();
    let mut variants: Vec<String> = schema["enum"]
        .as_array()
        .or_else(|| schema["oneOf"].as_array())
        .expect("an enum schema")
        .iter()
        .flat_map(|v| match v.as_str() {
            Some(s) => vec![s.to_owned()],
            None => v["enum"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(v.get("const"))
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect(),
        })
        .collect();
    variants.sort();
    let mut listed: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    listed.sort();

    assert_eq!(listed, variants);
}

#[test]
fn constructors_validate_like_the_parser() {
    let err = Event::cta_click("", "bad host", "nope", "").unwrap_err();

    let got: Vec<_> = err
        .errors()
        .iter()
        .map(|e| (e.path.as_str(), e.code))
        .collect();
    assert_eq!(
        got,
        [
            ("/session_id", ErrorCode::InvalidSessionId),
            ("/data/host", ErrorCode::InvalidHost),
            ("/data/path", ErrorCode::InvalidPath),
            ("/data/element", ErrorCode::InvalidElement),
        ]
    );
    let err = Event::form_submit("s", "a.com", "/", json!([1])).unwrap_err();
    assert_eq!(err.errors()[0].code, ErrorCode::WrongType);
}

#[test]
fn event_types_display_as_category_slash_name() {
    let shown: Vec<String> = EventType::ALL.iter().map(ToString::to_string).collect();

    assert_eq!(
        shown,
        [
            "page_interaction/page_view",
            "page_interaction/cta_click",
            "form_interaction/submit",
        ]
    );
}

#[test]
fn a_forms_fields_are_given_back_whole() {
    let fields = json!({"email": "a@b.example", "plan": {"tier": "pro"}});

    let form = eye_core::Form::parse(fields.clone()).unwrap();

    assert_eq!(form.as_map(), fields.as_object().unwrap());
    assert_eq!(&form.into_map(), fields.as_object().unwrap());
}
