//! Shared fixtures: a fixed clock, one valid event of each type, and parse shortcuts.

use chrono::{DateTime, TimeZone, Utc};
use eye_core::{ErrorCode, Event, FieldError, ValidationContext, ValidationErrors};
use serde_json::{Value, json};

/// The instant every test validates at: 2022-04-11T12:00:00Z.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2022, 4, 11, 12, 0, 0).unwrap()
}

/// Validation as of [`now`] with the default 5-minute clock skew.
pub fn ctx() -> ValidationContext {
    ValidationContext::at(now())
}

/// A valid `page_interaction` / `page_view` event.
pub fn page_view() -> Value {
    json!({
        "session_id": "e3b0c442",
        "category": "page_interaction",
        "name": "page_view",
        "data": {"host": "www.consumeraffairs.com", "path": "/"},
        "timestamp": "2022-04-11T01:08:01.407119"
    })
}

/// A valid `page_interaction` / `cta_click` event.
pub fn cta_click() -> Value {
    json!({
        "session_id": "e3b0c442",
        "category": "page_interaction",
        "name": "cta_click",
        "data": {"host": "www.consumeraffairs.com", "path": "/", "element": "chat bubble"},
        "timestamp": "2022-04-11 01:08:01.407119"
    })
}

/// A valid `form_interaction` / `submit` event.
pub fn form_submit() -> Value {
    json!({
        "id": "0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c",
        "session_id": "e3b0c442",
        "category": "form_interaction",
        "name": "submit",
        "data": {
            "host": "www.consumeraffairs.com",
            "path": "/",
            "form": {"first_name": "John", "last_name": "Doe"}
        },
        "timestamp": "2022-04-11T01:08:01Z"
    })
}

/// One valid event of each type.
pub fn valid_events() -> [Value; 3] {
    [page_view(), cta_click(), form_submit()]
}

/// Parses a JSON value as the wire bytes a client would send.
pub fn parse(v: &Value) -> Result<Event, ValidationErrors> {
    Event::parse_json(&serde_json::to_vec(v).unwrap(), &ctx())
}

/// Parses and expects success.
pub fn parse_ok(v: &Value) -> Event {
    parse(v).unwrap_or_else(|e| panic!("{v} should be valid, got: {e}"))
}

/// Parses and expects failure; returns every error.
pub fn parse_err(v: &Value) -> Vec<FieldError> {
    match parse(v) {
        Ok(e) => panic!("{v} should be rejected, parsed as {e:?}"),
        Err(errors) => errors.into_vec(),
    }
}

/// Parses and expects exactly one error; returns its path and code.
pub fn single_error(v: &Value) -> (String, ErrorCode) {
    let errors = parse_err(v);
    assert_eq!(
        errors.len(),
        1,
        "expected one error for {v}, got {errors:?}"
    );
    (errors[0].path.clone(), errors[0].code)
}

/// Sets the value at a JSON pointer (its parent must exist).
pub fn set(mut v: Value, pointer: &str, new: Value) -> Value {
    *pointer_mut(&mut v, pointer) = new;
    v
}

/// Removes the field at a JSON pointer.
pub fn remove(mut v: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    pointer_mut(&mut v, parent)
        .as_object_mut()
        .unwrap()
        .remove(key)
        .unwrap_or_else(|| panic!("{pointer} is not in {v}"));
    v
}

fn pointer_mut<'a>(v: &'a mut Value, pointer: &str) -> &'a mut Value {
    if pointer.is_empty() {
        return v;
    }
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    pointer_mut(v, parent)
        .as_object_mut()
        .unwrap()
        .entry(key)
        .or_insert(Value::Null)
}

/// Turns an event into another type, keeping host and path.
pub fn retype(v: &mut Value, category: &str, name: &str) {
    v["category"] = json!(category);
    v["name"] = json!(name);
    let data = v["data"].as_object_mut().unwrap();
    data.retain(|k, _| k == "host" || k == "path");
    if name == "cta_click" {
        data.insert("element".into(), json!("button"));
    } else if name == "submit" {
        data.insert("form".into(), json!({}));
    }
}
