//! The query strings of `GET /events`, `GET /errors` and the session listing: bytes
//! decoded as the server decodes them (`application/x-www-form-urlencoded`, what
//! axum's `Query` uses), then eye-core's parsers.
#![no_main]

use eye_core::{ErrorQuery, EventQuery, PageLimits, Pagination, QueryError};
use libfuzzer_sys::fuzz_target;

/// Every code a query error may carry; the OpenAPI document lists the same.
const CODES: [&str; 6] = [
    "invalid_page",
    "invalid_page_size",
    "invalid_time",
    "invalid_time_range",
    "invalid_filter",
    "repeated_parameter",
];

fn check_error(e: &QueryError, pairs: &[(String, String)], known: &[&str]) {
    assert!(CODES.contains(&e.code.as_str()), "unknown code {}", e.code);
    assert!(!e.message.is_empty());
    // The error names a parameter that was sent (a range error names start_time).
    assert!(
        pairs.iter().any(|(k, _)| *k == e.parameter),
        "error names {:?}, which was not sent",
        e.parameter
    );
    if e.code == "repeated_parameter" {
        let n = pairs.iter().filter(|(k, _)| *k == e.parameter).count();
        assert!(n > 1 && known.contains(&e.parameter.as_str()));
    }
}

/// True when a parameter the endpoint reads is sent twice.
fn repeats(pairs: &[(String, String)], known: &[&str]) -> bool {
    known
        .iter()
        .any(|k| pairs.iter().filter(|(p, _)| p == k).count() > 1)
}

fn check_time_order(
    start: Option<chrono::DateTime<chrono::Utc>>,
    end: Option<chrono::DateTime<chrono::Utc>>,
) {
    if let (Some(s), Some(e)) = (start, end) {
        assert!(s <= e, "a range that ends before it starts");
    }
}

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let borrowed = || pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let limits = PageLimits::default();
    let paging = ["start_time", "end_time", "page", "page_size"];

    let known: Vec<&str> = paging
        .iter()
        .copied()
        .chain(["session_id", "category", "name", "application"])
        .collect();
    match EventQuery::from_pairs(borrowed(), &limits) {
        Ok(q) => {
            assert!(
                !repeats(&pairs, &known),
                "a repeated parameter was accepted"
            );
            assert!(q.pagination.page >= 1);
            assert!((1..=limits.max_page_size).contains(&q.pagination.page_size));
            check_time_order(q.time.start, q.time.end);
            for f in [&q.session_id, &q.category, &q.name, &q.application]
                .into_iter()
                .flatten()
            {
                assert!(!f.is_empty() && f.chars().count() <= 256);
            }
            // What the SDK builds from a query, the server parses back to it.
            let out = q.to_pairs();
            let back = EventQuery::from_pairs(out.iter().map(|(k, v)| (*k, v.as_str())), &limits);
            assert_eq!(back.as_ref(), Ok(&q));
        }
        Err(e) => check_error(&e, &pairs, &known),
    }

    let known: Vec<&str> = paging
        .iter()
        .copied()
        .chain(["application", "code"])
        .collect();
    match ErrorQuery::from_pairs(borrowed(), &limits) {
        Ok(q) => {
            assert!(
                !repeats(&pairs, &known),
                "a repeated parameter was accepted"
            );
            check_time_order(q.time.start, q.time.end);
            let out = q.to_pairs();
            let back = ErrorQuery::from_pairs(out.iter().map(|(k, v)| (*k, v.as_str())), &limits);
            assert_eq!(back.as_ref(), Ok(&q));
        }
        Err(e) => check_error(&e, &pairs, &known),
    }

    let known = ["page", "page_size"];
    match Pagination::from_pairs(borrowed(), &limits) {
        Ok(p) => {
            assert!(
                !repeats(&pairs, &known),
                "a repeated parameter was accepted"
            );
            assert!(p.page >= 1 && (1..=limits.max_page_size).contains(&p.page_size));
        }
        Err(e) => check_error(&e, &pairs, &known),
    }
});
