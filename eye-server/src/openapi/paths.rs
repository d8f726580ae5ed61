//! The paths of the OpenAPI document: one entry per route the server serves.
//!
//! Bodies reference the component schemas derived from the Rust types; query
//! parameters mirror [`eye_core::EventQuery::to_pairs`] and
//! [`eye_core::ErrorQuery::to_pairs`] (a test checks they agree).

use eye_core::EventType;
use serde_json::{Value, json};

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{}{name}", super::COMPONENTS) })
}

/// A query parameter. Each may be given once (a second `name=` is refused with 400
/// `invalid_query`, `repeated_parameter`); an empty value means no filter.
fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": format!("{description} Give it at most once; empty means not given."), "schema": schema})
}

fn path_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

fn json_body(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// A JSON answer that a browser gets as an HTML page instead.
fn browsable(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {
        "application/json": {"schema": schema},
        "text/html": {"schema": {"type": "string"}}
    }})
}

fn error(description: &str) -> Value {
    json_body(description, schema_ref("ErrorBody"))
}

/// Answers every authenticated route can give.
fn auth_errors(responses: &mut serde_json::Map<String, Value>) {
    responses.insert(
        "401".into(),
        error("No valid API key. `WWW-Authenticate` names Basic and Bearer."),
    );
    responses.insert(
        "403".into(),
        error(
            "`forbidden`: the key lacks the scope this route needs. `cross_site_request`: \
             Basic credentials on a request another site made the browser send \
             (`Sec-Fetch-Site: cross-site` or `same-site`, or a foreign `Origin`); \
             Bearer keys are not affected. `publishable_key`: a publishable key \
             (`eye_pk_...`) may only send events. `origin_not_allowed` (ingest): a \
             publishable key from a page whose `Origin` its application does not list.",
        ),
    );
}

fn responses(list: Vec<(&str, Value)>, authenticated: bool) -> Value {
    let mut map = serde_json::Map::new();
    for (status, answer) in list {
        map.insert(status.to_owned(), answer);
    }
    if authenticated {
        auth_errors(&mut map);
    }
    Value::Object(map)
}

const SECURED: &str = "A key with the `query` scope.";

fn security() -> Value {
    json!([{"bearer": []}, {"basic": []}])
}

fn time_params() -> [Value; 2] {
    // The pattern is exactly what the parser accepts, calendar included, so a value
    // the document allows is never refused.
    let time = json!({
        "type": "string",
        "pattern": eye_core::QUERY_TIME_PATTERN,
        "examples": ["2022-01-01", "2022-01-01T00:00:00Z"]
    });
    [
        query_param(
            "start_time",
            "Earliest instant included: a date (its first microsecond) or a date-time in any accepted timestamp format.",
            time.clone(),
        ),
        query_param(
            "end_time",
            "Latest instant included: a date (the whole day) or a date-time.",
            time,
        ),
    ]
}

fn page_params() -> [Value; 2] {
    [
        query_param(
            "page",
            "1-based page number. Past the end: 404 `Invalid page.`",
            // Empty means not given (page 1), as for every parameter.
            json!({"anyOf": [{"type": "integer", "minimum": 1}, {"const": ""}], "default": 1}),
        ),
        query_param(
            "page_size",
            "Results per page (server default 10, maximum 1000 unless configured otherwise).",
            json!({"anyOf": [{"type": "integer", "minimum": 1, "maximum": 1000}, {"const": ""}], "default": 10}),
        ),
    ]
}

/// `cursor`: keyset paging. Its schema lists only `""` (the first page): any other
/// valid value is a token only the server can make, for this listing and these
/// filters, which no schema can say; a schema that admitted every string of the
/// tokens' shape would call forged ones valid.
fn cursor_param(order: &str) -> Value {
    query_param(
        "cursor",
        &format!(
            "Keyset paging instead of page numbers. Empty (`cursor=`) asks for the first \
             page and makes `next` and `previous` cursor links; otherwise the value must be \
             the `cursor` of a `next` or `previous` link of this listing, used with the same \
             filters. A cursor is an opaque, versioned token: base64url (no padding) of a \
             position `(timestamp, id)` in the order {order}, a direction, a fingerprint of the \
             filters and a checksum. A page from a cursor costs the same at any depth, and \
             events stored between two pages never shift a walk: no row is skipped or \
             repeated. A malformed or altered cursor, one made for other filters or another \
             listing is refused with 400 `invalid_query` (`details.code` `invalid_cursor`). \
             With a cursor, `page` is ignored; `page_size` may change from page to page. \
             The answer's `count` is the total, as with page numbers."
        ),
        json!({"const": "", "description": format!(
            "`\"\"` for the first page; then only a token from a `next` or `previous` link \
             (it matches `{}`).", eye_core::CURSOR_PATTERN)}),
    )
}

/// A filter: any string up to 256 characters (longer is 400 `invalid_filter`). A value
/// no event has is not an error: it matches nothing.
fn filter(examples: &[&str]) -> Value {
    json!({"type": "string", "maxLength": 256, "examples": examples})
}

fn event_query_params() -> Vec<Value> {
    let mut params = event_filter_params();
    params.extend(page_params());
    params.push(cursor_param("newest first, ties by id"));
    params
}

/// The filters of `GET /events` (and of its export): everything but paging.
fn event_filter_params() -> Vec<Value> {
    let categories: Vec<&str> = {
        let mut c: Vec<&str> = EventType::ALL.iter().map(|t| t.category()).collect();
        c.dedup();
        c
    };
    let names: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
    let mut params = vec![
        query_param(
            "session_id",
            "Only this session's events.",
            filter(&["abc123"]),
        ),
        query_param(
            "category",
            &format!("Only this category ({}).", categories.join(", ")),
            filter(&categories),
        ),
        query_param(
            "name",
            &format!("Only this event name ({}).", names.join(", ")),
            filter(&names),
        ),
        query_param(
            "application",
            "Only events sent by this application.",
            filter(&["shop"]),
        ),
    ];
    params.extend(time_params());
    params
}

fn error_query_params() -> Vec<Value> {
    let mut params = vec![
        query_param(
            "application",
            "Only errors from this application.",
            filter(&["shop"]),
        ),
        query_param(
            "code",
            "Only errors carrying this code, e.g. `timestamp_in_future`.",
            filter(&["timestamp_in_future"]),
        ),
    ];
    params.extend(time_params());
    params.extend(page_params());
    params.push(cursor_param("newest first by received time, ties by id"));
    params
}

/// The seed README's example event.
fn seed_example() -> Value {
    json!({"session_id": "123", "category": "page_interaction", "name": "page_view",
        "data": {"host": "www.consumeraffairs.com", "path": "/"},
        "timestamp": "2022-01-01 00:00:00.000000"})
}

fn post_events() -> Value {
    json!({
        "tags": ["ingest"],
        "operationId": "postEvents",
        "summary": "Send one event or a batch",
        "description": "One event object, or an array of up to 1000 events. Each is validated before anything is queued; a 2xx means every accepted event is durable. Bodies may be gzip-compressed (`Content-Encoding: gzip`); the size limit applies after decompression. Needs a key with the `ingest` scope, or a publishable key (`eye_pk_...`, the browser tracker's) from one of its application's origins; a publishable key may come as `?key=` and its body as `text/plain` holding the same JSON (what `navigator.sendBeacon` and a CORS simple request send; `415` from any other key), and its answers carry a CORS grant for that origin. With `sent_at` (or `Eye-Sent-At`), each event's timestamp is corrected by the server's receive time minus `sent_at` before validation, and the sender's own timestamp is kept as `client_timestamp`.",
        "security": security(),
        "parameters": ingest_params(),
        "requestBody": {
            "required": true,
            "content": {"application/json": {
                "schema": {"oneOf": [schema_ref("Event"), schema_ref("EventBatch")]},
                "examples": {
                    "page_view": {"summary": "One page view (the seed's example)", "value": seed_example()},
                    "batch": {"summary": "A batch", "value": [seed_example(), {
                        "id": "0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c",
                        "session_id": "123", "category": "page_interaction", "name": "cta_click",
                        "data": {"host": "www.consumeraffairs.com", "path": "/", "element": "chat bubble"},
                        "timestamp": "2022-01-01T00:00:05Z"
                    }, {
                        "session_id": "123", "category": "form_interaction", "name": "submit",
                        "data": {"host": "www.consumeraffairs.com", "path": "/", "form": {"first_name": "John", "last_name": "Doe"}},
                        "timestamp": "2022-01-01 00:00:09.000000"
                    }]}
                }
            }}
        },
        "responses": responses(vec![
            ("201", {
                let mut created = json_body("Accepted: the single event, or at least one event of the batch (each has its own result).", schema_ref("IngestResponse"));
                created["headers"] = json!({"Location": {"description": "`/events/{id}` of a single accepted event. It answers once the event is stored: at once with `--ack-after store`, a few milliseconds later with the default `--ack-after journal` (404 until then). An event of a session erased in the last 30 days is accepted and dropped: its `Location` stays 404.", "schema": {"type": "string"}}});
                created
            }),
            ("400", json_body("The event is invalid (every problem listed), no event of the batch was valid, or the JSON is malformed; `invalid_sent_at`: `sent_at` or `Eye-Sent-At` is not a timestamp; `secret_key_in_url`: `?key=` holds a secret key (only publishable keys may travel in URLs).", json!({"oneOf": [schema_ref("ErrorBody"), schema_ref("IngestResponse")]}))),
            ("408", error("The request took longer than the configured timeout.")),
            ("413", error("Body or batch too large: split it.")),
            ("415", error("Not `application/json` (nor `text/plain` from a publishable key).")),
            ("429", error("The application's rate limit is reached (`rate_limited`); nothing was accepted. Retry after `Retry-After` seconds with the same ids.")),
            ("503", error("The queue cannot take events now; nothing was accepted. Retry after `Retry-After` seconds.")),
        ], true)
    })
}

/// The query parameters and header of `POST /events`.
fn ingest_params() -> Vec<Value> {
    vec![
        json!({"name": "key", "in": "query", "required": false,
            "description": "A publishable key (`eye_pk_...`) for requests that cannot set `Authorization` (`navigator.sendBeacon`); when given, it is the request's only credential. Secret keys are refused here (400 `secret_key_in_url`): URLs end up in logs.",
            "schema": {"type": "string", "pattern": "^eye_pk_[A-Za-z0-9_-]{43}$"}}),
        json!({"name": "sent_at", "in": "query", "required": false,
            "description": "When this request (this attempt) was sent, by the sender's clock, RFC 3339. Every event's timestamp is corrected by the server's receive time minus `sent_at`; the sender's timestamp is kept as `client_timestamp`. 400 `invalid_sent_at` when it is not a timestamp.",
            "schema": {"type": "string", "examples": ["2022-04-11T01:08:01.407Z"]}}),
        json!({"name": "Eye-Sent-At", "in": "header", "required": false,
            "description": "The same as `sent_at`, as a header (`sent_at` wins when both are given).",
            "schema": {"type": "string"}}),
    ]
}

/// `OPTIONS /events`: the CORS preflight.
fn preflight_events() -> Value {
    json!({
        "tags": ["ingest"],
        "operationId": "preflightEvents",
        "summary": "CORS preflight of a browser's ingest",
        "description": "Granted (`Access-Control-Allow-Origin` echoing the origin, `Allow-Methods: POST`, `Allow-Headers: content-type, content-encoding, eye-sent-at`) only for a publishable `?key=` from one of its application's origins. Without a `key` or `Access-Control-Request-Method: POST`, 204 without a grant. The tracker's own requests are CORS simple requests and need no preflight.",
        "security": [],
        "parameters": [ingest_params()[0].clone()],
        "responses": {
            "204": {"description": "Preflight answered; the CORS headers say whether it is granted."},
            "400": error("`secret_key_in_url`: `?key=` holds a secret key."),
            "401": error("Unknown or revoked key."),
            "403": error("`origin_not_allowed`: the `Origin` is not one of the key's application's.")
        }
    })
}

fn get_events() -> Value {
    json!({
        "tags": ["query"],
        "operationId": "listEvents",
        "summary": "List events, newest first",
        "description": format!("Filters combine freely. Paged by `page` (DRF's page numbers) or by `cursor` (keyset: the same cost at any depth; use it to walk far). A deep `page` is found through per-time-bucket counters, so it is cheap when timestamps are spread out; when many events share one timestamp (a batch import, coarse clocks), or with a `session_id` filter, it costs time proportional to the rows skipped inside that timestamp or session: walk by `cursor` instead. {SECURED}"),
        "security": security(),
        "parameters": event_query_params(),
        "responses": responses(vec![
            ("200", browsable("One page of events.", schema_ref("EventPage"))),
            ("400", error(MALFORMED_QUERY)),
            ("404", error("A page past the end, or not a page number: `{\"detail\": \"Invalid page.\"}`.")),
        ], true)
    })
}

fn export_events() -> Value {
    let mut params = vec![query_param(
        "format",
        "`ndjson` (the default): one event per line, each the JSON object `GET /events` lists. `csv`: a header row, then one row per event; columns `id`, `session_id`, `category`, `name`, `data.host`, `data.path`, `data.element`, `data.form` (the form as JSON text), `timestamp`, `application`, `received_at`, `client_timestamp`, a cell empty when the field does not apply.",
        json!({"anyOf": [{"enum": ["ndjson", "csv"]}, {"const": ""}], "default": "ndjson"}),
    )];
    params.extend(event_filter_params());
    let ndjson_example = "{\"id\":\"0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c\",\"session_id\":\"123\",\"category\":\"page_interaction\",\"name\":\"page_view\",\"data\":{\"host\":\"www.consumeraffairs.com\",\"path\":\"/\"},\"timestamp\":\"2022-01-01T00:00:00.000000Z\",\"application\":\"shop\",\"received_at\":\"2022-01-01T00:00:01.000000Z\"}\n";
    let csv_example = "id,session_id,category,name,data.host,data.path,data.element,data.form,timestamp,application,received_at,client_timestamp\n0190a3f0-8c2e-7cc3-8d4e-2b1a3f5e6d7c,123,page_interaction,page_view,www.consumeraffairs.com,/,,,2022-01-01T00:00:00.000000Z,shop,2022-01-01T00:00:01.000000Z,\n";
    let mut ok = json!({
        "description": "Every matching event. The body is streamed as the store is read; a store failure after it started cuts the transfer off (no final chunk), so an export that ends normally is complete.",
        "content": {
            "application/x-ndjson": {"schema": {"type": "string"}, "example": ndjson_example},
            "text/csv": {"schema": {"type": "string"}, "example": csv_example}
        }
    });
    ok["headers"] = json!({"Content-Disposition": {"description": "`attachment; filename=\"events-<UTC time>.ndjson\"` (or `.csv`).", "schema": {"type": "string"}}});
    json!({
        "tags": ["query"],
        "operationId": "exportEvents",
        "summary": "Export every matching event as NDJSON or CSV, newest first",
        "description": format!("Takes the filters of `GET /events` and answers every event they match, in the order of `GET /events` (newest first, ties by id), streamed page by page in constant memory: the same as walking `GET /events?cursor=` to the end. Events stored while it runs never make it repeat or skip an event; they are included when their position is still ahead of the walk (older than the last event sent). `page`, `page_size` and `cursor` are refused (`unsupported_parameter`): an export has no pages. Compressed with `Accept-Encoding: gzip`. `eye-server export` writes the same bytes from the command line. {SECURED}"),
        "security": security(),
        "parameters": params,
        "responses": responses(vec![
            ("200", ok),
            ("400", error("`invalid_query`: a malformed filter or format (`details.code` `invalid_format`), a parameter given twice (`repeated_parameter`), `start_time` later than `end_time` (`invalid_time_range`), or `page`, `page_size` or `cursor` (`unsupported_parameter`); `details.parameter` names it.")),
            ("503", error("The store is busy or unreachable before the export started (`unavailable`); retry after `Retry-After` seconds.")),
        ], true)
    })
}

/// The 400 of a listing.
const MALFORMED_QUERY: &str = "`invalid_query`: a malformed parameter, a parameter given twice (`details.code` `repeated_parameter`), `start_time` later than `end_time` (`invalid_time_range`), or a cursor this server did not make for this listing and these filters (`invalid_cursor`), which no schema can express; `details.parameter` names it.";

/// The 400 of a route with a path parameter.
const NOT_UTF8: &str = "A path segment that is not UTF-8 once percent-decoded (`bad_request`).";

fn get_event() -> Value {
    json!({
        "tags": ["query"],
        "operationId": "getEvent",
        "summary": "One event",
        "description": SECURED,
        "security": security(),
        "parameters": [path_param("id", "The event's id.", json!({"type": "string", "format": "uuid"}))],
        "responses": responses(vec![
            ("200", browsable("The event.", schema_ref("StoredEvent"))),
            ("400", error(NOT_UTF8)),
            ("404", error("No such event.")),
        ], true)
    })
}

fn get_session() -> Value {
    json!({
        "tags": ["query"],
        "operationId": "getSession",
        "summary": "One session",
        "description": SECURED,
        "security": security(),
        "parameters": [path_param("session_id", "The session id.", json!({"type": "string"}))],
        "responses": responses(vec![
            ("200", browsable("The session: first and last seen, event count, applications.", schema_ref("Session"))),
            ("400", error(NOT_UTF8)),
            ("404", error("No such session.")),
        ], true)
    })
}

fn erase_session() -> Value {
    json!({
        "tags": ["admin"],
        "operationId": "eraseSession",
        "summary": "Erase a session for good",
        "description": "Removes the session's events, its session row, the errors-log entries whose payload carries its id, and its dead letters (the journal's dead-letter file, the Redis dead-letter stream); counters and the dashboard stay exact. Events of the session that reach the store later (a client's retry, a queue's redelivery) are dropped until `suppressed_until`, 30 days on. Erasing again is harmless, and a session never seen answers zeros (and is suppressed all the same). Needs a key with the `admin` scope (`--scope admin` or `--scope all`; keys created before the scope existed do not have it).",
        "security": security(),
        "parameters": [path_param("session_id", "The session id.", json!({"type": "string"}))],
        "responses": responses(vec![
            ("200", json_body("Erased: how many of each were removed.", schema_ref("Erasure"))),
            ("400", error(NOT_UTF8)),
            ("503", error("`erase_incomplete`: erased from the store, not yet from the dead letters (Redis unreachable); `unavailable`: the store is busy or unreachable. Send the same request again after `Retry-After` seconds.")),
        ], true)
    })
}

fn get_session_events() -> Value {
    let mut params = vec![path_param(
        "session_id",
        "The session id.",
        json!({"type": "string"}),
    )];
    params.extend(page_params());
    params.push(cursor_param("oldest first, ties by id"));
    json!({
        "tags": ["query"],
        "operationId": "listSessionEvents",
        "summary": "A session's timeline, oldest first",
        "description": SECURED,
        "security": security(),
        "parameters": params,
        "responses": responses(vec![
            ("200", browsable("One page of the session's events in the order they occurred.", schema_ref("EventPage"))),
            ("400", error("A malformed `page_size` or `cursor`, or a parameter given twice (`invalid_query`), or a path segment that is not UTF-8 once percent-decoded (`bad_request`).")),
            ("404", error("No such session, or a page past the end.")),
        ], true)
    })
}

fn get_errors() -> Value {
    json!({
        "tags": ["query"],
        "operationId": "listErrors",
        "summary": "The errors log: rejected events, newest first",
        "description": SECURED,
        "security": security(),
        "parameters": error_query_params(),
        "responses": responses(vec![
            ("200", browsable("One page of the errors log.", schema_ref("ErrorPage"))),
            ("400", error(MALFORMED_QUERY)),
            ("404", error("A page past the end.")),
        ], true)
    })
}

fn meta(id: &str, summary: &str, content_type: &str, schema: Value) -> Value {
    json!({
        "tags": ["meta"],
        "operationId": id,
        "summary": summary,
        "security": [],
        "responses": {"200": {"description": summary, "content": {content_type: {"schema": schema}}}}
    })
}

/// The same operation under a second path (the seed's Django URLs end in `/`).
fn alias(mut operation: Value, of: &str) -> Value {
    let id = operation["operationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    operation["operationId"] = Value::String(format!("{id}TrailingSlash"));
    operation["summary"] = Value::String(format!("Same as `{of}`"));
    operation["deprecated"] = Value::Bool(false);
    operation
}

/// Every path the server serves, with its operations.
pub fn paths() -> Value {
    let text = json!({"type": "string"});
    let mut dashboard = meta(
        "dashboard",
        "The dashboard (HTML): events per hour, totals, newest sessions and errors",
        "text/html",
        text.clone(),
    );
    dashboard["security"] = security();
    dashboard["responses"]["401"] = json!({"description": "No valid key: the browser is asked for one (`WWW-Authenticate: Basic`)."});
    let mut readyz = meta(
        "readyz",
        "Ready: the store and the queue answer",
        "application/json",
        json!({"type": "object"}),
    );
    let mut tracker = meta(
        "tracker",
        "The browser tracker (eye.js); served at `--tracker-path`, `/eye.js` by default",
        "text/javascript",
        text.clone(),
    );
    tracker["responses"]["304"] =
        json!({"description": "`If-None-Match` names the current `ETag`."});
    readyz["responses"]["503"] = json!({"description": "The store or the queue does not answer.", "content": {"application/json": {"schema": {"type": "object"}}}});
    json!({
        "/": {"get": dashboard},
        "/events": {"post": post_events(), "get": get_events(), "options": preflight_events()},
        "/events/": {"post": alias(post_events(), "/events"), "get": alias(get_events(), "/events"),
            "options": alias(preflight_events(), "/events")},
        "/events/export": {"get": export_events()},
        "/events/{id}": {"get": get_event()},
        "/sessions/{session_id}": {"get": get_session(), "delete": erase_session()},
        "/sessions/{session_id}/events": {"get": get_session_events()},
        "/errors": {"get": get_errors()},
        "/healthz": {"get": meta("healthz", "Alive: the process answers", "application/json", json!({"type": "object"}))},
        "/readyz": {"get": readyz},
        "/metrics": {"get": meta("metrics", "Prometheus metrics", "text/plain", text.clone())},
        "/openapi.json": {"get": meta("openapi", "This document", "application/json", json!({"type": "object"}))},
        "/schema": {"get": meta("eventSchema", "The JSON Schema (draft 2020-12) of one event", "application/schema+json", json!({"type": "object"}))},
        "/docs": {"get": meta("docs", "This document, rendered (Redoc)", "text/html", text.clone())},
        "/assets/redoc.standalone.js": {"get": meta("redocScript", "The Redoc script /docs loads (vendored)", "text/javascript", text.clone())},
        "/assets/eye.css": {"get": meta("stylesheet", "The stylesheet of the HTML pages", "text/css", text.clone())},
        "/eye.js": {"get": tracker},
    })
}
