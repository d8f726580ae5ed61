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
    /// Erase data (`DELETE /sessions/{id}`). Only keys created with it have it: keys
    /// made before it existed keep exactly the scopes they had.
    Admin,
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Scopes {
    /// May send events.
    pub ingest: bool,
    /// May read.
    pub query: bool,
    /// May erase data.
    pub admin: bool,
}

impl Scopes {
    /// Every scope.
    pub const ALL: Scopes = Scopes {
        ingest: true,
        query: true,
        admin: true,
    };

    /// Sending events only: an SDK's key.
    pub const INGEST_ONLY: Scopes = Scopes {
        ingest: true,
        query: false,
        admin: false,
    };

    /// Reading only: an analyst's or a dashboard's key.
    pub const QUERY_ONLY: Scopes = Scopes {
        ingest: false,
        query: true,
        admin: false,
    };

    /// Erasing only: an operator's key for data-protection requests.
    pub const ADMIN_ONLY: Scopes = Scopes {
        ingest: false,
        query: false,
        admin: true,
    };

    /// True when this set includes `scope`.
    pub fn allows(self, scope: Scope) -> bool {
        match scope {
            Scope::Ingest => self.ingest,
            Scope::Query => self.query,
            Scope::Admin => self.admin,
        }
    }

    /// Stored form: the scopes' names joined by commas, `ingest,query,admin`. Each
    /// scope is stored by name, so a key stored before a scope existed does not gain
    /// it.
    ///
    /// ```
    /// use eye_server::store::Scopes;
    /// assert_eq!(Scopes::ALL.to_db(), "ingest,query,admin");
    /// // A key created with "every scope" before `admin` existed keeps what it had.
    /// assert_eq!(Scopes::from_db("ingest,query"), Scopes { ingest: true, query: true, admin: false });
    /// ```
    pub fn to_db(self) -> String {
        let mut v = Vec::new();
        if self.ingest {
            v.push("ingest");
        }
        if self.query {
            v.push("query");
        }
        if self.admin {
            v.push("admin");
        }
        v.join(",")
    }

    /// Parses the stored form.
    pub fn from_db(s: &str) -> Self {
        Scopes {
            ingest: s.split(',').any(|p| p == "ingest"),
            query: s.split(',').any(|p| p == "query"),
            admin: s.split(',').any(|p| p == "admin"),
        }
    }
}

/// How long an application's events are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// As `--retention-days` says (forever when it is not set).
    #[default]
    Default,
    /// Forever, whatever `--retention-days` says.
    Forever,
    /// This many days after the event's timestamp.
    Days(u32),
}

impl Retention {
    /// Stored form: NULL for [`Retention::Default`], 0 for [`Retention::Forever`].
    fn to_db(self) -> Option<i64> {
        match self {
            Self::Default => None,
            Self::Forever => Some(0),
            Self::Days(n) => Some(i64::from(n)),
        }
    }

    fn from_db(v: Option<i64>) -> Self {
        match v {
            None => Self::Default,
            Some(n) if n <= 0 => Self::Forever,
            Some(n) => Self::Days(u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }
}

impl std::fmt::Display for Retention {
    /// As `apps list` shows it: `default`, `forever`, `30d`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Forever => f.write_str("forever"),
            Self::Days(n) => write!(f, "{n}d"),
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
    /// How long its events are kept.
    pub retention: Retention,
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
    retention_days: Option<i64>,
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
            retention: Retention::from_db(r.retention_days),
        })
    }
}

const APP_COLUMNS: &str = "SELECT id, name, scopes, created_at, revoked_at, rate_limit, origins, retention_days \
     FROM applications";

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
                retention: Retention::Default,
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
        self.update_app(
            name,
            "UPDATE applications SET revoked_at = coalesce(revoked_at, ?) WHERE name = ? \
             RETURNING id",
            &[Arg::Int(now), Arg::Text(name.to_owned())],
        )
        .await
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
        self.update_app(name, sql, &args).await
    }

    /// Sets how long an application's events are kept; retention applies it at its
    /// next pass.
    pub async fn set_retention(&self, name: &str, retention: Retention) -> Result<(), StoreError> {
        let (sql, args) = match retention.to_db() {
            Some(n) => (
                "UPDATE applications SET retention_days = ? WHERE name = ? RETURNING id",
                vec![Arg::Int(n), Arg::Text(name.to_owned())],
            ),
            None => (
                "UPDATE applications SET retention_days = NULL WHERE name = ? RETURNING id",
                vec![Arg::Text(name.to_owned())],
            ),
        };
        self.update_app(name, sql, &args).await
    }

    /// Runs `sql`, an `UPDATE applications ... WHERE name = ? RETURNING id`;
    /// [`StoreError::AppNotFound`] when no application has that name.
    async fn update_app(&self, name: &str, sql: &str, args: &[Arg]) -> Result<(), StoreError> {
        let found: Option<(i64,)> = self
            .small_writer()
            .await?
            .conn()
            .fetch_optional(sql, args)
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
