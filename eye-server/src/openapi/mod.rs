//! The OpenAPI 3.1 document of the HTTP API, and the routes that serve it.
//!
//! Every request and response body schema comes from the Rust types that validate and
//! produce it (schemars derives in `eye-core`), so the document cannot drift from the
//! code: the event schema is [`eye_core::event_schema`], answers are [`StoredEvent`],
//! [`Page`], [`Session`], [`ErrorRecord`], [`IngestResponse`], [`ErrorBody`] and
//! [`crate::lifecycle::Erasure`]. The
//! paths and parameters are declared in [`paths`], next to a test that checks every
//! route the router serves is documented and every documented route is served.
//!
//! Routes: `GET /openapi.json` (the document), `GET /docs` (Redoc, vendored into the
//! binary), `GET /schema` (the event JSON Schema alone). `eye-server openapi` prints
//! the document.
//!
//! ```
//! let doc = eye_server::openapi::document();
//! assert_eq!(doc["openapi"], "3.1.0");
//! assert!(doc["paths"]["/events"]["post"].is_object());
//! assert!(doc["components"]["schemas"]["StoredEvent"].is_object());
//! ```
//!
//! # Layout
//!
//! - `mod.rs`: [`document`], component schemas, and [`router`].
//! - [`paths`]: one entry per route: parameters, bodies, answers.
//! - `docs.rs`: the `/docs` page and the vendored Redoc bundle.

mod docs;
pub mod paths;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use eye_core::{ErrorBody, ErrorRecord, IngestResponse, Page, Session, StoredEvent};
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::state::AppState;

/// Where component schemas live in the document.
const COMPONENTS: &str = "#/components/schemas/";

/// The OpenAPI 3.1 document as a JSON value.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    // Register the answer types; their schemas land in the definitions map.
    let mut named = Map::new();
    let mut register = |name: &str, schema: schemars::Schema| {
        named.insert(name.to_owned(), schema.to_value());
    };
    register("StoredEvent", generator.subschema_for::<StoredEvent>());
    register("Session", generator.subschema_for::<Session>());
    register("ErrorRecord", generator.subschema_for::<ErrorRecord>());
    register(
        "IngestResponse",
        generator.subschema_for::<IngestResponse>(),
    );
    register("ErrorBody", generator.subschema_for::<ErrorBody>());
    register(
        "Erasure",
        generator.subschema_for::<crate::lifecycle::Erasure>(),
    );
    register("EventPage", generator.subschema_for::<Page<StoredEvent>>());
    register("ErrorPage", generator.subschema_for::<Page<ErrorRecord>>());
    let mut schemas = generator.take_definitions(true);
    // schemars names generic instances itself (`Page_for_StoredEvent` or similar);
    // pin readable names so the document is stable.
    for (name, schema) in named {
        if schema.get("$ref").is_none() {
            schemas.insert(name, schema);
        } else if let Some(target) = schema["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix(COMPONENTS))
            && target != name
            && let Some(inner) = schemas.remove(target)
        {
            schemas.insert(name, inner);
        }
    }
    add_event_schemas(&mut schemas);
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "The Eye",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "Collects user web interactions (page views, CTA clicks, form submissions) from trusted applications.",
            "description": "Applications send events with an API key that has the `ingest` scope; analysts read them with a key that has the `query` scope; erasing a session needs the `admin` scope. Send the key as `Authorization: Bearer <key>`, or as the password of HTTP Basic (any user name), which lets a browser prompt for it. Every 4xx and 5xx answer has the body `{\"error\": {\"code\", \"message\", \"details\"}}`.\n\nEvery `GET` that answers JSON also answers HTML to a browser (`Accept: text/html`): the browsable API.",
            "license": {"name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0"}
        },
        "tags": [
            {"name": "ingest", "description": "Sending events."},
            {"name": "query", "description": "Reading events, sessions and the errors log."},
            {"name": "admin", "description": "Erasing data on request (the `admin` scope)."},
            {"name": "meta", "description": "Health, metrics, schemas and documentation."}
        ],
        "paths": paths::paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <API key>`."},
                "basic": {"type": "http", "scheme": "basic", "description": "Any user name, the API key as password (browsers)."}
            }
        }
    })
}

/// The document as pretty JSON with a trailing newline, what `eye-server openapi`
/// prints.
pub fn document_json() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}

/// Adds the wire event schema from eye-core as `Event` (one event) and `EventBatch`
/// (an array of them), moving its `$defs` into the components and rewriting its
/// references to match.
fn add_event_schemas(schemas: &mut Map<String, Value>) {
    let mut event = eye_core::event_schema().to_value();
    if let Some(obj) = event.as_object_mut() {
        obj.remove("$schema");
        if let Some(Value::Object(defs)) = obj.remove("$defs") {
            for (name, mut def) in defs {
                rewrite_refs(&mut def);
                schemas.entry(name).or_insert(def);
            }
        }
    }
    rewrite_refs(&mut event);
    schemas.insert("Event".into(), event);
    schemas.insert(
        "EventBatch".into(),
        json!({
            "description": "A batch: up to 1000 events, each accepted or rejected on its own.",
            "type": "array",
            "items": {"$ref": format!("{COMPONENTS}Event")},
            "minItems": 1,
            "maxItems": eye_core::MAX_BATCH_EVENTS
        }),
    );
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "$ref"
                    && let Some(r) = v.as_str()
                    && let Some(name) = r.strip_prefix("#/$defs/")
                {
                    *v = Value::String(format!("{COMPONENTS}{name}"));
                } else {
                    rewrite_refs(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

async fn openapi_json() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document_json(),
    )
}

async fn event_schema() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/schema+json"),
        )],
        eye_core::event_schema_json(),
    )
}

/// `GET /openapi.json`, `GET /docs`, `GET /schema` and the viewer's script. None needs
/// a key: they describe the API, they hold no data.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/schema", get(event_schema))
        .route("/docs", get(docs::docs_page))
        .route(docs::REDOC_PATH, get(docs::redoc_js))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_points_at_a_component() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"$ref\":\"").skip(1) {
            let target = &part[..part.find('"').unwrap()];
            let name = target
                .strip_prefix(COMPONENTS)
                .unwrap_or_else(|| panic!("{target}"));
            assert!(schemas.contains_key(name), "dangling {target}");
        }
    }

    #[test]
    fn component_names_are_valid_openapi_keys() {
        let doc = document();
        for name in doc["components"]["schemas"].as_object().unwrap().keys() {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c)),
                "{name}"
            );
        }
    }
}
