//! The browsable API's pages: each renders the very JSON answer the API gives (a
//! table of the results, the JSON, a filter form and pagination links).
//! Every value from an event is untrusted; maud escapes all of it, and no value ever
//! becomes a link target except through [`encode`].
//!
//! A page stays a small multiple of the JSON it shows, whatever the events hold: the
//! JSON block is bounded ([`json_block`]: pretty only when small, cut with a link to
//! the whole JSON when large), table cells show at most a few hundred characters, and
//! a list page holds at most [`super::MAX_HTML_PAGE_SIZE`] rows.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use eye_core::{ErrorRecord, EventType, Page, Payload, Session, StoredEvent, format_timestamp};
use maud::{Markup, html};
use serde_json::Value;

use super::layout::{encode, json_block, json_prefix, page, pretty};

/// What a list page needs besides the answer: the request's query pairs (to fill the
/// filter form and tell the page number) and the current time (for the post form's
/// example).
#[derive(Debug, Clone, Default)]
pub struct ListContext {
    /// The raw query pairs of the request.
    pub query: Vec<(String, String)>,
    /// Now, for the example event in the post form.
    pub now: Option<DateTime<Utc>>,
}

impl ListContext {
    fn get(&self, key: &str) -> &str {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    fn number(&self, key: &str, default: u64) -> u64 {
        self.get(key).parse().unwrap_or(default)
    }

    /// This page's URL as JSON: the same query, plus `format=json`.
    fn json_link(&self) -> String {
        let mut query: Vec<String> = self
            .query
            .iter()
            .filter(|(k, _)| k != "format")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        query.push("format=json".to_owned());
        format!("?{}", query.join("&"))
    }
}

/// The link to an event's or a session's whole JSON.
const JSON_LINK: &str = "?format=json";

/// Most characters of a path or a form shown in a table cell (the event's page has
/// the rest).
const CELL_CHARS: usize = 160;

/// Only `http(s)` or same-site links from an answer become `href`s.
fn safe_link(url: &Option<String>) -> Option<&str> {
    url.as_deref()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://") || u.starts_with('/'))
}

fn pager(
    count: u64,
    next: &Option<String>,
    previous: &Option<String>,
    ctx: &ListContext,
) -> Markup {
    let page_no = ctx.number("page", 1).max(1);
    let size = ctx.number("page_size", 10).max(1);
    let pages = count.div_ceil(size).max(1);
    // By cursor, a page has a position, not a number.
    let by_cursor = ctx.query.iter().any(|(k, _)| k == "cursor");
    html! {
        div.pager {
            @if let Some(prev) = safe_link(previous) { a rel="prev" href=(prev) { "← previous" } }
            @else { span.muted { "← previous" } }
            @if by_cursor { span { (count) " result" @if count != 1 { "s" } " · by cursor" } }
            @else { span { "page " (page_no) " of " (pages) " · " (count) " result" @if count != 1 { "s" } } }
            @if let Some(next) = safe_link(next) { a rel="next" href=(next) { "next →" } }
            @else { span.muted { "next →" } }
        }
    }
}

fn session_link(session_id: &str) -> Markup {
    html! { a href={ "/sessions/" (encode(session_id)) } { (session_id) } }
}

fn type_badge(t: EventType) -> Markup {
    html! { span.badge title=(t.as_str()) { span class={ "swatch t-" (t.name()) } {} (t.name()) } }
}

/// A timestamp short enough for a table cell, the exact one on hover.
fn short_time(t: &DateTime<Utc>) -> Markup {
    html! { span title=(format_timestamp(t)) { (t.format("%Y-%m-%d %H:%M:%S")) } }
}

fn text_input(ctx: &ListContext, name: &str, label: &str, placeholder: &str) -> Markup {
    html! {
        label { (label) input type="text" name=(name) value=(ctx.get(name)) placeholder=(placeholder); }
    }
}

fn select(ctx: &ListContext, name: &str, options: &[&str]) -> Markup {
    let current = ctx.get(name);
    html! {
        label { (name) select name=(name) {
            option value="" { "any" }
            @for o in options { option value=(o) selected[current == *o] { (o) } }
        } }
    }
}

fn page_size_and_submit(ctx: &ListContext) -> Markup {
    html! {
        label { "page_size" input type="number" min="1" name="page_size" value=(ctx.get("page_size")) placeholder="10"; }
        button type="submit" { "Filter" }
        a href="?" { "clear" }
    }
}

fn events_table(events: &[StoredEvent]) -> Markup {
    html! {
        table {
            thead { tr { th { "timestamp" } th { "type" } th { "session" } th { "host" } th { "path" } th { "detail" } th { "application" } th { "id" } } }
            tbody {
                @for e in events {
                    tr {
                        td.mono { (short_time(&e.timestamp)) }
                        td { (type_badge(e.event_type())) }
                        td { (session_link(e.session_id.as_str())) }
                        td { (e.payload.host().as_str()) }
                        td.mono.wrap { (truncate(e.payload.path().as_str(), CELL_CHARS)) }
                        td.wrap { (detail(&e.payload)) }
                        td { (e.application) }
                        td.mono { a href={ "/events/" (e.id) } { (e.id.to_string()[..8]) "…" } }
                    }
                }
                @if events.is_empty() { tr { td colspan="8" .muted { "No events." } } }
            }
        }
    }
}

/// What sets an event apart beyond host and path: a CTA's element, a form's fields
/// (the start of them: a form may be 32 KiB).
fn detail(payload: &Payload) -> String {
    match payload {
        Payload::CtaClick(c) => c.element.as_str().to_owned(),
        Payload::FormSubmit(f) => truncate(&json_prefix(f.form.as_map(), 4 * 120), 120),
        _ => String::new(),
    }
}

fn example_event(now: DateTime<Utc>) -> String {
    let example = serde_json::json!({
        "session_id": "browser-demo",
        "category": "page_interaction",
        "name": "page_view",
        "data": {"host": "www.example.com", "path": "/"},
        "timestamp": format_timestamp(&now),
    });
    pretty(&example)
}

/// `GET /events` as HTML.
///
/// ```
/// use eye_server::web::pages::{ListContext, events_page};
/// let page = eye_core::Page { count: 0, next: None, previous: None, results: vec![] };
/// let html = events_page(&page, &ListContext::default()).into_string();
/// assert!(html.contains("No events."));
/// assert!(html.contains(r#"<form method="post" action="/events""#));
/// ```
pub fn events_page(answer: &Page<StoredEvent>, ctx: &ListContext) -> Markup {
    let categories = ["page_interaction", "form_interaction"];
    let names: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
    let body = html! {
        h1 { "Events" }
        form.filters method="get" action="/events" {
            (text_input(ctx, "session_id", "session_id", "any"))
            (select(ctx, "category", &categories))
            (select(ctx, "name", &names))
            (text_input(ctx, "application", "application", "any"))
            (text_input(ctx, "start_time", "start_time", "2022-01-01"))
            (text_input(ctx, "end_time", "end_time", "2022-02-01"))
            (page_size_and_submit(ctx))
        }
        (pager(answer.count, &answer.next, &answer.previous, ctx))
        (events_table(&answer.results))
        (pager(answer.count, &answer.next, &answer.previous, ctx))
        details { summary { "JSON" } (json_block(answer, Some(&ctx.json_link()))) }
        h2 { "Post an event" }
        (post_form(&example_event(ctx.now.unwrap_or_else(Utc::now))))
    };
    page("Events", body)
}

/// The form that posts an event (or a batch) as JSON, pre-filled with `content`.
fn post_form(content: &str) -> Markup {
    html! {
        form method="post" action="/events" {
            textarea name="content" id="content" spellcheck="false" { (content) }
            p { button type="submit" id="post-event" { "POST" } " "
                span.muted { "One event or a JSON array of events; sent as " code { "application/json" } " with your key." } }
        }
    }
}

/// A form post the API refused: its error, and the form again with what was sent.
pub fn rejected_post_page(status: StatusCode, body: &Value, content: &str) -> Markup {
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("the API refused the event");
    let title = status_title(status);
    let body = html! {
        h1.error { (title) }
        p { (message) " " a href="/events" { "Back to the events" } }
        (json_block(body, None))
        h2 { "Post an event" }
        (post_form(content))
    };
    page(&title, body)
}

/// `GET /events/{id}` as HTML.
pub fn event_page(event: &StoredEvent) -> Markup {
    let body = html! {
        h1 { "Event " span.mono { (event.id) } }
        table {
            tr { th { "type" } td { (type_badge(event.event_type())) } }
            tr { th { "session" } td { (session_link(event.session_id.as_str())) " · " a href={ "/sessions/" (encode(event.session_id.as_str())) "/events" } { "timeline" } } }
            tr { th { "timestamp" } td.mono { (format_timestamp(&event.timestamp)) } }
            tr { th { "received" } td.mono { (format_timestamp(&event.received_at)) } }
            tr { th { "application" } td { (event.application) } }
        }
        h2 { "JSON" }
        (json_block(event, Some(JSON_LINK)))
    };
    page("Event", body)
}

/// `GET /sessions/{session_id}` as HTML.
pub fn session_page(session: &Session) -> Markup {
    let timeline = format!("/sessions/{}/events", encode(&session.session_id));
    let body = html! {
        h1 { "Session " span.mono { (session.session_id) } }
        table {
            tr { th { "first seen" } td.mono { (format_timestamp(&session.first_seen)) } }
            tr { th { "last seen" } td.mono { (format_timestamp(&session.last_seen)) } }
            tr { th { "events" } td { (session.event_count) } }
            tr { th { "applications" } td { (session.applications.join(", ")) } }
        }
        p { a href=(timeline) { "Open the timeline →" } }
        h2 { "JSON" }
        (json_block(session, Some(JSON_LINK)))
    };
    page("Session", body)
}

/// `GET /sessions/{session_id}/events` as HTML: the timeline, oldest first.
pub fn session_events_page(
    session_id: &str,
    answer: &Page<StoredEvent>,
    ctx: &ListContext,
) -> Markup {
    let body = html! {
        h1 { "Timeline of session " (session_link(session_id)) }
        form.filters method="get" { (page_size_and_submit(ctx)) }
        (pager(answer.count, &answer.next, &answer.previous, ctx))
        (events_table(&answer.results))
        details { summary { "JSON" } (json_block(answer, Some(&ctx.json_link()))) }
    };
    page("Session timeline", body)
}

/// `GET /errors` as HTML.
pub fn errors_page(answer: &Page<ErrorRecord>, ctx: &ListContext) -> Markup {
    let body = html! {
        h1 { "Errors log" }
        p.muted { "Events The Eye rejected, newest first." }
        form.filters method="get" action="/errors" {
            (text_input(ctx, "application", "application", "any"))
            label { "code" input type="text" name="code" list="error-codes" value=(ctx.get("code")) placeholder="any"; }
            datalist #error-codes { @for code in error_codes() { option value=(code) {} } }
            (text_input(ctx, "start_time", "start_time", "2022-01-01"))
            (text_input(ctx, "end_time", "end_time", "2022-02-01"))
            (page_size_and_submit(ctx))
        }
        (pager(answer.count, &answer.next, &answer.previous, ctx))
        (errors_table(&answer.results, false))
        details { summary { "JSON" } (json_block(answer, Some(&ctx.json_link()))) }
    };
    page("Errors", body)
}

/// Every validation error code, read from [`eye_core::ErrorCode`]'s JSON Schema so
/// the list cannot fall behind the enum.
fn error_codes() -> Vec<String> {
    let schema = schemars::schema_for!(eye_core::ErrorCode).to_value();
    let mut codes: Vec<String> = Vec::new();
    let mut take = |v: &Value| {
        if let Some(s) = v.as_str() {
            codes.push(s.to_owned());
        }
    };
    if let Some(values) = schema["enum"].as_array() {
        values.iter().for_each(&mut take);
    }
    for branch in schema["oneOf"].as_array().into_iter().flatten() {
        take(&branch["const"]);
        branch["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .for_each(&mut take);
    }
    codes
}

/// A table of errors-log entries; `compact` (the dashboard) leaves out the
/// application and the payload.
pub fn errors_table(errors: &[ErrorRecord], compact: bool) -> Markup {
    html! {
        table {
            thead { tr {
                th { "received" }
                @if !compact { th { "application" } }
                th { "codes" } th { "problems" }
                @if !compact { th { "payload" } }
            } }
            tbody {
                @for e in errors {
                    tr {
                        td.mono { (short_time(&e.received_at)) }
                        @if !compact { td { (e.application) } }
                        td.mono.error { (e.codes.join(", ")) }
                        td { @for f in &e.errors { div { code { (truncate(&f.path, CELL_CHARS)) } " " (f.message) } } }
                        @if !compact { td.mono.wrap { (truncate(&e.payload, 160)) } }
                    }
                }
                @if errors.is_empty() { tr { td colspan="5" .muted { "No errors." } } }
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// `404 Not Found`: the code and its reason, as a page's title.
fn status_title(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

/// Any non-2xx answer as HTML: the status, the message, and the JSON body.
pub fn error_page(status: StatusCode, body: &Value) -> Markup {
    let message = body["error"]["message"]
        .as_str()
        .or_else(|| body["detail"].as_str())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error"));
    let title = status_title(status);
    let body = html! {
        h1.error { (title) }
        p { (message) }
        @if status == StatusCode::UNAUTHORIZED {
            p.muted { "Sign in with any user name and an API key with the " code { "query" } " scope as the password." }
        }
        @if !body.is_null() { (json_block(body, None)) }
    };
    page(&title, body)
}
