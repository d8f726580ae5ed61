//! Applications: the clients, each with a hashed API key and scopes. A secret key is
//! a server's; a publishable key is a browser page's (ingest only, from listed origins).

use super::rows::{from_micros, to_micros};
use super::sql::Arg;
use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use eye_core::truncate_to_micros;
use serde::Serialize;

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

    /// Sending events only: an SDK's key.
    pub const INGEST_ONLY: Scopes = Scopes {
        ingest: true,
        query: false,
    };

    /// Reading only: an analyst's or a dashboard's key.
    pub const QUERY_ONLY: Scopes = Scopes {
        ingest: false,
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
    /// Most events per second it may send (a burst of one second's worth), if limited.
    pub rate_limit: Option<u32>,
    /// `Some` for a publishable key (the browser tracker's): the origins
    /// (`https://shop.example`) whose pages may send events with it. `None` for a
    /// secret key.
    pub origins: Option<Vec<String>>,
}

impl AppRecord {
    /// True for a publishable key: public by design, ingest only, from its origins.
    pub fn is_publishable(&self) -> bool {
        self.origins.is_some()
    }
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
    /// `Some` for a publishable key: the origins allowed to send with it (normalised,
    /// see `crate::auth::parse_origin`). `None` for a secret key.
    pub origins: Option<Vec<String>>,
}

/// One row of `applications`.
#[derive(sqlx::FromRow)]
struct AppRow {
    id: i64,
    name: String,
    scopes: String,
    created_at: i64,
    revoked_at: Option<i64>,
    rate_limit: Option<i64>,
    origins: Option<String>,
}

impl TryFrom<AppRow> for AppRecord {
    type Error = StoreError;

    fn try_from(r: AppRow) -> Result<Self, StoreError> {
        Ok(AppRecord {
            id: r.id,
            name: r.name,
            scopes: Scopes::from_db(&r.scopes),
            created_at: from_micros(r.created_at)?,
            revoked_at: r.revoked_at.map(from_micros).transpose()?,
            rate_limit: r.rate_limit.and_then(|n| u32::try_from(n).ok()),
            origins: r
                .origins
                .map(|o| {
                    serde_json::from_str(&o).map_err(|e| {
                        StoreError::Corrupt(format!("application {}: origins: {e}", r.id))
                    })
                })
                .transpose()?,
        })
    }
}

const APP_COLUMNS: &str =
    "SELECT id, name, scopes, created_at, revoked_at, rate_limit, origins FROM applications";

/// The stored form of a publishable key's origins: a JSON array.
fn origins_to_db(origins: &[String]) -> String {
    serde_json::Value::from(origins.to_vec()).to_string()
}

impl Store {
    /// Registers an application. Fails with [`StoreError::AppExists`] on a taken name.
    pub async fn create_app(&self, app: &NewApp) -> Result<AppRecord, StoreError> {
        let created_at = truncate_to_micros(Utc::now());
        let result = self
            .small_writer()
            .await?
            .conn()
            .scalar(
                "INSERT INTO applications (name, key_hash, scopes, created_at, origins) \
                 VALUES (?, ?, ?, ?, ?) RETURNING id",
                &[
                    Arg::Text(app.name.clone()),
                    Arg::Bytes(app.key_hash.to_vec()),
                    Arg::Text(app.scopes.to_db()),
                    Arg::Int(to_micros(created_at)),
                    Arg::OptText(app.origins.as_deref().map(origins_to_db)),
                ],
            )
            .await;
        match result {
            Ok(id) => Ok(AppRecord {
                id,
                name: app.name.clone(),
                scopes: app.scopes,
                created_at,
                revoked_at: None,
                rate_limit: None,
                origins: app.origins.clone(),
            }),
            Err(StoreError::Database(sqlx::Error::Database(db)))
                if db.is_unique_violation()
                    && (db.message().contains("applications.name")
                        || db.constraint() == Some("applications_name_key")) =>
            {
                Err(StoreError::AppExists(app.name.clone()))
            }
            Err(e) => Err(e),
        }
    }

    /// The live (not revoked) application whose key hashes to `key_hash`.
    pub async fn find_app_by_key_hash(
        &self,
        key_hash: &[u8; 32],
    ) -> Result<Option<AppRecord>, StoreError> {
        let sql = format!("{APP_COLUMNS} WHERE key_hash = ? AND revoked_at IS NULL");
        let row: Option<AppRow> = self
            .reader()
            .await?
            .conn()
            .fetch_optional(&sql, &[Arg::Bytes(key_hash.to_vec())])
            .await?;
        row.map(AppRecord::try_from).transpose()
    }

    /// One application by name, revoked or not.
    pub async fn find_app_by_name(&self, name: &str) -> Result<Option<AppRecord>, StoreError> {
        let sql = format!("{APP_COLUMNS} WHERE name = ?");
        let row: Option<AppRow> = self
            .reader()
            .await?
            .conn()
            .fetch_optional(&sql, &[Arg::Text(name.to_owned())])
            .await?;
        row.map(AppRecord::try_from).transpose()
    }

    /// Every application, revoked ones included, by name.
    pub async fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let sql = format!("{APP_COLUMNS} ORDER BY name");
        let rows: Vec<AppRow> = self.reader().await?.conn().fetch_all(&sql, &[]).await?;
        rows.into_iter().map(AppRecord::try_from).collect()
    }

    /// Revokes an application's key; its stored events stay. Revoking an already
    /// revoked application keeps its first revocation time.
    pub async fn revoke_app(&self, name: &str) -> Result<(), StoreError> {
        let now = to_micros(truncate_to_micros(Utc::now()));
        let found: Option<(i64,)> = self
            .small_writer()
            .await?
            .conn()
            .fetch_optional(
                "UPDATE applications SET revoked_at = coalesce(revoked_at, ?) WHERE name = ? \
                 RETURNING id",
                &[Arg::Int(now), Arg::Text(name.to_owned())],
            )
            .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::AppNotFound(name.to_owned())),
        }
    }

    /// Sets (or, with `None`, removes) an application's rate limit in events per
    /// second. API nodes see the change within their key cache's lifetime.
    pub async fn set_rate_limit(&self, name: &str, limit: Option<u32>) -> Result<(), StoreError> {
        let (sql, args) = match limit {
            Some(n) => (
                "UPDATE applications SET rate_limit = ? WHERE name = ? RETURNING id",
                vec![Arg::Int(i64::from(n)), Arg::Text(name.to_owned())],
            ),
            None => (
                "UPDATE applications SET rate_limit = NULL WHERE name = ? RETURNING id",
                vec![Arg::Text(name.to_owned())],
            ),
        };
        let found: Option<(i64,)> = self
            .small_writer()
            .await?
            .conn()
            .fetch_optional(sql, &args)
            .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::AppNotFound(name.to_owned())),
        }
    }

    /// Replaces a publishable key's origins (API nodes apply it within their key
    /// cache's lifetime). Fails with [`StoreError::NotPublishable`] for a secret key:
    /// origins would make it one, and a secret key must never become public.
    pub async fn set_origins(&self, name: &str, origins: &[String]) -> Result<(), StoreError> {
        let found: Option<(i64,)> = self
            .small_writer()
            .await?
            .conn()
            .fetch_optional(
                "UPDATE applications SET origins = ? WHERE name = ? AND origins IS NOT NULL \
                 RETURNING id",
                &[
                    Arg::Text(origins_to_db(origins)),
                    Arg::Text(name.to_owned()),
                ],
            )
            .await?;
        match found {
            Some(_) => Ok(()),
            None => match self.find_app_by_name(name).await? {
                Some(_) => Err(StoreError::NotPublishable(name.to_owned())),
                None => Err(StoreError::AppNotFound(name.to_owned())),
            },
        }
    }

    /// How many applications exist (revoked included), to detect the first run.
    pub async fn count_apps(&self) -> Result<u64, StoreError> {
        let n = self
            .reader()
            .await?
            .conn()
            .scalar("SELECT count(*) FROM applications", &[])
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
