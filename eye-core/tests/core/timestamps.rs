//! Timestamp formats, precision, offsets and the future-skew rule with an injected clock.

use chrono::{DateTime, Duration, TimeZone, Utc};
use eye_core::{ErrorCode, Event, ValidationContext, format_timestamp, parse_timestamp};
use serde_json::json;

use crate::helpers::{now, page_view, parse_ok, set, single_error};

/// The UTC output of an event sent with this timestamp.
fn stored(ts: &str) -> String {
    let event = parse_ok(&set(page_view(), "/timestamp", json!(ts)));
    format_timestamp(&event.timestamp())
}

#[test]
fn zero_to_nine_fractional_digits_are_accepted_and_truncated_to_microseconds() {
    let expected = [
        "2022-04-11T01:08:01.000000Z",
        "2022-04-11T01:08:01.400000Z",
        "2022-04-11T01:08:01.400000Z",
        "2022-04-11T01:08:01.407000Z",
        "2022-04-11T01:08:01.407100Z",
        "2022-04-11T01:08:01.407110Z",
        "2022-04-11T01:08:01.407119Z",
        "2022-04-11T01:08:01.407119Z",
        "2022-04-11T01:08:01.407119Z",
        "2022-04-11T01:08:01.407119Z",
    ];
    let digits = "4071199999";
    for (n, want) in expected.iter().enumerate() {
        let frac = if n == 0 {
            String::new()
        } else {
            format!(".{}", &digits[..n])
        };
        for sep in ["T", " "] {
            let ts = format!("2022-04-11{sep}01:08:01{frac}");

            assert_eq!(stored(&ts), *want, "{ts}");
        }
    }
}

#[test]
fn ten_fractional_digits_or_a_bare_dot_is_invalid_timestamp() {
    for bad in ["2022-04-11T01:08:01.4071199999", "2022-04-11T01:08:01."] {
        let v = set(page_view(), "/timestamp", json!(bad));

        assert_eq!(
            single_error(&v),
            ("/timestamp".to_owned(), ErrorCode::InvalidTimestamp),
            "{bad}"
        );
    }
}

#[test]
fn offsets_are_converted_to_utc() {
    let cases = [
        ("2022-04-11T01:08:01.407119Z", "2022-04-11T01:08:01.407119Z"),
        ("2022-04-11T01:08:01+00:00", "2022-04-11T01:08:01.000000Z"),
        ("2022-04-11T01:08:01-00:00", "2022-04-11T01:08:01.000000Z"),
        ("2022-04-11T03:08:01.5+02:00", "2022-04-11T01:08:01.500000Z"),
        ("2022-04-10T21:38:01-03:30", "2022-04-11T01:08:01.000000Z"),
        ("2022-04-11T00:30:00+05:45", "2022-04-10T18:45:00.000000Z"),
        (
            "2022-04-11 01:08:01.123456789+01:00",
            "2022-04-11T00:08:01.123456Z",
        ),
        ("2022-04-10T01:08:01-23:59", "2022-04-11T01:07:01.000000Z"),
    ];
    for (input, want) in cases {
        assert_eq!(stored(input), want, "{input}");
    }
}

#[test]
fn lower_case_t_and_z_are_accepted_as_rfc_3339_allows() {
    assert_eq!(
        stored("2022-04-11t01:08:01z"),
        "2022-04-11T01:08:01.000000Z"
    );
    assert_eq!(
        stored("2022-04-11t03:08:01+02:00"),
        "2022-04-11T01:08:01.000000Z"
    );
}

#[test]
fn timestamp_without_offset_is_taken_as_utc() {
    assert_eq!(
        stored("2022-04-11T01:08:01"),
        stored("2022-04-11T01:08:01Z")
    );
    assert_eq!(
        stored("2022-04-11 01:08:01"),
        stored("2022-04-11T01:08:01+00:00")
    );
}

#[test]
fn malformed_or_impossible_timestamps_are_invalid_timestamp() {
    for bad in [
        "",
        "yesterday",
        "2022-04-11",
        "2022-04-11T01:08",
        "2022-04-11T1:08:01",
        "22-04-11T01:08:01",
        "2022/04/11 01:08:01",
        "2022-04-11_01:08:01",
        "2022-04-11T01:08:01+0200",
        "2022-04-11T01:08:01+02",
        "2022-04-11T01:08:01+24:00",
        "2022-04-11T01:08:01+02:60",
        "2022-04-11T01:08:01 ",
        " 2022-04-11T01:08:01",
        "2022-13-01T00:00:00",
        "2022-00-01T00:00:00",
        "2022-04-00T00:00:00",
        "2022-04-31T00:00:00",
        "2022-02-29T00:00:00",
        "2022-04-11T24:00:00",
        "2022-04-11T01:60:00",
        "2022-04-11T01:08:60",
        "1649639281",
        "Mon, 11 Apr 2022 01:08:01 GMT",
    ] {
        let v = set(page_view(), "/timestamp", json!(bad));

        assert_eq!(
            single_error(&v),
            ("/timestamp".to_owned(), ErrorCode::InvalidTimestamp),
            "{bad:?}"
        );
    }
}

#[test]
fn leap_day_is_accepted_in_a_leap_year() {
    assert_eq!(stored("2020-02-29T00:00:00"), "2020-02-29T00:00:00.000000Z");
}

#[test]
fn timestamp_exactly_at_now_plus_skew_is_accepted() {
    let edge = now() + ValidationContext::DEFAULT_MAX_CLOCK_SKEW;

    let event = parse_ok(&set(
        page_view(),
        "/timestamp",
        json!(format_timestamp(&edge)),
    ));

    assert_eq!(event.timestamp(), edge);
}

#[test]
fn future_timestamp_is_rejected_with_timestamp_in_future() {
    let just_over = now() + ValidationContext::DEFAULT_MAX_CLOCK_SKEW + Duration::microseconds(1);
    let v = set(
        page_view(),
        "/timestamp",
        json!(format_timestamp(&just_over)),
    );

    assert_eq!(
        single_error(&v),
        ("/timestamp".to_owned(), ErrorCode::TimestampInFuture)
    );
}

#[test]
fn future_skew_compares_instants_after_converting_the_offset() {
    // 13:04 at +01:00 is 12:04Z, within 5 minutes of 12:00Z; 07:06 at -05:00 is 12:06Z.
    parse_ok(&set(
        page_view(),
        "/timestamp",
        json!("2022-04-11T13:04:00+01:00"),
    ));
    let v = set(
        page_view(),
        "/timestamp",
        json!("2022-04-11T07:06:00-05:00"),
    );

    assert_eq!(single_error(&v).1, ErrorCode::TimestampInFuture);
}

#[test]
fn clock_and_skew_are_parameters() {
    let ten_min_ahead = json!("2022-04-11T12:10:00Z");
    let v = set(page_view(), "/timestamp", ten_min_ahead);
    let bytes = serde_json::to_vec(&v).unwrap();

    let default = Event::parse_json(&bytes, &ValidationContext::at(now()));
    let wide = Event::parse_json(
        &bytes,
        &ValidationContext::at(now()).with_max_clock_skew(Duration::minutes(15)),
    );
    let zero = Event::parse_json(
        &bytes,
        &ValidationContext::at(now() + Duration::minutes(10)).with_max_clock_skew(Duration::zero()),
    );
    let later_clock = Event::parse_json(&bytes, &ValidationContext::at(now() + Duration::hours(1)));

    assert!(default.unwrap_err().has_code(ErrorCode::TimestampInFuture));
    assert!(wide.is_ok());
    assert!(
        zero.is_ok(),
        "a timestamp equal to now is never in the future"
    );
    assert!(later_clock.is_ok());
}

#[test]
fn a_skew_too_large_to_add_accepts_every_timestamp_instead_of_panicking() {
    let v = set(page_view(), "/timestamp", json!("9999-12-31T23:59:59Z"));
    let ctx = ValidationContext::at(now()).with_max_clock_skew(Duration::MAX);

    let event = Event::parse_json(&serde_json::to_vec(&v).unwrap(), &ctx);

    assert!(event.is_ok(), "{event:?}");
}

#[test]
fn future_message_names_the_timestamp_the_clock_and_the_skew() {
    let v = set(page_view(), "/timestamp", json!("2030-01-01T00:00:00Z"));

    let errors = crate::helpers::parse_err(&v);

    let message = &errors[0].message;
    assert!(message.contains("2030-01-01T00:00:00.000000Z"), "{message}");
    assert!(message.contains("2022-04-11T12:00:00.000000Z"), "{message}");
    assert!(message.contains("300 s"), "{message}");
}

#[test]
fn old_timestamps_are_accepted() {
    assert_eq!(
        stored("1970-01-01T00:00:00Z"),
        "1970-01-01T00:00:00.000000Z"
    );
    assert_eq!(stored("0001-01-01 00:00:00"), "0001-01-01T00:00:00.000000Z");
}

#[test]
fn timestamp_whose_utc_instant_leaves_four_digit_years_is_invalid_timestamp() {
    // 0000-01-01T00:00:00+01:00 is in year -1 in UTC: its output could not be read back.
    let v = set(
        page_view(),
        "/timestamp",
        json!("0000-01-01T00:00:00+01:00"),
    );

    assert_eq!(
        single_error(&v),
        ("/timestamp".to_owned(), ErrorCode::InvalidTimestamp)
    );
}

#[test]
fn parse_timestamp_and_format_timestamp_round_trip() {
    let t = Utc.with_ymd_and_hms(2022, 4, 11, 1, 8, 1).unwrap() + Duration::microseconds(407_119);

    let text = format_timestamp(&t);

    assert_eq!(text, "2022-04-11T01:08:01.407119Z");
    assert_eq!(parse_timestamp(&text), Some(t));
}

#[test]
fn sent_at_moves_timestamps_by_the_senders_clock_error() {
    // The sender's clock is 2 hours fast: it says it sent at 14:00 when it is 12:00.
    let ctx = ValidationContext::at(now()).with_sent_at(now() + Duration::hours(2));
    let v = set(page_view(), "/timestamp", json!("2022-04-11T13:59:30Z"));

    let event = Event::parse_json(&serde_json::to_vec(&v).unwrap(), &ctx).unwrap();

    assert_eq!(event.timestamp(), now() - Duration::seconds(30));
    assert_eq!(
        ctx.client_time(event.timestamp()),
        now() + Duration::hours(2) - Duration::seconds(30)
    );
    assert_eq!(ctx.clock_offset(), -Duration::hours(2));
}

#[test]
fn sent_at_from_a_slow_clock_can_still_reveal_a_future_timestamp() {
    // A clock 1 hour slow sent an event stamped 10 minutes after its send time.
    let ctx = ValidationContext::at(now()).with_sent_at(now() - Duration::hours(1));
    let v = set(page_view(), "/timestamp", json!("2022-04-11T11:10:00Z"));

    let errors = Event::parse_json(&serde_json::to_vec(&v).unwrap(), &ctx).unwrap_err();

    assert!(errors.has_code(ErrorCode::TimestampInFuture));
    let message = &errors.errors()[0].message;
    assert!(message.contains("sent_at"), "{message}");
    assert!(message.contains("2022-04-11T12:10:00.000000Z"), "{message}");
}

#[test]
fn a_correction_out_of_range_is_an_invalid_timestamp_not_a_panic() {
    let ctx = ValidationContext::at(now()).with_sent_at(DateTime::<Utc>::MIN_UTC);
    let v = set(page_view(), "/timestamp", json!("9999-12-31T23:59:59Z"));

    let errors = Event::parse_json(&serde_json::to_vec(&v).unwrap(), &ctx).unwrap_err();

    assert!(errors.has_code(ErrorCode::InvalidTimestamp), "{errors:?}");
}

proptest::proptest! {
    #[test]
    fn format_timestamp_writes_what_chrono_writes(
        micros in proptest::prop_oneof![
            // Years 0-9999, the digit-by-digit path.
            -62_167_219_200_000_000i64..253_402_300_799_999_999,
            // Around and past its edges: chrono's own path.
            -62_300_000_000_000_000i64..-62_000_000_000_000_000,
            253_400_000_000_000_000i64..253_500_000_000_000_000,
        ],
        nanos in 0u32..1000,
    ) {
        let t = DateTime::from_timestamp_micros(micros).unwrap() + Duration::nanoseconds(i64::from(nanos));
        proptest::prop_assert_eq!(
            format_timestamp(&t),
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        );
    }
}
