//! The state every handler shares.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::clock::SharedClock;
use crate::config::ServeConfig;
use crate::queue::Queue;
use crate::store::Store;

/// Handles to the queue, the store, the clock, authentication and configuration.
/// Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Where ingest puts accepted and rejected events.
    pub queue: Arc<dyn Queue>,
    /// Where queries read from.
    pub store: Store,
    /// The current time (validation, `received_at`).
    pub clock: SharedClock,
    /// API-key checks.
    pub auth: Authenticator,
    /// The configuration the server started with.
    pub config: Arc<ServeConfig>,
}
