//! API keys: generation, hashing, and authenticating a request.
//!
//! Keys are 256 random bits, shown once, stored only as a SHA-256 hash. Clients send
//! `Authorization: Bearer <key>`, or HTTP Basic with the key as the password (any user
//! name; `curl -u "$KEY:"` also works, the key as the user name and no password) so a
//! browser can prompt for it.
//!
//! A request's key is hashed and looked up by its hash, so no secret is ever compared
//! byte by byte: what a timing side channel could reveal is a prefix of a SHA-256
//! digest, which says nothing about any key. The cache in front of the store is keyed
//! the same way, by a 128-bit SipHash-1-3 of the key under a random key drawn when
//! the server starts (a tenth of SHA-256's cost on every request; nobody outside
//! the process can compute it, so a prefix of it says nothing either). Hits are
//! cached for
//! [`AUTH_CACHE_TTL`] so a busy client does not cost one database read per request; a
//! revoked key therefore stops working within that delay. While the store is
//! unreachable (a PostgreSQL restart), a key that was looked up within
//! [`AUTH_STALE_IF_ERROR`] is still taken, so a Redis-mode API node keeps queueing
//! events through the outage instead of answering 503 to every client.
//!
//! Publishable keys (`eye_pk_...`, module `publishable`) are the browser tracker's:
//! public by design, ingest only, from listed origins, and the only keys accepted in
//! a URL (`?key=`).
//!
//! Handlers ask for a caller with an extractor, [`IngestCaller`] or [`QueryCaller`],
//! which answers 401 (missing or unknown key, with `WWW-Authenticate`) or 403 (the key
//! lacks the scope, or Basic credentials came with a cross-site request) before the
//! handler runs:
//!
//! ```no_run
//! use eye_server::auth::QueryCaller;
//!
//! async fn whoami(QueryCaller(caller): QueryCaller) -> String {
//!     caller.application
//! }
//! ```

mod publishable;

pub use publishable::{
    PREFLIGHT_MAX_AGE_SECS, PUBLISHABLE_KEY_PREFIX, grant_cors, grant_preflight,
    is_publishable_key, parse_origin, request_origin,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::store::{NewApp, Scope, Scopes, Store, StoreError};

/// How long a successful key lookup is reused without asking the store again.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(5);

/// How long a successful key lookup may still be used when the store cannot be asked
/// (unreachable, restarting: [`StoreError::is_transient`]). A key revoked meanwhile
/// cannot be learnt of anyway; past this, the request gets the store's 503.
pub const AUTH_STALE_IF_ERROR: Duration = Duration::from_secs(3600);

/// The cache is swept of stale entries when it grows past this many keys.
const AUTH_CACHE_SWEEP_AT: usize = 10_000;

/// The application name recorded when authentication is disabled
/// (`--insecure-no-auth`) and the request carries no valid key.
pub const ANONYMOUS: &str = "anonymous";

/// Prefix of every key, so a leaked key is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "eye_";

/// True when the request says it was made by a page of another site: its
/// `Sec-Fetch-Site` is `cross-site` or `same-site` (another origin of the same site,
/// e.g. a sibling subdomain), or, from a browser too old to send that header, its
/// `Origin` is `null` or neither the request's `Host` nor `public_url`'s origin.
/// A request with neither header (curl, SDKs, a link typed by the user) is not.
///
/// ```
/// use axum::http::{HeaderMap, HeaderValue};
/// use eye_server::auth::is_cross_site;
/// let mut h = HeaderMap::new();
/// h.insert("host", HeaderValue::from_static("eye.example.com"));
/// assert!(!is_cross_site(&h, None));
/// h.insert("origin", HeaderValue::from_static("https://eye.example.com"));
/// assert!(!is_cross_site(&h, None));
/// h.insert("origin", HeaderValue::from_static("https://evil.example"));
/// assert!(is_cross_site(&h, None));
/// h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
/// assert!(!is_cross_site(&h, None), "fetch metadata wins");
/// ```
pub fn is_cross_site(headers: &HeaderMap, public_url: Option<&str>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    if origin == "null" {
        return true;
    }
    let own_public = public_url.is_some_and(|url| {
        let url = url.trim_end_matches('/');
        // The origin of `https://host/prefix` is `https://host`.
        let end = url
            .find("://")
            .and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j))
            .unwrap_or(url.len());
        url[..end].eq_ignore_ascii_case(origin)
    });
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    let own_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| host.eq_ignore_ascii_case(authority));
    !(own_public || own_host)
}

/// True when the request carries `Authorization: Basic`: the credentials a browser
/// caches and then attaches to every request to this origin, whoever asks for it.
fn carries_basic(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
}

/// A person following a link from another site to a page: a `GET` (or `HEAD`)
/// top-level navigation. It changes nothing and its answer goes to the user's own
/// tab, never to the other site, so links to The Eye's pages from chat or another
/// tool keep working.
fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && headers
            .get("sec-fetch-mode")
            .is_some_and(|mode| mode == "navigate")
}

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The application's name, recorded on everything it sends.
    pub application: String,
    /// What its key may do.
    pub scopes: Scopes,
    /// Its rate limit in events per second, if it has one.
    pub rate_limit: Option<u32>,
    /// `Some` for a publishable key: the origins whose pages may send with it.
    pub origins: Option<Arc<[String]>>,
}

impl Caller {
    /// True for a publishable key (ingest only, from its origins).
    pub fn is_publishable(&self) -> bool {
        self.origins.is_some()
    }

    /// True when `origin` (normalised, see [`parse_origin`]) is one of a publishable
    /// key's origins. Always false for a secret key: it gets no CORS grant.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins
            .as_deref()
            .is_some_and(|list| list.iter().any(|o| o == origin))
    }
}

/// A new random secret API key: `eye_` and 43 base64url characters (256 bits), never
/// starting like a publishable key.
///
/// ```
/// let key = eye_server::auth::generate_key();
/// assert!(key.starts_with("eye_") && !key.starts_with("eye_pk_"));
/// assert_eq!(key.len(), 4 + 43);
/// assert_ne!(key, eye_server::auth::generate_key());
/// ```
pub fn generate_key() -> String {
    loop {
        let bytes: [u8; 32] = rand::random();
        let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        // One key in 262,144 would start with `pk_`: draw again.
        if !is_publishable_key(&key) {
            return key;
        }
    }
}

/// A new random publishable key: `eye_pk_` and 43 base64url characters (256 bits).
///
/// ```
/// let key = eye_server::auth::generate_publishable_key();
/// assert!(key.starts_with("eye_pk_"));
/// assert_eq!(key.len(), 7 + 43);
/// ```
pub fn generate_publishable_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{PUBLISHABLE_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The SHA-256 of a key, the only form the store keeps.
///
/// ```
/// use eye_server::auth::hash_key;
/// assert_eq!(hash_key("eye_abc"), hash_key("eye_abc"));
/// assert_ne!(hash_key("eye_abc"), hash_key("eye_abd"));
/// ```
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Registers application `name` with a new key and returns the key: the only time it
/// can be shown, since the store keeps just its hash.
pub async fn create_app_with_key(
    store: &Store,
    name: &str,
    scopes: Scopes,
) -> Result<String, StoreError> {
    let key = generate_key();
    store
        .create_app(&NewApp {
            name: name.into(),
            key_hash: hash_key(&key),
            scopes,
            origins: None,
        })
        .await?;
    Ok(key)
}

/// Registers application `name` with a new publishable key for pages of `origins`
/// (each already normalised by [`parse_origin`]) and returns the key. Its scope is
/// ingest only, whatever else is asked.
pub async fn create_publishable_app(
    store: &Store,
    name: &str,
    origins: Vec<String>,
) -> Result<String, StoreError> {
    let key = generate_publishable_key();
    store
        .create_app(&NewApp {
            name: name.into(),
            key_hash: hash_key(&key),
            scopes: Scopes::INGEST_ONLY,
            origins: Some(origins),
        })
        .await?;
    Ok(key)
}

/// The API key a request carries, from `Authorization: Bearer <key>` or
/// `Authorization: Basic base64(user:key)` (or `base64(key:)`). `None` when there is no
/// usable credential.
///
/// ```
/// use axum::http::{HeaderMap, HeaderValue, header};
/// use eye_server::auth::credential;
/// let mut h = HeaderMap::new();
/// h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer eye_k"));
/// assert_eq!(credential(&h).as_deref(), Some("eye_k"));
/// // Basic "app:eye_k"
/// h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic YXBwOmV5ZV9r"));
/// assert_eq!(credential(&h).as_deref(), Some("eye_k"));
/// ```
pub fn credential(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        let key = if password.is_empty() { user } else { password };
        return (!key.is_empty()).then(|| key.to_owned());
    }
    None
}

#[derive(Clone)]
struct Cached {
    caller: Caller,
    at: Instant,
}

/// Authenticates requests against the store, with a short-lived cache so a request
/// does not cost a database read.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    disabled: bool,
    public_url: Option<String>,
    /// Keyed by [`Authenticator::cache_key`].
    cache: Arc<Mutex<HashMap<u128, Cached>>>,
    /// The random SipHash key of the cache's keys.
    cache_secret: (u64, u64),
    /// The cache's clock: `Instant::now`, or a test's.
    now: Arc<dyn Fn() -> Instant + Send + Sync>,
}

impl Authenticator {
    /// An authenticator over `store`; `disabled` accepts every request, as application
    /// [`ANONYMOUS`] unless it carries a valid key (the documented
    /// `--insecure-no-auth` demo mode).
    pub fn new(store: Store, disabled: bool) -> Self {
        Self {
            store,
            disabled,
            public_url: None,
            cache: Arc::new(Mutex::new(HashMap::new())),
            cache_secret: (rand::random(), rand::random()),
            now: Arc::new(Instant::now),
        }
    }

    /// Also takes `Origin`s equal to `--public-url`'s origin as this server's own
    /// (behind a proxy the `Host` header may name the proxy's upstream instead).
    #[must_use]
    pub fn with_public_url(mut self, public_url: Option<&str>) -> Self {
        self.public_url = public_url.map(str::to_owned);
        self
    }

    /// True when authentication is disabled.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// The caller named by the request's credentials, if it may use `scope`:
    /// 401 when the key is missing or unknown, 403 when it lacks the scope, and 403
    /// `cross_site_request` when Basic credentials come with a request made by another
    /// site ([`is_cross_site`]), whatever its route and content type (a
    /// `sendBeacon`, a `no-cors` `fetch`, a form), unless it is a `GET` navigation.
    /// Bearer keys are checked as usual: a browser never attaches them on its own.
    ///
    /// `url_key` is the `key` query parameter, which only the ingest route passes:
    /// it must be a publishable key (400 `secret_key_in_url` otherwise), and when
    /// present it is the request's only credential, so Basic credentials a browser
    /// attached on its own (a `sendBeacon` carries them) are neither used nor refused.
    /// A publishable key answers 403 `publishable_key` for any scope but ingest and
    /// 403 `origin_not_allowed` unless the request's `Origin` is one of its
    /// application's.
    pub async fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
        url_key: Option<&str>,
        scope: Scope,
    ) -> Result<Caller, ApiError> {
        let found = match url_key {
            Some(key) if !is_publishable_key(key) => return Err(ApiError::SecretKeyInUrl),
            Some(key) => self.lookup(key).await?,
            None => {
                if carries_basic(headers)
                    && is_cross_site(headers, self.public_url.as_deref())
                    && !is_navigation(method, headers)
                {
                    return Err(ApiError::CrossSiteRequest);
                }
                match credential(headers) {
                    Some(key) => self.lookup(&key).await?,
                    None => None,
                }
            }
        };
        let caller = match found {
            Some(caller) => caller,
            None if self.disabled => {
                return Ok(Caller {
                    application: ANONYMOUS.to_owned(),
                    scopes: Scopes::ALL,
                    rate_limit: None,
                    origins: None,
                });
            }
            None => return Err(ApiError::Unauthorized),
        };
        if caller.is_publishable() {
            // Public keys stay restricted even with authentication disabled.
            if scope != Scope::Ingest {
                return Err(ApiError::PublishableKey);
            }
            let origin = request_origin(headers);
            if !origin.as_deref().is_some_and(|o| caller.allows_origin(o)) {
                return Err(ApiError::OriginNotAllowed);
            }
            return Ok(caller);
        }
        if url_key.is_some() {
            // A secret key that happens to start like a publishable one (only keys
            // made before publishable keys existed can).
            return Err(ApiError::SecretKeyInUrl);
        }
        if caller.scopes.allows(scope) || self.disabled {
            Ok(caller)
        } else {
            Err(ApiError::Forbidden(scope))
        }
    }

    /// The live application whose key this is, from the cache or the store; from a
    /// stale cache entry (up to [`AUTH_STALE_IF_ERROR`] old) when the store is
    /// unavailable.
    async fn lookup(&self, key: &str) -> Result<Option<Caller>, ApiError> {
        let cache_key = self.cache_key(key);
        if let Some(hit) = self.cached(cache_key, AUTH_CACHE_TTL) {
            return Ok(Some(hit));
        }
        let hash = hash_key(key);
        // Boxed: the store's query future is ~8 KB, and held inline it made every
        // handler's future that large, copied at each of the boxings axum does per
        // request even when the cache answers (issue 18: ~10,000 instructions of
        // memcpy per request).
        let found = match Box::pin(self.store.find_app_by_key_hash(&hash)).await {
            Ok(found) => found,
            Err(e) if e.is_transient() => {
                if let Some(stale) = self.cached(cache_key, AUTH_STALE_IF_ERROR) {
                    tracing::debug!(error = %e, "store unavailable: using the cached key");
                    return Ok(Some(stale));
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let Some(app) = found else {
            return Ok(None);
        };
        let caller = Caller {
            application: app.name,
            scopes: app.scopes,
            rate_limit: app.rate_limit,
            origins: app.origins.map(Arc::from),
        };
        self.remember(cache_key, caller.clone());
        Ok(Some(caller))
    }

    /// The cache's key for an API key: SipHash-1-3, 128 bits, under
    /// [`Authenticator::cache_secret`].
    fn cache_key(&self, key: &str) -> u128 {
        use siphasher::sip128::Hasher128;
        let (k0, k1) = self.cache_secret;
        let mut hasher = siphasher::sip128::SipHasher13::new_with_keys(k0, k1);
        std::hash::Hasher::write(&mut hasher, key.as_bytes());
        hasher.finish128().as_u128()
    }

    fn cached(&self, cache_key: u128, max_age: Duration) -> Option<Caller> {
        let now = (self.now)();
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&cache_key)
            .filter(|c| now.saturating_duration_since(c.at) < max_age)
            .map(|c| c.caller.clone())
    }

    fn remember(&self, cache_key: u128, caller: Caller) {
        let now = (self.now)();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= AUTH_CACHE_SWEEP_AT {
            cache.retain(|_, c| now.saturating_duration_since(c.at) < AUTH_STALE_IF_ERROR);
        }
        cache.insert(cache_key, Cached { caller, at: now });
    }
}

/// State that can authenticate a request. The application state implements it, so
/// the extractors below work on it without this module knowing the state's type.
pub trait HasAuthenticator {
    /// The authenticator requests are checked with.
    fn authenticator(&self) -> &Authenticator;
}

macro_rules! scoped_caller {
    ($(#[$doc:meta])* $name:ident, $scope:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Caller);

        impl<S: HasAuthenticator + Send + Sync> FromRequestParts<S> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                let caller = state
                    .authenticator()
                    .authenticate(&parts.method, &parts.headers, None, $scope)
                    .await?;
                record_application(&caller);
                Ok($name(caller))
            }
        }
    };
}

scoped_caller!(
    /// An authenticated caller whose key has the `ingest` scope.
    IngestCaller,
    Scope::Ingest
);
scoped_caller!(
    /// An authenticated caller whose key has the `query` scope.
    QueryCaller,
    Scope::Query
);
scoped_caller!(
    /// An authenticated caller whose key has the `admin` scope (erasure).
    AdminCaller,
    Scope::Admin
);

/// Names the caller's application in the current request's log span, so the
/// request's log line says who sent it.
pub fn record_application(caller: &Caller) {
    tracing::Span::current().record("application", caller.application.as_str());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::http::HeaderValue;

    use super::*;

    #[tokio::test]
    async fn a_key_revoked_elsewhere_works_until_its_cache_entry_is_5_s_old() {
        // Arrange: a key this node has seen, then revoked on the store (as by another
        // machine); the cache's clock is the test's.
        let store = Store::open("sqlite::memory:").await.unwrap();
        let key = create_app_with_key(&store, "old", Scopes::ALL)
            .await
            .unwrap();
        let elapsed_ms = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut auth = Authenticator::new(store.clone(), false);
        auth.now = {
            let elapsed_ms = Arc::clone(&elapsed_ms);
            Arc::new(move || start + Duration::from_millis(elapsed_ms.load(Ordering::SeqCst)))
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
        );
        let check = || auth.authenticate(&Method::GET, &headers, None, Scope::Query);
        assert!(check().await.is_ok(), "a live key");
        store.revoke_app("old").await.unwrap();
        let ttl_ms = u64::try_from(AUTH_CACHE_TTL.as_millis()).unwrap();

        // Act
        elapsed_ms.store(ttl_ms - 1, Ordering::SeqCst);
        let just_before = check().await;
        elapsed_ms.store(ttl_ms, Ordering::SeqCst);
        let at_the_ttl = check().await;

        // Assert
        assert!(just_before.is_ok(), "still cached: {just_before:?}");
        assert!(
            matches!(at_the_ttl, Err(ApiError::Unauthorized)),
            "{at_the_ttl:?}"
        );
    }

    fn with_auth(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn basic_with_key_as_user_name_and_no_password_is_accepted() {
        // base64("eye_k:")
        assert_eq!(
            credential(&with_auth("Basic ZXllX2s6")).as_deref(),
            Some("eye_k")
        );
    }

    #[test]
    fn unknown_scheme_and_empty_bearer_carry_no_credential() {
        assert_eq!(credential(&with_auth("Token eye_k")), None);
        assert_eq!(credential(&with_auth("Bearer ")), None);
        assert_eq!(credential(&with_auth("Basic !!!")), None);
    }

    #[test]
    fn origins_other_than_the_servers_own_are_cross_site() {
        let mut h = with_auth("Basic ZXllX2s6");
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8000"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8000"),
        );
        assert!(!is_cross_site(&h, None));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(is_cross_site(&h, None));
        // Behind a proxy: the Host is the upstream, the Origin the public URL.
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://eye.example.com"),
        );
        assert!(is_cross_site(&h, None));
        assert!(!is_cross_site(&h, Some("https://eye.example.com/eye/")));
        assert!(is_cross_site(&h, Some("https://other.example.com")));
        for (site, cross) in [
            ("same-origin", false),
            ("none", false),
            ("same-site", true),
            ("cross-site", true),
        ] {
            h.insert("sec-fetch-site", HeaderValue::from_static(site));
            assert_eq!(is_cross_site(&h, None), cross, "{site}");
        }
    }

    #[test]
    fn only_basic_credentials_are_ambient() {
        assert!(carries_basic(&with_auth("basic ZXllX2s6")));
        assert!(!carries_basic(&with_auth("Bearer eye_k")));
        assert!(!carries_basic(&HeaderMap::new()));
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(
            credential(&with_auth("bearer eye_k")).as_deref(),
            Some("eye_k")
        );
    }

    #[test]
    fn hash_is_sha256_hex_of_the_key() {
        let h = hash_key("abc");
        assert_eq!(
            h[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "SHA-256(abc) starts ba7816bf"
        );
    }
}
