//! One store per test on each backend, and the macro that runs a case on both.

use std::ops::Deref;

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tempfile::TempDir;

use crate::store::Store;
use crate::store::conn::Dialect;

/// Where the Postgres tests create their databases, unless `EYE_TEST_DATABASE_URL`
/// names another server.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Runs each case (`async fn case(store: TestDb)` in the calling module) as
/// `sqlite::case` and `postgres::case`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(crate::store::tests::harness::TestDb::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = crate::store::tests::harness::TestDb::postgres().await else {
                        return;
                    };
                    super::$case(db).await;
                }
            )*
        }
    };
}

/// A store on a database of its own, and what keeps that database alive: a temporary
/// directory, or a Postgres database dropped with this value. Derefs to the
/// [`Store`].
pub(crate) struct TestDb {
    /// Declared first, so it is dropped (its pool released) before the database.
    pub store: Store,
    /// The URL it was opened with, to open it again.
    pub url: String,
    _keep: Keep,
}

/// Held only for its `Drop`.
#[allow(dead_code)]
enum Keep {
    Dir(TempDir),
    Pg(PgDatabase),
}

impl Deref for TestDb {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

impl TestDb {
    /// A store on a SQLite file in a fresh temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("eye.db").display());
        Self {
            store: Store::open(&url).await.unwrap(),
            url,
            _keep: Keep::Dir(dir),
        }
    }

    /// A store on a fresh Postgres database, or `None` (with the reason printed)
    /// when no Postgres answers outside CI. Panics when none answers under CI.
    pub async fn postgres() -> Option<Self> {
        let db = PgDatabase::create().await?;
        let url = db.url.clone();
        let store = Store::open(&url).await.unwrap();
        Some(Self {
            store,
            url,
            _keep: Keep::Pg(db),
        })
    }

    /// Which backend this is.
    pub fn dialect(&self) -> Dialect {
        if self.store.pg_pool().is_some() {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        }
    }

    /// Runs one statement on a fresh connection: `sqlite` or `postgres`, whichever is
    /// this backend's.
    pub async fn exec(&self, sqlite: &str, postgres: &str) {
        let sql = match self.dialect() {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        };
        let mut held = self.store.small_writer().await.unwrap();
        held.conn().execute(sql, &[]).await.unwrap();
    }
}

/// A database created for one test on the test Postgres server, dropped (with
/// `WITH (FORCE)`, on a fresh connection from a thread of its own) when this value
/// is dropped: at the end of the test, or while a failing test unwinds.
pub(crate) struct PgDatabase {
    admin_url: String,
    name: String,
    /// The new database's URL.
    pub url: String,
}

impl PgDatabase {
    /// Creates `eye_test_<random>`; see [`TestDb::postgres`] for when it is `None`.
    pub async fn create() -> Option<Self> {
        let admin_url =
            std::env::var("EYE_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
        let mut admin = match PgConnection::connect(&admin_url).await {
            Ok(c) => c,
            Err(e) => {
                let why = format!("PostgreSQL at {} does not answer: {e}", redact(&admin_url));
                if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                    panic!("{why}; CI is set, so the Postgres tests must run");
                }
                eprintln!("skipping a Postgres test: {why}");
                return None;
            }
        };
        let name = format!("eye_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // A thread with its own runtime: this may run inside the test's runtime
        // (which cannot block on a future) or while it unwinds.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(AssertSqlSafe(sql))
                    .execute(&mut admin)
                    .await
                    .ok()?;
                let _ = admin.close().await;
                Some(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// `url` with its database (the path) replaced by `database`, query kept.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest[path_start..]
        .find('?')
        .map_or("", |q| &rest[path_start + q..]);
    format!(
        "{}{}/{database}{query}",
        &url[..authority_start],
        &rest[..path_start]
    )
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[test]
fn database_url_keeps_server_and_options() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
        "postgres://u:p@h:5432/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u@h/db");
}

/// The SQLite writer pool of a SQLite store.
pub(crate) fn sqlite_writer(store: &Store) -> &sqlx::SqlitePool {
    &sqlite(store).writer
}

/// The connections of a SQLite store.
pub(crate) fn sqlite(store: &Store) -> &crate::store::sqlite::SqliteStore {
    match &store.backend {
        crate::store::Backend::Sqlite(s) => s,
        crate::store::Backend::Postgres(_) => panic!("not a SQLite store"),
    }
}
