//! Gives memory back when the store goes quiet. Page caches fill up under load (the
//! writer's up to 32 MB) and SQLite keeps them for as long as the connection lives;
//! after [`IDLE`] without any query or write, each idle connection's cache is emptied
//! with `PRAGMA shrink_memory`, once per quiet period. The next query reads its pages
//! from the operating system's file cache again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use sqlx::pool::PoolConnectionMetadata;
use sqlx::{SqliteConnection, SqlitePool};
use tokio::task::JoinHandle;

/// How long the store must see no query or write before its caches are released.
pub(crate) const IDLE: Duration = Duration::from_secs(3);

/// How often the store's activity is looked at.
const TICK: Duration = Duration::from_millis(500);

/// What a `before_acquire` hook returns: whether to keep the connection.
type Checked<'c> = Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + 'c>>;

/// Counts connection checkouts: any query or write takes a connection from a pool.
#[derive(Debug, Default)]
pub(crate) struct Activity(AtomicU64);

impl Activity {
    /// A pool's `before_acquire` hook that counts every checkout.
    pub fn hook(
        this: &Arc<Self>,
    ) -> impl Fn(&mut SqliteConnection, PoolConnectionMetadata) -> Checked<'_> + Send + Sync + 'static
    {
        let this = Arc::clone(this);
        move |_, _| {
            this.0.fetch_add(1, Ordering::Relaxed);
            Box::pin(std::future::ready(Ok(true)))
        }
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The background task; aborted when the last [`crate::store::Store`] clone is dropped.
#[derive(Debug)]
pub(crate) struct IdleRelease(JoinHandle<()>);

impl Drop for IdleRelease {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl IdleRelease {
    /// Watches `activity` and releases the caches of `pools` after [`IDLE`] of none.
    /// Ends by itself once the pools are closed.
    pub fn spawn(pools: Vec<SqlitePool>, activity: Arc<Activity>) -> Self {
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seen = activity.get();
            let mut quiet_since = tokio::time::Instant::now();
            let mut released = true; // nothing cached yet
            loop {
                tick.tick().await;
                if pools.iter().any(SqlitePool::is_closed) {
                    return;
                }
                let now = activity.get();
                if now != seen {
                    seen = now;
                    quiet_since = tokio::time::Instant::now();
                    released = false;
                    continue;
                }
                if released || quiet_since.elapsed() < IDLE {
                    continue;
                }
                let freed = release(&pools).await;
                // The caches and the last batches went back to the allocator, which
                // keeps them resident unless asked to return them.
                crate::memory::trim();
                tracing::debug!(connections = freed, "store idle: page caches released");
                // Our own checkouts are not activity.
                seen = activity.get();
                released = true;
            }
        }))
    }
}

/// Empties the page cache of every idle connection of `pools` (a busy one is in use
/// again anyway). Returns how many were emptied.
pub(crate) async fn release(pools: &[SqlitePool]) -> usize {
    let mut held = Vec::new();
    for pool in pools {
        // Held until the end, so each `try_acquire` returns a different connection.
        while let Some(mut conn) = pool.try_acquire() {
            match sqlx::query("PRAGMA shrink_memory")
                .execute(&mut *conn)
                .await
            {
                Ok(_) => held.push(conn),
                Err(e) => tracing::debug!(error = %e, "PRAGMA shrink_memory failed"),
            }
        }
    }
    held.len()
}
