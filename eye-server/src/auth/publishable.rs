//! Publishable keys: the browser tracker's keys, public by design.
//!
//! A publishable key (`eye_pk_...`) is embedded in web pages, so anyone can read it.
//! What keeps it harmless is what it may not do: it only ingests (`POST /events`),
//! only from a page whose `Origin` its application lists, and every other route
//! answers it 403. It is the only kind of key accepted in a URL (`?key=`, since
//! `navigator.sendBeacon` cannot set headers) and the only one whose ingest may be a
//! `text/plain` body (a CORS "simple" request: no preflight). Secret keys in URLs end
//! up in access logs and browser histories, so `?key=` with a secret key is refused.
//!
//! CORS is granted on the ingest route only, and only to the application's own
//! origins: `Access-Control-Allow-Origin` echoes the matching origin (never `*`),
//! with `Vary: Origin` and `Access-Control-Expose-Headers: Retry-After` so the
//! tracker can read a 429's `Retry-After`. Every other route, key and origin gets no
//! CORS header at all.
//!
//! ```
//! use eye_server::auth::parse_origin;
//! assert_eq!(parse_origin("HTTPS://Shop.Example/").unwrap(), "https://shop.example");
//! assert_eq!(parse_origin("https://shop.example:443").unwrap(), "https://shop.example");
//! assert_eq!(parse_origin("http://localhost:3000").unwrap(), "http://localhost:3000");
//! assert!(parse_origin("https://shop.example/cart").is_err());
//! assert!(parse_origin("*").is_err());
//! ```

use axum::http::{HeaderMap, HeaderValue, header};

/// Prefix of every publishable key: a reader (or a secret scanner) tells it from a
/// secret key (`eye_` and random characters, never `eye_pk_`) at a glance.
pub const PUBLISHABLE_KEY_PREFIX: &str = "eye_pk_";

/// How long a browser may reuse a preflight's answer, in seconds (Chromium caps it
/// at 2 hours).
pub const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

/// True when `key` has the publishable prefix. Only such keys are looked up when they
/// come in a URL.
pub fn is_publishable_key(key: &str) -> bool {
    key.starts_with(PUBLISHABLE_KEY_PREFIX)
}

/// Parses an origin as browsers send it in `Origin`: `http` or `https`, a host name
/// (or IPv4 address) and an optional port, nothing else. Returns it normalised the way
/// browsers write it (lower case, no default port, no trailing slash), so a stored
/// origin compares equal to a request's `Origin` byte for byte.
pub fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim();
    let bad = |why: &str| format!("`{s}` is not an origin such as `https://shop.example`: {why}");
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| bad("it needs a scheme (`https://`)"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return Err(bad("the scheme must be http or https")),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(bad(
            "an origin has no path, query, fragment or user name; keep `scheme://host[:port]`",
        ));
    }
    let authority = authority.to_ascii_lowercase();
    eye_core::Host::parse(&authority).map_err(|p| bad(&p.message))?;
    let authority = match authority.split_once(':') {
        Some((host, port)) if port == default_port => host.to_owned(),
        _ => authority,
    };
    Ok(format!("{scheme}://{authority}"))
}

/// The request's `Origin`, normalised as [`parse_origin`] does; `None` when it has
/// none or it is not an http(s) origin (`null` from a sandboxed frame or a file).
pub fn request_origin(headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    parse_origin(origin).ok()
}

/// Grants the request's origin CORS on an ingest answer: the origin echoed (never
/// `*`), `Vary: Origin`, and `Retry-After` readable by the page's script.
pub fn grant_cors(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
    }
}

/// What a preflight grant adds to [`grant_cors`]: the method and headers an ingest
/// request may use, and how long the browser may remember it.
pub fn grant_preflight(headers: &mut HeaderMap, origin: &str) {
    grant_cors(headers, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, content-encoding, eye-sent-at"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(PREFLIGHT_MAX_AGE_SECS),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_as_browsers_write_them() {
        for (given, want) in [
            ("https://shop.example", "https://shop.example"),
            ("https://shop.example/", "https://shop.example"),
            ("HTTPS://SHOP.example", "https://shop.example"),
            ("http://shop.example:80", "http://shop.example"),
            ("https://shop.example:8443", "https://shop.example:8443"),
            ("http://127.0.0.1:5173", "http://127.0.0.1:5173"),
        ] {
            assert_eq!(parse_origin(given).unwrap(), want, "{given}");
        }
    }

    #[test]
    fn anything_but_scheme_host_and_port_is_not_an_origin() {
        for bad in [
            "shop.example",
            "ftp://shop.example",
            "https://shop.example/path",
            "https://shop.example?x=1",
            "https://user@shop.example",
            "https://",
            "https://shop.example:0",
            "https://*.shop.example",
            "null",
            "*",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_keys_never_look_publishable() {
        for _ in 0..1000 {
            assert!(!is_publishable_key(&super::super::generate_key()));
        }
        assert!(is_publishable_key(&super::super::generate_publishable_key()));
    }

    #[test]
    fn a_grant_echoes_the_origin_and_exposes_retry_after() {
        let mut h = HeaderMap::new();
        grant_cors(&mut h, "https://shop.example");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://shop.example"
        );
        assert_eq!(h[header::VARY], "Origin");
        assert_eq!(h[header::ACCESS_CONTROL_EXPOSE_HEADERS], "Retry-After");
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    }
}
