//! API keys: generation, hashing, and authenticating a request.
//!
//! Keys are 256 random bits, shown once, stored only as a SHA-256 hash, and compared in
//! constant time. Clients send `Authorization: Bearer <key>`, or HTTP Basic with the key
//! as the password (any user name) so a browser can prompt for it.

use axum::http::HeaderMap;

use crate::error::ApiError;
use crate::store::{Scope, Scopes, Store};

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The application's name, recorded on everything it sends.
    pub application: String,
    /// What its key may do.
    pub scopes: Scopes,
}

/// A new random API key: `eye_` and 43 base64url characters (256 bits).
pub fn generate_key() -> String {
    todo!("http helper")
}

/// The SHA-256 of a key, the only form the store keeps.
pub fn hash_key(key: &str) -> [u8; 32] {
    let _ = key;
    todo!("http helper")
}

/// Authenticates requests against the store, with a short-lived cache so a request
/// does not cost a database read.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    disabled: bool,
}

impl Authenticator {
    /// An authenticator over `store`; `disabled` accepts every request as application
    /// `anonymous` (the documented `--insecure-no-auth` demo mode).
    pub fn new(store: Store, disabled: bool) -> Self {
        Self { store, disabled }
    }

    /// The caller named by the request's credentials, if it may use `scope`:
    /// 401 when the key is missing or unknown, 403 when it lacks the scope.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        scope: Scope,
    ) -> Result<Caller, ApiError> {
        let _ = (headers, scope, &self.store, self.disabled);
        todo!("http helper")
    }
}
