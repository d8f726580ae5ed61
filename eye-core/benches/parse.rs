//! Parse + validate cost per event type: JSON bytes to a valid `Event`, as ingest does.
//!
//! `cargo bench -p eye-core` prints the time per event (median and spread) for each type,
//! then the same with the JSON already parsed into a `Value` (validation alone, by
//! reference and by value).

use divan::counter::BytesCount;
use divan::{Bencher, black_box};
use eye_core::{Event, ValidationContext};
use serde_json::Value;

fn main() {
    divan::main();
}

const PAGE_VIEW: &str = r#"{"session_id": "e3b0c442-98fc-1c14", "category": "page_interaction", "name": "page_view", "data": {"host": "www.consumeraffairs.com", "path": "/"}, "timestamp": "2022-01-01 00:00:00.000000"}"#;

const CTA_CLICK: &str = r#"{"id": "0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c", "session_id": "e3b0c442-98fc-1c14", "category": "page_interaction", "name": "cta_click", "data": {"host": "www.consumeraffairs.com", "path": "/reviews/insurance?sort=recent", "element": "chat bubble"}, "timestamp": "2022-04-11T01:08:01.407119+02:00"}"#;

const FORM_SUBMIT: &str = r#"{"session_id": "e3b0c442-98fc-1c14", "category": "form_interaction", "name": "submit", "data": {"host": "www.consumeraffairs.com", "path": "/", "form": {"first_name": "John", "last_name": "Doe"}}, "timestamp": "2022-04-11T01:08:01.407119"}"#;

/// A realistic larger form: about 1.1 KiB, nested 6 levels, arrays and numbers.
const NESTED_FORM: &str = r#"{"id": "0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c", "session_id": "e3b0c442-98fc-1c14", "category": "form_interaction", "name": "submit", "data": {"host": "shop.example.com:8443", "path": "/checkout/step-2", "form": {"customer": {"first_name": "John", "last_name": "Doe", "email": "john.doe@example.com", "phone": "+1 555 0100", "address": {"line1": "1 Main Street", "line2": null, "city": "Springfield", "postcode": "12345", "country": "US", "geo": {"lat": 39.7817, "lon": -89.6501, "accuracy": {"metres": 12, "source": "gps"}}}}, "cart": [{"sku": "A-100", "qty": 2, "price": 19.99, "options": {"colour": "blue", "size": "M"}}, {"sku": "B-200", "qty": 1, "price": 5.5, "options": {"gift_wrap": true, "message": "Happy birthday!"}}, {"sku": "C-300", "qty": 3, "price": 1.25, "options": {}}], "consents": {"marketing": false, "terms": true, "newsletter": {"weekly": true, "topics": ["deals", "reviews", "news"]}}, "coupon": "SPRING22", "notes": "Please leave the parcel at the back door, next to the green bin.", "utm": {"source": "newsletter", "medium": "email", "campaign": "spring-sale"}}}, "timestamp": "2022-04-11 01:08:01.407119789"}"#;

const EVENTS: [(&str, &str); 4] = [
    ("page_view", PAGE_VIEW),
    ("cta_click", CTA_CLICK),
    ("form_submit", FORM_SUBMIT),
    ("nested_form", NESTED_FORM),
];

fn json_of(kind: &str) -> &'static str {
    EVENTS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, json)| *json)
        .unwrap_or_default()
}

fn ctx() -> ValidationContext {
    ValidationContext::system()
}

/// JSON bytes to a valid `Event`: what ingest pays per event.
#[divan::bench(args = ["page_view", "cta_click", "form_submit", "nested_form"])]
fn parse_json(bencher: Bencher, kind: &str) {
    let json = json_of(kind).as_bytes();
    let ctx = ctx();
    assert!(
        Event::parse_json(json, &ctx).is_ok(),
        "{kind} must be valid"
    );
    bencher
        .counter(BytesCount::of_slice(json))
        .bench(|| Event::parse_json(black_box(json), &ctx));
}

/// Validation alone, from an already-parsed `Value`.
#[divan::bench(args = ["page_view", "cta_click", "form_submit", "nested_form"])]
fn parse_value(bencher: Bencher, kind: &str) {
    let value: Value = serde_json::from_str(json_of(kind)).unwrap_or_default();
    let ctx = ctx();
    assert!(
        Event::parse_value(&value, &ctx).is_ok(),
        "{kind} must be valid"
    );
    bencher.bench(|| Event::parse_value(black_box(&value), &ctx));
}

/// Validation of a `Value` the caller gives up, so a form is moved rather than copied.
#[divan::bench(args = ["page_view", "nested_form"])]
fn parse_owned(bencher: Bencher, kind: &str) {
    let value: Value = serde_json::from_str(json_of(kind)).unwrap_or_default();
    let ctx = ctx();
    bencher
        .with_inputs(|| value.clone())
        .bench_local_values(|v| Event::parse_owned(v, &ctx));
}

/// An invalid event with several problems: the cost of a rejection with every error.
#[divan::bench]
fn reject_with_every_error(bencher: Bencher) {
    let json = br#"{"id": "x", "session_id": "", "category": "page interaction", "name": "pageview", "data": {"host": "bad host", "path": "nope"}, "timestamp": "2099-01-01T00:00:00Z", "extra": 1}"#;
    let ctx = ctx();
    bencher.bench(|| Event::parse_json(black_box(json), &ctx));
}

/// Serialising a valid event to its output JSON.
#[divan::bench(args = ["page_view", "nested_form"])]
fn serialise(bencher: Bencher, kind: &str) {
    let ctx = ctx();
    let Ok(event) = Event::parse_json(json_of(kind).as_bytes(), &ctx) else {
        panic!("{kind} must be valid");
    };
    bencher.bench(|| serde_json::to_vec(black_box(&event)));
}
