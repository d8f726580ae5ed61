//! The query model: filters, pagination bounds and time ranges parsed from URL pairs.

use chrono::{TimeZone, Utc};
use eye_core::{
    ErrorQuery, EventQuery, EventType, Page, PageLimits, Pagination, QueryError, format_timestamp,
};
use serde_json::json;

fn q(pairs: &[(&str, &str)]) -> Result<EventQuery, QueryError> {
    EventQuery::from_pairs(pairs.iter().copied(), &PageLimits::default())
}

fn ts(t: Option<chrono::DateTime<Utc>>) -> Option<String> {
    t.map(|t| format_timestamp(&t))
}

#[test]
fn no_parameters_is_the_first_page_of_ten_with_no_filters() {
    let query = q(&[]).unwrap();

    assert_eq!(query, EventQuery::new());
    assert_eq!(
        query.pagination,
        Pagination {
            page: 1,
            page_size: 10
        }
    );
    assert_eq!(query.pagination.offset(), 0);
}

#[test]
fn every_filter_is_parsed_and_combines_with_the_others() {
    let query = q(&[
        ("session_id", "abc123"),
        ("category", "page_interaction"),
        ("name", "page_view"),
        ("application", "shop"),
        ("start_time", "2022-01-01"),
        ("end_time", "2022-02-01"),
        ("page", "3"),
        ("page_size", "50"),
    ])
    .unwrap();

    let want = EventQuery::new()
        .session("abc123")
        .event_type(EventType::PageView)
        .application("shop")
        .start_time(Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap())
        .end_time(
            Utc.with_ymd_and_hms(2022, 2, 1, 23, 59, 59).unwrap()
                + chrono::Duration::microseconds(999_999),
        )
        .page(3)
        .page_size(50);
    assert_eq!(query, want);
    assert_eq!(query.pagination.offset(), 100);
}

#[test]
fn unknown_parameters_are_ignored_and_empty_values_mean_no_filter() {
    let query = q(&[
        ("format", "json"),
        ("ordering", "-timestamp"),
        ("session_id", ""),
    ])
    .unwrap();

    assert_eq!(query, EventQuery::new());
}

#[test]
fn filter_values_longer_than_256_characters_are_invalid_filter() {
    let long = "s".repeat(257);

    let err = q(&[("session_id", &long)]).unwrap_err();

    assert_eq!(
        (err.parameter.as_str(), err.code.as_str()),
        ("session_id", "invalid_filter")
    );
    assert!(q(&[("session_id", &"s".repeat(256))]).is_ok());
}

#[test]
fn page_must_be_a_whole_number_of_at_least_one() {
    assert_eq!(q(&[("page", "1")]).unwrap().pagination.page, 1);
    assert_eq!(
        q(&[("page", "18446744073709551615")])
            .unwrap()
            .pagination
            .page,
        u64::MAX
    );
    for bad in ["0", "-1", "1.0", "one", " 1", "18446744073709551616"] {
        let err = q(&[("page", bad)]).unwrap_err();

        assert!(err.is_invalid_page(), "{bad}: {err}");
        assert_eq!(err.parameter, "page");
        assert_eq!(err.message, "Invalid page.");
    }
}

#[test]
fn huge_page_offset_saturates_instead_of_overflowing() {
    let p = Pagination {
        page: u64::MAX,
        page_size: 1000,
    };

    assert_eq!(p.offset(), u64::MAX);
}

#[test]
fn page_size_from_1_to_1000_is_accepted_and_outside_is_invalid_page_size() {
    assert_eq!(q(&[("page_size", "1")]).unwrap().pagination.page_size, 1);
    assert_eq!(
        q(&[("page_size", "1000")]).unwrap().pagination.page_size,
        1000
    );
    for bad in ["0", "1001", "-5", "ten", "4294967296"] {
        let err = q(&[("page_size", bad)]).unwrap_err();

        assert_eq!(
            (err.parameter.as_str(), err.code.as_str()),
            ("page_size", "invalid_page_size"),
            "{bad}"
        );
        assert!(err.message.contains("1000"), "{}", err.message);
    }
}

#[test]
fn page_limits_are_configurable() {
    let limits = PageLimits {
        default_page_size: 25,
        max_page_size: 100,
    };

    let default = EventQuery::from_pairs([], &limits).unwrap();
    let err = EventQuery::from_pairs([("page_size", "101")], &limits).unwrap_err();

    assert_eq!(default.pagination.page_size, 25);
    assert_eq!(err.code, "invalid_page_size");
    assert!(err.message.contains("100"), "{}", err.message);
}

#[test]
fn date_only_start_is_the_start_of_that_day_and_end_is_its_last_microsecond() {
    let query = q(&[("start_time", "2022-01-01"), ("end_time", "2022-02-01")]).unwrap();

    assert_eq!(
        ts(query.time.start).as_deref(),
        Some("2022-01-01T00:00:00.000000Z")
    );
    assert_eq!(
        ts(query.time.end).as_deref(),
        Some("2022-02-01T23:59:59.999999Z")
    );
}

#[test]
fn each_time_bound_works_alone() {
    let start = q(&[("start_time", "2022-01-01")]).unwrap();
    let end = q(&[("end_time", "2022-01-01")]).unwrap();

    assert!(start.time.start.is_some() && start.time.end.is_none());
    assert!(end.time.start.is_none() && end.time.end.is_some());
}

#[test]
fn time_bounds_accept_every_event_timestamp_format() {
    let cases = [
        ("2022-01-01T10:00:00Z", "2022-01-01T10:00:00.000000Z"),
        ("2022-01-01T10:00:00", "2022-01-01T10:00:00.000000Z"),
        ("2022-01-01 10:00:00.000000", "2022-01-01T10:00:00.000000Z"),
        ("2022-01-01T12:00:00.5+02:00", "2022-01-01T10:00:00.500000Z"),
        (
            "2022-01-01T10:00:00.123456789",
            "2022-01-01T10:00:00.123456Z",
        ),
    ];
    for (input, want) in cases {
        let query = q(&[("start_time", input), ("end_time", input)]).unwrap();

        assert_eq!(ts(query.time.start).as_deref(), Some(want), "{input}");
        assert_eq!(
            query.time.start, query.time.end,
            "both bounds are inclusive"
        );
    }
}

#[test]
fn malformed_time_bound_is_invalid_time_naming_the_parameter() {
    for (key, bad) in [
        ("start_time", "2022-13-01"),
        ("end_time", "last tuesday"),
        ("start_time", "2022-01-01T10:00"),
        ("end_time", "01/02/2022"),
    ] {
        let err = q(&[(key, bad)]).unwrap_err();

        assert_eq!(
            (err.parameter.as_str(), err.code.as_str()),
            (key, "invalid_time"),
            "{bad}"
        );
    }
}

#[test]
fn start_later_than_end_is_invalid_time_range() {
    let err = q(&[
        ("start_time", "2022-01-02"),
        ("end_time", "2022-01-01T23:59:59"),
    ])
    .unwrap_err();

    assert_eq!(
        (err.parameter.as_str(), err.code.as_str()),
        ("start_time", "invalid_time_range")
    );
}

#[test]
fn same_day_start_and_end_covers_the_whole_day() {
    let query = q(&[("start_time", "2022-01-01"), ("end_time", "2022-01-01")]).unwrap();

    let span = query.time.end.unwrap() - query.time.start.unwrap();

    assert_eq!(span.num_microseconds(), Some(86_400_000_000 - 1));
}

#[test]
fn query_to_pairs_round_trips_through_from_pairs() {
    let query = q(&[
        ("session_id", "abc"),
        ("category", "form_interaction"),
        ("start_time", "2022-01-01T10:00:00.123456+01:00"),
        ("end_time", "2022-01-31"),
        ("page", "2"),
        ("page_size", "1000"),
    ])
    .unwrap();

    let pairs = query.to_pairs();
    let back = EventQuery::from_pairs(
        pairs.iter().map(|(k, v)| (*k, v.as_str())),
        &PageLimits::default(),
    )
    .unwrap();

    assert_eq!(back, query);
}

#[test]
fn error_query_parses_its_own_filters_and_ignores_event_filters() {
    let query = ErrorQuery::from_pairs(
        [
            ("application", "shop"),
            ("code", "timestamp_in_future"),
            ("session_id", "ignored"),
            ("start_time", "2022-01-01"),
            ("page", "2"),
        ],
        &PageLimits::default(),
    )
    .unwrap();

    assert_eq!(query.application.as_deref(), Some("shop"));
    assert_eq!(query.code.as_deref(), Some("timestamp_in_future"));
    assert_eq!(query.pagination.page, 2);
    let back = ErrorQuery::from_pairs(
        query.to_pairs().iter().map(|(k, v)| (*k, v.as_str())),
        &PageLimits::default(),
    )
    .unwrap();
    assert_eq!(back, query);
}

#[test]
fn pagination_from_pairs_ignores_filters_even_malformed_ones() {
    let p = Pagination::from_pairs(
        [("start_time", "garbage"), ("page", "4"), ("page_size", "7")],
        &PageLimits::default(),
    )
    .unwrap();

    assert_eq!(
        p,
        Pagination {
            page: 4,
            page_size: 7
        }
    );
}

#[test]
fn query_error_displays_parameter_and_message() {
    let err = q(&[("page_size", "0")]).unwrap_err();

    assert_eq!(
        err.to_string(),
        "page_size: page_size must be a whole number from 1 to 1000"
    );
}

#[test]
fn page_serialises_in_the_drf_shape() {
    let page = Page {
        count: 11,
        next: Some("http://localhost:8000/events?page=2".to_owned()),
        previous: None,
        results: vec![json!({"id": 1})],
    };

    let json = serde_json::to_value(&page).unwrap();

    assert_eq!(
        json,
        json!({"count": 11, "next": "http://localhost:8000/events?page=2", "previous": null, "results": [{"id": 1}]})
    );
    assert_eq!(
        serde_json::from_value::<Page<serde_json::Value>>(json).unwrap(),
        page
    );
}

/// An instant in the years 1970 to 9999, to the microsecond.
fn instant() -> impl proptest::strategy::Strategy<Value = chrono::DateTime<Utc>> {
    use proptest::strategy::Strategy;
    (0i64..253_402_300_800_000_000)
        .prop_map(|us| chrono::DateTime::from_timestamp_micros(us).unwrap())
}

proptest::proptest! {
    #[test]
    fn any_valid_query_round_trips_through_its_url_pairs(
        session in proptest::option::of(".{1,256}"),
        category in proptest::option::of("[a-z_ ]{1,40}"),
        application in proptest::option::of("[a-z0-9-]{1,40}"),
        times in (proptest::option::of(instant()), proptest::option::of(instant())),
        page in 1u64..,
        page_size in 1u32..=1000,
    ) {
        let mut query = EventQuery::new().page(page).page_size(page_size);
        query.session_id = session;
        query.category = category;
        query.application = application;
        let (start, end) = match times {
            (Some(a), Some(b)) if a > b => (Some(b), Some(a)),
            other => other,
        };
        query.time.start = start;
        query.time.end = end;

        let pairs = query.to_pairs();
        let back = EventQuery::from_pairs(
            pairs.iter().map(|(k, v)| (*k, v.as_str())),
            &PageLimits::default(),
        );

        proptest::prop_assert_eq!(back, Ok(query));
    }
}

#[test]
fn a_parameter_given_twice_is_repeated_parameter_naming_it() {
    for (pairs, repeated) in [
        (vec![("name", "page_view"), ("name", "cta_click")], "name"),
        (vec![("page", "1"), ("page", "1")], "page"),
        (
            vec![("start_time", "2022-01-01"), ("start_time", "")],
            "start_time",
        ),
    ] {
        let err = q(&pairs).unwrap_err();

        assert_eq!(
            (err.parameter.as_str(), err.code.as_str()),
            (repeated, "repeated_parameter"),
            "{pairs:?}"
        );
    }
    let err = ErrorQuery::from_pairs([("code", "a"), ("code", "b")], &PageLimits::default());
    assert_eq!(err.unwrap_err().code, "repeated_parameter");
    let err = Pagination::from_pairs(
        [("page_size", "5"), ("page_size", "5")],
        &PageLimits::default(),
    );
    assert_eq!(err.unwrap_err().code, "repeated_parameter");
    // What an endpoint does not read may repeat, as unknown parameters are ignored.
    assert!(q(&[("format", "json"), ("format", "html")]).is_ok());
    assert!(Pagination::from_pairs([("name", "a"), ("name", "b")], &PageLimits::default()).is_ok());
}

/// An offset that moves a bound outside the years 0000 to 9999 was refused although
/// the OpenAPI pattern allows it. No event lies out there, so the bound is clamped and
/// filters as written.
#[test]
fn a_bound_an_offset_moves_outside_the_year_range_is_clamped() {
    let query = q(&[
        ("start_time", "0000-01-01T00:00:00+01:00"),
        ("end_time", "9999-12-31T23:30:00-01:00"),
    ])
    .unwrap();

    assert_eq!(
        ts(query.time.start).as_deref(),
        Some("0000-01-01T00:00:00.000000Z")
    );
    assert_eq!(
        ts(query.time.end).as_deref(),
        Some("9999-12-31T23:59:59.999999Z")
    );
}

/// The OpenAPI document gives `start_time` and `end_time` this pattern; it must allow
/// exactly what the parser accepts, so a client that follows it never meets a 400.
#[test]
fn query_time_pattern_allows_exactly_what_the_parser_accepts() {
    let schema = json!({"type": "string", "pattern": eye_core::QUERY_TIME_PATTERN});
    let validator = jsonschema::validator_for(&schema).unwrap();
    let cases = [
        "",
        "2022-01-01",
        "2024-02-29",
        "2000-02-29",
        "0000-02-29",
        "1900-02-29",
        "2023-02-29",
        "2022-04-31",
        "2022-12-31 23:59:59.123456789",
        "2022-01-01T00:00:00Z",
        "2022-01-01t00:00:00z",
        "2022-01-01T00:00:00+23:59",
        "2022-01-01T00:00:00+24:00",
        "2022-01-01T00:00",
        "2022-01-01T00:00:60",
        "2022-1-01",
        "20222-01-01",
        "2022-01-01 ",
    ];
    for s in cases {
        let parsed = q(&[("end_time", s)]).is_ok();

        assert_eq!(parsed, validator.is_valid(&json!(s)), "{s:?}");
    }
}
