//! API keys: generation, hashing, and authenticating a request.
//!
//! Keys are 256 random bits, shown once, stored only as a SHA-256 hash. Clients send
//! `Authorization: Bearer <key>`, or HTTP Basic with the key as the password (any user
//! name; `curl -u "$KEY:"` also works, the key as the user name and no password) so a
//! browser can prompt for it.
//!
//! A request's key is hashed and looked up by its hash, so no secret is ever compared
//! byte by byte: what a timing side channel could reveal is a prefix of a SHA-256
//! digest, which says nothing about any key. Hits are cached for
//! [`AUTH_CACHE_TTL`] so a busy client does not cost one database read per request; a
//! revoked key therefore stops working within that delay.
//!
//! Handlers ask for a caller with an extractor, [`IngestCaller`] or [`QueryCaller`],
//! which answers 401 (missing or unknown key, with `WWW-Authenticate`) or 403 (the key
//! lacks the scope) before the handler runs:
//!
//! ```no_run
//! use eye_server::auth::QueryCaller;
//!
//! async fn whoami(QueryCaller(caller): QueryCaller) -> String {
//!     caller.application
//! }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::store::{NewApp, Scope, Scopes, Store, StoreError};

/// How long a successful key lookup is reused without asking the store again.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(5);

/// The cache is swept of stale entries when it grows past this many keys.
const AUTH_CACHE_SWEEP_AT: usize = 10_000;

/// The application name recorded when authentication is disabled
/// (`--insecure-no-auth`) and the request carries no valid key.
pub const ANONYMOUS: &str = "anonymous";

/// Prefix of every key, so a leaked key is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "eye_";

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The application's name, recorded on everything it sends.
    pub application: String,
    /// What its key may do.
    pub scopes: Scopes,
}

/// A new random API key: `eye_` and 43 base64url characters (256 bits).
///
/// ```
/// let key = eye_server::auth::generate_key();
/// assert!(key.starts_with("eye_"));
/// assert_eq!(key.len(), 4 + 43);
/// assert_ne!(key, eye_server::auth::generate_key());
/// ```
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
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
    cache: Arc<Mutex<HashMap<[u8; 32], Cached>>>,
}

impl Authenticator {
    /// An authenticator over `store`; `disabled` accepts every request, as application
    /// [`ANONYMOUS`] unless it carries a valid key (the documented
    /// `--insecure-no-auth` demo mode).
    pub fn new(store: Store, disabled: bool) -> Self {
        Self {
            store,
            disabled,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// True when authentication is disabled.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// The caller named by the request's credentials, if it may use `scope`:
    /// 401 when the key is missing or unknown, 403 when it lacks the scope.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        scope: Scope,
    ) -> Result<Caller, ApiError> {
        let found = match credential(headers) {
            Some(key) => self.lookup(&key).await?,
            None => None,
        };
        let caller = match found {
            Some(caller) => caller,
            None if self.disabled => {
                return Ok(Caller {
                    application: ANONYMOUS.to_owned(),
                    scopes: Scopes::ALL,
                });
            }
            None => return Err(ApiError::Unauthorized),
        };
        if caller.scopes.allows(scope) || self.disabled {
            Ok(caller)
        } else {
            Err(ApiError::Forbidden(scope))
        }
    }

    /// The live application whose key this is, from the cache or the store.
    async fn lookup(&self, key: &str) -> Result<Option<Caller>, ApiError> {
        let hash = hash_key(key);
        if let Some(hit) = self.cached(&hash) {
            return Ok(Some(hit));
        }
        let Some(app) = self.store.find_app_by_key_hash(&hash).await? else {
            return Ok(None);
        };
        let caller = Caller {
            application: app.name,
            scopes: app.scopes,
        };
        self.remember(hash, caller.clone());
        Ok(Some(caller))
    }

    fn cached(&self, hash: &[u8; 32]) -> Option<Caller> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(hash)
            .filter(|c| c.at.elapsed() < AUTH_CACHE_TTL)
            .map(|c| c.caller.clone())
    }

    fn remember(&self, hash: [u8; 32], caller: Caller) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= AUTH_CACHE_SWEEP_AT {
            cache.retain(|_, c| c.at.elapsed() < AUTH_CACHE_TTL);
        }
        cache.insert(
            hash,
            Cached {
                caller,
                at: Instant::now(),
            },
        );
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
                    .authenticate(&parts.headers, $scope)
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

/// Names the caller's application in the current request's log span, so the
/// request's log line says who sent it.
pub fn record_application(caller: &Caller) {
    tracing::Span::current().record("application", caller.application.as_str());
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

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
