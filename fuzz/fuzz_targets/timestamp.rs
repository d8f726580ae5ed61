//! `parse_timestamp` on arbitrary strings, and the schema patterns that describe it.
#![no_main]

use chrono::Datelike;
use eye_core::{EventQuery, PageLimits, format_timestamp, parse_timestamp, truncate_to_micros};
use eye_fuzz::{query_time_pattern, timestamp_pattern};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let matches = timestamp_pattern().is_match(s);
    match parse_timestamp(s) {
        Some(t) => {
            // The parser is no more lenient than the event schema.
            assert!(matches, "{s:?} parses but the schema pattern refuses it");
            assert_eq!(t, truncate_to_micros(t), "more than microsecond precision");
            assert!((0..=9999).contains(&t.year()));
            // What The Eye writes, it reads back as the same instant.
            let out = format_timestamp(&t);
            assert_eq!(parse_timestamp(&out), Some(t), "{out} does not read back");
            assert!(timestamp_pattern().is_match(&out));
        }
        None if matches => {
            // The one rule outside the pattern (RULES_OUTSIDE_SCHEMA): the UTC instant
            // stays in the years 0000 to 9999, which only an offset can break.
            let edge_year = s.starts_with("0000-01-01") || s.starts_with("9999-12-31");
            assert!(edge_year, "{s:?} matches the pattern but is refused");
        }
        None => {}
    }
    // The query API's pattern says exactly which bounds `GET /events` accepts.
    let accepted = EventQuery::from_pairs([("end_time", s)], &PageLimits::default()).is_ok();
    assert_eq!(
        accepted,
        query_time_pattern().is_match(s),
        "end_time={s:?}: parser and OpenAPI pattern disagree"
    );
});
