//! The Redis worker: moves events from the stream into the store (Redis issue).

use crate::config::ServeConfig;

/// Runs a worker only, until SIGINT or SIGTERM.
pub async fn run_standalone(config: ServeConfig) -> anyhow::Result<()> {
    let _ = config;
    anyhow::bail!("`eye-server worker` needs the Redis queue, which this build does not have yet")
}
