//! The `/events` page's post form. A browser form can only send
//! `application/x-www-form-urlencoded`, so the page puts the event's JSON in a
//! `content` field (as DRF's browsable API does); this turns that post into the JSON
//! post the API takes, with the same key, and answers `303 See Other` back to
//! `/events` when it was accepted, or the API's error as a page when it was not.
//!
//! A form post is a "simple" cross-site request and the browser attaches its cached
//! Basic credentials to it, so posts from another site are refused (403) by their
//! `Sec-Fetch-Site` or `Origin` header ([`crate::auth::is_cross_site`]; authentication
//! refuses any other cross-site request carrying Basic credentials too).

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Next, error_as_html, html_response, pages};
use crate::state::AppState;

pub(super) fn is_form(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    html_response(status, pages::error_page(status, &body))
}

/// The `content` field of a urlencoded body.
fn content_field(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "content").then(|| super::decode(&v.replace('+', " ")))
    })
}

pub(super) async fn post(state: &AppState, request: Request, next: Next) -> Response {
    if crate::auth::is_cross_site(request.headers(), state.config.http.public_url.as_deref()) {
        return problem(
            StatusCode::FORBIDDEN,
            "cross_site_form",
            "form posts are accepted from The Eye's own pages only",
        );
    }
    let (mut parts, body) = request.into_parts();
    // The encoded form is at most 3 times the JSON it carries.
    let limit = state.config.http.max_body_bytes.saturating_mul(3);
    let Ok(bytes) = to_bytes(body, limit).await else {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the form is larger than the body limit",
        );
    };
    let Some(content) = content_field(&bytes) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "malformed_form",
            "the form has no `content` field holding the event's JSON",
        );
    };
    let headers = &mut parts.headers;
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(content.len()));
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::ACCEPT_ENCODING);
    let answer = next
        .run(Request::from_parts(parts, Body::from(content.clone())))
        .await;
    if answer.status().is_success() {
        return (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, HeaderValue::from_static("/events"))],
        )
            .into_response();
    }
    if answer.status() == StatusCode::UNAUTHORIZED {
        // Keep the challenge so the browser asks for the key.
        return error_as_html(answer).await;
    }
    let status = answer.status();
    let error = to_bytes(answer.into_body(), 1024 * 1024)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    html_response(status, pages::rejected_post_page(status, &error, &content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_field_is_url_decoded() {
        assert_eq!(
            content_field(b"x=1&content=%7B%22a%22%3A+1%7D").as_deref(),
            Some(r#"{"a": 1}"#)
        );
        assert_eq!(content_field(b"x=1"), None);
    }
}
