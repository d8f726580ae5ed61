//! The browsable API and the dashboard: The Eye as a person sees it.
//!
//! The `GET` URLs of the JSON API (`/events`, `/events/{id}`, `/sessions/{id}`,
//! `/sessions/{id}/events`, `/errors`) answer HTML when the request prefers
//! `text/html` ([`prefers_html`]), JSON otherwise. [`negotiate`] is one middleware
//! around the JSON handlers: it lets the handler answer as usual (authentication,
//! filters, pagination links and errors included), then renders that very answer as a
//! page. So the HTML can never show anything the JSON would not, and needs the same
//! key: a browser is asked for it by the 401's `WWW-Authenticate: Basic` (any user
//! name, the API key as password).
//!
//! `POST /events` also takes the HTML form of the `/events` page from a browser
//! (`application/x-www-form-urlencoded` with `Accept: text/html`, the JSON in a
//! `content` field, like DRF's browsable API); see `form.rs`. `/` is the dashboard (`dashboard.rs`).
//!
//! Templates are maud, checked at compile time; every value is escaped, pages load
//! no script, and a Content-Security-Policy forbids inline script anyway.
//!
//! ```
//! use axum::http::{HeaderMap, HeaderValue, header::ACCEPT};
//! let mut browser = HeaderMap::new();
//! browser.insert(ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"));
//! assert!(eye_server::web::prefers_html(&browser));
//! let mut curl = HeaderMap::new();
//! curl.insert(ACCEPT, HeaderValue::from_static("*/*"));
//! assert!(!eye_server::web::prefers_html(&curl));
//! ```
//!
//! # Layout
//!
//! - `mod.rs`: negotiation ([`NegotiateLayer`]), [`router`].
//! - [`layout`]: the page shell, stylesheet, escaping helpers.
//! - [`pages`]: one template per JSON answer.
//! - [`dashboard`]: `/` and its SVG chart.
//! - `form.rs`: the HTML post form.

pub mod dashboard;
mod form;
pub mod layout;
pub mod pages;

use std::convert::Infallible;
use std::task::Poll;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eye_core::{ErrorRecord, Page, Session, StoredEvent};
use futures_util::future::{BoxFuture, Either};
use maud::Markup;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::state::AppState;
use pages::ListContext;

/// The policy of every HTML page: no script at all, styles from this origin.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Largest JSON answer rendered as a page (1000 events of 32 KiB fit with room).
const MAX_RENDERED_BYTES: usize = 64 * 1024 * 1024;

/// Most rows of a list page as HTML: a larger `page_size` (or a larger configured
/// default) is lowered to this for a browser, so a page's table stays bounded. The
/// JSON of the same URL is not affected.
pub const MAX_HTML_PAGE_SIZE: u32 = 100;

/// True when the request's `Accept` ranks `text/html` above `application/json`
/// (browsers do; `curl`, SDKs and `*/*` get JSON). `?format=json` and `?format=html`
/// override it, as in DRF.
pub fn prefers_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut html = 0.0_f32;
    let mut json = 0.0_f32;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "text/html" | "application/xhtml+xml" => html = html.max(q),
            "application/json" => json = json.max(q),
            _ => {}
        }
    }
    html > 0.0 && html > json
}

fn format_override(query: Option<&str>) -> Option<bool> {
    let query = query?;
    query.split('&').find_map(|pair| match pair {
        "format=html" => Some(true),
        "format=json" => Some(false),
        _ => None,
    })
}

/// Which JSON answer a matched route gives, by the shape of its path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum View {
    Events,
    Event,
    Session(String),
    SessionEvents(String),
    Errors,
}

impl View {
    fn of(route: &str, path: &str) -> Option<Self> {
        let shape: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).collect();
        let actual: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let is_param = |s: &str| s.starts_with('{');
        match shape.as_slice() {
            ["events"] => Some(Self::Events),
            ["events", p] if is_param(p) => Some(Self::Event),
            ["sessions", p] if is_param(p) => Some(Self::Session(decode(actual.get(1)?))),
            ["sessions", p, "events"] if is_param(p) => {
                Some(Self::SessionEvents(decode(actual.get(1)?)))
            }
            ["errors"] => Some(Self::Errors),
            _ => None,
        }
    }
}

/// Percent-decodes a path segment (lossy on invalid UTF-8).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let plus = |s: &str| decode(&s.replace('+', " "));
            (plus(k), plus(v))
        })
        .collect()
}

/// Middleware around the JSON API: renders its answers as HTML for browsers, and
/// turns the `/events` page's form post into a JSON post. Add it with
/// `Router::layer(NegotiateLayer::new(state))` so the matched route is known.
///
/// Only a `GET` or a form post can be negotiated; every other request (an API
/// client's `POST /events`: the ack path) goes straight to the route, without the
/// per-request boxing of `axum::middleware::from_fn` (issue 18).
#[derive(Clone)]
pub struct NegotiateLayer {
    state: AppState,
}

impl NegotiateLayer {
    /// The layer, with the state that form posts and page rendering need.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> tower::Layer<S> for NegotiateLayer {
    type Service = Negotiate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Negotiate {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service of [`NegotiateLayer`].
#[derive(Clone)]
pub struct Negotiate<S> {
    inner: S,
    state: AppState,
}

impl<S> tower::Service<Request> for Negotiate<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let negotiable = request.method() == Method::GET
            || (request.method() == Method::POST && form::is_form(&request));
        if !negotiable {
            return Either::Left(self.inner.call(request));
        }
        // The service that was made ready goes with this request; the clone stays.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let next = Next(BoxCloneSyncService::new(ready));
        let state = self.state.clone();
        Either::Right(Box::pin(async move {
            Ok(negotiate(state, request, next).await)
        }))
    }
}

/// The rest of the stack below [`Negotiate`], for the requests it negotiates.
pub(crate) struct Next(BoxCloneSyncService<Request, Response, Infallible>);

impl Next {
    /// Runs the request through the route.
    pub(crate) async fn run(self, request: Request) -> Response {
        match self.0.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// What [`Negotiate`] does with a `GET` or a form post.
async fn negotiate(state: AppState, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let Some(route) = route else {
        // No route matched: a browser gets the 404 as a page too.
        let browser = request.method() == Method::GET && prefers_html(request.headers());
        let answer = next.run(request).await;
        return if browser && !answer.status().is_success() {
            error_as_html(answer).await
        } else {
            answer
        };
    };
    let path = request.uri().path().to_owned();
    let view = View::of(&route, &path);
    // Only a browser's form post (it asks for HTML); an API client sending a form
    // body still gets the API's 415.
    if request.method() == Method::POST
        && view == Some(View::Events)
        && form::is_form(&request)
        && prefers_html(request.headers())
    {
        return form::post(&state, request, next).await;
    }
    let wants_html =
        format_override(request.uri().query()).unwrap_or_else(|| prefers_html(request.headers()));
    let is_get = request.method() == Method::GET;
    let Some(view) = view.filter(|_| is_get) else {
        return next.run(request).await;
    };
    if !wants_html {
        // The same URL answers two representations: tell caches.
        let mut answer = next.run(request).await;
        answer
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("Accept"));
        return answer;
    }
    let mut request = request;
    if matches!(view, View::Events | View::SessionEvents(_) | View::Errors) {
        cap_page_size(&mut request, state.config.query.default_page_size);
    }
    let ctx = ListContext {
        query: query_pairs(request.uri().query()),
        now: Some(state.clock.now()),
    };
    let answer = next.run(json_request(request)).await;
    render_answer(answer, |status, body| match view {
        View::Events => render::<Page<StoredEvent>>(status, body, |p| pages::events_page(&p, &ctx)),
        View::Event => render::<StoredEvent>(status, body, |e| pages::event_page(&e)),
        View::Session(_) => render::<Session>(status, body, |s| pages::session_page(&s)),
        View::SessionEvents(id) => {
            render::<Page<StoredEvent>>(status, body, |p| pages::session_events_page(&id, &p, &ctx))
        }
        View::Errors => render::<Page<ErrorRecord>>(status, body, |p| pages::errors_page(&p, &ctx)),
    })
    .await
}

/// Lowers the request's `page_size` (or the default, when it names none) to
/// [`MAX_HTML_PAGE_SIZE`]. A `page_size` that is not a number is left for the
/// handler to refuse.
fn cap_page_size(request: &mut Request, default_page_size: u32) {
    let mut pairs = query_pairs(request.uri().query());
    let mut capped = false;
    let mut named = false;
    for (key, value) in &mut pairs {
        if key == "page_size" {
            named = true;
            if value
                .parse::<u64>()
                .is_ok_and(|n| n > u64::from(MAX_HTML_PAGE_SIZE))
            {
                *value = MAX_HTML_PAGE_SIZE.to_string();
                capped = true;
            }
        }
    }
    if !named && default_page_size > MAX_HTML_PAGE_SIZE {
        pairs.push(("page_size".into(), MAX_HTML_PAGE_SIZE.to_string()));
        capped = true;
    }
    if !capped {
        return;
    }
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", layout::encode(k), layout::encode(v)))
        .collect();
    let uri = format!("{}?{}", request.uri().path(), query.join("&"));
    match uri.parse() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(e) => tracing::error!(error = %e, "cannot lower the page size of a page"),
    }
}

/// The request as the JSON handler should see it: asking for JSON, uncompressed (an
/// outer compression layer still compresses the page).
fn json_request(mut request: Request) -> Request {
    let headers = request.headers_mut();
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    headers.remove(header::ACCEPT_ENCODING);
    request
}

fn render<T: DeserializeOwned>(
    status: StatusCode,
    body: &[u8],
    template: impl FnOnce(T) -> Markup,
) -> Option<Markup> {
    if !status.is_success() {
        return None;
    }
    match serde_json::from_slice::<T>(body) {
        Ok(value) => Some(template(value)),
        Err(e) => {
            tracing::error!(error = %e, "cannot render a JSON answer as HTML");
            None
        }
    }
}

/// Renders a JSON answer with `template` when it succeeded, as an error page
/// otherwise. Keeps the answer's status and headers (`WWW-Authenticate` makes the
/// browser ask for the key, `Retry-After`, the request id).
async fn render_answer(
    answer: Response,
    template: impl FnOnce(StatusCode, &[u8]) -> Option<Markup>,
) -> Response {
    let (mut parts, body) = answer.into_parts();
    let bytes = match to_bytes(body, MAX_RENDERED_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot read a JSON answer to render it");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let markup = template(parts.status, &bytes).unwrap_or_else(|| {
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if parts.status.is_success() {
            // A success we could not parse: an internal fault, shown opaquely.
            parts.status = StatusCode::INTERNAL_SERVER_ERROR;
        }
        pages::error_page(parts.status, &value)
    });
    html_parts(&mut parts.headers);
    Response::from_parts(parts, Body::from(markup.into_string()))
}

fn html_parts(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONTENT_ENCODING);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
}

/// An HTML page answer with the pages' security headers.
pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    html_parts(response.headers_mut());
    response
}

/// An API error (or any JSON error answer) as an HTML page.
pub(crate) async fn error_as_html(answer: Response) -> Response {
    render_answer(answer, |_, _| None).await
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        layout::CSS,
    )
}

/// `GET /` (the dashboard) and the stylesheet.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard::dashboard))
        .route(layout::CSS_PATH, get(stylesheet))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn json_ranked_above_html_gets_json() {
        assert!(!prefers_html(&accept("application/json, text/html;q=0.5")));
        assert!(prefers_html(&accept("application/json;q=0.5, text/html")));
        assert!(!prefers_html(&HeaderMap::new()));
    }

    #[test]
    fn route_shapes_map_to_views_whatever_the_parameter_is_called() {
        assert_eq!(View::of("/events/", "/events/"), Some(View::Events));
        assert_eq!(
            View::of("/events/{event_id}", "/events/x"),
            Some(View::Event)
        );
        assert_eq!(
            View::of("/sessions/{id}/events", "/sessions/a%20b/events"),
            Some(View::SessionEvents("a b".into()))
        );
        assert_eq!(View::of("/metrics", "/metrics"), None);
    }

    #[test]
    fn html_pages_hold_at_most_a_hundred_rows() {
        let capped = |uri: &str, default: u32| {
            let mut request = Request::get(uri).body(Body::empty()).unwrap();
            cap_page_size(&mut request, default);
            request.uri().to_string()
        };
        assert_eq!(
            capped("/events?page_size=1000&name=a+b", 10),
            "/events?page_size=100&name=a%20b"
        );
        assert_eq!(capped("/events?page_size=20", 10), "/events?page_size=20");
        assert_eq!(
            capped("/events?page=2", 500),
            "/events?page=2&page_size=100"
        );
        assert_eq!(capped("/events?page_size=x", 10), "/events?page_size=x");
    }

    #[test]
    fn query_pairs_are_decoded() {
        assert_eq!(
            query_pairs(Some("session_id=a+b%26c&page=2")),
            vec![
                ("session_id".into(), "a b&c".into()),
                ("page".into(), "2".into())
            ]
        );
    }
}
