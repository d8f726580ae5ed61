//! `baseline-sqlite`: the machine's limit for storing events, for `bench/run`.
//!
//! Applies the project's own migrations (`eye-server/migrations/sqlite`, read at run time) to
//! a fresh SQLite file, then inserts `--rows` synthetic events into its `events` table
//! with raw multi-row `INSERT`s (`--insert-rows` rows per statement, `--tx-rows` rows
//! per transaction), WAL and `synchronous=NORMAL` as the server uses. Prints the rate
//! as `rows_per_sec <N>` on stdout.
//!
//! The columns are read from the table itself (`PRAGMA table_info`), so the baseline
//! follows the schema as it changes: each column gets a value chosen by its name (ids,
//! session, category, name, payload, timestamps, application) or, failing that, by its
//! declared type.
//!
//! # Layout
//!
//! One file: the command line, the column generators, and the insert loop.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use rand::Rng;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqlitePool};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "baseline-sqlite",
    about = "Raw multi-row SQLite insert baseline"
)]
struct Args {
    /// The SQLite file to create (must not exist).
    #[arg(long)]
    database: PathBuf,
    /// The migrations folder to apply first.
    #[arg(long, default_value = "eye-server/migrations/sqlite")]
    migrations: PathBuf,
    /// The table to insert into.
    #[arg(long, default_value = "events")]
    table: String,
    /// Rows to insert.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Rows per transaction.
    #[arg(long, default_value_t = 1000)]
    tx_rows: u64,
    /// Rows per INSERT statement.
    #[arg(long, default_value_t = 100)]
    insert_rows: u64,
    /// Distinct sessions the rows are spread over.
    #[arg(long, default_value_t = 10_000)]
    sessions: u64,
    /// Kind of event ids.
    #[arg(long, value_enum, default_value_t = Ids::V7)]
    ids: Ids,
    /// Each event's timestamp is its arrival time minus a random delay of up to this
    /// many seconds, as `bench/wrk/ingest.lua` makes them (0: strictly increasing).
    /// Large values scatter inserts over every timestamp index and cost SQLite several
    /// times its throughput.
    #[arg(long, default_value_t = 2)]
    jitter_secs: i64,
}

/// Kind of event ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Ids {
    /// Time-ordered UUIDv7 (what the server assigns).
    V7,
    /// Random UUIDv4.
    V4,
}

/// A value bound to one column.
#[derive(Debug, Clone)]
enum Val {
    Blob(Vec<u8>),
    Text(String),
    Int(i64),
}

/// What a column is filled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gen {
    Id,
    Session,
    Category,
    Name,
    EventType,
    Host,
    Path,
    Element,
    Data,
    Timestamp,
    Received,
    Application,
    Counter,
    Blank,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    decl: String,
    generator: Gen,
}

impl Column {
    fn is_integer(&self) -> bool {
        self.decl.contains("INT")
    }
    fn is_blob(&self) -> bool {
        self.decl.contains("BLOB")
    }
}

fn generator_for(name: &str, decl: &str) -> Gen {
    let n = name.to_ascii_lowercase();
    match n.as_str() {
        "id" | "event_id" | "uuid" => Gen::Id,
        "session_id" | "session" => Gen::Session,
        "category" => Gen::Category,
        "name" => Gen::Name,
        "event_type" | "type" | "kind" => Gen::EventType,
        "host" => Gen::Host,
        "path" => Gen::Path,
        "element" => Gen::Element,
        "data" | "payload" | "form" => Gen::Data,
        "application" | "app" | "app_name" => Gen::Application,
        "received_at" | "received" | "created_at" => Gen::Received,
        _ if n.contains("time") || n.ends_with("_at") || n == "ts" || n.ends_with("_us") => {
            Gen::Timestamp
        }
        _ if decl.contains("INT") => Gen::Counter,
        _ => Gen::Blank,
    }
}

struct RowMaker {
    rng: rand::rngs::ThreadRng,
    ids: Ids,
    sessions: u64,
    start_us: i64,
    jitter_us: i64,
    n: i64,
}

const TYPES: [(&str, &str, &str); 3] = [
    ("page_interaction", "page_view", "page_view"),
    ("page_interaction", "cta_click", "cta_click"),
    ("form_interaction", "submit", "form_submit"),
];

impl RowMaker {
    fn row(&mut self, columns: &[Column]) -> Vec<Val> {
        self.n += 1;
        let kind = TYPES[(self.n % 3) as usize];
        let session = self.rng.random_range(0..self.sessions);
        let received = self.start_us + self.n * 1000;
        let ts = if self.jitter_us > 0 {
            received - self.rng.random_range(0..self.jitter_us)
        } else {
            received
        };
        let id = match self.ids {
            Ids::V7 => uuid::Uuid::now_v7(),
            Ids::V4 => uuid::Uuid::new_v4(),
        };
        let path = format!("/products/{}", self.n % 500);
        columns
            .iter()
            .map(|c| match c.generator {
                Gen::Id if c.is_blob() => Val::Blob(id.as_bytes().to_vec()),
                Gen::Id => Val::Text(id.to_string()),
                Gen::Session if c.is_integer() => Val::Int(session as i64),
                Gen::Session => Val::Text(format!("session-{session:05}")),
                Gen::Category => Val::Text(kind.0.into()),
                Gen::Name => Val::Text(kind.1.into()),
                Gen::EventType if c.is_integer() => Val::Int(self.n % 3),
                Gen::EventType => Val::Text(kind.2.into()),
                Gen::Host => Val::Text("www.example.com".into()),
                Gen::Path => Val::Text(path.clone()),
                Gen::Element => Val::Text("chat bubble".into()),
                Gen::Data => Val::Text(format!(
                    r#"{{"host":"www.example.com","path":"{path}","element":"chat bubble"}}"#
                )),
                Gen::Timestamp if c.is_integer() => Val::Int(ts),
                Gen::Timestamp => Val::Text(format!("{ts}")),
                Gen::Received if c.is_integer() => Val::Int(received),
                Gen::Received => Val::Text(format!("{received}")),
                Gen::Application => Val::Text("bench".into()),
                Gen::Counter => Val::Int(self.n),
                Gen::Blank if c.is_integer() => Val::Int(0),
                Gen::Blank if c.is_blob() => Val::Blob(vec![0; 16]),
                Gen::Blank => Val::Text(String::new()),
            })
            .collect()
    }
}

async fn open(args: &Args) -> anyhow::Result<SqlitePool> {
    anyhow::ensure!(
        !args.database.exists(),
        "{} already exists",
        args.database.display()
    );
    let url = format!("sqlite://{}", args.database.display());
    let options = SqliteConnectOptions::from_str(&url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .pragma("temp_store", "memory")
        .pragma("cache_size", "-32000");
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    sqlx::migrate::Migrator::new(args.migrations.as_path())
        .await
        .with_context(|| format!("reading migrations in {}", args.migrations.display()))?
        .run(&pool)
        .await
        .context("applying migrations")?;
    Ok(pool)
}

async fn columns(pool: &SqlitePool, table: &str) -> anyhow::Result<Vec<Column>> {
    let rows = sqlx::query(AssertSqlSafe(format!("PRAGMA table_info({table})")))
        .fetch_all(pool)
        .await?;
    let mut out = Vec::new();
    for row in rows {
        let name: String = row.try_get("name")?;
        let decl: String = row.try_get::<String, _>("type")?.to_ascii_uppercase();
        let notnull: i64 = row.try_get("notnull")?;
        let pk: i64 = row.try_get("pk")?;
        let default: Option<String> = row.try_get("dflt_value")?;
        let generator = generator_for(&name, &decl);
        // An INTEGER PRIMARY KEY is the rowid: let SQLite assign it. A column with a
        // default that we have no meaningful value for keeps its default.
        if pk == 1 && decl == "INTEGER" && generator != Gen::Id {
            continue;
        }
        if generator == Gen::Blank && (default.is_some() || notnull == 0) {
            continue;
        }
        out.push(Column {
            name,
            decl,
            generator,
        });
    }
    anyhow::ensure!(!out.is_empty(), "table {table} has no columns to fill");
    Ok(out)
}

fn insert_sql(table: &str, columns: &[Column], rows: u64) -> String {
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let one = format!("({})", vec!["?"; columns.len()].join(","));
    let values = vec![one.as_str(); rows as usize].join(",");
    format!("INSERT INTO {table} ({}) VALUES {values}", names.join(","))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.insert_rows > 0 && args.tx_rows % args.insert_rows == 0,
        "--tx-rows must be a multiple of --insert-rows"
    );
    let pool = open(&args).await?;
    let columns = columns(&pool, &args.table).await?;
    let names: Vec<String> = columns
        .iter()
        .map(|c| format!("{}:{:?}", c.name, c.generator))
        .collect();
    eprintln!("baseline-sqlite: filling {}", names.join(" "));
    let full_sql = insert_sql(&args.table, &columns, args.insert_rows);
    let start_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as i64
        - (args.rows as i64) * 1000;
    let mut maker = RowMaker {
        rng: rand::rng(),
        ids: args.ids,
        sessions: args.sessions.max(1),
        start_us,
        jitter_us: args.jitter_secs.max(0) * 1_000_000,
        n: 0,
    };
    let started = Instant::now();
    let mut done = 0u64;
    while done < args.rows {
        let tx_rows = args.tx_rows.min(args.rows - done);
        let mut tx = pool.begin().await?;
        let mut left = tx_rows;
        while left > 0 {
            let chunk = args.insert_rows.min(left);
            let sql = if chunk == args.insert_rows {
                full_sql.clone()
            } else {
                insert_sql(&args.table, &columns, chunk)
            };
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for _ in 0..chunk {
                for v in maker.row(&columns) {
                    query = match v {
                        Val::Blob(b) => query.bind(b),
                        Val::Text(t) => query.bind(t),
                        Val::Int(i) => query.bind(i),
                    };
                }
            }
            query.execute(&mut *tx).await?;
            left -= chunk;
        }
        tx.commit().await?;
        done += tx_rows;
    }
    let secs = started.elapsed().as_secs_f64();
    let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {}",
        args.table
    )))
    .fetch_one(&pool)
    .await?;
    anyhow::ensure!(count as u64 >= args.rows, "only {count} rows stored");
    pool.close().await;
    println!("rows_per_sec {:.0}", done as f64 / secs);
    eprintln!(
        "baseline-sqlite: {done} rows in {secs:.2} s ({} ids)",
        match args.ids {
            Ids::V7 => "UUIDv7",
            Ids::V4 => "UUIDv4",
        }
    );
    Ok(())
}
