//! One store per test on each backend, and the macro that runs a case on both.

use std::ops::Deref;

use tempfile::TempDir;

use crate::store::Store;
use crate::store::conn::Dialect;
pub(crate) use crate::store::testing::{PgDatabase, with_database};

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
