//! Applications: the trusted clients, each with a hashed API key and scopes.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Store, StoreError};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Send events.
    Ingest,
    /// Read events, sessions and the errors log.
    Query,
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Scopes {
    /// May send events.
    pub ingest: bool,
    /// May read.
    pub query: bool,
}

impl Scopes {
    /// Every scope.
    pub const ALL: Scopes = Scopes {
        ingest: true,
        query: true,
    };

    /// True when this set includes `scope`.
    pub fn allows(self, scope: Scope) -> bool {
        match scope {
            Scope::Ingest => self.ingest,
            Scope::Query => self.query,
        }
    }

    /// Stored form: `ingest,query`.
    pub fn to_db(self) -> String {
        let mut v = Vec::new();
        if self.ingest {
            v.push("ingest");
        }
        if self.query {
            v.push("query");
        }
        v.join(",")
    }

    /// Parses the stored form.
    pub fn from_db(s: &str) -> Self {
        Scopes {
            ingest: s.split(',').any(|p| p == "ingest"),
            query: s.split(',').any(|p| p == "query"),
        }
    }
}

/// A registered application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppRecord {
    /// Row id.
    pub id: i64,
    /// Unique name; recorded on every event it sends.
    pub name: String,
    /// What its key may do.
    pub scopes: Scopes,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its key was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An application to register. Only the key's SHA-256 is stored.
#[derive(Debug, Clone)]
pub struct NewApp {
    /// Unique name.
    pub name: String,
    /// SHA-256 of the API key.
    pub key_hash: [u8; 32],
    /// What the key may do.
    pub scopes: Scopes,
}

impl Store {
    /// Registers an application. Fails with [`StoreError::AppExists`] on a taken name.
    pub async fn create_app(&self, app: &NewApp) -> Result<AppRecord, StoreError> {
        let _ = app;
        todo!("store helper")
    }

    /// The live (not revoked) application whose key hashes to `key_hash`.
    pub async fn find_app_by_key_hash(
        &self,
        key_hash: &[u8; 32],
    ) -> Result<Option<AppRecord>, StoreError> {
        let _ = key_hash;
        todo!("store helper")
    }

    /// Every application, revoked ones included, by name.
    pub async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        todo!("store helper")
    }

    /// Revokes an application's key; its stored events stay.
    pub async fn revoke_app(&self, name: &str) -> Result<(), StoreError> {
        let _ = name;
        todo!("store helper")
    }

    /// How many applications exist (revoked included), to detect the first run.
    pub async fn count_apps(&self) -> Result<u64, StoreError> {
        todo!("store helper")
    }
}
