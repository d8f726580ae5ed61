//! Events, sessions and the errors log.

use eye_core::{ErrorQuery, ErrorRecord, EventQuery, Pagination, Session, StoredEvent};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::queue::Message;

/// What one [`Store::write_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Events newly stored.
    pub inserted: u64,
    /// Events whose id was already stored (a retry or a redelivery): not stored again.
    pub duplicates: u64,
    /// Rejected events newly recorded in the errors log.
    pub errors_logged: u64,
}

impl Store {
    /// Writes a batch of queue messages in one transaction: events are inserted once
    /// per id (a duplicate id is a no-op), the sessions of newly inserted events are
    /// updated in the same transaction, rejected events go to the errors log (once
    /// per key). Either all of it commits or none of it does.
    pub async fn write_batch(&self, messages: &[Message]) -> Result<WriteOutcome, StoreError> {
        let _ = messages;
        todo!("store helper")
    }

    /// One page of events matching `query`, newest first (ties broken by id), and the
    /// total count of matches.
    pub async fn query_events(
        &self,
        query: &EventQuery,
    ) -> Result<(u64, Vec<StoredEvent>), StoreError> {
        let _ = query;
        todo!("store helper")
    }

    /// One event by id.
    pub async fn get_event(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let _ = id;
        todo!("store helper")
    }

    /// One session's row.
    pub async fn get_session(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        let _ = session_id;
        todo!("store helper")
    }

    /// One page of a session's events in the order they occurred (oldest first), and
    /// the session's event count.
    pub async fn session_events(
        &self,
        session_id: &str,
        pagination: &Pagination,
    ) -> Result<(u64, Vec<StoredEvent>), StoreError> {
        let _ = (session_id, pagination);
        todo!("store helper")
    }

    /// One page of the errors log, newest first, and the total count of matches.
    pub async fn query_errors(
        &self,
        query: &ErrorQuery,
    ) -> Result<(u64, Vec<ErrorRecord>), StoreError> {
        let _ = query;
        todo!("store helper")
    }
}
