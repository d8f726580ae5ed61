//! One connection of either backend, and the few ways the shared read path uses it:
//! fetch rows, fetch one integer, execute. SQL is written once in SQLite's `?` style;
//! for Postgres the placeholders are renumbered `$1, $2, ...` (no SQL here contains a
//! literal `?`: every value is bound).

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, FromRow, PgConnection, Postgres, Sqlite, SqliteConnection, Transaction};

use super::StoreError;
use super::sql::Arg;

/// Which SQL dialect a statement is written for where the two differ (index hints,
/// JSON aggregation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A connection, or a transaction, held for a while.
pub(crate) enum Held {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
    SqliteTx(Transaction<'static, Sqlite>),
    PostgresTx(Transaction<'static, Postgres>),
}

impl Held {
    /// The connection, to run statements on.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Held::Sqlite(c) => Conn::Sqlite(c),
            Held::Postgres(c) => Conn::Postgres(c),
            Held::SqliteTx(t) => Conn::Sqlite(t),
            Held::PostgresTx(t) => Conn::Postgres(t),
        }
    }
}

/// A borrowed connection of either backend.
pub(crate) enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

/// Binds `args` in order to a sqlx query of any kind.
macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::OptText(s) => q.bind(s.clone()),
                Arg::Int(i) => q.bind(*i),
                Arg::Uuid(u) => q.bind(*u),
                Arg::Bytes(b) => q.bind(b.clone()),
            };
        }
        q
    }};
}

/// `sql` with each `?` replaced by `$1`, `$2`, ... in order.
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

impl Conn<'_> {
    /// The dialect to write SQL in for this connection.
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Every row of `sql`.
    pub async fn fetch_all<T>(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        Ok(match self {
            Conn::Sqlite(c) => {
                bind_all!(sqlx::query_as::<_, T>(AssertSqlSafe(sql.to_owned())), args)
                    .fetch_all(&mut **c)
                    .await?
            }
            Conn::Postgres(c) => {
                bind_all!(sqlx::query_as::<_, T>(AssertSqlSafe(numbered(sql))), args)
                    .fetch_all(&mut **c)
                    .await?
            }
        })
    }

    /// The first row of `sql`, if any.
    pub async fn fetch_optional<T>(
        &mut self,
        sql: &str,
        args: &[Arg],
    ) -> Result<Option<T>, StoreError>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        Ok(match self {
            Conn::Sqlite(c) => {
                bind_all!(sqlx::query_as::<_, T>(AssertSqlSafe(sql.to_owned())), args)
                    .fetch_optional(&mut **c)
                    .await?
            }
            Conn::Postgres(c) => {
                bind_all!(sqlx::query_as::<_, T>(AssertSqlSafe(numbered(sql))), args)
                    .fetch_optional(&mut **c)
                    .await?
            }
        })
    }

    /// The one integer `sql` selects.
    pub async fn scalar(&mut self, sql: &str, args: &[Arg]) -> Result<i64, StoreError> {
        let (n,): (i64,) = self
            .fetch_optional(sql, args)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from `{sql}`")))?;
        Ok(n)
    }

    /// Runs `sql`; returns the rows it changed.
    #[cfg(test)]
    pub async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
        Ok(match self {
            Conn::Sqlite(c) => bind_all!(sqlx::query(AssertSqlSafe(sql.to_owned())), args)
                .execute(&mut **c)
                .await?
                .rows_affected(),
            Conn::Postgres(c) => bind_all!(sqlx::query(AssertSqlSafe(numbered(sql))), args)
                .execute(&mut **c)
                .await?
                .rows_affected(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ? AND c < ? LIMIT ?"),
            "SELECT a FROM t WHERE b = $1 AND c < $2 LIMIT $3"
        );
        assert_eq!(numbered("SELECT 1"), "SELECT 1");
    }
}
