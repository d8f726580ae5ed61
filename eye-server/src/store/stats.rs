//! Aggregates for the dashboard and `/metrics`, built on the store's indexed queries
//! (counts of filtered queries), so they cost index lookups, never a table scan.

use chrono::{DateTime, Duration, DurationRound, Utc};
use eye_core::{ErrorQuery, ErrorRecord, EventQuery, EventType, Pagination, Session};

use super::{Store, StoreError};

/// Events in one hour of the dashboard's chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourBucket {
    /// The hour's first instant.
    pub start: DateTime<Utc>,
    /// Events per type, in [`EventType::ALL`] order.
    pub counts: [u64; 3],
}

impl HourBucket {
    /// Events of every type in this hour.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// What the dashboard shows from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardStats {
    /// The last 24 hours by when events happened, oldest first; the last bucket is the
    /// current (partial) hour.
    pub hours: Vec<HourBucket>,
    /// Stored events per type, in [`EventType::ALL`] order.
    pub totals: [u64; 3],
    /// The sessions with the newest events, newest first.
    pub newest_sessions: Vec<Session>,
    /// The newest entries of the errors log.
    pub newest_errors: Vec<ErrorRecord>,
    /// Entries in the errors log.
    pub error_count: u64,
    /// The database's size in bytes.
    pub store_bytes: u64,
}

/// How many sessions and errors the dashboard lists.
const NEWEST: usize = 8;

fn one(page: u64) -> Pagination {
    Pagination { page, page_size: 1 }
}

impl Store {
    /// The database's size in bytes (page count times page size; the WAL file is not
    /// counted).
    pub async fn size_bytes(&self) -> Result<u64, StoreError> {
        let (pages, size): (i64, i64) = sqlx::query_as(
            "SELECT page_count, page_size FROM pragma_page_count(), pragma_page_size()",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(u64::try_from(pages.saturating_mul(size)).unwrap_or(0))
    }

    async fn count_events(&self, mut query: EventQuery) -> Result<u64, StoreError> {
        query.pagination = one(1);
        Ok(self.query_events(&query).await?.0)
    }

    /// Everything the dashboard shows, as of `now`.
    pub async fn dashboard_stats(&self, now: DateTime<Utc>) -> Result<DashboardStats, StoreError> {
        let current_hour = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
        let mut hours = Vec::with_capacity(24);
        for back in (0..24).rev() {
            let start = current_hour - Duration::hours(back);
            let end = start + Duration::hours(1) - Duration::microseconds(1);
            let mut counts = [0; 3];
            for (slot, t) in counts.iter_mut().zip(EventType::ALL) {
                *slot = self
                    .count_events(
                        EventQuery::new()
                            .event_type(t)
                            .start_time(start)
                            .end_time(end),
                    )
                    .await?;
            }
            hours.push(HourBucket { start, counts });
        }
        let mut totals = [0; 3];
        for (slot, t) in totals.iter_mut().zip(EventType::ALL) {
            *slot = self.count_events(EventQuery::new().event_type(t)).await?;
        }
        let mut newest_sessions: Vec<Session> = Vec::new();
        let recent = EventQuery {
            pagination: Pagination {
                page: 1,
                page_size: 100,
            },
            ..EventQuery::new()
        };
        for event in self.query_events(&recent).await?.1 {
            if newest_sessions.len() == NEWEST {
                break;
            }
            let id = event.session_id.as_str();
            if newest_sessions.iter().any(|s| s.session_id == id) {
                continue;
            }
            if let Some(session) = self.get_session(id).await? {
                newest_sessions.push(session);
            }
        }
        let errors = ErrorQuery {
            pagination: Pagination {
                page: 1,
                page_size: NEWEST as u32,
            },
            ..ErrorQuery::default()
        };
        let (error_count, newest_errors) = self.query_errors(&errors).await?;
        Ok(DashboardStats {
            hours,
            totals,
            newest_sessions,
            newest_errors,
            error_count,
            store_bytes: self.size_bytes().await?,
        })
    }
}
