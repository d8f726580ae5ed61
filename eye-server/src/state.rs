//! The state every handler shares.

use std::ops::Deref;
use std::sync::Arc;

use crate::auth::{Authenticator, HasAuthenticator};
use crate::clock::SharedClock;
use crate::config::ServeConfig;
use crate::queue::Queue;
use crate::store::Store;

/// What every handler shares, behind one reference count: axum clones the state for
/// every request (and every extractor), so cloning must cost one atomic increment, not
/// one per field. Fields are reached through [`Deref`]: `state.queue`, `state.store`.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// Handles to the queue, the store, the clock, authentication and configuration.
pub struct Services {
    /// Where ingest puts accepted and rejected events.
    pub queue: Arc<dyn Queue>,
    /// Where queries read from.
    pub store: Store,
    /// The current time (validation, `received_at`).
    pub clock: SharedClock,
    /// API-key checks.
    pub auth: Authenticator,
    /// Per-application rate limits (local, or shared through Redis).
    pub limiter: crate::ratelimit::Limiter,
    /// The configuration the server started with.
    pub config: Arc<ServeConfig>,
}

impl AppState {
    /// Shares `services` with every handler.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

impl HasAuthenticator for AppState {
    fn authenticator(&self) -> &Authenticator {
        &self.auth
    }
}
