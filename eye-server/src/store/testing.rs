//! Test support, compiled for the crate's tests and with the `test-util` feature: a
//! throwaway PostgreSQL database per test, as zero2prod's `spawn_app` makes one.
//!
//! The server is `EYE_TEST_DATABASE_URL` (a URL whose database the tests can connect
//! to and create databases from), or `postgres://postgres@127.0.0.1:5432/postgres`.
//! When it does not answer, [`PgDatabase::create`] prints why and returns `None`, so a
//! test can skip, except under CI (`CI=true`), where it panics: CI must run them.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// Where the Postgres tests create their databases, unless `EYE_TEST_DATABASE_URL`
/// names another server.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test on the test Postgres server, dropped (with
/// `WITH (FORCE)`, on a fresh connection from a thread of its own) when this value
/// is dropped: at the end of the test, or while a failing test unwinds.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// The new database's URL.
    pub url: String,
}

impl PgDatabase {
    /// Creates `eye_test_<random>`; `None` (with the reason printed) when no
    /// Postgres answers outside CI. Panics when none answers under CI.
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
        if let Err(e) = sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
        {
            panic!("CREATE DATABASE {name} on {}: {e}", redact(&admin_url));
        }
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
pub fn with_database(url: &str, database: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_keeps_server_and_options() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u@h/db");
    }
}
