use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

fn document() -> Value {
    eye_server::openapi::document()
}

#[test]
fn document_is_valid_openapi_3_1() {
    let meta: Value =
        serde_json::from_str(include_str!("../fixtures/openapi-3.1.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&meta).unwrap();
    let doc = document();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_validator_does_reject_a_broken_document() {
    let meta: Value =
        serde_json::from_str(include_str!("../fixtures/openapi-3.1.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&meta).unwrap();
    let mut doc = document();
    doc["paths"]["/events"]["get"]["responses"] = Value::String("nope".into());
    assert!(!validator.is_valid(&doc));
}

#[test]
fn every_schema_in_the_document_is_valid_json_schema_2020_12() {
    let doc = document();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        assert!(
            jsonschema::meta::is_valid(schema),
            "{name} is not a valid JSON Schema"
        );
    }
}

fn parameters(operation: &Value) -> BTreeSet<String> {
    operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn query_parameters_match_the_query_model() {
    use chrono::Utc;
    use eye_core::{ErrorQuery, EventQuery};
    let every_filter = EventQuery::new()
        .session("s")
        .category("c")
        .name("n")
        .application("a")
        .start_time(Utc::now())
        .end_time(Utc::now());
    // Paged by number and by cursor: the union of both forms' parameters.
    let names = |pairs: Vec<(&'static str, String)>| -> BTreeSet<String> {
        pairs.iter().map(|(k, _)| (*k).to_owned()).collect()
    };
    let from_model: BTreeSet<String> = names(every_filter.to_pairs())
        .union(&names(
            every_filter
                .clone()
                .cursor(eye_core::CursorParam::First)
                .to_pairs(),
        ))
        .cloned()
        .collect();
    let doc = document();
    assert_eq!(parameters(&doc["paths"]["/events"]["get"]), from_model);

    let every_error_filter = ErrorQuery {
        application: Some("a".into()),
        code: Some("c".into()),
        time: eye_core::TimeRange {
            start: Some(Utc::now()),
            end: Some(Utc::now()),
        },
        ..ErrorQuery::default()
    };
    let mut by_cursor = every_error_filter.clone();
    by_cursor.cursor = Some(eye_core::CursorParam::First);
    let from_model: BTreeSet<String> = names(every_error_filter.to_pairs())
        .union(&names(by_cursor.to_pairs()))
        .cloned()
        .collect();
    assert_eq!(parameters(&doc["paths"]["/errors"]["get"]), from_model);
}

#[test]
fn export_takes_the_filters_of_the_listing_and_a_format() {
    let doc = document();
    let mut expected = parameters(&doc["paths"]["/events"]["get"]);
    for paging in ["page", "page_size", "cursor"] {
        assert!(expected.remove(paging), "{paging}");
    }
    expected.insert("format".into());
    let export = &doc["paths"]["/events/export"]["get"];
    assert_eq!(parameters(export), expected);
    let ok = export["responses"]["200"]["content"].as_object().unwrap();
    assert!(ok.contains_key("application/x-ndjson") && ok.contains_key("text/csv"));
}

/// `value` with every `$ref` to `from...` pointing at `to...` instead.
fn with_refs(value: &Value, from: &str, to: &str) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) if r.starts_with(from) => {
                        (k.clone(), Value::String(r.replacen(from, to, 1)))
                    }
                    _ => (k.clone(), with_refs(v, from, to)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| with_refs(v, from, to)).collect()),
        other => other.clone(),
    }
}

#[test]
fn event_request_schema_is_the_one_eye_core_exports() {
    // Arrange: eye-core's schema, and the document's `Event` with each definition it
    // refers to put back under `$defs`, as a standalone schema.
    let exported = eye_core::event_schema().to_value();
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let mut rebuilt = with_refs(&schemas["Event"], "#/components/schemas/", "#/$defs/");
    let defs: serde_json::Map<String, Value> = exported["$defs"]
        .as_object()
        .expect("eye-core's schema has definitions")
        .keys()
        .map(|name| {
            let def = with_refs(&schemas[name], "#/components/schemas/", "#/$defs/");
            (name.clone(), def)
        })
        .collect();
    let obj = rebuilt.as_object_mut().unwrap();
    obj.insert("$defs".into(), Value::Object(defs));
    obj.insert("$schema".into(), exported["$schema"].clone());

    // Assert: the same schema, every branch, constraint and definition.
    assert_eq!(rebuilt, exported);
    // And the request body takes one of them or a batch of them.
    assert_eq!(
        schemas["EventBatch"]["items"]["$ref"],
        "#/components/schemas/Event"
    );
}

/// Every `.route("PATH", ...)` literal in the server's source, and every route-path
/// constant (`*_PATH`), so a new route cannot ship undocumented.
fn routes_in_source() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for part in text.split(".route(\"").skip(1) {
                    out.insert(part[..part.find('"').unwrap()].to_owned());
                }
                for line in text.lines() {
                    let line = line.trim();
                    if line.starts_with("pub const ") && line.contains("_PATH: &str = \"/") {
                        let value = line.split('"').nth(1).unwrap();
                        out.insert(value.to_owned());
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out
}

#[test]
fn every_route_in_the_source_is_documented() {
    let doc = document();
    let paths = doc["paths"].as_object().unwrap();
    let routes = routes_in_source();
    assert!(
        routes.contains("/openapi.json"),
        "the scan finds routes: {routes:?}"
    );
    for route in routes {
        let documented =
            paths.contains_key(&route) || paths.contains_key(route.trim_end_matches('/'));
        assert!(
            documented,
            "{route} is served but not in the OpenAPI document"
        );
    }
}

/// Every documented operation answers something other than the router's fallback
/// (which says `route not found`) or 405: documented means served.
#[tokio::test]
async fn every_documented_operation_is_served() {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;
    let app = crate::helpers::spawn_real().await;
    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{id}", "0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c")
            .replace("{session_id}", "s1");
        for method in item.as_object().unwrap().keys() {
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let response = app.router().oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
            let body = String::from_utf8_lossy(&body);
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                !body.contains("route not found"),
                "{method} {path} is documented but not served"
            );
        }
    }
    app.stop().await;
}

/// Validates `body` against the documented schema of `method path` for `status`.
fn assert_documented(doc: &Value, path: &str, method: &str, status: u16, body: &Value) {
    let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
        ["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} {status} is not documented"
    );
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root).unwrap();
    let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:#?}\n{body}"
    );
}

/// The real server's answers match the schemas the document gives them.
#[tokio::test]
async fn real_answers_match_their_documented_schemas() {
    use serde_json::json;
    let app = crate::helpers::spawn_real().await;
    let doc = document();
    let client = app.client();
    let now = eye_core::format_timestamp(&chrono::Utc::now());
    let event = json!({"session_id": "doc-s", "category": "page_interaction", "name": "page_view",
        "data": {"host": "a.example", "path": "/"}, "timestamp": now});
    let post = |body: Value| {
        client
            .post(format!("{}/events", app.base))
            .bearer_auth(&app.key)
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let r = post(event.clone()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = r.json().await.unwrap();
    assert_documented(&doc, "/events", "post", 201, &created);
    let id = created["results"][0]["id"].as_str().unwrap().to_owned();
    let mut bad = event.clone();
    bad["data"]["host"] = json!("not a host");
    for body in [bad.clone(), json!([bad])] {
        let r = post(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400);
        assert_documented(&doc, "/events", "post", 400, &r.json().await.unwrap());
    }
    app.settled().await;
    let get = |path: String| {
        client
            .get(format!("{}{path}", app.base))
            .bearer_auth(&app.key)
            .send()
    };
    for (template, concrete) in [
        ("/events", "/events".to_owned()),
        ("/events/{id}", format!("/events/{id}")),
        ("/sessions/{session_id}", "/sessions/doc-s".to_owned()),
        (
            "/sessions/{session_id}/events",
            "/sessions/doc-s/events".to_owned(),
        ),
        ("/errors", "/errors".to_owned()),
    ] {
        let r = get(concrete).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{template}");
        assert_documented(&doc, template, "get", 200, &r.json().await.unwrap());
    }
    let r = client
        .delete(format!("{}/sessions/doc-s", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let erased: Value = r.json().await.unwrap();
    assert_eq!(erased["removed"]["events"], 1, "{erased}");
    assert_documented(&doc, "/sessions/{session_id}", "delete", 200, &erased);
    let r = get("/events?page=99".to_owned()).await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_documented(&doc, "/events", "get", 404, &r.json().await.unwrap());
    let r = app.get("/events").await;
    assert_eq!(r.status().as_u16(), 401);
    assert_documented(&doc, "/events", "get", 401, &r.json().await.unwrap());
    app.stop().await;
}

#[test]
fn openapi_subcommand_prints_the_served_document() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eye-server"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, document());
}

/// The request examples the document shows are events the server accepts.
#[test]
fn request_examples_are_valid_events() {
    let doc = document();
    let ctx = eye_core::ValidationContext::system();
    let examples =
        doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["examples"]
            .as_object()
            .unwrap();
    for (name, example) in examples {
        let events = match &example["value"] {
            Value::Array(items) => items.clone(),
            single => vec![single.clone()],
        };
        for event in events {
            let raw = serde_json::to_vec(&event).unwrap();
            assert!(
                eye_core::Event::parse_json(&raw, &ctx).is_ok(),
                "{name}: {event}"
            );
        }
    }
}
