//! HTTP routes. Each file owns one resource and ends with its `router()`;
//! [`router`] merges them (one `.merge(x::router())` per file) and adds the middleware.
//!
//! | route | scope | answers |
//! |---|---|---|
//! | `POST /events`, `/events/` | ingest | 201, 400, 401, 403, 413, 415, 503 |
//! | `GET /events`, `/events/` | query | 200, 400, 401, 403, 404 (`Invalid page.`) |
//! | `GET /events/export` (NDJSON or CSV, streamed) | query | 200, 400, 401, 403, 503 |
//! | `GET /events/{id}` | query | 200, 404 |
//! | `GET /sessions/{session_id}` | query | 200, 404 |
//! | `DELETE /sessions/{session_id}` | admin | 200, 503 |
//! | `GET /sessions/{session_id}/events` | query | 200, 404 |
//! | `GET /errors` | query | 200, 400, 404 |
//! | `GET /healthz`, `/readyz` | none | 200, 503 |
//! | `GET /` (dashboard, HTML) | query | 200, 401 |
//! | `OPTIONS /events` (CORS preflight) | publishable `?key=` | 204, 401, 403 |
//! | `GET /openapi.json`, `/docs`, `/schema`, `/metrics`, `/assets/*` | none | 200 |
//! | `GET /eye.js` (`--tracker-path`; the browser tracker) | none | 200, 304 |
//!
//! Every `GET` above that answers JSON answers HTML to a browser ([`crate::web`]).
//!
//! Middleware, outermost first, all per route (applied with one `Router::layer`):
//! HTTP metrics, request id (`x-request-id`, set when missing and echoed), tracing
//! (a span per request; the one-line access log is at DEBUG), response compression,
//! JSON bodies for the errors the layers answer themselves (405, 408, 413), the
//! request timeout, the body limit, and the browser negotiation of [`crate::web`].
//! Ours (metrics, JSON errors, negotiation) are tower services, not
//! `axum::middleware::from_fn`, which boxes its inner service and its future on
//! every request: the ack path pays for none of them but what they do.

pub mod errors;
pub mod events;
pub mod export;
pub mod health;
pub mod ingest;
pub mod listing;
pub mod metrics;
pub mod sessions;
pub mod tracker;

use axum::Router;
use axum::body::Body;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// The whole HTTP API, with its middleware (limits, timeouts, tracing, compression).
pub fn router(state: AppState) -> Router {
    crate::metrics::install();
    let http = &state.config.http;
    let max_body = http.max_body_bytes;
    let timeout = http.request_timeout();
    Router::new()
        .merge(ingest::router())
        .merge(events::router())
        .merge(export::router())
        .merge(sessions::router())
        .merge(errors::router())
        .merge(health::router())
        .merge(crate::openapi::router())
        .merge(crate::web::router())
        .merge(metrics::router())
        .merge(tracker::router(&http.tracker_path))
        .fallback(not_found)
        .with_state(state.clone())
        // All the middleware in ONE `Router::layer` call. Each call boxes every route
        // again, and axum clones a route's boxed stack for every request, each level
        // cloning the levels inside it: with eight separate calls that was ~40
        // allocations per request before any work (issue 18's profile). Outermost
        // first; every layer still runs per route, after routing, so the matched
        // route is known to each.
        .layer(
            ServiceBuilder::new()
                // Outermost, so it sees the final status of every request (408s and
                // 413s included).
                .layer(crate::metrics::HttpMetricsLayer)
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        // One line per request: status and latency, inside the span
                        // (method, route, path, request id, application). At DEBUG:
                        // at INFO it cost more CPU than the rest of the middleware
                        // together (issue 18); `EYE_LOG=info,tower_http=debug` shows
                        // it.
                        .on_response(
                            tower_http::trace::DefaultOnResponse::new()
                                .level(tracing::Level::DEBUG)
                                .latency_unit(tower_http::LatencyUnit::Micros),
                        ),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CompressionLayer::new())
                .layer(JsonLayerErrorsLayer { max_body })
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    timeout,
                ))
                // The timeout needs a response body with a `Default`.
                .map_response(IntoResponse::into_response)
                .layer(RequestBodyLimitLayer::new(max_body))
                // The routes take a `Body`: box the limited one (still limited).
                .map_request(|r: Request<tower_http::body::Limited<Body>>| r.map(Body::new))
                // Browsers get the JSON answers above as HTML pages (needs the
                // matched route).
                .layer(crate::web::NegotiateLayer::new(state)),
        )
}

fn request_span(request: &Request<Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        path = %request.uri().path(),
        request_id = %id,
        // Filled in by authentication (`auth::record_application`).
        application = tracing::field::Empty,
    )
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// Gives the answers that layers produce on their own (an empty 405 from the router,
/// a plain-text 413 from the body limit, an empty 408 from the timeout, a plain-text
/// 400 from an axum extractor) the same JSON error body as every other error.
///
/// A tower layer rather than `axum::middleware::map_response`, which boxes its
/// future on every request (issue 18); only a plain-text 400, whose text has to be
/// read, takes a boxed future.
#[derive(Debug, Clone, Copy)]
struct JsonLayerErrorsLayer {
    max_body: usize,
}

impl<S> tower::Layer<S> for JsonLayerErrorsLayer {
    type Service = JsonLayerErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonLayerErrors {
            inner,
            max_body: self.max_body,
        }
    }
}

#[derive(Debug, Clone)]
struct JsonLayerErrors<S> {
    inner: S,
    max_body: usize,
}

impl<S, B> tower::Service<Request<B>> for JsonLayerErrors<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = JsonLayerErrorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        JsonLayerErrorsFuture::Inner {
            inner: self.inner.call(request),
            max_body: self.max_body,
        }
    }
}

pin_project_lite::pin_project! {
    #[project = JsonLayerErrorsProj]
    enum JsonLayerErrorsFuture<F> {
        Inner { #[pin] inner: F, max_body: usize },
        Reading { reading: BoxFuture<'static, Response> },
    }
}

impl<F, E> Future for JsonLayerErrorsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                JsonLayerErrorsProj::Inner { inner, max_body } => {
                    let response = std::task::ready!(inner.poll(cx))?;
                    match json_layer_error(response, *max_body) {
                        LayerAnswer::Done(answer) => return Poll::Ready(Ok(answer)),
                        LayerAnswer::ReadText(plain_400) => {
                            self.set(JsonLayerErrorsFuture::Reading {
                                reading: Box::pin(bad_request_as_json(plain_400)),
                            });
                        }
                    }
                }
                JsonLayerErrorsProj::Reading { reading } => {
                    return reading.as_mut().poll(cx).map(Ok);
                }
            }
        }
    }
}

/// What [`json_layer_error`] made of an answer.
enum LayerAnswer {
    /// The answer to send.
    Done(Response),
    /// A plain-text 400, whose text has to be read first ([`bad_request_as_json`]).
    ReadText(Response),
}

/// The JSON answer for a layer's own plain answer.
fn json_layer_error(response: Response, max_body: usize) -> LayerAnswer {
    // Only plain-text or empty answers: JSON is already right, and HTML pages for
    // browsers (the web layer) stay HTML.
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !plain || !response.status().is_client_error() {
        return LayerAnswer::Done(response);
    }
    let error = match response.status() {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: max_body },
        StatusCode::REQUEST_TIMEOUT => ApiError::Timeout,
        StatusCode::BAD_REQUEST => return LayerAnswer::ReadText(response),
        _ => return LayerAnswer::Done(response),
    };
    LayerAnswer::Done(with_allow(
        error.into_response(),
        response.headers().get(header::ALLOW).cloned(),
    ))
}

/// axum's own rejections (e.g. a path parameter that is not UTF-8) explain themselves
/// in a short plain-text body that holds nothing internal.
async fn bad_request_as_json(response: Response) -> Response {
    let allow = response.headers().get(header::ALLOW).cloned();
    let text = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    with_allow(ApiError::BadRequest(text).into_response(), allow)
}

/// `json` with the `Allow` header of the answer it replaces, if that had one.
fn with_allow(mut json: Response, allow: Option<HeaderValue>) -> Response {
    if let Some(allow) = allow {
        json.headers_mut().insert(header::ALLOW, allow);
    }
    json
}
