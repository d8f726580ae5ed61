//! `GET /docs`: the OpenAPI document rendered by Redoc, whose script is compiled into
//! the binary (`assets/redoc/`), so the page works offline and loads nothing from a CDN.

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse};

/// Where the vendored Redoc bundle is served.
pub const REDOC_PATH: &str = "/assets/redoc.standalone.js";

/// Redoc 2.5.4's standalone bundle (MIT), see `assets/redoc/README.md`.
static REDOC_JS: &str = include_str!("../../assets/redoc/redoc.standalone.js");

/// Redoc needs inline styles (styled-components) and a blob worker for search; it
/// needs no other origin.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; \
    frame-ancestors 'none'; base-uri 'none'";

const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>The Eye API</title>
</head>
<body>
<redoc spec-url="/openapi.json" hide-download-button="false"></redoc>
<script src="/assets/redoc.standalone.js"></script>
</body>
</html>
"#;

pub(super) async fn docs_page() -> impl IntoResponse {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DOCS_CSP),
        )],
        Html(DOCS_HTML),
    )
}

pub(super) async fn redoc_js() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        REDOC_JS,
    )
}
