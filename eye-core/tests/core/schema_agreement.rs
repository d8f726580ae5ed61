//! The exported JSON Schema and the Rust parser agree: a real validator (the
//! `jsonschema` crate) runs over generated valid events, generated invalid ones, and
//! field values drawn from a space wide enough to hold both. The only disagreements
//! allowed are the rules in `RULES_OUTSIDE_SCHEMA`, each pinned by a test here.

use std::sync::LazyLock;

use eye_core::{EVENT_FIELDS, ErrorCode, MAX_EVENT_BYTES, MAX_FORM_DEPTH, RULES_OUTSIDE_SCHEMA};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::{form_submit, page_view, parse, parse_err, retype, set, valid_events};
use crate::mutations::{mutation, timestamp_parts};
use crate::strategies;

static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    jsonschema::validator_for(eye_core::event_schema().as_value())
        .expect("the exported schema is a valid JSON Schema")
});

fn schema_accepts(v: &Value) -> bool {
    VALIDATOR.is_valid(v)
}

fn parser_accepts(v: &Value) -> bool {
    parse(v).is_ok()
}

/// Fails the property with both verdicts when they differ.
fn assert_agree(v: &Value) -> Result<(), TestCaseError> {
    let (parser, schema) = (parse(v), schema_accepts(v));
    prop_assert_eq!(
        parser.is_ok(),
        schema,
        "parser {:?} but schema {} for {}",
        parser.err().map(|e| e.to_string()),
        if schema { "accepts" } else { "rejects" },
        v
    );
    Ok(())
}

#[test]
fn the_exported_schema_compiles_and_accepts_the_fixtures() {
    for v in valid_events() {
        assert!(schema_accepts(&v), "{v}");
        assert!(parser_accepts(&v), "{v}");
    }
}

#[test]
fn schema_has_one_branch_per_event_type_with_const_category_and_name() {
    let schema = eye_core::event_schema();
    let v = schema.as_value();

    let branches = v["oneOf"].as_array().unwrap();
    let mut pairs: Vec<(String, String)> = branches
        .iter()
        .map(|b| {
            let name = b["$ref"].as_str().unwrap().trim_start_matches("#/$defs/");
            let props = &v["$defs"][name]["properties"];
            (
                props["category"]["const"].as_str().unwrap().to_owned(),
                props["name"]["const"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    pairs.sort();

    let mut want: Vec<_> = eye_core::EventType::ALL
        .iter()
        .map(|t| (t.category().to_owned(), t.name().to_owned()))
        .collect();
    want.sort();
    assert_eq!(pairs, want);
}

/// An event the parser rejects with `code` and the schema rejects too.
fn assert_both_reject(v: &Value, code: ErrorCode) -> Result<(), TestCaseError> {
    let errors = match parse(v) {
        Ok(e) => return Err(TestCaseError::fail(format!("parser accepted {v} as {e:?}"))),
        Err(errors) => errors,
    };
    prop_assert!(
        errors.has_code(code),
        "expected {code}, got {errors} for {v}"
    );
    prop_assert!(
        !schema_accepts(v),
        "schema accepted {v}, parser said {errors}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_valid_events_pass_both_the_parser_and_the_schema(v in strategies::valid_event()) {
        prop_assert!(schema_accepts(&v), "schema rejects {}", v);
        let event = parse(&v);
        prop_assert!(event.is_ok(), "parser rejects {}: {:?}", v, event);
    }

    #[test]
    fn parsed_events_serialise_to_json_the_schema_accepts(v in strategies::valid_event()) {
        let out = serde_json::to_value(parse(&v).unwrap()).unwrap();

        prop_assert!(schema_accepts(&out), "schema rejects output {}", out);
    }

    #[test]
    fn generated_invalid_events_are_rejected_by_both(
        v in strategies::valid_event(),
        m in mutation(),
    ) {
        let (bad, code) = m.apply(v);

        assert_both_reject(&bad, code)?;
    }

    #[test]
    fn host_verdicts_agree(host in prop_oneof![
        "[a-zA-Z0-9.:_ -]{0,20}",
        "[a-z0-9-]{0,64}(\\.[a-z0-9-]{0,64}){0,4}(:[0-9]{0,6})?",
        strategies::host(),
    ]) {
        assert_agree(&set(page_view(), "/data/host", json!(host)))?;
    }

    #[test]
    fn session_id_verdicts_agree(s in prop_oneof![
        "[\\x00-\\x{a0}a]{0,8}",
        "[a\\x{85}é☕]{120,135}",
        ".{0,3}",
    ]) {
        assert_agree(&set(page_view(), "/session_id", json!(s)))?;
    }

    #[test]
    fn path_verdicts_agree(p in prop_oneof!["[/a\\x00 ]{0,10}", "/?[aé]{2045,2050}"]) {
        assert_agree(&set(page_view(), "/data/path", json!(p)))?;
    }

    #[test]
    fn element_verdicts_agree(e in prop_oneof![".{0,3}", "[eé☕]{250,260}"]) {
        let mut v = page_view();
        retype(&mut v, "page_interaction", "cta_click");

        assert_agree(&set(v, "/data/element", json!(e)))?;
    }

    #[test]
    fn id_verdicts_agree(id in prop_oneof![
        strategies::uuid(),
        "[0-9a-fA-FgG{}:-]{30,40}",
        "[0-9a-f-]{36}",
    ]) {
        assert_agree(&set(page_view(), "/id", json!(id)))?;
    }

    #[test]
    fn event_type_verdicts_agree(
        category in prop::sample::select(vec!["page_interaction", "form_interaction", "page interaction", "Page_Interaction", ""]),
        name in prop::sample::select(vec!["page_view", "cta_click", "submit", "pageview", "Submit", ""]),
    ) {
        let mut v = page_view();
        retype(&mut v, category, name);

        assert_agree(&v)?;
    }

    #[test]
    fn timestamp_verdicts_agree_calendar_included((ts, in_calendar) in timestamp_parts()) {
        let v = set(page_view(), "/timestamp", json!(ts));
        let (parser, schema) = (parser_accepts(&v), schema_accepts(&v));

        prop_assert_eq!(parser, schema, "{}: parser {}, schema {}", ts, parser, schema);
        prop_assert!(!parser || in_calendar, "{} is not in the calendar", ts);
    }

    #[test]
    fn form_verdicts_agree(form in strategies::json_value()) {
        assert_agree(&set(form_submit(), "/data/form", form))?;
    }

    #[test]
    fn any_json_value_gets_the_same_verdict(v in strategies::json_value()) {
        assert_agree(&v)?;
    }

    #[test]
    fn objects_with_event_keys_and_any_values_get_the_same_verdict(
        fields in prop::collection::btree_map(
            prop::sample::select(EVENT_FIELDS.to_vec()),
            strategies::json_value(),
            0..=6,
        ),
    ) {
        let v = Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());

        assert_agree(&v)?;
    }
}

/// The rules only the parser checks, with the code each one answers.
const OUTSIDE_SCHEMA: [ErrorCode; 4] = [
    ErrorCode::TimestampInFuture,
    ErrorCode::InvalidTimestamp,
    ErrorCode::EventTooLarge,
    ErrorCode::FormTooDeep,
];

#[test]
fn rules_outside_schema_names_exactly_the_exceptions_tested_here() {
    let named: Vec<&str> = RULES_OUTSIDE_SCHEMA
        .iter()
        .map(|rule| rule.split(':').next().unwrap())
        .collect();

    assert_eq!(named, OUTSIDE_SCHEMA.map(ErrorCode::as_str));
}

/// The schema accepts it; the parser rejects it with exactly this code.
fn assert_only_parser_rejects(v: &Value, code: ErrorCode) {
    assert!(schema_accepts(v), "the schema should accept {v}");
    let errors = parse_err(v);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].code, code);
}

#[test]
fn outside_schema_timestamp_in_future_needs_a_clock() {
    assert_only_parser_rejects(
        &set(page_view(), "/timestamp", json!("2099-01-01T00:00:00Z")),
        ErrorCode::TimestampInFuture,
    );
}

#[test]
fn outside_schema_invalid_timestamp_for_instants_outside_the_year_range() {
    for ts in ["0000-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01"] {
        assert_only_parser_rejects(
            &set(page_view(), "/timestamp", json!(ts)),
            ErrorCode::InvalidTimestamp,
        );
    }
}

/// The pattern spells out the calendar, so schemathesis, which generates from it,
/// never sends a date the server refuses.
#[test]
fn dates_not_in_the_calendar_are_refused_by_the_schema_too() {
    for ts in [
        "2022-02-30T00:00:00",
        "2021-02-29 00:00:00",
        "1900-02-29 00:00:00",
        "2022-04-31T00:00:00",
    ] {
        let v = set(page_view(), "/timestamp", json!(ts));

        assert!(!schema_accepts(&v), "the schema should refuse {ts}");
        assert!(!parser_accepts(&v), "the parser should refuse {ts}");
    }
    for ts in [
        "2000-02-29 00:00:00",
        "2024-02-29T00:00:00Z",
        "2022-01-31T00:00:00",
    ] {
        assert!(
            schema_accepts(&set(page_view(), "/timestamp", json!(ts))),
            "{ts}"
        );
    }
}

#[test]
fn outside_schema_event_too_large_counts_bytes() {
    let v = set(
        form_submit(),
        "/data/form",
        json!({"pad": "x".repeat(MAX_EVENT_BYTES)}),
    );

    assert_only_parser_rejects(&v, ErrorCode::EventTooLarge);
}

#[test]
fn outside_schema_form_too_deep() {
    let mut form = json!({});
    for _ in 0..MAX_FORM_DEPTH {
        form = json!({"k": form});
    }

    assert_only_parser_rejects(
        &set(form_submit(), "/data/form", form),
        ErrorCode::FormTooDeep,
    );
}
