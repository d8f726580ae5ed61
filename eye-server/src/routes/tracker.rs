//! `GET /eye.js`: the browser tracker, built into the binary.
//!
//! The script is `eye-server/assets/eye.js` (the minified build of `eye-server/js/eye.js`),
//! embedded with `include_bytes!`, so the server and the script it serves are always
//! of one version. It is served at `--tracker-path` (default `/eye.js`; ad-blockers
//! block well-known names, so a site may pick its own) with:
//!
//! - `Cache-Control: public, max-age=3600`: pages load it from the cache for an hour,
//!   then revalidate;
//! - a strong `ETag` per representation (the SHA-256 of the bytes sent), and `304 Not
//!   Modified` to an `If-None-Match` that names it;
//! - gzip when the client accepts it, compressed once at first use rather than per
//!   request (the compression layer leaves an encoded answer alone), with
//!   `Vary: Accept-Encoding`.
//!
//! No CORS grant: a `<script src>` needs none.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::state::AppState;

/// The minified tracker, as built by `node eye-server/js/build.mjs`.
pub const EYE_JS: &[u8] = include_bytes!("../../assets/eye.js");

/// The default path the tracker is served at.
pub const DEFAULT_TRACKER_PATH: &str = "/eye.js";

/// How long browsers and CDNs may reuse the script before revalidating it.
const CACHE_CONTROL: &str = "public, max-age=3600";

/// One representation of the script: its bytes and their strong `ETag`.
struct Representation {
    body: Vec<u8>,
    etag: HeaderValue,
}

impl Representation {
    fn of(body: Vec<u8>, suffix: &str) -> Self {
        let digest = Sha256::digest(&body);
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::from_str(&format!("\"{hex}{suffix}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("\"eye\""));
        Self { body, etag }
    }
}

/// The plain and the gzip representations, made once.
fn representations() -> &'static (Representation, Option<Representation>) {
    static CELL: OnceLock<(Representation, Option<Representation>)> = OnceLock::new();
    CELL.get_or_init(|| {
        use std::io::Write;
        let plain = Representation::of(EYE_JS.to_vec(), "");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let gzip = gz
            .write_all(EYE_JS)
            .and_then(|()| gz.finish())
            .ok()
            .map(|body| Representation::of(body, "-gz"));
        (plain, gzip)
    })
}

/// `GET {path}`.
pub fn router(path: &str) -> Router<AppState> {
    Router::new().route(path, get(serve))
}

async fn serve(headers: HeaderMap) -> Response {
    let (plain, gzip) = representations();
    let chosen = match gzip {
        Some(gz) if accepts_gzip(&headers) => gz,
        _ => plain,
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches_etag(v, &chosen.etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        chosen.body.clone().into_response()
    };
    let h = response.headers_mut();
    if !fresh {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        );
        // The plain body goes only to a client that refuses gzip, which the
        // compression layer would not compress for either.
        if !std::ptr::eq(chosen, plain) {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    h.insert(header::ETAG, chosen.etag.clone());
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// True when `Accept-Encoding` lists gzip with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero
        })
}

/// `If-None-Match` uses the weak comparison (RFC 9110 13.1.2): `*`, or any listed tag
/// equal to ours once a `W/` is dropped.
fn matches_etag(if_none_match: &str, etag: &HeaderValue) -> bool {
    let ours = etag.to_str().unwrap_or_default();
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_chosen_only_when_accepted() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        for (value, yes) in [
            ("gzip, deflate, br", true),
            ("br;q=1.0, gzip;q=0.8", true),
            ("gzip;q=0", false),
            ("identity", false),
            ("*", true),
        ] {
            h.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
            assert_eq!(accepts_gzip(&h), yes, "{value}");
        }
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(matches_etag("\"abc\"", &etag));
        assert!(matches_etag("W/\"abc\"", &etag));
        assert!(matches_etag("\"x\", \"abc\"", &etag));
        assert!(matches_etag("*", &etag));
        assert!(!matches_etag("\"abd\"", &etag));
    }

    #[test]
    fn the_embedded_script_is_the_build_under_3_kib_gzipped() {
        let (plain, gzip) = representations();
        assert!(
            plain.body.starts_with(b"/*"),
            "the build starts with its header"
        );
        let gzip = gzip.as_ref().unwrap();
        assert!(gzip.body.len() <= 3072, "{} bytes gzipped", gzip.body.len());
        assert_ne!(plain.etag, gzip.etag);
    }
}
